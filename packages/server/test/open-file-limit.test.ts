import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { RawClient, spawnServer, TEST_PID, TEST_SECRET, until, type SpawnedServer } from '@rtm/testkit';
import fc from 'fast-check';
import { connectionCaps, FILES_KEPT, openFileCount, openFileLimit, SERVER_SHARE_FLOOR } from '../src/observability/open-files.js';

// At the open-file limit the kernel refuses `accept`, and libuv closes the waiting connections
// itself without telling node: clients and backends fail to connect and nothing is logged or
// counted. So the two gates' connection limits together never go past what the open-file limit
// leaves room for, and a refusal is a gate's own, counted and logged (observability/open-files.ts).

describe('open files: reading the limit, and the connections it leaves room for', () => {
  it('reads the soft limit of /proc/self/limits; unlimited or unreadable is no limit', () => {
    const limits = (soft: string) => () =>
      `Limit                     Soft Limit           Hard Limit           Units     \nMax processes             127431               127431               processes \nMax open files            ${soft}                 4096                 files     \n`;
    assert.equal(openFileLimit(limits('1024')), 1024);
    assert.equal(openFileLimit(limits('unlimited')), undefined);
    assert.equal(
      openFileLimit(() => {
        throw new Error('ENOENT');
      }),
      undefined,
    );
    if (process.platform === 'linux') {
      assert.ok(openFileLimit()! > 0, 'this process has one');
      assert.ok(openFileCount()! >= 3, 'and has stdin, stdout and stderr open at least');
    }
  });

  const caps = (server: number, client: number, limit: number | undefined, open: number | undefined) => {
    const { server: s, client: c } = connectionCaps({ server, client }, limit, open);
    return [s.cap, s.lowered, c.cap, c.lowered];
  };

  it('the server gate gets at most a tenth of the room (limit less the files open at start and those kept), the client gate the rest', () => {
    assert.deepEqual(caps(1_000, 50_000, undefined, 30), [1_000, false, 50_000, false], 'no limit known');
    assert.deepEqual(caps(0, 0, undefined, 30), [0, false, 0, false], 'no limit known, none configured');
    assert.deepEqual(caps(1_000, 50_000, 262_144, 30), [1_000, false, 50_000, false], 'the systemd unit');
    assert.deepEqual(
      caps(1_000, 50_000, 20_000, 30),
      [1_000, false, 20_000 - 30 - FILES_KEPT - 1_000, true],
      'room for 1,000 and the rest',
    );
    assert.deepEqual(caps(1_000, 0, 20_000, 30), [1_000, false, 20_000 - 30 - FILES_KEPT - 1_000, true], 'no client limit configured');
    assert.deepEqual(caps(0, 50_000, 20_000, 30), [1_987, true, 19_870 - 1_987, true], 'no server limit: its share, a tenth of 19,870');
    assert.deepEqual(caps(0, 500, 20_000, 30), [1_987, true, 500, false]);
    assert.deepEqual(caps(1_000, 50_000, 4_096, 30), [396, true, 3_570, true], 'a tenth of 3,966');
    assert.deepEqual(caps(20, 500, 4_096, 30), [20, false, 500, false]);
    assert.deepEqual(caps(20, 0, 4_096, 30), [20, false, 3_946, true], "what the server gate does not take is the client gate's");
    assert.deepEqual(
      caps(1_000, 50_000, 200, 30),
      [SERVER_SHARE_FLOOR, true, 70 - SERVER_SHARE_FLOOR, true],
      'a tenth of 70 is fewer than the floor',
    );
    assert.deepEqual(caps(1_000, 50_000, 140, 30), [9, true, 1, true], 'room for 10: one client connection beside the server gate');
    assert.deepEqual(caps(1_000, 500, 64, 30), [1, true, 1, true], 'never 0, which would mean no limit');
    assert.deepEqual(caps(1_000, 50_000, 1_100, undefined), [100, true, 900, true], 'open files unknown: none counted');
  });

  it('any limits, any files open: within the room together, within what is configured, most of it to the client gate', () => {
    fc.assert(
      fc.property(
        fc.record({
          server: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 10_000_000 })),
          client: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 10_000_000 })),
          // Small limits as often as large ones: the floor and the clamps are there.
          limit: fc.oneof(fc.integer({ min: 1, max: 1_000 }), fc.integer({ min: 1, max: 2 ** 30 })),
          open: fc.oneof(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 100_000 })),
        }),
        ({ server, client, limit, open }) => {
          const caps = connectionCaps({ server, client }, limit, open);
          const room = limit - open - FILES_KEPT;
          assert.equal(caps.room, Math.max(2, room));
          const [s, c] = [caps.server, caps.client];
          assert.ok(s.cap >= 1 && c.cap >= 1, 'never 0 (no limit)');
          if (room >= 2) assert.ok(s.cap + c.cap <= room, 'together within the room');
          for (const [gate, configured] of [
            [s, server],
            [c, client],
          ] as const) {
            if (configured > 0) assert.ok(gate.cap <= configured, 'never above what is configured');
            assert.equal(gate.lowered, configured === 0 || gate.cap < configured, 'lowered: below what is configured');
          }
          // The server gate: its limit, or its share (a tenth, at least the floor while there is room).
          const share = Math.min(caps.room! - 1, Math.max(SERVER_SHARE_FLOOR, Math.floor(caps.room! / 10)));
          assert.equal(s.cap, server === 0 ? share : Math.min(server, share));
          // The client gate: its limit, or all the rest (nothing left unused).
          if (c.lowered) assert.equal(s.cap + c.cap, caps.room);
          if (caps.room! >= 10 * SERVER_SHARE_FLOOR)
            assert.ok(c.cap >= Math.min(client || Infinity, caps.room! - Math.floor(caps.room! / 10)), 'nine tenths to the client gate');
        },
      ),
    );
    fc.assert(
      fc.property(fc.nat(10_000_000), fc.nat(10_000_000), fc.nat(1000), (server, client, open) => {
        assert.deepEqual(connectionCaps({ server, client }, undefined, open), {
          server: { cap: server, lowered: false },
          client: { cap: client, lowered: false },
          room: undefined,
        });
      }),
    );
  });
});

const hasPrlimit = (() => {
  try {
    execFileSync('prlimit', ['--version'], { stdio: 'ignore' });
    return process.platform === 'linux';
  } catch {
    return false;
  }
})();

describe('a server started under a low open-file limit', { skip: hasPrlimit ? false : 'needs prlimit (util-linux) on Linux' }, () => {
  const LIMIT = 300;
  let server: SpawnedServer | undefined;
  let dataDir: string | undefined;
  const sockets: Socket[] = [];
  after(async () => {
    for (const s of sockets) s.destroy();
    await server?.kill('SIGTERM');
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  const metric = async (series: string): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${server!.adminPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line ? Number(line.slice(series.length + 1)) : 0;
  };

  it(
    'both gates hold what the limit leaves room for, and refuse the rest themselves: counted, logged, still serving',
    { timeout: 60_000 },
    async () => {
      dataDir = await mkdtemp(join(tmpdir(), 'rtm-open-files-'));
      server = await spawnServer(
        { RTM_DATA_DIR: dataDir, RTM_PROJECT_ID: String(TEST_PID), RTM_PROJECT_SECRET: TEST_SECRET, RTM_ADMIN_PORT: '0' },
        20_000,
        [],
        ['prlimit', `--nofile=${LIMIT}`, '--'],
      );
      const started = server.logs.find((l) => l['msg'] === 'RTM server started')!;
      assert.equal(started['openFileLimit'], LIMIT);
      const cap = started['maxClientConnections'] as number;
      const serverCap = started['maxServerConnections'] as number;
      const lowered = (what: string) =>
        server!.logs.find((l) => typeof l['msg'] === 'string' && l['msg'].startsWith(`the open-file limit leaves room for ${what}`));
      const warned = lowered(`${cap} client connections`);
      assert.equal(warned?.['level'], 40, 'a warning: this node holds fewer than 10,000');
      assert.equal(warned?.['maxClientConnections'], cap);
      const serverWarned = lowered(`${serverCap} server-gate connections`);
      assert.equal(serverWarned?.['level'], 40, 'a warning: the server gate holds fewer than its 1,000');
      assert.equal(serverWarned?.['maxServerConnections'], serverCap);
      assert.match(String(serverWarned?.['msg']), /RTM_MAX_SERVER_CONNECTIONS is 1000/);
      // Both gates share the room exactly: the limit less the files open at start and those kept.
      const openAtStart = warned?.['openFiles'] as number;
      assert.ok(openAtStart > 0 && openAtStart < LIMIT - FILES_KEPT, `${openAtStart} files open at start`);
      const room = LIMIT - openAtStart - FILES_KEPT;
      assert.equal(cap + serverCap, room, `${serverCap} server-gate and ${cap} client connections in a room of ${room}`);
      assert.ok(serverCap >= 10 && serverCap <= Math.max(10, room / 10), `the server gate's share: ${serverCap}`);

      // More connections than there is room for on both gates, none of them saying a word: each
      // holds a file. Every one over a gate's limit is refused by the gate, none closed unseen.
      const extra = 40;
      for (const [port, n] of [
        [server.serverPort, serverCap + extra],
        [server.clientPort, cap + extra],
      ] as const)
        for (let i = 0; i < n; i++) {
          const s = connect(port, '127.0.0.1');
          s.on('error', () => {});
          sockets.push(s);
        }
      const refusedSeries = (gate: string) => `rtm_disconnects_total{gate="${gate}",reason="refused: max connections"}`;
      for (const gate of ['server', 'client'])
        assert.ok(
          await until(async () => (await metric(refusedSeries(gate))) >= extra, 15_000),
          `the ${gate} gate refused those over its limit`,
        );
      assert.equal(await metric('rtm_client_sockets'), cap, 'the client gate holds the others');
      assert.equal(await metric('rtm_server_sockets'), serverCap, 'so does the server gate');
      assert.equal(await metric(refusedSeries('client')), extra, 'refused by the client gate, none closed unseen');
      assert.equal(await metric(refusedSeries('server')), extra, 'refused by the server gate, none closed unseen');
      const hint = server.logs.find((l) => l['msg'] === 'connection refused' && l['gate'] === 'server')?.['hint'];
      assert.match(String(hint), /^RTM_MAX_SERVER_CONNECTIONS \(1000\) is lowered to \d+ by the open-file limit \(300\)/);

      // Once they go, both gates serve again.
      for (const s of sockets.splice(0)) s.destroy();
      assert.ok(await until(async () => (await metric('rtm_client_sockets')) + (await metric('rtm_server_sockets')) === 0, 10_000));
      const backend = await RawClient.tcp(`127.0.0.1:${server.serverPort}`);
      try {
        const { token } = (await backend.signed('gettoken', { uid: 7n }, TEST_PID, TEST_SECRET)) as { token: string };
        const client = await RawClient.websocket(`127.0.0.1:${server.clientPort}`);
        try {
          assert.deepEqual(await client.quest('auth', { pid: TEST_PID, uid: 7n, token }), { ok: true });
        } finally {
          client.close();
        }
      } finally {
        backend.close();
      }
    },
  );
});
