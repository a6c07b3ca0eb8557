/**
 * SqliteStore: the shared Store conformance suite, plus what only SQLite can show — query plans,
 * migrations, and durability of acknowledged appends across a SIGKILL.
 *
 * When RTM_STORE_CRASH_CHILD is set this file is the child of the crash test instead (see the end).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { storeConformance } from '@rtm/testkit';
import { SqliteWriterThread } from '../src/store/sqlite-writer.js';
import { migrate, SqliteStore } from '../src/store/sqlite.js';
import { SQLITE_MIGRATIONS } from '../src/store/sqlite-migrations.js';
import { MessageKind, type HistoryQuery, type NewMessage } from '../src/store/store.js';

const CHILD_ENV = 'RTM_STORE_CRASH_CHILD';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'rtm-store-sqlite-'));
}

if (process.env[CHILD_ENV]) {
  await crashChild(process.env[CHILD_ENV]);
} else {
  storeConformance('sqlite (file, WAL)', async () => {
    const dir = await tempDir();
    return { store: new SqliteStore({ dataDir: dir }), cleanup: () => rm(dir, { recursive: true, force: true }) };
  });

  storeConformance('sqlite (file, WAL, shared locking)', async () => {
    const dir = await tempDir();
    return { store: new SqliteStore({ dataDir: dir, exclusive: false }), cleanup: () => rm(dir, { recursive: true, force: true }) };
  });

  storeConformance('sqlite (file, WAL, writer thread, synchronous NORMAL)', async () => {
    const dir = await tempDir();
    return {
      store: new SqliteStore({ dataDir: dir, writerThread: true, synchronous: 'NORMAL' }),
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  });

  storeConformance('sqlite (:memory:, synchronous NORMAL)', async () => ({
    store: new SqliteStore({ dataDir: ':memory:', synchronous: 'NORMAL' }),
    cleanup: async () => {},
  }));

  describe('SqliteStore specifics', () => {
    let dir: string;
    before(async () => {
      dir = await tempDir();
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('history is an index range scan for every query shape (no table scan, no sort)', async () => {
      const store = new SqliteStore({ dataDir: join(dir, 'plan') });
      await store.init();
      try {
        const batch: NewMessage[] = [];
        for (let i = 0; i < 3000; i++) {
          batch.push({
            pid: 1,
            kind: MessageKind.P2P,
            from: BigInt(i % 50),
            to: BigInt(50 + (i % 7)),
            mid: BigInt(i),
            mtype: 30 + (i % 3),
            msg: 'x',
            attrs: '',
          });
          batch.push({
            pid: 1,
            kind: MessageKind.GROUP,
            from: BigInt(i % 50),
            to: BigInt(i % 20),
            mid: BigInt(i),
            mtype: 30,
            msg: 'x',
            attrs: '',
          });
        }
        store.bulkInsert(batch);
        const conversations: HistoryQuery['conversation'][] = [
          { pid: 1, kind: MessageKind.P2P, uid: 3n, peer: 53n },
          { pid: 1, kind: MessageKind.GROUP, to: 4n },
          { pid: 1, kind: MessageKind.BROADCAST, to: 0n },
        ];
        const now = BigInt(Date.now());
        for (const conversation of conversations) {
          for (const desc of [true, false]) {
            for (const extra of [
              {},
              { lastid: 1500n },
              { begin: now - 60_000n, end: now + 60_000n },
              { mtypes: [30, 32] },
              { lastid: 10n, begin: 1n, end: now + 1n, mtypes: [31] },
            ]) {
              const plan = store.explainHistory({ conversation, desc, num: 20, ...extra });
              const text = plan.join(' | ');
              assert.ok(
                plan.some((l) => /SEARCH messages USING (COVERING )?INDEX messages_history/.test(l)),
                text,
              );
              assert.ok(!plan.some((l) => /SCAN messages/.test(l)), `table scan: ${text}`);
              assert.ok(!plan.some((l) => /TEMP B-TREE/.test(l)), `sort: ${text}`);
            }
          }
        }
        // p2p unread: the user's pairs by key, then each pair's history range; nothing scanned.
        for (const extra of [{}, { mtypes: [30] }, { peers: [1n, 2n] }]) {
          const plan = store.explainUnreadP2P({ pid: 1, uid: 53n, since: now - 60_000n, ...extra });
          const text = plan.join(' | ');
          assert.ok(
            plan.some((l) => /SEARCH m USING (COVERING )?INDEX messages_history/.test(l)),
            text,
          );
          assert.ok(
            plan.some((l) => /SEARCH p2p_pairs USING (PRIMARY KEY|INDEX p2p_pairs_hi)/.test(l)),
            text,
          );
          assert.ok(!plan.some((l) => /SCAN (m|messages|p2p_pairs)\b/.test(l)), `scan: ${text}`);
        }
        // Bulk loads keep p2p_pairs up: 3 → 53 is every i ≡ 3 (mod 350) below 3,000, nine messages.
        assert.equal((await store.unreadP2P({ pid: 1, uid: 53n, since: 0n })).get(3n)?.count, 9);
      } finally {
        await store.close();
      }
    });

    it('counting groups is a skip scan of the primary key: one seek per group, never a read of the members', async () => {
      const store = new SqliteStore({ dataDir: join(dir, 'groups-plan') });
      await store.init();
      try {
        const members = Array.from({ length: 50 }, (_, i) => BigInt(i + 1));
        for (let g = 0n; g < 200n; g++) await store.addGroupMembers(1, 1000n + g, members);
        const plan = store.explainCountGroups(1);
        const text = plan.join(' | ');
        assert.ok(
          plan.some((l) => /SEARCH (m|group_members) USING (COVERING INDEX|PRIMARY KEY) .*\(pid=\? AND gid>\?\)/.test(l)),
          text,
        );
        assert.ok(!plan.some((l) => /SCAN (m|group_members)\b/.test(l)), `scan: ${text}`);
        assert.equal(await store.countGroups(1), 200);
      } finally {
        await store.close();
      }
    });

    it('close() leaves nothing holding the process: a process that closed its store exits at once', async () => {
      // An embedder's process (or a test file's) ends when nothing is left to wait for. The
      // checkpointer's stop once left a 2 s timer behind, which every such process waited out.
      const sqlite = fileURLToPath(new URL('../src/store/sqlite.ts', import.meta.url));
      for (const writerThread of [false, true]) {
        const dataDir = join(dir, `exits-${writerThread}`);
        const script = `const { SqliteStore } = await import(${JSON.stringify(sqlite)});
          const store = new SqliteStore({ dataDir: ${JSON.stringify(dataDir)}, writerThread: ${writerThread} });
          await store.init();
          const [result] = await store.append([{ pid: 1, kind: 1, from: 1n, to: 2n, mid: 1n, mtype: 30, msg: 'x', attrs: '' }]);
          if (!result || 'error' in result) throw new Error('append: ' + JSON.stringify(result));
          await store.close();
          console.log('closed');`;
        const child = spawn(process.execPath, ['--conditions=rtm-source', '--import', 'tsx', '--input-type=module', '-e', script], {
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let closedAt = 0;
        child.stdout.on('data', (d: Buffer) => {
          if (d.toString().includes('closed')) closedAt = Date.now();
        });
        const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
        assert.equal(code, 0);
        assert.ok(closedAt > 0, 'the store closed');
        assert.ok(Date.now() - closedAt < 1000, `writerThread ${writerThread}: exited ${Date.now() - closedAt} ms after close()`);
      }
    });

    it('writer thread: appends of several turns still in flight at close() are committed, ids in call order', async () => {
      const dataDir = join(dir, 'writer');
      const a = new SqliteStore({ dataDir, writerThread: true });
      await a.init();
      const msg = (mid: bigint) => ({ pid: 1, kind: MessageKind.GROUP, from: 5n, to: 9n, mid, mtype: 30, msg: `m${mid}`, attrs: '' });
      const inFlight: Promise<unknown>[] = [];
      for (let turn = 0n; turn < 5n; turn++) {
        inFlight.push(a.append([msg(turn * 10n + 1n), msg(turn * 10n + 2n)]), a.append([msg(turn * 10n + 3n)]));
        await new Promise((r) => setImmediate(r));
      }
      await Promise.all([a.close(), ...inFlight]);
      const b = new SqliteStore({ dataDir });
      await b.init();
      try {
        const page = await b.history({ conversation: { pid: 1, kind: MessageKind.GROUP, to: 9n }, desc: false, num: 100 });
        assert.deepEqual(
          page.map((m) => m.mid),
          [1n, 2n, 3n, 11n, 12n, 13n, 21n, 22n, 23n, 31n, 32n, 33n, 41n, 42n, 43n],
        );
        assert.ok(page.every((m, i) => i === 0 || m.id > page[i - 1]!.id));
      } finally {
        await b.close();
      }
    });

    it('writer thread that cannot open its database: appends fail at once with the reason, retried with back-off, logged once', async () => {
      const failures: string[] = [];
      const writer = new SqliteWriterThread(
        join(dir, 'missing', 'dir', 'rtm.sqlite'),
        { synchronous: 'NORMAL', cacheSizeKiB: 1024, busyTimeoutMs: 100, walAutocheckpointPages: 1000, exclusive: true },
        (m) => failures.push(m),
      );
      const m = { pid: 1, kind: MessageKind.GROUP, from: 1n, to: 2n, mid: 3n, mtype: 30, msg: 'x', attrs: '' };
      const [first] = await writer.commit([[m]], 1n);
      assert.match((first as { error: string }).error, /writer thread exited .* in flight/);
      const [second] = await writer.commit([[m]], 1n);
      assert.match((second as { error: string }).error, /writer thread cannot start: .*directory/i);
      assert.equal(writer.problem, (second as { error: string }).error);
      // Starts at 100, 300, 700 ms… fail alike: one line, not one per start.
      await new Promise((r) => setTimeout(r, 400));
      assert.deepEqual(
        failures.map((f) => f.replace(/:.*/, '')),
        ['SqliteStore'],
        failures.join('\n'),
      );
      const stopping = Date.now();
      await writer.stop();
      assert.ok(Date.now() - stopping < 1000, 'no thread runs: nothing to wait for');
    });

    it('migrations are recorded once and re-opening keeps the data', async () => {
      const dataDir = join(dir, 'nested', 'reopen');
      const a = new SqliteStore({ dataDir });
      await a.init();
      assert.deepEqual(
        a.schemaVersions(),
        SQLITE_MIGRATIONS.map((m) => m.version),
      );
      const [r] = await a.append([
        { pid: 1, kind: MessageKind.GROUP, from: 1n, to: 2n, mid: 3n, mtype: 30, msg: new Uint8Array([9]), attrs: '' },
      ]);
      await a.close();
      const b = new SqliteStore({ dataDir });
      await b.init();
      assert.deepEqual(
        b.schemaVersions(),
        SQLITE_MIGRATIONS.map((m) => m.version),
      );
      assert.equal(r?.status, 'stored');
      assert.deepEqual(
        await b.getMessage({ pid: 1, kind: MessageKind.GROUP, from: 1n, to: 2n, mid: 3n }),
        (r as { message: unknown }).message,
      );
      await b.close();
    });

    it('the WAL restarts once per walRestartPages frames, not at every checkpoint, and stays bounded', async () => {
      const dataDir = join(dir, 'restarts');
      const errors: string[] = [];
      const store = new SqliteStore({
        dataDir,
        synchronous: 'NORMAL',
        checkpointEveryMs: 5,
        walRestartPages: 200,
        onError: (m) => errors.push(m),
      });
      await store.init();
      const wal = join(dataDir, 'rtm.sqlite-wal');
      // Bytes 12-15 of the WAL header: the checkpoint sequence, one more at every restart.
      const restartSeq = (): number => readFileSync(wal).readUInt32BE(12);
      try {
        const first = restartSeq();
        let maxWalBytes = 0;
        const sent: NewMessage[] = [];
        // Small commits with gaps: without the hold nearly every 5 ms checkpoint would finish
        // between two commits and let the next one restart the WAL (≈ 200 restarts in this loop).
        for (let i = 0; i < 400; i++) {
          const m: NewMessage = {
            pid: 1,
            kind: MessageKind.P2P,
            from: BigInt(1 + (i % 40)),
            to: 100n,
            mid: BigInt(i),
            mtype: 30,
            msg: `m${i}`,
            attrs: '',
          };
          sent.push(m);
          assert.equal((await store.append([m]))[0]?.status, 'stored');
          if (i % 2 === 0) await new Promise((r) => setTimeout(r, 2));
          maxWalBytes = Math.max(maxWalBytes, statSync(wal).size);
        }
        const restarts = restartSeq() - first;
        assert.ok(restarts >= 1, 'the WAL restarted');
        assert.ok(restarts <= 30, `${restarts} restarts: one per 200 frames expected, not one per checkpoint`);
        // Bounded by the backstop (4 × 200 pages) at most, and in practice by the restarts.
        assert.ok(maxWalBytes < 4 * 200 * (4096 + 24), `WAL grew to ${maxWalBytes} bytes`);
        const page = await store.history({ conversation: { pid: 1, kind: MessageKind.P2P, uid: 100n, peer: 1n }, desc: false, num: 100 });
        assert.deepEqual(
          page.map((m) => m.mid),
          sent.filter((m) => m.from === 1n).map((m) => m.mid),
        );
        assert.deepEqual(errors, []);
      } finally {
        await store.close();
      }
    });

    it('rejects bad options and use before init', async () => {
      assert.throws(() => new SqliteStore({ synchronous: 'OFF' as 'FULL' }), /synchronous/);
      assert.throws(() => new SqliteStore({ busyTimeoutMs: -1 }), /busyTimeoutMs/);
      assert.throws(() => new SqliteStore({ walRestartPages: 0 }), /walRestartPages/);
      const s = new SqliteStore({ dataDir: ':memory:' });
      await assert.rejects(s.getToken(1, 1n), /init\(\)/);
      await assert.rejects(s.append([]), /init\(\)/);
    });

    it('a bad message rejects its own append only, not the others of the same turn', async () => {
      const store = new SqliteStore({ dataDir: ':memory:' });
      await store.init();
      try {
        const good = { pid: 1, kind: MessageKind.GROUP, from: 1n, to: 2n, mid: 1n, mtype: 30, msg: 'a', attrs: '' } as const;
        const [ok, bad] = await Promise.allSettled([store.append([good]), store.append([{ ...good, mid: 2n ** 64n }])]);
        assert.equal(ok.status, 'fulfilled');
        assert.equal(bad.status, 'rejected');
      } finally {
        await store.close();
      }
    });

    it('every acknowledged append survives a SIGKILL of the process', async () => {
      const dataDir = join(dir, 'crash');
      const child = spawn(process.execPath, ['--conditions=rtm-source', '--import', 'tsx', fileURLToPath(import.meta.url)], {
        env: { ...process.env, [CHILD_ENV]: dataDir },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const acked: bigint[] = [];
      let buffered = '';
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
      await new Promise<void>((resolve, reject) => {
        child.on('error', reject);
        child.on('exit', () => resolve());
        child.stdout!.setEncoding('utf8');
        child.stdout!.on('data', (chunk: string) => {
          buffered += chunk;
          const lines = buffered.split('\n');
          buffered = lines.pop()!;
          for (const line of lines) if (line) acked.push(BigInt(line));
          if (acked.length >= 3000 && child.exitCode === null && !child.killed) {
            child.kill('SIGKILL');
            resolve();
          }
        });
      });
      assert.equal(await exited, 'SIGKILL', 'the child was killed while appending');
      assert.ok(acked.length >= 3000, `child acknowledged ${acked.length} messages before exiting`);
      const store = new SqliteStore({ dataDir });
      await store.init();
      try {
        const all = new Set<bigint>();
        let lastid = 0n;
        for (;;) {
          const page = await store.history({ conversation: { pid: 1, kind: MessageKind.GROUP, to: 7n }, desc: false, num: 1000, lastid });
          for (const m of page) all.add(m.id);
          if (page.length < 1000) break;
          lastid = page[page.length - 1]!.id;
        }
        const missing = acked.filter((id) => !all.has(id));
        assert.deepEqual(missing, [], `${missing.length} acknowledged messages lost`);
      } finally {
        await store.close();
      }
    });
  });
}

/** Appends forever (many appends per turn) and prints each acknowledged id; the parent kills it. */
async function crashChild(dataDir: string): Promise<void> {
  const store = new SqliteStore({ dataDir });
  await store.init();
  let mid = 0n;
  for (;;) {
    const turn = Array.from({ length: 50 }, () =>
      store.append([{ pid: 1, kind: MessageKind.GROUP, from: 1n, to: 7n, mid: ++mid, mtype: 30, msg: `m${mid}`, attrs: '' }]).then((rs) => {
        for (const r of rs) if (r.status === 'stored') process.stdout.write(`${r.message.id}\n`);
      }),
    );
    await Promise.all(turn);
  }
}

/** A store database built by hand up to schema `version` (the store migrates it on init). */
async function databaseAtVersion(dir: string, version: number): Promise<import('better-sqlite3').Database> {
  const Database = (await import('better-sqlite3')).default;
  const db = new Database(join(dir, 'rtm.sqlite'));
  db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)');
  for (const m of SQLITE_MIGRATIONS.filter((m) => m.version <= version)) {
    db.exec(m.sql);
    db.prepare('INSERT INTO schema_migrations VALUES (?, ?, 0)').run(m.version, m.name);
  }
  return db;
}

/** A read-only connection to the store's database beside it (tests look at its tables), ids as bigint. */
async function readOnlyDatabase(dir: string): Promise<import('better-sqlite3').Database> {
  const Database = (await import('better-sqlite3')).default;
  const db = new Database(join(dir, 'rtm.sqlite'), { readonly: true });
  db.defaultSafeIntegers(true);
  return db;
}

/** Runs `fn` with a fresh temporary data directory, removed afterwards. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'rtm-mig-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('SqliteStore migration 2 (time_index, p2p_pairs) on a version-1 database', () => {
  it('carries conversation lists, hidden sides and time windows over', () =>
    inTempDir(async (dir) => {
      // A version-1 database, filled like v1 did.
      const db = await databaseAtVersion(dir, 1);
      const ins = db.prepare(
        "INSERT INTO messages (id, pid, kind, conv_lo, conv_hi, from_id, to_id, mid, mtype, msg, attrs, mtime) VALUES (?,1,1,?,?,?,?,?,30,?,'',?)",
      );
      ins.run(1, 10, 20, 10, 20, 1, 'a', 1_000);
      ins.run(2, 10, 30, 30, 10, 2, 'b', 2_500);
      db.exec("UPDATE counters SET last_id = 2, last_mtime = 2500 WHERE name = 'messages'");
      const sess = db.prepare('INSERT INTO p2p_sessions VALUES (1, ?, ?, ?)');
      sess.run(10, 20, 1);
      sess.run(20, 10, 1);
      sess.run(10, 30, 2); // 30 removed the session with 10 on its side
      db.close();

      const store = new SqliteStore({ dataDir: dir });
      await store.init();
      assert.deepEqual(await store.p2pPeers(1, 10n), [30n, 20n]);
      assert.deepEqual(await store.p2pPeers(1, 30n), []);
      assert.deepEqual(await store.p2pPeers(1, 20n), [10n]);
      const window = await store.history({
        conversation: { pid: 1, kind: MessageKind.P2P, uid: 10n, peer: 30n },
        desc: true,
        num: 10,
        begin: 2_000n,
        end: 3_000n,
      });
      assert.deepEqual(
        window.map((m) => m.id),
        [2n],
      );
      const none = await store.history({
        conversation: { pid: 1, kind: MessageKind.P2P, uid: 10n, peer: 20n },
        desc: true,
        num: 10,
        begin: 1_001n,
      });
      assert.deepEqual(none, []);
      await store.close();
    }));
});

describe('SqliteStore migration 3 (counter in time_index, no messages_inbox) on a version-2 database', () => {
  it('keeps ids and mtimes growing past the old counter, and p2p unread right', () =>
    inTempDir(async (dir) => {
      const db = await databaseAtVersion(dir, 2);
      const ins = db.prepare(
        "INSERT INTO messages (id, pid, kind, conv_lo, conv_hi, from_id, to_id, mid, mtype, msg, attrs, mtime) VALUES (?,1,1,10,20,10,20,?,30,'m','',?)",
      );
      ins.run(1, 1, 1_000);
      ins.run(2, 2, 2_500);
      db.exec('INSERT INTO time_index (sec, last_id) VALUES (1, 1), (2, 2)');
      db.exec('INSERT INTO p2p_pairs (pid, lo, hi, last_id) VALUES (1, 10, 20, 2)');
      // Ids 3 and 4 were given out and their rows are gone; the last mtime is ahead of the clock.
      const ahead = Date.now() + 600_000;
      db.prepare("UPDATE counters SET last_id = 4, last_mtime = ? WHERE name = 'messages'").run(ahead);
      db.close();

      const store = new SqliteStore({ dataDir: dir });
      await store.init();
      const [next] = await store.append([{ pid: 1, kind: MessageKind.P2P, from: 20n, to: 10n, mid: 3n, mtype: 30, msg: 'n', attrs: '' }]);
      assert.equal(next?.status, 'stored');
      assert.equal(next.message.id, 5n);
      assert.equal(next.message.mtime, BigInt(ahead));
      assert.deepEqual(await store.unreadP2P({ pid: 1, uid: 20n, since: 0n }), new Map([[10n, { count: 2, ltime: 2_500n }]]));
      assert.deepEqual(await store.unreadP2P({ pid: 1, uid: 20n, since: 1_000n }), new Map([[10n, { count: 1, ltime: 2_500n }]]));
      assert.deepEqual(await store.unreadP2P({ pid: 1, uid: 10n, since: 0n }), new Map([[20n, { count: 1, ltime: BigInt(ahead) }]]));
      await store.close();
    }));
});

describe('SqliteStore migration 4 (unique key led by mid) on a version-3 database', () => {
  it('keeps resends deduplicated, collisions refused and messages found by key', () =>
    inTempDir(async (dir) => {
      const db = await databaseAtVersion(dir, 3);
      db.prepare(
        "INSERT INTO messages (id, pid, kind, conv_lo, conv_hi, from_id, to_id, mid, mtype, msg, attrs, mtime) VALUES (1,1,1,10,20,10,20,?,30,'hello','',1000)",
      ).run(2n ** 60n + 7n);
      db.exec('INSERT INTO time_index (sec, last_id, last_mtime) VALUES (1, 1, 1000)');
      db.exec('INSERT INTO p2p_pairs (pid, lo, hi, last_id) VALUES (1, 10, 20, 1)');
      db.close();

      const store = new SqliteStore({ dataDir: dir });
      await store.init();
      const sent = { pid: 1, kind: MessageKind.P2P, from: 10n, to: 20n, mid: 2n ** 60n + 7n, mtype: 30, msg: 'hello', attrs: '' } as const;
      const [resend, collision, withheld] = await store.append([sent, { ...sent, msg: 'other' }, { ...sent, mid: sent.mid + 1n }]);
      assert.equal(resend?.status, 'duplicate');
      assert.equal(resend.message.id, 1n);
      assert.equal(collision?.status, 'collision');
      assert.equal(withheld?.status, 'withheld', 'a batch with a collision stores nothing');
      const [fresh] = await store.append([{ ...sent, mid: sent.mid + 1n }]);
      assert.equal(fresh?.status, 'stored');
      assert.equal(fresh.message.id, 2n);
      const found = await store.getMessage({ pid: 1, kind: MessageKind.P2P, from: 10n, to: 20n, mid: sent.mid });
      assert.equal(found?.msg, 'hello');
      await store.close();

      const check = new (await import('better-sqlite3')).default(join(dir, 'rtm.sqlite'), { readonly: true });
      const plan = check
        .prepare('EXPLAIN QUERY PLAN SELECT id FROM messages WHERE pid = 1 AND kind = 1 AND from_id = 10 AND to_id = 20 AND mid = 7')
        .all()
        .map((r) => String((r as { detail: string }).detail));
      const columns = check
        .prepare("SELECT name FROM pragma_index_info('messages_key') ORDER BY seqno")
        .all()
        .map((r) => (r as { name: string }).name);
      check.close();
      assert.ok(
        plan.some((l) => /USING (COVERING )?INDEX messages_key/.test(l)),
        plan.join('\n'),
      );
      assert.deepEqual(columns, ['pid', 'mid', 'kind', 'from_id', 'to_id']);
    }));
});

const NEWEST = Math.max(...SQLITE_MIGRATIONS.map((m) => m.version));

describe('SqliteStore migration 5 (time_index renamed seconds) on a version-4 database', () => {
  it('keeps time windows and ids; a server that does not know the schema refuses to open it', () =>
    inTempDir(async (dir) => {
      const db = await databaseAtVersion(dir, 4);
      const ins = db.prepare(
        "INSERT INTO messages (id, pid, kind, conv_lo, conv_hi, from_id, to_id, mid, mtype, msg, attrs, mtime) VALUES (?,1,2,7,0,5,7,?,30,'m','',?)",
      );
      ins.run(1, 1, 1_000);
      ins.run(2, 2, 2_500);
      db.exec('INSERT INTO time_index (sec, last_id, last_mtime) VALUES (1, 1, 1000), (2, 2, 2500)');
      db.close();

      const store = new SqliteStore({ dataDir: dir });
      await store.init();
      const group = { pid: 1, kind: MessageKind.GROUP, to: 7n } as const;
      const ids = async (begin: bigint, end: bigint): Promise<bigint[]> =>
        (await store.history({ conversation: group, desc: false, num: 10, begin, end })).map((m) => m.id);
      assert.deepEqual(await ids(1_000n, 1_999n), [1n]);
      assert.deepEqual(await ids(2_000n, 2_999n), [2n]);
      const [next] = await store.append([{ pid: 1, kind: MessageKind.GROUP, from: 5n, to: 7n, mid: 3n, mtype: 30, msg: 'n', attrs: '' }]);
      assert.equal(next?.status === 'stored' && next.message.id, 3n);
      await store.close();

      // A server that knows steps 1 – 4 only refuses it (one from before step 5 fails on the
      // renamed table instead), and leaves it as it was.
      const raw = new (await import('better-sqlite3')).default(join(dir, 'rtm.sqlite'));
      try {
        assert.throws(
          () =>
            migrate(
              raw,
              SQLITE_MIGRATIONS.filter((m) => m.version <= 4),
              () => assert.fail('nothing to apply'),
            ),
          new RegExp(`schema version ${NEWEST}, newer than this server knows \\(4\\): run the newer server`),
        );
        const versions = raw.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as { version: number }[];
        assert.deepEqual(
          versions.map((r) => r.version),
          SQLITE_MIGRATIONS.map((m) => m.version),
        );
      } finally {
        raw.close();
      }
    }));
});

describe('SqliteStore migration 7 (group_members.joined_at) on a version-6 database', () => {
  it('members from before count every group message as before; members added after count from their join', () =>
    inTempDir(async (dir) => {
      const db = await databaseAtVersion(dir, 6);
      db.exec('INSERT INTO group_members (pid, gid, uid) VALUES (1, 7, 5), (1, 7, 6)');
      db.exec(
        "INSERT INTO messages (id, pid, kind, conv_lo, conv_hi, from_id, to_id, mid, mtype, msg, attrs, mtime) VALUES (1, 1, 2, 7, 0, 5, 7, 1, 30, 'm', '', 1000)",
      );
      db.exec('INSERT INTO seconds (sec, last_id, last_mtime) VALUES (1, 1, 1000)');
      db.close();

      const store = new SqliteStore({ dataDir: dir });
      await store.init();
      await store.addGroupMembers(1, 7n, [8n]);
      const count = async (uid: bigint) => (await store.unreadGroups({ pid: 1, uid, since: 0n, gids: [7n] })).get(7n)?.count;
      assert.equal(await count(6n), 1, 'a member from before the step');
      assert.equal(await count(8n), undefined, 'a member added after the message');
      await store.append([{ pid: 1, kind: MessageKind.GROUP, from: 5n, to: 7n, mid: 2n, mtype: 30, msg: 'n', attrs: '' }]);
      assert.equal(await count(6n), 2);
      assert.equal(await count(8n), 1);
      await store.close();
    }));
});

describe('SqliteStore p2p_pairs: at most one write per pair per second of activity', () => {
  it('keeps the first id of the second, yet lists, orders and counts exactly; a hidden side or a new second rewrites it', () =>
    inTempDir(async (dir) => {
      let clock = 1_700_000_000_200;
      const store = new SqliteStore({ dataDir: dir, now: () => clock });
      await store.init();
      const raw = await readOnlyDatabase(dir);
      const pairRow = raw.prepare<[bigint, bigint], { last_id: bigint; hidden_lo: bigint; hidden_hi: bigint }>(
        'SELECT last_id, hidden_lo, hidden_hi FROM p2p_pairs WHERE pid = 1 AND lo = ? AND hi = ?',
      );
      let mid = 0n;
      const send = async (from: bigint, to: bigint): Promise<bigint> => {
        const [r] = await store.append([{ pid: 1, kind: MessageKind.P2P, from, to, mid: ++mid, mtype: 30, msg: `m${mid}`, attrs: '' }]);
        assert.equal(r?.status, 'stored');
        return r.message.id;
      };
      const [a, b, c] = [10n, 20n, 30n];
      try {
        const ab1 = await send(a, b);
        const cb1 = await send(c, b);
        await send(b, a);
        await send(a, b); // the newest of (a, b), same second: its row keeps ab1
        assert.deepEqual(pairRow.get(a, b), { last_id: ab1, hidden_lo: 0n, hidden_hi: 0n }, 'not rewritten within the second');
        assert.deepEqual(pairRow.get(b, c), { last_id: cb1, hidden_lo: 0n, hidden_hi: 0n });
        assert.deepEqual(await store.p2pPeers(1, b), [a, c], 'ordered by the newest message, not by the row');
        const since = BigInt(clock) - 1n;
        assert.deepEqual(
          await store.unreadP2P({ pid: 1, uid: b, since }),
          new Map([
            [a, { count: 2, ltime: BigInt(clock) }],
            [c, { count: 1, ltime: BigInt(clock) }],
          ]),
        );
        await send(c, b);
        assert.deepEqual(await store.p2pPeers(1, b), [c, a]);

        // A hidden side is shown again by the next message, within the same second too.
        await store.removeP2PSession(1, b, a);
        assert.deepEqual(await store.p2pPeers(1, b), [c]);
        const ab3 = await send(a, b);
        assert.deepEqual(pairRow.get(a, b), { last_id: ab3, hidden_lo: 0n, hidden_hi: 0n });
        assert.deepEqual(await store.p2pPeers(1, b), [a, c]);

        // The next second: the first message of a pair in it rewrites the row, the next does not.
        clock += 1_000;
        const ab4 = await send(b, a);
        await send(a, b);
        assert.equal(pairRow.get(a, b)?.last_id, ab4);
        // Unread after a baseline inside the first second finds both pairs; after the second, none.
        const unread = await store.unreadP2P({ pid: 1, uid: b, since: BigInt(clock) - 1_001n });
        assert.deepEqual([...unread.keys()].sort(), [a, c].sort());
        assert.equal(unread.get(a)?.count, 4);
        assert.deepEqual(await store.unreadP2P({ pid: 1, uid: b, since: BigInt(clock) }), new Map());
        assert.equal((await store.unreadP2P({ pid: 1, uid: a, since: BigInt(clock) - 1n })).get(b)?.count, 1);
      } finally {
        raw.close();
        await store.close();
      }
    }));
});

describe('SqliteStore seconds (time index): one write per second, the newest row may lag', () => {
  it('time windows stay exact with a lagging row, a new second completes it, and retention never lets ids be reused', () =>
    inTempDir(async (dir) => {
      const s0 = 1_700_000_000n;
      let clock = Number(s0 * 1000n) + 100;
      const store = new SqliteStore({ dataDir: dir, now: () => clock });
      await store.init();
      const raw = await readOnlyDatabase(dir);
      const rows = (): { sec: bigint; last_id: bigint }[] =>
        raw.prepare<[], { sec: bigint; last_id: bigint }>('SELECT sec, last_id FROM seconds ORDER BY sec').all();
      let mid = 0n;
      const send = async (): Promise<bigint> => {
        const [r] = await store.append([
          { pid: 1, kind: MessageKind.GROUP, from: 5n, to: 7n, mid: ++mid, mtype: 30, msg: `m${mid}`, attrs: '' },
        ]);
        assert.equal(r?.status, 'stored');
        return r.message.id;
      };
      const window = async (begin?: bigint, end?: bigint): Promise<bigint[]> =>
        (await store.history({ conversation: { pid: 1, kind: MessageKind.GROUP, to: 7n }, desc: false, num: 100, begin, end })).map(
          (m) => m.id,
        );
      const ms = (sec: bigint, at: number): bigint => sec * 1000n + BigInt(at);
      try {
        const first = [await send(), await send(), await send()];
        assert.deepEqual(rows(), [{ sec: s0, last_id: first[0] }], 'written once, by the first commit of the second');
        assert.deepEqual(await window(undefined, ms(s0, 999)), first, 'a lagging newest row bounds nothing');
        assert.deepEqual(await window(ms(s0, 100), ms(s0, 100)), first);
        assert.deepEqual(await window(ms(s0, 101)), []);
        assert.deepEqual(await store.countMessages({ pid: 1, kind: MessageKind.GROUP, to: 7n, begin: ms(s0, 0), end: ms(s0, 999) }), {
          sender: 1,
          num: 3,
        });

        clock += 1_000;
        const second = [await send(), await send()];
        assert.deepEqual(
          rows(),
          [
            { sec: s0, last_id: first[2] },
            { sec: s0 + 1n, last_id: second[0] },
          ],
          'the next second completes the row before it',
        );
        assert.deepEqual(await window(undefined, ms(s0, 999)), first);
        assert.deepEqual(await window(ms(s0 + 1n, 0)), second);
        assert.deepEqual(await window(ms(s0, 0), ms(s0 + 1n, 999)), [...first, ...second]);

        // Retention removes everything, the open second's messages too: ids go on growing.
        clock += 10;
        assert.equal(await store.sweepRetention({ maxAgeMs: 0 }, BigInt(clock) + 1n), 5);
        assert.equal(rows().at(-1)?.last_id, second[1], 'retention completed the open row first');
        const after = await send();
        assert.ok(after > second[1]!, `id ${after} given out again`);

        // Reopened while its second is open: ids and windows carry on.
        await store.close();
        const again = new SqliteStore({ dataDir: dir, now: () => clock });
        await again.init();
        const [r] = await again.append([{ pid: 1, kind: MessageKind.GROUP, from: 5n, to: 7n, mid: ++mid, mtype: 30, msg: 'x', attrs: '' }]);
        assert.equal(r?.status === 'stored' && r.message.id, after + 1n);
        const left = await again.history({
          conversation: { pid: 1, kind: MessageKind.GROUP, to: 7n },
          desc: true,
          num: 10,
          end: BigInt(clock),
        });
        assert.deepEqual(
          left.map((m) => m.id),
          [after + 1n, after],
        );
        await again.close();
      } finally {
        raw.close();
        await store.close();
      }
    }));
});

describe('SqliteStore.describe', () => {
  it('reads back what the connection runs with: the page cache asked for, synchronous, WAL, exclusive', async () => {
    const dir = await tempDir();
    const onFile = (differences: Record<string, string | number | boolean>) => ({
      store: 'sqlite',
      path: join(dir, 'rtm.sqlite'),
      journalMode: 'wal',
      writerThread: false,
      ...differences,
    });
    const custom = new SqliteStore({ dataDir: dir, cacheSizeKiB: 3072, synchronous: 'NORMAL', checkpointEveryMs: 50 });
    try {
      assert.throws(() => custom.describe(), /init\(\) has not been called/);
      await custom.init();
      assert.deepEqual(custom.describe(), onFile({ synchronous: 'NORMAL', cacheMiB: 3, exclusive: true, checkpointEveryMs: 50 }));
      await custom.close();
      const defaults = new SqliteStore({ dataDir: dir, exclusive: false, checkpointEveryMs: 0 });
      await defaults.init();
      assert.deepEqual(defaults.describe(), onFile({ synchronous: 'FULL', cacheMiB: 16, exclusive: false, checkpointEveryMs: 0 }));
      await defaults.close();
      const memory = new SqliteStore({ dataDir: ':memory:' });
      await memory.init();
      assert.equal(memory.describe()['exclusive'], false);
      assert.equal(memory.describe()['journalMode'], 'memory');
      await memory.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('SqliteStore schema migrations are reported', () => {
  it('reports each step as it starts and when applied, and nothing when the schema is current', () =>
    inTempDir(async (dir) => {
      const events: { version: number; ms?: number }[] = [];
      const first = new SqliteStore({ dataDir: dir, onMigration: ({ version, ms }) => events.push({ version, ms }) });
      await first.init();
      await first.close();
      const versions = SQLITE_MIGRATIONS.map((m) => m.version);
      assert.deepEqual(
        events.map((e) => [e.version, e.ms === undefined ? 'start' : 'applied']),
        versions.flatMap((v) => [
          [v, 'start'],
          [v, 'applied'],
        ]),
      );
      assert.ok(events.every((e) => e.ms === undefined || (Number.isInteger(e.ms) && e.ms >= 0)));

      const again: unknown[] = [];
      const second = new SqliteStore({ dataDir: dir, onMigration: (e) => again.push(e) });
      await second.init();
      await second.close();
      assert.deepEqual(again, []);
    }));
});

describe('SqliteStore id counter kept between commits', () => {
  type Op =
    | { op: 'append'; by: 0 | 1; n: number; resend: boolean; clockStep: number }
    | { op: 'retention'; maxAgeMs?: number; maxPerConversation?: number }
    | { op: 'bulk'; by: 0 | 1; n: number };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        op: fc.constant('append' as const),
        by: fc.constantFrom(0 as const, 1 as const),
        n: fc.integer({ min: 1, max: 3 }),
        resend: fc.boolean(),
        clockStep: fc.integer({ min: -700, max: 1800 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('bulk' as const),
        by: fc.constantFrom(0 as const, 1 as const),
        n: fc.integer({ min: 1, max: 3 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('retention' as const),
        maxAgeMs: fc.option(fc.integer({ min: 0, max: 3000 }), { nil: undefined }),
        maxPerConversation: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
      }),
    },
  );
  interface Committer {
    kept?: { counter: unknown; dataVersion: bigint };
    counter(): unknown;
    s: { dataVersion: { get(): bigint } };
  }
  const committerOf = (store: SqliteStore): Committer => (store as unknown as { committer: Committer }).committer;

  it('is what the database says, after appends, resends, new seconds, clock steps back, retention and another connection’s commits', () =>
    fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), (ops) =>
        inTempDir(async (dir) => {
          let clock = 1_700_000_000_000;
          // Two connections to one file, as a writer thread and the event loop's retention sweep are.
          const stores = [0, 1].map(
            () => new SqliteStore({ dataDir: dir, exclusive: false, synchronous: 'NORMAL', checkpointEveryMs: 0, now: () => clock }),
          );
          for (const s of stores) await s.init();
          try {
            let mid = 0n;
            let lastId = 0n;
            let sent: NewMessage[] = [];
            let compared = 0;
            for (const o of ops) {
              if (o.op === 'append') {
                clock += o.clockStep;
                const batch: NewMessage[] = [];
                for (let i = 0; i < o.n; i++) {
                  const again = o.resend && sent.length > 0 && i === 0;
                  batch.push(
                    again
                      ? sent.at(-1)!
                      : { pid: 1, kind: MessageKind.P2P, from: 1n + (mid % 3n), to: 9n, mid: ++mid, mtype: 30, msg: `m${mid}`, attrs: '' },
                  );
                }
                const results = await stores[o.by]!.append(batch);
                for (const r of results) {
                  assert.notEqual(r.status, 'collision');
                  if (r.status === 'stored') {
                    assert.ok(r.message.id > lastId, `id ${r.message.id} after ${lastId}`);
                    lastId = r.message.id;
                  }
                }
                sent = batch;
              } else if (o.op === 'bulk') {
                const store = stores[o.by]!;
                store.bulkInsert(
                  Array.from({ length: o.n }, () => ({
                    pid: 1,
                    kind: MessageKind.GROUP,
                    from: 1n,
                    to: 7n,
                    mid: ++mid,
                    mtype: 30,
                    msg: 'b',
                    attrs: '',
                  })),
                );
                lastId = (committerOf(store).counter() as { lastId: bigint }).lastId;
              } else {
                await stores[0]!.sweepRetention({ maxAgeMs: o.maxAgeMs, maxPerConversation: o.maxPerConversation }, BigInt(clock));
              }
              for (const s of stores) {
                const c = committerOf(s);
                // Where the kept counter would be used, it must be the one read afresh.
                if (c.kept && c.kept.dataVersion === c.s.dataVersion.get()) {
                  assert.deepEqual(c.kept.counter, c.counter());
                  compared++;
                }
              }
            }
            // The last append's store keeps its counter: the property is never checked on nothing.
            if (ops.at(-1)?.op === 'append') assert.ok(compared > 0, 'no kept counter to compare');
          } finally {
            for (const s of stores) await s.close();
          }
        }),
      ),
      { numRuns: 40 },
    ));
});
