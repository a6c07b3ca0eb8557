import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RtmError } from '@rtm/fpnn';
import { until } from '@rtm/testkit';
import { RTMClient, type ClosedEvent, type GroupMessage, type P2PMessage, type RTMClientEvents } from '../src/index.js';
import { DuplicateFilter } from '../src/pushes.js';
import { FakeRtmServer, nextEvent, sleep } from './helpers/fake-server.js';
import { sameFrameIgnoringSeq, webClientAccepted, webClientFrame } from './helpers/vectors.js';

const BIG = 81985529216486897n;

async function online(t: { after(fn: () => unknown): void }, options: Partial<ConstructorParameters<typeof RTMClient>[0]> = {}) {
  const server = await FakeRtmServer.start();
  const client = new RTMClient({ endpoint: server.endpoint, pid: 11000001, ...options });
  t.after(async () => {
    client.close();
    await server.close();
  });
  await client.login(1001n, 'token-1001');
  return { server, client, conn: server.last };
}

function collect<K extends keyof RTMClientEvents>(client: RTMClient, event: K): RTMClientEvents[K][] {
  const list: RTMClientEvents[K][] = [];
  client.on(event, (e) => list.push(e));
  return list;
}

test('pushmsg is answered {} and emitted as message with bigint ids', async (t) => {
  const { client, conn } = await online(t);
  const messages = collect(client, 'message');
  const answer = await conn.push('pushmsg', { from: 1002, to: 1001, mtype: 50, mid: BIG, msg: 'file', attrs: '{}', mtime: 1700000000000n });
  assert.deepEqual(answer, {});
  await sleep(0);
  assert.deepEqual(messages, [{ fromUid: 1002n, toUid: 1001n, mtype: 50, mid: BIG, message: 'file', attrs: '{}', mtime: 1700000000000n }]);
});

test('answers to ping and pushmsg are byte-identical to the browser SDK', async (t) => {
  const { conn } = await online(t);
  await conn.push('ping', {});
  assert.ok(sameFrameIgnoringSeq(conn.rawMessages.at(-1)!, webClientFrame('ping', 2)));
  await conn.push('pushmsg', { from: 1002, to: 1001, mtype: 30, mid: 1n, msg: 'x', attrs: '', mtime: 1n });
  assert.ok(sameFrameIgnoringSeq(conn.rawMessages.at(-1)!, webClientFrame('pushmsg', 2)));
});

test('captured pushmsg frames (mid > 2^53) are delivered exactly', async (t) => {
  const { client, conn } = await online(t);
  const messages = collect(client, 'message');
  const answered = conn.rawMessages.length;
  conn.sendRaw(webClientAccepted('pushmsg', 0));
  conn.sendRaw(webClientAccepted('pushmsg', 1));
  // Two frames: the second message, and both answers on their way back to the server, may come
  // later on a loaded machine.
  await until(() => messages.length >= 2 && conn.rawMessages.length >= answered + 2);
  assert.deepEqual(messages, [
    { fromUid: 1001n, toUid: 1002n, mtype: 30, mid: 1795315946497001n, message: 'golden p2p', attrs: '{"k":"v"}', mtime: 1795315946498n },
    { fromUid: 1002n, toUid: 1001n, mtype: 30, mid: 81985529216486897n, message: 'golden push', attrs: '{"k":"v"}', mtime: 1795315947537n },
  ]);
  assert.equal(conn.rawMessages.length, answered + 2, 'both pushes answered');
});

test('a chat map (mtype 30) becomes the text plus translatedInfo', async (t) => {
  const { client, conn } = await online(t);
  const groups = collect(client, 'groupMessage');
  const info = { source: 'zh', target: 'en', sourceText: '你好', targetText: 'hello' };
  await conn.push('pushgroupmsg', { from: 1002, gid: 2001, mtype: 30, mid: 1n, msg: info, attrs: '', mtime: 5 });
  await conn.push('pushgroupmsg', {
    from: 1002,
    gid: 2001,
    mtype: 30,
    mid: 2n,
    msg: { source: '', target: '', sourceText: 'plain', targetText: '' },
    attrs: '',
    mtime: 6,
  });
  await sleep(0);
  assert.deepEqual(groups, [
    { fromUid: 1002n, gid: 2001n, mtype: 30, mid: 1n, message: 'hello', translatedInfo: info, attrs: '', mtime: 5n },
    {
      fromUid: 1002n,
      gid: 2001n,
      mtype: 30,
      mid: 2n,
      message: 'plain',
      translatedInfo: { source: '', target: '', sourceText: 'plain', targetText: '' },
      attrs: '',
      mtime: 6n,
    },
  ] satisfies GroupMessage[]);
});

test('room, broadcast and binary messages', async (t) => {
  const { client, conn } = await online(t);
  const rooms = collect(client, 'roomMessage');
  const broadcasts = collect(client, 'broadcastMessage');
  await conn.push('pushroommsg', {
    from: 7,
    rid: BIG,
    mtype: 88,
    mid: 3n,
    msg: new Uint8Array([0, 255]),
    attrs: new Uint8Array([0x61]),
    mtime: 1,
  });
  await conn.push('pushbroadcastmsg', { from: 8, mtype: 32, mid: 4n, msg: 'cmd', attrs: '', mtime: 2 });
  await sleep(0);
  assert.deepEqual(rooms, [{ fromUid: 7n, rid: BIG, mtype: 88, mid: 3n, message: new Uint8Array([0, 255]), attrs: 'a', mtime: 1n }]);
  assert.deepEqual(broadcasts, [{ fromUid: 8n, mtype: 32, mid: 4n, message: 'cmd', attrs: '', mtime: 2n }]);
});

test('duplicate pushes (same kind, mid, from, gid) are dropped; others pass', async (t) => {
  const { client, conn } = await online(t);
  const p2p = collect(client, 'message');
  const groups = collect(client, 'groupMessage');
  const msg = { from: 1002, to: 1001, mtype: 30, mid: BIG, msg: 'x', attrs: '', mtime: 1 };
  await conn.push('pushmsg', msg);
  await conn.push('pushmsg', msg); // duplicate
  await conn.push('pushmsg', { ...msg, mid: BIG + 1n });
  await conn.push('pushmsg', { ...msg, from: 1003 });
  await conn.push('pushgroupmsg', { ...msg, gid: 1 }); // other kind, same mid
  await conn.push('pushgroupmsg', { ...msg, gid: 2 }); // other group
  await conn.push('pushgroupmsg', { ...msg, gid: 2 }); // duplicate
  await sleep(0);
  assert.deepEqual(
    p2p.map((m: P2PMessage) => [m.mid, m.fromUid]),
    [
      [BIG, 1002n],
      [BIG + 1n, 1002n],
      [BIG, 1003n],
    ],
  );
  assert.deepEqual(
    groups.map((m) => m.gid),
    [1n, 2n],
  );
});

test('the duplicate filter forgets keys after its TTL', () => {
  const filter = new DuplicateFilter(5000);
  assert.equal(filter.isDuplicate('a', 0), false);
  assert.equal(filter.isDuplicate('a', 4999), true);
  assert.equal(filter.isDuplicate('a', 5000), false);
  assert.equal(filter.isDuplicate('b', 20000), false);
  assert.equal(filter.size, 1, 'expired keys are swept');
  assert.equal(new DuplicateFilter(0).isDuplicate('a'), false);
});

test('a push listing my uid in attrs.excludedUids is answered but dropped', async (t) => {
  const { client, conn } = await online(t);
  const p2p = collect(client, 'message');
  assert.deepEqual(
    await conn.push('pushmsg', { from: 2, to: 1001, mtype: 30, mid: 1n, msg: 'x', attrs: '{"excludedUids":["1001"]}', mtime: 1 }),
    {},
  );
  await conn.push('pushmsg', { from: 2, to: 1001, mtype: 30, mid: 2n, msg: 'y', attrs: '{"excludedUids":["1002"]}', mtime: 1 });
  await sleep(0);
  assert.deepEqual(
    p2p.map((m) => m.message),
    ['y'],
  );
});

test('kickoutroom is oneway: emitted, not answered', async (t) => {
  const { client, conn } = await online(t);
  const before = conn.rawMessages.length;
  conn.pushOneway('kickoutroom', { rid: BIG });
  assert.deepEqual(await nextEvent(client, 'kickoutRoom'), { rid: BIG });
  await sleep(30);
  assert.equal(conn.rawMessages.length, before);
  assert.equal(client.state, 'online');
});

test('kickout closes the session without answering and without relogin', async (t) => {
  const { server, client, conn } = await online(t);
  const closed: ClosedEvent[] = collect(client, 'closed');
  const kicked = nextEvent(client, 'kickout');
  const before = conn.rawMessages.length;
  conn.pushOneway('kickout', {});
  await kicked;
  await conn.waitClosed();
  assert.equal(conn.rawMessages.length, before, 'kickout is not answered');
  assert.deepEqual(closed, [{ reason: 'kickout', code: 0 }]);
  assert.equal(client.state, 'closed');
  await sleep(100);
  assert.equal(server.connections.length, 1, 'no reconnect after kickout');
});

test('a listener that throws is reported on error; other listeners still run', async (t) => {
  const { client, conn } = await online(t);
  const errors = collect(client, 'error');
  const seen: bigint[] = [];
  client.on('message', () => {
    throw new Error('app bug');
  });
  client.on('message', (m) => seen.push(m.mid));
  await conn.push('pushmsg', { from: 2, to: 1001, mtype: 30, mid: 9n, msg: 'x', attrs: '', mtime: 1 });
  await sleep(0);
  assert.deepEqual(seen, [9n]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0]!.message, 'app bug');
});

test('an unknown server method gets error 20004 and an error event', async (t) => {
  const { client, conn } = await online(t);
  const errors = collect(client, 'error');
  await assert.rejects(conn.push('pushchat', {}), (err: unknown) => err instanceof RtmError && err.code === 20004);
  assert.equal(errors.length, 1);
  assert.equal(client.state, 'online');
});
