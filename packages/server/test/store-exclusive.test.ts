/**
 * Exclusive access to the SQLite database (RTM_SQLITE_EXCLUSIVE, sqlite-connection.ts): the server
 * process holds the file, so a second server on the same data directory is refused and other
 * processes cannot open it, unless it is turned off. Also: the store settings a server logs at
 * start, read back from its connection.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { RTMServerClient } from '@rtm/server-sdk';
import { spawnServer, TEST_PID, TEST_SECRET, type SpawnedServer } from '@rtm/testkit';
import { SqliteStore } from '../src/store/sqlite.js';
import { MessageKind } from '../src/store/store.js';

const dirs: string[] = [];
const servers: SpawnedServer[] = [];
after(async () => {
  for (const s of servers) await s.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'rtm-exclusive-'));
  dirs.push(dir);
  return dir;
}

async function serve(env: Record<string, string>): Promise<{ server: SpawnedServer; sdk: RTMServerClient }> {
  const server = await spawnServer({ RTM_PROJECT_ID: String(TEST_PID), RTM_PROJECT_SECRET: TEST_SECRET, ...env });
  servers.push(server);
  const sdk = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: `127.0.0.1:${server.serverPort}`, autoReconnect: false });
  await sdk.connect();
  return { server, sdk };
}

/** Messages in the database, read by this (the test's) process: another process than the server. */
function countFromAnotherProcess(dataDir: string): number {
  const db = new Database(join(dataDir, 'rtm.sqlite'), { readonly: true, timeout: 0 });
  try {
    return Number((db.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n);
  } finally {
    db.close();
  }
}

describe('SQLite exclusive access', () => {
  it('a second server on the same data directory is refused and says why; the first keeps serving', async () => {
    const dataDir = await tempDir();
    const { sdk } = await serve({ RTM_DATA_DIR: dataDir });
    try {
      await sdk.sendMessage(51, 1n, 2n, 'before', '');
      await assert.rejects(
        serve({ RTM_DATA_DIR: dataDir }),
        /stayed locked by another process .*another rtm server using this data directory/,
      );
      // Nor can any other process read it meanwhile.
      assert.throws(() => countFromAnotherProcess(dataDir), /database is locked/);
      await sdk.sendMessage(51, 1n, 2n, 'after', '');
      const page = await sdk.getP2PMessage(1n, 2n, false, 10);
      assert.deepEqual(
        page.messages.map((m) => m.message),
        ['before', 'after'],
      );
    } finally {
      await sdk.close();
    }
  });

  it('with RTM_SQLITE_EXCLUSIVE=false another process reads the database while the server runs', async () => {
    const dataDir = await tempDir();
    const { sdk } = await serve({ RTM_DATA_DIR: dataDir, RTM_SQLITE_EXCLUSIVE: 'false' });
    try {
      await sdk.sendMessage(51, 1n, 2n, 'one', '');
      await sdk.sendMessage(51, 1n, 2n, 'two', '');
      assert.equal(countFromAnotherProcess(dataDir), 2);
    } finally {
      await sdk.close();
    }
  });

  it('an exclusive store keeps the WAL index in memory, a shared one in the -shm file', async () => {
    for (const exclusive of [true, false]) {
      const dataDir = await tempDir();
      const store = new SqliteStore({ dataDir, exclusive });
      await store.init();
      try {
        const [r] = await store.append([{ pid: 1, kind: MessageKind.P2P, from: 1n, to: 2n, mid: 1n, mtype: 51, msg: 'x', attrs: '' }]);
        assert.equal(r!.status, 'stored');
        assert.equal(existsSync(join(dataDir, 'rtm.sqlite-shm')), !exclusive, `exclusive: ${exclusive}`);
      } finally {
        await store.close();
      }
    }
  });

  it('where SQLite URI filenames are off, an exclusive store refuses to open and names the way out', async () => {
    const dataDir = await tempDir();
    const store = fileURLToPath(new URL('../src/store/sqlite.ts', import.meta.url));
    const script = `const { SqliteStore } = await import(${JSON.stringify(store)});
      await new SqliteStore({ dataDir: ${JSON.stringify(dataDir)} }).init();`;
    const child = spawn(process.execPath, ['--conditions=rtm-source', '--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, SQLITE_USE_URI: '0' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    assert.notEqual(code, 0);
    assert.match(stderr, /cannot open .*rtm\.sqlite exclusively.*SQLITE_USE_URI=0.*RTM_SQLITE_EXCLUSIVE=false/s);
    assert.equal(existsSync(join(dataDir, 'rtm.sqlite')), false);
  });
  it('the server logs the store settings in effect at start: RTM_SQLITE_CACHE_MIB, synchronous, exclusive, WAL', async () => {
    const dataDir = await tempDir();
    const { server, sdk } = await serve({ RTM_DATA_DIR: dataDir, RTM_SQLITE_CACHE_MIB: '3', RTM_SQLITE_EXCLUSIVE: 'false' });
    try {
      const opened = server.logs.find((l) => l['msg'] === 'store opened');
      assert.ok(opened, 'a "store opened" line before "RTM server started"');
      assert.deepEqual(
        {
          store: opened['store'],
          path: opened['path'],
          journalMode: opened['journalMode'],
          synchronous: opened['synchronous'],
          cacheMiB: opened['cacheMiB'],
          exclusive: opened['exclusive'],
          writerThread: opened['writerThread'],
          checkpointEveryMs: opened['checkpointEveryMs'],
        },
        {
          store: 'sqlite',
          path: join(dataDir, 'rtm.sqlite'),
          journalMode: 'wal',
          synchronous: 'NORMAL',
          cacheMiB: 3,
          exclusive: false,
          writerThread: false,
          checkpointEveryMs: 100,
        },
      );
    } finally {
      await sdk.close();
    }
  });
});
