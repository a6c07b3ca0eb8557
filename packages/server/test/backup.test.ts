/**
 * Backups of the embedded store, end to end (README "Backups"): `GET /backup` on the admin port
 * and `rtm backup` while messages are sent, `rtm restore` with the server stopped, and a server
 * started on the restored copy. Real servers (in this process, or `rtm serve` in a child process
 * where a test needs another process to hold the database), ephemeral ports, temporary data
 * directories.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer, request, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { RTMClient } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import {
  runRtm,
  spawnServer,
  startTestServer,
  TEST_PID,
  TEST_SECRET,
  until,
  whenAvailable,
  type RtmRun,
  type SpawnedServer,
  type TestServer,
} from '@rtm/testkit';
import { createLogger } from '../src/observability/logger.js';
import { SqliteStore, type SqliteStoreOptions } from '../src/store/sqlite.js';
import { restoreDatabase } from '../src/store/sqlite-restore.js';
import { MessageKind, type BackupOptions, type BackupStats, type NewMessage } from '../src/store/store.js';
import { dropSchema, freshSchema, PG_URL, postgresUnreachable } from './helpers/postgres.js';

const TOKEN = 'backup-test-token-0123456789';

const dirs: string[] = [];
const children: SpawnedServer[] = [];
after(async () => {
  for (const c of children) await c.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'rtm-backup-'));
  dirs.push(d);
  return d;
}

/** Runs `rtm <args>` to its end (at most 60 s) with the test runner's environment plus `env`. */
const rtm = (args: string[], env: Record<string, string>): Promise<RtmRun> => runRtm(args, env, 60_000);

/** `rtm serve` in a child process on `dataDir`, its admin port on. */
async function serveChild(dataDir: string, env: Record<string, string> = {}): Promise<SpawnedServer> {
  const child = await spawnServer({
    RTM_DATA_DIR: dataDir,
    RTM_PROJECT_ID: String(TEST_PID),
    RTM_PROJECT_SECRET: TEST_SECRET,
    RTM_ADMIN_PORT: '0',
    ...env,
  });
  children.push(child);
  return child;
}

async function sdkFor(endpoint: string): Promise<RTMServerClient> {
  const sdk = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint, autoReconnect: false });
  await sdk.connect();
  return sdk;
}

/** `count` group messages stored directly (a store of some size, quickly): ids 1 … count. */
async function seed(dataDir: string, count: number): Promise<void> {
  const store = new SqliteStore({ dataDir });
  await store.init();
  const batch: NewMessage[] = [];
  for (let i = 0; i < count; i++)
    batch.push({
      pid: TEST_PID,
      kind: MessageKind.GROUP,
      from: 7n,
      to: BigInt(1 + (i % 50)),
      mid: BigInt(i + 1),
      mtype: 30,
      msg: `seeded ${i} ${'x'.repeat(200)}`,
      attrs: '',
    });
  store.bulkInsert(batch);
  await store.close();
}

/** A store whose backups copy `pagesPerStep` pages per step: a copy that lasts, for commits to land during it. */
class SlowCopyStore extends SqliteStore {
  constructor(
    options: SqliteStoreOptions,
    private readonly pagesPerStep: number,
  ) {
    super(options);
  }

  override backup(destination: string, options: BackupOptions = {}): Promise<BackupStats> {
    return super.backup(destination, { ...options, pagesPerStep: this.pagesPerStep });
  }
}

/** The temporary copies of backups in a data directory. */
const temporaryCopies = (dataDir: string): string[] => readdirSync(dataDir).filter((n) => n.startsWith('backup-'));

/** GET /backup with these headers; the response (its body not read). */
function getBackup(port: number, headers: Record<string, string> = {}, method = 'GET'): Promise<IncomingMessage> {
  return new Promise((resolve, reject) =>
    request({ host: '127.0.0.1', port, path: '/backup', method, headers }, resolve).on('error', reject).end(),
  );
}

async function bodyOf(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function metric(adminPort: number, result: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const m = new RegExp(`^rtm_backups_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

describe('GET /backup: a consistent copy of a store that keeps committing', () => {
  for (const writerThread of [false, true]) {
    it(`every message in it has all its rows, ids run 1 … its last, integrity ok (writer thread ${writerThread ? 'on' : 'off'})`, async () => {
      const dataDir = await tempDir();
      await seed(dataDir, 30_000);
      // One page a step: the copy spans many event-loop turns, and the sends below commit meanwhile.
      const server = await startTestServer(
        {},
        { dataDir, makeStore: (dir) => new SlowCopyStore({ dataDir: dir, writerThread, synchronous: 'NORMAL' }, 1) },
      );
      const sdk = await sdkFor(server.serverEndpoint);
      const acked: { from: bigint; mid: bigint; to: number }[] = [];
      let stop = false;
      let n = 0;
      // p2p sends, and sendmsgs to 3 users at once: one message per receiver, stored together or not
      // at all; four at a time, so that commits follow each other closely all through the copy.
      const lane = async (): Promise<void> => {
        while (!stop) {
          const from = 900_000n + BigInt(n++ % 10);
          if (n % 2) acked.push({ from, to: 1, ...(await sdk.sendMessage(30, from, from + 1000n, `live ${n}`)) });
          else acked.push({ from, to: 3, ...(await sdk.sendMessages(30, from, [from + 1n, from + 2n, from + 3n], `live ${n}`)) });
        }
      };
      const senders = Promise.all([lane(), lane(), lane(), lane()]);
      try {
        await until(() => acked.length >= 20);
        const before = acked.length;
        // A copy that started over at every commit (the backup API's own way with changes made
        // meanwhile) would still be consistent, but would not end while the sends go on.
        let timer: NodeJS.Timeout | undefined;
        const { res, body } = await Promise.race([
          getBackup(server.adminPort!).then(async (res) => ({ res, body: await bodyOf(res) })),
          new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('no backup within 30 s of steady sends')), 30_000))),
        ]).finally(() => clearTimeout(timer));
        const during = acked.length - before;
        assert.equal(res.statusCode, 200);
        assert.equal(res.headers['content-type'], 'application/vnd.sqlite3');
        assert.equal(Number(res.headers['content-length']), body.length);
        assert.ok(during > 0, 'messages were acknowledged while the copy was made and sent');
        const file = join(dataDir, '..', `copy-${writerThread}.sqlite`);
        dirs.push(file);
        writeFileSync(file, body);

        const db = new Database(file, { readonly: true });
        try {
          assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
          assert.equal(db.pragma('journal_mode', { simple: true }), 'delete', 'one file, readable without a WAL');
          const ids = db.prepare('SELECT MIN(id) AS lo, MAX(id) AS hi, COUNT(*) AS n FROM messages').get() as Record<string, number>;
          assert.equal(ids['lo'], 1);
          assert.equal(ids['n'], ids['hi'], 'ids contiguous up to the last');
          // Every sendmsgs of the copy with all its receivers; every p2p message with its conversation row.
          const torn = db
            .prepare(`SELECT from_id, mid, COUNT(*) AS n FROM messages WHERE from_id >= 900000 AND msg LIKE 'live %' GROUP BY from_id, mid`)
            .all() as Record<string, number>[];
          const expected = new Map(acked.map((a) => [`${a.from}:${a.mid}`, a.to]));
          for (const row of torn) {
            const want = expected.get(`${row['from_id']}:${row['mid']}`);
            if (want !== undefined) assert.equal(row['n'], want, `message ${row['mid']} of ${row['from_id']} whole`);
          }
          const pairless = db
            .prepare(
              `SELECT COUNT(*) FROM messages AS m WHERE m.kind = 1 AND NOT EXISTS
                 (SELECT 1 FROM p2p_pairs AS p WHERE p.pid = m.pid AND p.lo = m.conv_lo AND p.hi = m.conv_hi)`,
            )
            .pluck()
            .get();
          assert.equal(pairless, 0, 'every p2p message has its conversation');
          // Everything acknowledged before the backup was asked for is in it; the seeded store too.
          const has = db.prepare('SELECT COUNT(*) FROM messages WHERE from_id = ? AND mid = ?').pluck();
          for (const a of acked.slice(0, before)) assert.equal(has.get(a.from, a.mid), a.to, `acknowledged ${a.mid} in the copy`);
          assert.equal(db.prepare('SELECT COUNT(*) FROM messages WHERE from_id = 7').pluck().get(), 30_000);
        } finally {
          db.close();
        }
        assert.ok(await until(() => temporaryCopies(dataDir).length === 0), `temporary copy removed: ${temporaryCopies(dataDir)}`);
      } finally {
        stop = true;
        await senders;
        await sdk.close();
        await server.close();
      }
    });
  }
});

describe('rtm backup, rtm restore, and a server on the restored copy', () => {
  it('the copy is checked and renamed into place; restore refuses while the server runs, then keeps the old files aside; the new server serves it all', async () => {
    const dataDir = join(await tempDir(), 'data');
    const first = await serveChild(dataDir);
    const sdk = await sdkFor(`127.0.0.1:${first.serverPort}`);
    const token = await sdk.getToken(1001n);
    for (let i = 1; i <= 5; i++) await sdk.sendMessage(30, 1001n, 1002n, `before the backup ${i}`);
    // Into a directory that is not there yet: made, owner-only.
    const file = join(dataDir, '..', 'backups', 'nightly', 'nightly.sqlite');
    const env = { RTM_HOST: '127.0.0.1', RTM_ADMIN_PORT: String(first.adminPort), RTM_DATA_DIR: dataDir, RTM_ADMIN_TOKEN: '' };

    const backup = await rtm(['backup', file], env);
    assert.equal(backup.code, 0, backup.stderr);
    assert.match(
      backup.stdout,
      /^backup written to .*nightly\.sqlite: \d+\.\d MiB, schema version \d+, messages up to id 5, integrity ok, in \d+\.\d s\n$/,
    );
    assert.equal(existsSync(`${file}.partial`), false);
    assert.equal(statSync(dirname(file)).mode & 0o777, 0o700);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    for (let i = 1; i <= 2; i++) await sdk.sendMessage(30, 1001n, 1002n, `after the backup ${i}`);
    await sdk.close();

    const refused = await rtm(['restore', file], env);
    assert.equal(refused.code, 1, refused.stdout);
    assert.match(refused.stderr, /rtm\.sqlite is in use: a server runs on this data directory .*stop it first/);
    assert.deepEqual(
      readdirSync(dataDir).filter((n) => n.startsWith('before-restore') || n.startsWith('restore-')),
      [],
      'nothing moved, nothing left',
    );

    await first.kill('SIGTERM');
    const restored = await rtm(['restore', file], env);
    assert.equal(restored.code, 0, restored.stderr);
    assert.match(
      restored.stdout,
      /^restored .*nightly\.sqlite \(\d+\.\d MiB, schema version \d+, messages up to id 5\) into .*rtm\.sqlite\n/,
    );
    const aside = readdirSync(dataDir).filter((n) => n.startsWith('before-restore-'));
    assert.equal(aside.length, 1);
    assert.match(restored.stdout, new RegExp(`kept in .*${aside[0]} \\(rtm\\.sqlite`));
    const old = new Database(join(dataDir, aside[0]!, 'rtm.sqlite'), { readonly: true });
    try {
      assert.equal(old.prepare('SELECT COUNT(*) FROM messages').pluck().get(), 7, 'the database that was there, whole, aside');
    } finally {
      old.close();
    }

    const second = await serveChild(dataDir);
    const again = await sdkFor(`127.0.0.1:${second.serverPort}`);
    const client = new RTMClient({ endpoint: `127.0.0.1:${second.clientPort}`, pid: TEST_PID, autoReconnect: false });
    try {
      const page = await again.getP2PMessage(1001n, 1002n, false, 20);
      assert.deepEqual(
        page.messages.map((m) => [m.id, m.message]),
        [1n, 2n, 3n, 4n, 5n].map((id) => [id, `before the backup ${id}`]),
      );
      await again.sendMessage(30, 1001n, 1002n, 'on the restored copy');
      const newest = await again.getP2PMessage(1001n, 1002n, true, 1);
      assert.equal(newest.messages[0]!.message, 'on the restored copy');
      assert.equal(newest.messages[0]!.id, 6n, 'ids go on above the restored ones');
      assert.deepEqual(await client.login(1001n, token), { ok: true }, 'a login token of the backup still works');
      const history = await rtm(['history', '1001', '1002', '--num', '1'], {
        ...env,
        RTM_ENDPOINT: `127.0.0.1:${second.serverPort}`,
        RTM_PROJECT_ID: String(TEST_PID),
        RTM_PROJECT_SECRET: TEST_SECRET,
      });
      assert.equal(history.code, 0, history.stderr);
      assert.match(history.stdout, /"message":"on the restored copy"/);
    } finally {
      await client.close();
      await again.close();
      await second.kill('SIGTERM');
    }
  });

  it('restore refuses while a server holds the database in shared mode too (RTM_SQLITE_EXCLUSIVE=false)', async () => {
    const dataDir = join(await tempDir(), 'data');
    const server = await serveChild(dataDir, { RTM_SQLITE_EXCLUSIVE: 'false' });
    const file = join(dataDir, '..', 'copy.sqlite');
    const env = { RTM_ADMIN_PORT: String(server.adminPort), RTM_DATA_DIR: dataDir, RTM_HOST: '127.0.0.1' };
    try {
      assert.equal((await rtm(['backup', file], env)).code, 0);
      const refused = await rtm(['restore', file], env);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /is in use/);
    } finally {
      await server.kill('SIGTERM');
    }
    assert.equal((await rtm(['restore', file], env)).code, 0, 'and succeeds once it has stopped');
  });

  it('restore refuses a file that is no database, and a copy of a newer schema, leaving the data directory as it was', async () => {
    const dir = await tempDir();
    const dataDir = join(dir, 'data');
    await seed(dataDir, 3);
    const before = readdirSync(dataDir).sort();
    const notADatabase = join(dir, 'notes.txt');
    writeFileSync(notADatabase, 'these are not the pages you are looking for\n'.repeat(200));
    const newer = join(dir, 'newer.sqlite');
    const store = new SqliteStore({ dataDir: dir, filename: 'newer.sqlite' });
    await store.init();
    await store.close();
    const db = new Database(newer);
    db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'from the future', 0)").run();
    db.close();
    for (const [file, refusal] of [
      [notADatabase, /notes\.txt is not a good backup: file is not a database/],
      [newer, /newer\.sqlite has schema version 999, newer than this release knows \(\d+\)/],
      [join(dir, 'missing.sqlite'), /missing\.sqlite does not exist/],
    ] as const) {
      const r = await rtm(['restore', file], { RTM_DATA_DIR: dataDir });
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, refusal);
      assert.deepEqual(readdirSync(dataDir).sort(), before, `${file}: the data directory as it was`);
    }
    const pg = await rtm(['restore', newer], { RTM_DATA_DIR: dataDir, RTM_STORE: 'postgres://db/rtm' });
    assert.equal(pg.code, 2);
    assert.match(pg.stderr, /pg_restore/);
  });
});

describe('rtm backup against something else than an rtm admin port', () => {
  it('a file it cannot write is said at once, before the server is asked to copy its store: exit 1', async () => {
    let asked = 0;
    const server = createHttpServer((_req, res) => {
      asked++;
      res.writeHead(500).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const dir = await tempDir();
    const notADirectory = join(dir, 'plain-file');
    writeFileSync(notADirectory, 'x');
    try {
      const env = { RTM_HOST: '127.0.0.1', RTM_ADMIN_PORT: String((server.address() as { port: number }).port), RTM_ADMIN_TOKEN: '' };
      const r = await rtm(['backup', join(notADirectory, 'sub', 'b.sqlite')], env);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /cannot make the directory .*plain-file\/sub for the backup: .*(ENOTDIR|EEXIST)/);
      assert.equal(asked, 0);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a 200 without Content-Length (chunked, as a proxy may answer) is no backup: exit 1, nothing written', async () => {
    const impostor = createHttpServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/vnd.sqlite3' });
      res.write('SQLite format 3\0');
      res.end();
    });
    await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
    const file = join(await tempDir(), 'b.sqlite');
    try {
      const port = (impostor.address() as { port: number }).port;
      const r = await rtm(['backup', file], { RTM_HOST: '127.0.0.1', RTM_ADMIN_PORT: String(port), RTM_ADMIN_TOKEN: '' });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /answered without a Content-Length/);
      assert.equal(existsSync(file) || existsSync(`${file}.partial`), false);
    } finally {
      await new Promise((resolve) => impostor.close(resolve));
    }
  });
});

describe('restoreDatabase', () => {
  it('two restores within the same second keep both databases that were there, each in a directory of its own', async () => {
    const dir = await tempDir();
    const dataDir = join(dir, 'data');
    await seed(dataDir, 2);
    const copy = new SqliteStore({ dataDir: dir, filename: 'copy.sqlite' });
    await copy.init();
    await copy.close();
    const at = new Date('2026-12-03T10:15:00.250Z');
    const first = restoreDatabase(join(dir, 'copy.sqlite'), join(dataDir, 'rtm.sqlite'), at);
    const second = restoreDatabase(join(dir, 'copy.sqlite'), join(dataDir, 'rtm.sqlite'), at);
    assert.equal(first.aside?.directory, join(dataDir, 'before-restore-20261203T101500Z'));
    assert.equal(second.aside?.directory, join(dataDir, 'before-restore-20261203T101500Z-2'));
    const seeded = new Database(join(first.aside.directory, 'rtm.sqlite'), { readonly: true });
    try {
      assert.equal(seeded.prepare('SELECT COUNT(*) FROM messages').pluck().get(), 2, 'the first keeps the seeded database');
    } finally {
      seeded.close();
    }
    assert.deepEqual(readdirSync(second.aside!.directory), ['rtm.sqlite']);
  });

  it('a server that starts while a restore moves the files waits, then serves the restored database, not the one set aside', async (t) => {
    if (!existsSync('/proc/self/fd')) return t.skip('needs /proc to see when the server has opened the database');
    const dir = await tempDir();
    const dataDir = join(dir, 'data');
    await seed(dataDir, 2);
    await seed(join(dir, 'source'), 5);
    const database = join(dataDir, 'rtm.sqlite');
    let starting: Promise<SpawnedServer> | undefined;
    restoreDatabase(join(dir, 'source', 'rtm.sqlite'), database, new Date(), {
      whileHeld: () => {
        // The old database is locked by the restore now: a server started here opens it and
        // waits for its lock (up to its busy timeout, 5 s), while the files move.
        starting = serveChild(dataDir);
        const opened = blockUntil(() => processesWithOpen(database).length > 0, 30_000);
        assert.ok(opened, 'the server opened the database while the restore held it');
        blockUntil(() => false, 300); // and is now waiting for the lock
      },
    });
    const server = await starting!;
    const sdk = await sdkFor(`127.0.0.1:${server.serverPort}`);
    try {
      await sdk.sendMessage(30, 1001n, 1002n, 'after the restore');
      assert.equal((await sdk.getP2PMessage(1001n, 1002n, true, 1)).messages[0]!.id, 6n, 'ids go on above the restored 5');
    } finally {
      await sdk.close();
      await server.kill('SIGTERM');
      await server.exited;
    }
    const aside = readdirSync(dataDir).filter((n) => n.startsWith('before-restore-'));
    assert.equal(aside.length, 1);
    for (const [file, count] of [
      [join(dataDir, aside[0]!, 'rtm.sqlite'), 2],
      [database, 6],
    ] as const) {
      const db = new Database(file, { readonly: true });
      try {
        assert.equal(db.prepare('SELECT COUNT(*) FROM messages').pluck().get(), count, file);
      } finally {
        db.close();
      }
    }
  });
});

/** Polls `ready` every 10 ms, blocking this thread (other processes go on), for at most `ms`. */
function blockUntil(ready: () => boolean, ms: number): boolean {
  const deadline = Date.now() + ms;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while (Date.now() < deadline) {
    if (ready()) return true;
    Atomics.wait(pause, 0, 0, 10);
  }
  return ready();
}

/** Pids of the processes holding `file` open (Linux's /proc). */
function processesWithOpen(file: string): number[] {
  const pids: number[] = [];
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      if (readdirSync(`/proc/${pid}/fd`).some((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`) === file)) pids.push(Number(pid));
    } catch {
      // gone, or not ours to look at
    }
  }
  return pids;
}

describe('GET /backup: who may have one, and one at a time', () => {
  it('with RTM_ADMIN_TOKEN set: 403 without the token or with a wrong one (saying what to send), 200 with it; rtm backup sends it', async () => {
    const server = await startTestServer({ adminToken: TOKEN });
    try {
      const none = await getBackup(server.adminPort!);
      assert.equal(none.statusCode, 403);
      assert.match((await bodyOf(none)).toString(), /RTM_ADMIN_TOKEN set: send 'Authorization: Bearer <token>'/);
      const wrong = await getBackup(server.adminPort!, { Authorization: `Bearer ${TOKEN}x` });
      assert.equal(wrong.statusCode, 403);
      assert.match((await bodyOf(wrong)).toString(), /not the RTM_ADMIN_TOKEN of this server/);
      const right = await getBackup(server.adminPort!, { Authorization: `Bearer ${TOKEN}` });
      assert.equal(right.statusCode, 200);
      assert.ok((await bodyOf(right)).subarray(0, 16).equals(Buffer.from('SQLite format 3\0')));

      const file = join(await tempDir(), 'b.sqlite');
      const env = { RTM_ADMIN_PORT: String(server.adminPort), RTM_HOST: '127.0.0.1' };
      const without = await rtm(['backup', file], { ...env, RTM_ADMIN_TOKEN: '' });
      assert.equal(without.code, 1);
      assert.match(without.stderr, /the server refused the backup \(403\): .*Authorization: Bearer/);
      assert.equal(existsSync(file) || existsSync(`${file}.partial`), false);
      const withToken = await rtm(['backup', file], { ...env, RTM_ADMIN_TOKEN: TOKEN });
      assert.equal(withToken.code, 0, withToken.stderr);
      assert.equal(await metric(server.adminPort!, 'refused'), 3);
      assert.equal(await metric(server.adminPort!, 'ok'), 2);
    } finally {
      await server.close();
    }
  });

  it('a second request while one runs is refused (409) and the first completes; GET only (405)', async () => {
    const dataDir = await tempDir();
    await seed(dataDir, 20_000);
    const server = await startTestServer({}, { dataDir, makeStore: (dir) => new SlowCopyStore({ dataDir: dir }, 1) });
    try {
      const first = getBackup(server.adminPort!);
      assert.ok(await until(() => temporaryCopies(dataDir).length > 0), 'the first has begun its copy');
      const second = await getBackup(server.adminPort!);
      assert.equal(second.statusCode, 409);
      assert.match((await bodyOf(second)).toString(), /a backup is running \(for \d+ s\): one at a time/);
      const res = await first;
      assert.equal(res.statusCode, 200);
      assert.equal((await bodyOf(res)).length, Number(res.headers['content-length']));
      const post = await getBackup(server.adminPort!, {}, 'POST');
      assert.equal(post.statusCode, 405);
      assert.equal(post.headers['allow'], 'GET');
      await bodyOf(post);
      const third = await getBackup(server.adminPort!);
      assert.equal(third.statusCode, 200, 'the next one once the first has finished');
      await bodyOf(third);
    } finally {
      await server.close();
    }
  });

  it('a store kept in memory has nothing to back up (501)', async () => {
    const server = await startTestServer({ dataDir: ':memory:' });
    try {
      const res = await getBackup(server.adminPort!);
      assert.equal(res.statusCode, 501);
      assert.match((await bodyOf(res)).toString(), /RTM_DATA_DIR=:memory:/);
    } finally {
      await server.close();
    }
  });
});

const pgUnreachable = await postgresUnreachable();
whenAvailable(pgUnreachable, 'GET /backup on PostgreSQL', 'runs against a real PostgreSQL', () => {
  describe('GET /backup on PostgreSQL', () => {
    it('is refused (501), pointing at pg_dump of the schema', async () => {
      const schema = freshSchema('backup');
      const server = await startTestServer({ store: PG_URL, storeSchema: schema });
      try {
        const res = await getBackup(server.adminPort!);
        assert.equal(res.statusCode, 501);
        assert.match((await bodyOf(res)).toString(), new RegExp(`back it up with pg_dump of the schema '${schema}' \\(RTM_STORE_SCHEMA`));
      } finally {
        await server.close();
        await dropSchema(schema);
      }
    });
  });
});

describe('GET /backup: the temporary copy in the data directory goes, whatever happens', () => {
  const logged = (): { lines: Record<string, unknown>[]; logger: ReturnType<typeof createLogger> } => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } as never);
    return { lines, logger };
  };

  it('after a download, one line in the log with the size, the pages and the durations', async () => {
    const { lines, logger } = logged();
    const server = await startTestServer({}, { logger });
    try {
      const res = await getBackup(server.adminPort!);
      const body = await bodyOf(res);
      assert.ok(await until(() => temporaryCopies(server.dataDir).length === 0), 'gone after a whole download');
      const line = lines.find((l) => String(l['msg']).startsWith('backup sent'));
      assert.ok(line, JSON.stringify(lines.map((l) => l['msg'])));
      assert.equal(line['bytes'], body.length);
      assert.ok(Number(line['pages']) > 0 && typeof line['copyMs'] === 'number' && typeof line['ms'] === 'number');
    } finally {
      await server.close();
    }
  });

  it('after a client that goes away mid-download, and one that goes away during the copy: counted and logged as aborted', async () => {
    const dataDir = await tempDir();
    await seed(dataDir, 20_000);
    const { lines, logger } = logged();
    let pagesPerStep = 100_000;
    const server: TestServer = await startTestServer(
      {},
      {
        dataDir,
        logger,
        makeStore: (dir) =>
          new (class extends SqliteStore {
            override backup(destination: string, options: BackupOptions = {}): Promise<BackupStats> {
              return super.backup(destination, { ...options, pagesPerStep });
            }
          })({ dataDir: dir }),
      },
    );
    try {
      // Mid-download: the first bytes read, then the connection dropped.
      const res = await getBackup(server.adminPort!);
      assert.equal(res.statusCode, 200);
      await new Promise((resolve) => res.once('data', resolve));
      res.destroy();
      assert.ok(await until(() => lines.some((l) => String(l['msg']).startsWith('backup aborted after'))), 'logged');
      assert.equal(temporaryCopies(dataDir).length, 0, 'gone after an abandoned download');

      // During the copy: a slow one, the request dropped as soon as the copy has begun.
      pagesPerStep = 1;
      const req = request({ host: '127.0.0.1', port: server.adminPort!, path: '/backup' });
      req.on('error', () => {});
      req.end();
      assert.ok(await until(() => temporaryCopies(dataDir).length > 0), 'the copy has begun');
      req.destroy();
      assert.ok(await until(() => lines.some((l) => String(l['msg']).startsWith('backup aborted while copying the store'))), 'logged');
      assert.ok(await until(() => temporaryCopies(dataDir).length === 0), 'gone after a copy abandoned');
      assert.equal(await metric(server.adminPort!, 'aborted'), 2);
      assert.equal(await metric(server.adminPort!, 'ok'), 0);
    } finally {
      await server.close();
    }
  });

  it('a copy left by a process that died during a backup is removed at the next start', async () => {
    const dataDir = await tempDir();
    const left = join(dataDir, 'backup-20260101T000000Z-0badf00d.sqlite.tmp');
    writeFileSync(left, 'half a copy');
    writeFileSync(`${left}-journal`, 'its journal');
    writeFileSync(join(dataDir, 'backup-notes.txt'), 'an operator file of a similar name');
    const server = await startTestServer({}, { dataDir });
    try {
      assert.deepEqual(temporaryCopies(dataDir), ['backup-notes.txt']);
    } finally {
      await server.close();
    }
  });
});
