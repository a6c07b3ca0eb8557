/**
 * Store benchmark: persisted appends/s and history page latency.
 *
 *   node --conditions=rtm-source --import tsx bench/store.ts
 *
 * Figures, in one run:
 * - raw better-sqlite3 inserts/s into the same messages table (same indexes, WAL, same
 *   `synchronous`), prepared insert in batched transactions: the ceiling;
 * - SqliteStore.append msgs/s: many concurrent single-message appends per event-loop turn
 *   (group commit), each awaited — what the server does;
 * - PostgresStore.append msgs/s the same way (skipped when PostgreSQL is unreachable;
 *   RTM_BENCH_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test);
 * - history page latency p50/p99 on a SqliteStore of ≥ 1,000,000 messages (spread over many
 *   conversations plus one of ≥ 200,000): first page and deep pages (page 10,000 through lastid,
 *   and random depths), desc and asc, with and without begin/end and mtypes;
 * - commit time of single appends on that large store with a warm page cache, one append per
 *   event-loop turn and a history read of a random group after every fourth, for each page cache
 *   size in `cacheSizesKiB` (alternating rounds): what a long-running server's commits cost, and
 *   what the cache's size does to their tail (`DEFAULT_SQLITE_CACHE_SIZE_KIB` says why).
 * - the cost of the presence records a node keeps (`recordPresences`, services/sessions.ts), µs per
 *   presence in writes of 1, 100 and 1,000 (the logins of one event-loop turn), SQLite and
 *   PostgreSQL: what a login storm adds.
 * Targets: SqliteStore.append ≥ 50% of the raw rate; history p99 ≤ 2 ms at any depth.
 *
 * `runStoreBench()` returns the figures for a bench runner. Everything lives in a temp dir.
 */
import Database from 'better-sqlite3';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEFAULT_SQLITE_CACHE_SIZE_KIB, SqliteStore, type SqliteSynchronous } from '../packages/server/src/store/sqlite.js';
import { SQLITE_MIGRATIONS } from '../packages/server/src/store/sqlite-migrations.js';
import { MessageKind, type HistoryQuery, type NewMessage, type Store } from '../packages/server/src/store/store.js';
import { FILTERED_PAGE_SCAN_ROWS } from '../packages/server/src/services/history.js';
import { DEFAULT_UNREAD_MTYPES } from '../packages/server/src/services/unread.js';
import { percentile } from './workers/lib.js';

/** One message in 1,000 of the big conversation has this type (an image among chat lines). */
const SPARSE_MTYPE = 40;

export interface StoreBenchOptions {
  /** Messages written by each append benchmark. @default 200_000 */
  appendMessages?: number;
  /** Alternating raw/store rounds (best of each is reported). @default 2 */
  rounds?: number;
  /** Concurrent appends issued per event-loop turn. @default 1000 */
  appendsPerTurn?: number;
  /** Messages in the history store. @default 1_000_000 */
  historyMessages?: number;
  /** Messages of the one big conversation (part of historyMessages). @default 250_000 */
  bigConversation?: number;
  /** Other conversations the rest is spread over. @default 20_000 */
  conversations?: number;
  /** Timed history calls per case. @default 2000 */
  historySamples?: number;
  /** SQLite `synchronous` for the append figures. @default 'FULL' (the store default) */
  synchronous?: SqliteSynchronous;
  /** Page cache sizes (KiB) of the commit-time section. @default [65536, DEFAULT_SQLITE_CACHE_SIZE_KIB] */
  cacheSizesKiB?: number[];
  /** Appends timed per cache size and round (as many again warm the cache first). @default 20000 */
  commitSamples?: number;
  /** PostgreSQL URL, or null to skip. @default env RTM_BENCH_POSTGRES_URL ?? postgres://postgres@127.0.0.1:5432/test */
  postgresUrl?: string | null;
  log?: (line: string) => void;
}

export interface LatencyFigure {
  case: string;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface StoreBenchResult {
  synchronous: SqliteSynchronous;
  rawSqliteInsertsPerSec: number;
  sqliteAppendsPerSec: number;
  /** sqliteAppendsPerSec / rawSqliteInsertsPerSec. */
  sqliteAppendRatio: number;
  /** undefined when PostgreSQL was skipped. */
  postgresAppendsPerSec?: number;
  postgresSkipped?: string;
  /** µs per presence recorded, by changes per write ('1', '100', '1000'). */
  sqlitePresenceRecordUs: Record<string, number>;
  postgresPresenceRecordUs?: Record<string, number>;
  historyStoreMessages: number;
  historyBuildSeconds: number;
  history: LatencyFigure[];
  /** Best round per cache size (the lowest p99.9), in the order of `cacheSizesKiB`. */
  commits: CommitFigure[];
}

export interface CommitFigure {
  cacheKiB: number;
  commitMeanUs: number;
  commitP50Us: number;
  commitP99Us: number;
  commitP999Us: number;
  /** The interleaved history reads (first page of a random group, 20 messages). */
  readP50Ms: number;
  readP99Ms: number;
}

const PID = 1;
const BIG_GID = 1n;

/** A realistic mix: half p2p between users of a pool, half group messages; one body ~60 bytes. */
function* workload(n: number, conversations: number, seed: number): Generator<NewMessage> {
  let x = seed >>> 0 || 1;
  const rnd = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  const users = BigInt(Math.max(2, conversations));
  for (let i = 0; i < n; i++) {
    const r = rnd();
    const mid = (BigInt(seed) << 40n) + BigInt(i); // above 2^53 for seed ≥ 2^13
    const body = `message ${i} ${'x'.repeat(40 + (r % 20))}`;
    if (r % 2 === 0) {
      const from = 1_000_000n + (BigInt(rnd()) % users);
      let to = 1_000_000n + (BigInt(rnd()) % users);
      if (to === from) to = from + 1n;
      yield { pid: PID, kind: MessageKind.P2P, from, to, mid, mtype: 30, msg: body, attrs: '' };
    } else {
      const gid = 10n + (BigInt(rnd()) % BigInt(Math.max(1, conversations >> 1)));
      yield {
        pid: PID,
        kind: MessageKind.GROUP,
        from: 1_000_000n + (BigInt(rnd()) % users),
        to: gid,
        mid,
        mtype: 30 + (r % 3),
        msg: body,
        attrs: '',
      };
    }
  }
}

async function rawSqliteInserts(
  dir: string,
  messages: readonly NewMessage[],
  synchronous: SqliteSynchronous,
  batch: number,
): Promise<number> {
  await mkdir(dir, { recursive: true });
  const db = new Database(join(dir, 'raw.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${synchronous}`);
  db.pragma(`cache_size = -${DEFAULT_SQLITE_CACHE_SIZE_KIB}`);
  for (const m of SQLITE_MIGRATIONS) db.exec(m.sql);
  const insert = db.prepare(
    'INSERT INTO messages (id, pid, kind, conv_lo, conv_hi, from_id, to_id, mid, mtype, msg, attrs, mtime) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  );
  let id = 0n;
  const t0 = performance.now();
  const tx = db.transaction((slice: readonly NewMessage[]) => {
    const mtime = BigInt(Date.now());
    for (const m of slice) {
      const p2p = m.kind === MessageKind.P2P;
      const lo = p2p ? (m.from < m.to ? m.from : m.to) : m.to;
      const hi = p2p ? (m.from < m.to ? m.to : m.from) : 0n;
      insert.run(++id, m.pid, m.kind, lo, hi, m.from, m.to, m.mid, m.mtype, m.msg as string, m.attrs, mtime);
    }
  });
  for (let i = 0; i < messages.length; i += batch) {
    tx(messages.slice(i, i + batch));
    // One transaction per event-loop turn, like the store: let the loop turn.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  const secs = (performance.now() - t0) / 1000;
  db.close();
  return messages.length / secs;
}

async function storeAppends(store: Store, messages: readonly NewMessage[], perTurn: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < messages.length; i += perTurn) {
    const turn: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(messages.length, i + perTurn); j++) turn.push(store.append([messages[j]!]));
    await Promise.all(turn);
  }
  return messages.length / ((performance.now() - t0) / 1000);
}

/** µs per presence held, in writes of each size of `perWrite` (10,000 presences each). */
async function presenceRecords(store: Store, perWrite: readonly number[] = [1, 100, 1000]): Promise<Record<string, number>> {
  const n = 10_000;
  const out: Record<string, number> = {};
  for (const size of perWrite) {
    const t0 = performance.now();
    for (let i = 0; i < n; i += size) {
      await store.recordPresences(
        `bench-${size}`,
        Array.from({ length: size }, (_, j) => ({ pid: PID, uid: BigInt(i + j), held: true })),
      );
    }
    out[String(size)] = round(((performance.now() - t0) * 1000) / n);
  }
  return out;
}

async function timed(samples: number, fn: (i: number) => Promise<unknown>): Promise<{ p50Ms: number; p99Ms: number; maxMs: number }> {
  for (let i = 0; i < Math.min(100, samples); i++) await fn(i); // warm-up
  const t: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now();
    await fn(i);
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return { p50Ms: round(percentile(t, 50)), p99Ms: round(percentile(t, 99)), maxMs: round(t[t.length - 1]!) };
}

/**
 * Single appends, each awaited before the next (one group commit per turn, as a server under a
 * light load makes them), with the first page of a random group read after every fourth. The first
 * `samples` of `messages` warm the page cache; the next `samples` are timed.
 */
async function commitTimes(
  store: Store,
  messages: Iterator<NewMessage>,
  samples: number,
  groups: number,
): Promise<Omit<CommitFigure, 'cacheKiB'>> {
  const commits: number[] = [];
  const reads: number[] = [];
  for (let i = 0; i < 2 * samples; i++) {
    const t0 = performance.now();
    await store.append([messages.next().value as NewMessage]);
    const t1 = performance.now();
    if (i >= samples) commits.push((t1 - t0) * 1000);
    if (i % 4 === 3) {
      const to = 10n + BigInt((i * 7919) % groups);
      await store.history({ conversation: { pid: PID, kind: MessageKind.GROUP, to }, desc: true, num: 20 });
      if (i >= samples) reads.push(performance.now() - t1);
    }
  }
  commits.sort((a, b) => a - b);
  reads.sort((a, b) => a - b);
  return {
    commitMeanUs: Math.round(commits.reduce((a, b) => a + b, 0) / commits.length),
    commitP50Us: Math.round(percentile(commits, 50)),
    commitP99Us: Math.round(percentile(commits, 99)),
    commitP999Us: Math.round(percentile(commits, 99.9)),
    readP50Ms: round(percentile(reads, 50)),
    readP99Ms: round(percentile(reads, 99)),
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

async function postgresAppends(
  url: string,
  messages: readonly NewMessage[],
  perTurn: number,
  log: (s: string) => void,
): Promise<{ appendsPerSec: number; presenceRecordUs: Record<string, number> } | string> {
  const { PostgresStore } = await import('../packages/server/src/store/postgres.js');
  const pg = await import('pg');
  const schema = `rtm_bench_${process.pid}_${Date.now()}`;
  const admin = new pg.default.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  admin.on('error', () => {});
  try {
    await admin.connect();
  } catch (err) {
    await admin.end().catch(() => {});
    return `PostgreSQL unreachable at ${url} (${(err as Error).message})`;
  }
  const store = new PostgresStore({ url, schema });
  try {
    await store.init();
    log(`postgres: appending ${messages.length} messages, ${perTurn} appends per turn…`);
    const appendsPerSec = await storeAppends(store, messages, perTurn);
    return { appendsPerSec, presenceRecordUs: await presenceRecords(store) };
  } finally {
    await store.close();
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await admin.end();
  }
}

export async function runStoreBench(options: StoreBenchOptions = {}): Promise<StoreBenchResult> {
  const appendMessages = options.appendMessages ?? 200_000;
  const perTurn = options.appendsPerTurn ?? 1000;
  const rounds = options.rounds ?? 2;
  const historyMessages = options.historyMessages ?? 1_000_000;
  const bigConversation = options.bigConversation ?? 250_000;
  const conversations = options.conversations ?? 20_000;
  const samples = options.historySamples ?? 2000;
  const synchronous = options.synchronous ?? 'FULL';
  const postgresUrl =
    options.postgresUrl === undefined
      ? (process.env['RTM_BENCH_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test')
      : options.postgresUrl;
  const log = options.log ?? (() => {});
  const dir = await mkdtemp(join(tmpdir(), 'rtm-bench-store-'));
  try {
    // --- appends ---------------------------------------------------------------------------------
    const messages = [...workload(appendMessages, conversations, 9001)];
    // Raw and store runs alternate, best of `rounds` each: the disk's fsync time varies a lot.
    let raw = 0;
    let appends = 0;
    for (let round = 0; round < rounds; round++) {
      log(
        `raw better-sqlite3 (round ${round + 1}): ${appendMessages} messages in transactions of ${perTurn} (synchronous=${synchronous})…`,
      );
      const r = await rawSqliteInserts(join(dir, `raw${round}`), messages, synchronous, perTurn);
      log(`  ${Math.round(r)} inserts/s`);
      const sqlite = new SqliteStore({ dataDir: join(dir, `append${round}`), synchronous });
      await sqlite.init();
      log(`SqliteStore.append (round ${round + 1}): ${appendMessages} messages, ${perTurn} concurrent appends per turn…`);
      const a = await storeAppends(sqlite, messages, perTurn);
      await sqlite.close();
      log(`  ${Math.round(a)} appends/s`);
      raw = Math.max(raw, r);
      appends = Math.max(appends, a);
    }
    log(
      `best: raw ${Math.round(raw)} inserts/s, SqliteStore.append ${Math.round(appends)} appends/s (${Math.round((100 * appends) / raw)}% of raw)`,
    );

    const records = new SqliteStore({ dataDir: join(dir, 'records'), synchronous });
    await records.init();
    const sqlitePresenceRecordUs = await presenceRecords(records);
    await records.close();
    const perWrite = (us: Record<string, number>): string =>
      Object.entries(us)
        .map(([size, u]) => `${u} µs a presence in writes of ${size}`)
        .join(', ');
    log(`presence records, SqliteStore (synchronous=${synchronous}): ${perWrite(sqlitePresenceRecordUs)}`);

    let postgresAppendsPerSec: number | undefined;
    let postgresPresenceRecordUs: Record<string, number> | undefined;
    let postgresSkipped: string | undefined;
    if (postgresUrl === null) postgresSkipped = 'disabled';
    else {
      const r = await postgresAppends(postgresUrl, messages, perTurn, log);
      if (typeof r !== 'string') {
        postgresAppendsPerSec = r.appendsPerSec;
        postgresPresenceRecordUs = r.presenceRecordUs;
        log(`  ${Math.round(r.appendsPerSec)} appends/s (PostgreSQL)`);
        log(`presence records, PostgresStore: ${perWrite(r.presenceRecordUs)}`);
      } else {
        postgresSkipped = r;
        log(`  postgres skipped: ${r}`);
      }
    }

    // --- history ---------------------------------------------------------------------------------
    log(`building a history store of ${historyMessages} messages (one conversation of ${bigConversation})…`);
    const t0 = performance.now();
    const store = new SqliteStore({ dataDir: join(dir, 'history'), synchronous: 'NORMAL' });
    await store.init();
    const start = BigInt(Date.now()) - 30n * 86_400_000n; // 30 days of history
    const step = (30n * 86_400_000n) / BigInt(historyMessages);
    const bigIds: bigint[] = [];
    const others = workload(historyMessages - bigConversation, conversations, 4242);
    const every = Math.max(1, Math.floor(historyMessages / bigConversation));
    let nextId = 1n; // fresh store: bulkInsert assigns 1, 2, 3, … in order
    let chunk: (NewMessage & { mtime: bigint })[] = [];
    for (let i = 0, big = 0; i < historyMessages; i++) {
      const mtime = start + BigInt(i) * step;
      let m: NewMessage;
      if ((i % every === 0 && big < bigConversation) || historyMessages - i <= bigConversation - big) {
        m = {
          pid: PID,
          kind: MessageKind.GROUP,
          from: 2_000_000n + BigInt(big % 500),
          to: BIG_GID,
          mid: 2n ** 60n + BigInt(big),
          mtype: big % 1000 === 999 ? SPARSE_MTYPE : 30 + (big % 3),
          msg: `big ${big}`,
          attrs: '',
        };
        big++;
        bigIds.push(nextId);
      } else {
        m = others.next().value as NewMessage;
      }
      nextId++;
      chunk.push({ ...m, mtime });
      if (chunk.length === 50_000) {
        store.bulkInsert(chunk);
        chunk = [];
      }
    }
    if (chunk.length) store.bulkInsert(chunk);
    const historyBuildSeconds = round((performance.now() - t0) / 1000);
    log(`  built in ${historyBuildSeconds} s`);

    const conversation: HistoryQuery['conversation'] = { pid: PID, kind: MessageKind.GROUP, to: BIG_GID };
    const num = 20;
    const deepDesc = bigIds[bigIds.length - 1 - num * 10_000]!; // lastid of page 10,000, newest first
    const deepAsc = bigIds[num * 10_000 - 1]!;
    const randomLastid = (i: number) => bigIds[(i * 7919) % bigIds.length]!;
    const mid = bigIds[bigIds.length >> 1]!;
    const startMs = start + step * 1000n;
    // [name, call, samples]: filters that match few or none of the conversation's messages (a
    // gallery of images; a conversation list's last chat message where apps send only custom
    // types), as the server reads them (historyWithin, at most FILTERED_PAGE_SCAN_ROWS rows a page)
    // and, for scale, as an unbounded read of the whole conversation: fewer samples.
    const few = Math.min(samples, 100);
    const within = (q: HistoryQuery) => store.historyWithin(q, FILTERED_PAGE_SCAN_ROWS);
    const cases: [string, (i: number) => Promise<unknown>, number?][] = [
      ['first page desc', () => store.history({ conversation, desc: true, num })],
      ['first page asc', () => store.history({ conversation, desc: false, num })],
      ['page 10,000 desc (lastid)', () => store.history({ conversation, desc: true, num, lastid: deepDesc })],
      ['page 10,000 asc (lastid)', () => store.history({ conversation, desc: false, num, lastid: deepAsc })],
      ['random depth desc', (i) => store.history({ conversation, desc: true, num, lastid: randomLastid(i) })],
      ['random depth asc', (i) => store.history({ conversation, desc: false, num, lastid: randomLastid(i) })],
      [
        'deep desc + begin/end + mtypes',
        () =>
          store.history({ conversation, desc: true, num, lastid: mid, begin: startMs, end: start + 29n * 86_400_000n, mtypes: [30, 32] }),
      ],
      ['sparse mtype (1 in 1,000), first page desc', () => within({ conversation, desc: true, num, mtypes: [SPARSE_MTYPE] }), few],
      [
        'sparse mtype (1 in 1,000), deep desc (lastid)',
        () => within({ conversation, desc: true, num, lastid: mid, mtypes: [SPARSE_MTYPE] }),
        few,
      ],
      ['absent mtype, first page desc', () => within({ conversation, desc: true, num, mtypes: [99] }), few],
      ['absent mtype, whole conversation (unbounded history)', () => store.history({ conversation, desc: true, num, mtypes: [99] }), 20],
      [
        'default unread mtypes 30 – 50, last message',
        () => within({ conversation, desc: true, num: 1, mtypes: DEFAULT_UNREAD_MTYPES }),
        few,
      ],
      [
        'small p2p conversation desc',
        (i) =>
          store.history({
            conversation: { pid: PID, kind: MessageKind.P2P, uid: 1_000_000n + BigInt(i % 1000), peer: 1_000_001n + BigInt(i % 1000) },
            desc: true,
            num,
          }),
      ],
    ];
    const history: LatencyFigure[] = [];
    for (const [name, fn, n] of cases) {
      const f = await timed(n ?? samples, fn);
      history.push({ case: name, ...f });
      log(`  history ${name}: p50 ${f.p50Ms} ms, p99 ${f.p99Ms} ms, max ${f.maxMs} ms`);
    }
    await store.close();

    // --- commits on the large store, by page cache size -----------------------------------------
    const cacheSizes = options.cacheSizesKiB ?? [65536, DEFAULT_SQLITE_CACHE_SIZE_KIB];
    const commitSamples = options.commitSamples ?? 20_000;
    const groups = Math.max(1, conversations >> 1); // workload()'s gids: 10 … 10 + groups - 1
    const commits = new Map<number, CommitFigure>();
    for (let round = 0; round < rounds; round++) {
      for (const [k, cacheKiB] of cacheSizes.entries()) {
        // Fresh mids for every run: a repeated one would be an idempotent resend, not a commit.
        const messages = workload(2 * commitSamples, conversations, 7000 + round * cacheSizes.length + k);
        const s = new SqliteStore({ dataDir: join(dir, 'history'), synchronous: 'NORMAL', cacheSizeKiB: cacheKiB });
        await s.init();
        const f = await commitTimes(s, messages, commitSamples, groups);
        await s.close();
        log(
          `  commits, page cache ${cacheKiB} KiB (round ${round + 1}): mean ${f.commitMeanUs} µs, p50 ${f.commitP50Us}, ` +
            `p99 ${f.commitP99Us}, p99.9 ${f.commitP999Us} µs; reads p50 ${f.readP50Ms} ms, p99 ${f.readP99Ms} ms`,
        );
        const best = commits.get(cacheKiB);
        if (!best || f.commitP999Us < best.commitP999Us) commits.set(cacheKiB, { cacheKiB, ...f });
      }
    }
    return {
      synchronous,
      rawSqliteInsertsPerSec: Math.round(raw),
      sqliteAppendsPerSec: Math.round(appends),
      sqliteAppendRatio: round(appends / raw),
      ...(postgresAppendsPerSec !== undefined ? { postgresAppendsPerSec: Math.round(postgresAppendsPerSec) } : {}),
      ...(postgresSkipped !== undefined ? { postgresSkipped } : {}),
      sqlitePresenceRecordUs,
      ...(postgresPresenceRecordUs !== undefined ? { postgresPresenceRecordUs } : {}),
      historyStoreMessages: historyMessages,
      historyBuildSeconds,
      history,
      commits: cacheSizes.map((kib) => commits.get(kib)!),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await runStoreBench({ log: (line) => console.log(line) });
  console.log(JSON.stringify(result, null, 2));
}
