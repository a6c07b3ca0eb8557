import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { RawClient, spawnServer, TEST_PID, TEST_SECRET, until, type SpawnedServer } from '@rtm/testkit';
import { clientConnectionCap, FILES_KEPT, openFileCount, openFileLimit } from '../src/observability/open-files.js';

// At the open-file limit the kernel refuses `accept`, and libuv closes the waiting connections
// itself without telling node: clients fail to connect and nothing is logged or counted. So the
// client gate's connection limit never goes past what the open-file limit leaves room for, and a
// refusal is the gate's own, counted and logged (observability/open-files.ts).

describe('open files: reading the limit, and the client connections it leaves room for', () => {
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

  it('caps the configured limit (0 = none) at the limit less the files open at start and those kept', () => {
    assert.deepEqual(clientConnectionCap(50_000, undefined, 30), { cap: 50_000, lowered: false }, 'no limit known');
    assert.deepEqual(clientConnectionCap(50_000, 1_048_576, 30), { cap: 50_000, lowered: false });
    assert.deepEqual(clientConnectionCap(50_000, 20_000, 30), { cap: 20_000 - 30 - FILES_KEPT, lowered: true });
    assert.deepEqual(clientConnectionCap(0, 20_000, 30), { cap: 20_000 - 30 - FILES_KEPT, lowered: true }, 'no configured limit');
    assert.deepEqual(clientConnectionCap(500, 1024, 30), { cap: 500, lowered: false });
    assert.deepEqual(clientConnectionCap(500, 64, 30), { cap: 1, lowered: true }, 'never 0, which would mean no limit');
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

  it('holds what the limit leaves room for, and refuses the rest itself: counted, logged, still serving', { timeout: 60_000 }, async () => {
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
    assert.ok(cap > 0 && cap <= LIMIT - FILES_KEPT, `room for ${cap} client connections under ${LIMIT} files`);
    const warned = server.logs.find((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('the open-file limit leaves room for'));
    assert.equal(warned?.['level'], 40, 'a warning: this node holds fewer than 10,000');
    assert.equal(warned?.['maxClientConnections'], cap);

    // More connections than there is room for, none of them saying a word: each holds a file.
    const extra = 40;
    for (let i = 0; i < cap + extra; i++) {
      const s = connect(server.clientPort, '127.0.0.1');
      s.on('error', () => {});
      sockets.push(s);
    }
    const refusedSeries = 'rtm_disconnects_total{gate="client",reason="refused: max connections"}';
    assert.ok(await until(async () => (await metric(refusedSeries)) >= extra, 15_000), 'the gate refused those over its limit');
    assert.equal(await metric('rtm_client_sockets'), cap, 'and holds the others');
    assert.equal(await metric(refusedSeries), extra, 'refused by the gate, none closed unseen');

    // Once they go, the gate serves again, and the server gate was never short of files.
    for (const s of sockets.splice(0)) s.destroy();
    assert.ok(await until(async () => (await metric('rtm_client_sockets')) === 0, 10_000));
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
  });
});
