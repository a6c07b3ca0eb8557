/**
 * /metrics on the admin port: the counters and the quest-duration histogram that the hot path
 * tallies with plain additions must come out in Prometheus' text format with exact values.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';

async function scrape(server: TestServer): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${server.adminPort}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('metrics (admin /metrics)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.close();
  });

  it('the connection gauge stays right when connections open with a bad frame', async () => {
    const gauge = 'rtm_connections{gate="client",transport="tcp"}';
    const before = value(await scrape(server), gauge) ?? 0;
    const bad = Array.from({ length: 5 }, () => {
      const socket = connect(server.clientPort, '127.0.0.1');
      socket.on('error', () => undefined);
      // A frame header with a bad version and a huge size: refused at its first read.
      socket.write(Buffer.from('FPNN\x09\x80\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00', 'latin1'));
      return new Promise<void>((resolve) => socket.on('close', () => resolve()));
    });
    await Promise.all(bad);
    const ok = await RawClient.tcp(server.clientEndpoint);
    await ok.quest('nosuchmethod').catch(() => undefined); // answered: it is counted by now
    assert.equal(value(await scrape(server), gauge), before + 1);
    ok.close();
  });

  it('counts quests by outcome, stored messages, pushes and quest durations exactly', async () => {
    const backend = await RawClient.tcp(server.serverEndpoint);
    try {
      for (let i = 0; i < 5; i++) {
        await backend.signed('sendmsg', { from: 1n, to: 2n, mid: BigInt(i + 1), mtype: 30, msg: 'hi', attrs: '' }, TEST_PID, TEST_SECRET);
      }
      // Two refused quests: mtype out of range (code 200002 in the spec's table).
      for (let i = 0; i < 2; i++) {
        await assert.rejects(
          backend.signed('sendmsg', { from: 1n, to: 2n, mid: BigInt(100 + i), mtype: 0, msg: 'x', attrs: '' }, TEST_PID, TEST_SECRET),
        );
      }
      const first = await scrape(server);
      assert.equal(value(first, 'rtm_quests_total{gate="server",method="sendmsg",outcome="ok"}'), 5);
      const refused = first.split('\n').filter((l) => l.startsWith('rtm_quests_total{gate="server",method="sendmsg",outcome="2'));
      assert.equal(refused.length, 1, refused.join('\n'));
      assert.equal(Number(refused[0]!.split(' ')[1]), 2);
      assert.equal(value(first, 'rtm_messages_stored_total{kind="p2p"}'), 5);

      // Histogram: cumulative buckets ending at +Inf = _count, all quests of the gate.
      assert.match(first, /# TYPE rtm_quest_duration_seconds histogram/);
      const buckets = first
        .split('\n')
        .filter((l) => l.startsWith('rtm_quest_duration_seconds_bucket{') && l.includes('gate="server"'))
        .map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)));
      assert.equal(buckets.length, 13); // 12 bounds + Inf
      for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]! >= buckets[i - 1]!, `not cumulative: ${buckets.join(',')}`);
      const count = value(first, 'rtm_quest_duration_seconds_count{gate="server"}');
      assert.ok(count !== undefined && count >= 7, `count ${count}`);
      assert.equal(buckets[buckets.length - 1], count);
      assert.ok(value(first, 'rtm_quest_duration_seconds_sum{gate="server"}')! > 0);

      // Counters keep counting across scrapes (folding resets only the pending tallies).
      await backend.signed('sendmsg', { from: 1n, to: 2n, mid: 999n, mtype: 30, msg: 'hi', attrs: '' }, TEST_PID, TEST_SECRET);
      const second = await scrape(server);
      assert.equal(value(second, 'rtm_quests_total{gate="server",method="sendmsg",outcome="ok"}'), 6);
      assert.equal(value(second, 'rtm_messages_stored_total{kind="p2p"}'), 6);
      assert.equal(value(second, 'rtm_quest_duration_seconds_count{gate="server"}'), count! + 1);
    } finally {
      backend.close();
    }
  });

  it('counts pushes written by method', async () => {
    const client = await RawClient.websocket(server.clientEndpoint);
    const backend = await RawClient.tcp(server.serverEndpoint);
    try {
      const { token } = (await backend.signed('gettoken', { uid: 20n }, TEST_PID, TEST_SECRET)) as { token: string };
      assert.equal((await client.quest('auth', { pid: TEST_PID, uid: 20n, token, version: 'test' })).ok, true);
      const before = value(await scrape(server), 'rtm_pushes_total{method="pushmsg"}') ?? 0;
      for (let i = 0; i < 3; i++) {
        await backend.signed(
          'sendmsg',
          { from: 21n, to: 20n, mid: BigInt(500 + i), mtype: 30, msg: 'p', attrs: '' },
          TEST_PID,
          TEST_SECRET,
        );
      }
      assert.equal(value(await scrape(server), 'rtm_pushes_total{method="pushmsg"}'), before + 3);
    } finally {
      client.close();
      backend.close();
    }
  });
});
