/**
 * The cluster Store: PostgreSQL through `pg` (DESIGN.md "Storage", "Cluster").
 *
 * - Same schema design as SQLite (postgres-migrations.ts), BIGINT ids parsed as bigint by a type
 *   parser set on this store's pool only (OID 20 → BigInt), never globally.
 * - Migrations run under a transaction-level advisory lock: nodes starting at once are safe.
 * - Group commit: the appends of one event-loop turn (plus any that arrive while the previous
 *   commit is in flight) are written in ONE transaction with multi-row statements (unnest arrays).
 * - Ids increase in commit order across all nodes. A sequence would not give that: nextval() is
 *   not transactional, so T1 can take id 5, T2 id 6, T2 commit first, and a reader paging with
 *   lastid = 6 (asc) never sees 5 when T1 commits later. Instead every appending transaction
 *   first locks the single `counters` row (SELECT … FOR UPDATE) and only then checks duplicates,
 *   assigns ids and mtimes, inserts and advances the counter: appenders are serialized until
 *   COMMIT, so ids are handed out in commit order, mtime = max(now, last mtime) is monotonic across
 *   nodes, and the duplicate check cannot race another node's insert. The lock is held for one
 *   group commit, so throughput comes from large groups, not from parallel writers.
 */
import pg from 'pg';
import { StrBytes, strBody } from '@rtm/fpnn';
import {
  MessageKind,
  type AppendResult,
  type BanScope,
  type CountQuery,
  type HistoryQuery,
  type HistoryWindow,
  type Info,
  type InfoKind,
  kickoutOf,
  type KickoutRecord,
  type MessageKey,
  type NewMessage,
  type NodePresence,
  type PendingPresenceEnd,
  type PresenceClaim,
  type PresenceHolder,
  type PresenceJoin,
  type RetentionPolicy,
  type Store,
  type StoredMessage,
  StoreRefusal,
  type UnreadBaseline,
  type UnreadCount,
  type UnreadQuery,
  type UpgradeEvent,
} from './store.js';
import {
  checkNewMessage,
  conversationOfMessage,
  failedMigration,
  plainBytes,
  presenceEnds,
  presenceHolders,
  sameContent,
  unreadMap,
} from './conversation.js';
import { POSTGRES_MIGRATIONS } from './postgres-migrations.js';
import { historyRange, historyWindow, throughEdge, type HistoryRange } from './history-window.js';
import { MessageClock } from './message-clock.js';

export interface PostgresStoreOptions {
  /** Connection URL, e.g. `postgres://user:pass@host:5432/db` (RTM_STORE). */
  url: string;
  /** Schema holding the tables (created if missing); `[a-z_][a-z0-9_]*`. @default 'public' */
  schema?: string;
  /** Maximum connections of the pool. @default 10 */
  poolSize?: number;
  /** Clock of the store in ms (tests). @default Date.now */
  now?: () => number;
  /**
   * A transaction (a group commit of sends) or a statement serving a quest still unfinished after
   * this long is abandoned: its connection is dropped and its callers fail, so one silent
   * PostgreSQL connection cannot hold every send of the node, a slot of the pool, nor the node's
   * shutdown, for the minutes TCP takes to give up. With the connect timeout, at most 15 s by
   * default: the caller hears 20001 before the SDKs' own quest timeouts (20 s in the browser and
   * Node SDKs) turn it into a 20003 that says nothing of the cause. @default 10000
   */
  transactionTimeoutMs?: number;
  /** How long a new connection may take before the pool gives up (PostgreSQL down or unreachable). @default 5000 */
  connectTimeoutMs?: number;
  /**
   * A statement of the retention sweep still unfinished after this long is abandoned, and its
   * connection dropped: the sweep serves no quest and may rightly read every message, but a
   * connection gone silent would hold it, and a slot of the pool, for the hours TCP's keepalive
   * takes to give up. @default 300000
   */
  retentionStatementTimeoutMs?: number;
  /**
   * A start's schema upgrade, once the migration lock is held: as it begins and once it is
   * committed (in the one transaction that holds the lock: other nodes starting meanwhile wait).
   */
  onUpgrade?: (event: UpgradeEvent) => void;
}

export const DEFAULT_POSTGRES_SCHEMA = 'public';
export const DEFAULT_POSTGRES_POOL_SIZE = 10;
export const DEFAULT_POSTGRES_TRANSACTION_TIMEOUT_MS = 10_000;
export const DEFAULT_POSTGRES_CONNECT_TIMEOUT_MS = 5_000;
export const DEFAULT_POSTGRES_RETENTION_STATEMENT_TIMEOUT_MS = 300_000;
/** Rows per multi-row INSERT of a group commit. */
const INSERT_CHUNK = 5000;
/** Rows deleted per statement by the retention sweep. */
const RETENTION_CHUNK = 5000;
const INT64_MAX = 2n ** 63n - 1n;

type Row = Record<string, unknown>;
/** What runs a statement: a client in a transaction, or `bounded` (one statement on a client of its own). */
interface Queryable {
  query<R extends pg.QueryResultRow = Row>(config: pg.QueryConfig): Promise<pg.QueryResult<R>>;
}

interface PendingAppend {
  batch: readonly NewMessage[];
  resolve(results: AppendResult[]): void;
  reject(err: unknown): void;
}

/** int8 → bigint for this pool only; every other type keeps pg's parser. */
const bigintTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20) return (value: string) => BigInt(value);
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

const MESSAGE_COLUMNS = 'id, pid, kind, from_id, to_id, mid, mtype, msg, msg_bin, attrs, mtime';

export class PostgresStore implements Store {
  readonly schema: string;
  private readonly url: string;
  private readonly poolSize: number;
  private readonly now: () => number;
  private readonly transactionTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly retentionStatementTimeoutMs: number;
  private readonly onUpgrade: (event: UpgradeEvent) => void;
  /** Why the last group commit failed, when PostgreSQL refuses writes (`writeProblem`); undefined once one commits. */
  private writeFailure: string | undefined;
  private pool: pg.Pool | undefined;
  private pending: PendingAppend[] = [];
  private flushScheduled = false;
  private flushing: Promise<void> | undefined;
  private readonly clock: MessageClock;

  constructor(options: PostgresStoreOptions) {
    if (typeof options?.url !== 'string' || options.url === '') throw new RangeError('PostgresStore: url is required');
    const schema = options.schema ?? DEFAULT_POSTGRES_SCHEMA;
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new RangeError(`PostgresStore: bad schema name ${JSON.stringify(schema)}`);
    const poolSize = options.poolSize ?? DEFAULT_POSTGRES_POOL_SIZE;
    if (!Number.isInteger(poolSize) || poolSize < 1)
      throw new RangeError(`PostgresStore: poolSize must be a positive integer, got ${String(poolSize)}`);
    this.url = options.url;
    this.schema = schema;
    this.poolSize = poolSize;
    this.now = options.now ?? Date.now;
    this.clock = new MessageClock(this.now);
    this.transactionTimeoutMs = options.transactionTimeoutMs ?? DEFAULT_POSTGRES_TRANSACTION_TIMEOUT_MS;
    this.connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_POSTGRES_CONNECT_TIMEOUT_MS;
    this.retentionStatementTimeoutMs = options.retentionStatementTimeoutMs ?? DEFAULT_POSTGRES_RETENTION_STATEMENT_TIMEOUT_MS;
    this.onUpgrade = options.onUpgrade ?? (() => {});
  }

  /** A trivial query (the admin /healthz). */
  async ping(): Promise<void> {
    await this.rows('SELECT 1');
  }

  /**
   * Why messages cannot be stored now, or undefined (the admin /healthz). PostgreSQL may answer
   * `ping` and refuse every write: a server left read-only (a failover onto a standby, a role or
   * database set `default_transaction_read_only`), a full disk. So the store remembers a group
   * commit that failed for such a reason, and while it does, a probe write decides (a row of its
   * own in `counters`), ending the failure as soon as writes work, without waiting for a send (a
   * balancer that took the node out sends none). Healthy, it costs nothing: no probe, no write.
   */
  async writeProblem(): Promise<string | undefined> {
    if (this.writeFailure === undefined) return undefined;
    try {
      await this.rows(
        `INSERT INTO counters (name, last_id, last_mtime) VALUES ('write_probe', 0, $1)
         ON CONFLICT (name) DO UPDATE SET last_mtime = excluded.last_mtime`,
        [BigInt(Date.now())],
      );
      this.writeFailure = undefined;
    } catch (err) {
      // Unreachable now: ping says so next time; a refusal is the reason to report.
      if (answeredByPostgres(err)) this.writeFailure = (err as Error).message;
    }
    return this.writeFailure;
  }

  /** Where the store is (the URL without its credentials) and how it connects. */
  /** Every node of a cluster uses it. */
  readonly soleServer = false;

  describe(): Record<string, string | number | boolean> {
    let server = '(unparsable URL)';
    try {
      const u = new URL(this.url);
      server = `${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`;
    } catch {
      // A URL that pg parses but URL does not: say so rather than echo it (it may hold a password).
    }
    return { store: 'postgres', server, schema: this.schema, poolSize: this.poolSize };
  }

  // --- lifecycle -------------------------------------------------------------------------------

  async init(): Promise<void> {
    if (this.pool) return;
    const pool = new pg.Pool({
      connectionString: this.url,
      max: this.poolSize,
      types: bigintTypes,
      options: `-c search_path=${this.schema}`,
      connectionTimeoutMillis: this.connectTimeoutMs,
      keepAlive: true,
    });
    pool.on('error', () => {}); // an idle client lost its connection: the pool replaces it
    try {
      await migrate(pool, this.schema, this.onUpgrade);
      // After the newest mtime stored and the highest mark of any node's last stop (message-clock.ts).
      const r = await pool.query<Row>("SELECT name, last_mtime FROM counters WHERE name IN ('messages', 'unread_marks')");
      const of = (name: string) => (r.rows.find((row) => row['name'] === name)?.['last_mtime'] as bigint | undefined) ?? 0n;
      this.clock.resume(of('messages'), of('unread_marks'));
    } catch (err) {
      await pool.end();
      throw err;
    }
    this.pool = pool;
  }

  async close(): Promise<void> {
    const pool = this.pool;
    if (!pool) return;
    while (this.flushing || this.pending.length > 0) {
      if (this.flushing) await this.flushing;
      else await this.flush();
    }
    this.pool = undefined;
    try {
      await pool.query(
        `INSERT INTO counters (name, last_id, last_mtime) VALUES ('unread_marks', 0, $1)
         ON CONFLICT (name) DO UPDATE SET last_mtime = GREATEST(counters.last_mtime, excluded.last_mtime)`,
        [this.clock.highestMark],
      );
    } catch {
      // the store is closing: a node that starts later resumes after the newest message instead
    }
    await pool.end();
  }

  /** Schema versions applied, in order (diagnostics). */
  async schemaVersions(): Promise<number[]> {
    const r = await this.bounded.query<Row>({ text: 'SELECT version FROM schema_migrations ORDER BY version' });
    return r.rows.map((row) => Number(row['version']));
  }

  private get db(): pg.Pool {
    if (!this.pool) throw new Error('PostgresStore: init() has not been called (or the store is closed)');
    return this.pool;
  }

  private async rows(sql: string, values: unknown[] = [], name?: string): Promise<Row[]> {
    const r = await this.bounded.query<Row>(name ? { name, text: sql, values } : { text: sql, values });
    return r.rows;
  }

  /**
   * One statement on a client of its own, bounded as a transaction is (`onClient`). Not the pool's
   * own `query`: that one waits for an answer for ever, and a connection gone silent (a failover
   * that left the old primary's address dead) would hold its quest and its slot of the pool for
   * the minutes TCP takes to give up; a few of them and every store call of the node waits for a
   * free slot until the pool's connect timeout, long after PostgreSQL answers again.
   */
  private readonly bounded: Queryable = {
    query: <R extends pg.QueryResultRow>(config: pg.QueryConfig) => this.onClient('statement', (c) => c.query<R>(config)),
  };

  /** Runs `fn` in a transaction on a client of its own (`onClient`). */
  private tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.onClient('transaction', async (client, broken) => {
      try {
        await client.query('BEGIN');
        const out = await fn(client);
        await client.query('COMMIT');
        return out;
      } catch (err) {
        if (!broken()) await client.query('ROLLBACK').catch(() => {});
        throw err;
      }
    });
  }

  /**
   * Runs `fn` on a client of its own, abandoned after `timeoutMs`. A checked-out client
   * has no listener for 'error' (the pool's is for idle ones): without this one (`checkout`), a
   * connection lost while checked out (a PostgreSQL restart, a failover) would be an unhandled
   * 'error' event, which ends the process. A lost or timed-out connection fails `fn` and is
   * destroyed, never reused.
   */
  private async onClient<T>(
    what: string,
    fn: (c: pg.PoolClient, broken: () => boolean) => Promise<T>,
    timeoutMs = this.transactionTimeoutMs,
  ): Promise<T> {
    let broken: Error | undefined;
    const onError = (err: Error): void => {
      broken ??= err; // the query in flight fails with it too
    };
    const client = await checkout(this.db, onError);
    const timer = setTimeout(() => {
      broken ??= new Error(`PostgreSQL ${what} unfinished after ${timeoutMs} ms: connection dropped`);
      // The socket, not client.end(): a silent peer would never answer a polite goodbye.
      (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
    }, timeoutMs);
    try {
      return await fn(client, () => broken !== undefined);
    } catch (err) {
      throw broken ?? err;
    } finally {
      clearTimeout(timer);
      // A broken client keeps the listener: it may still report its end, after the pool drops it.
      if (!broken) client.removeListener('error', onError);
      client.release(broken ?? false);
    }
  }

  // --- messages --------------------------------------------------------------------------------

  append(batch: readonly NewMessage[]): Promise<AppendResult[]> {
    try {
      if (!this.pool) throw new Error('PostgresStore: init() has not been called (or the store is closed)');
      for (const m of batch) checkNewMessage(m);
    } catch (err) {
      return Promise.reject(err);
    }
    if (batch.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.pending.push({ batch, resolve, reject });
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.flushing) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  /** One group commit at a time; appends arriving meanwhile form the next group. */
  private flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    const pending = this.pending;
    this.pending = [];
    if (pending.length === 0) return Promise.resolve();
    this.flushing = (async () => {
      try {
        const results = await this.commitGroup(pending);
        this.writeFailure = undefined;
        pending.forEach((p, i) => p.resolve(results[i]!));
      } catch (err) {
        if (refusesWrites(err)) this.writeFailure = (err as Error).message;
        if (!answeredByPostgres(err)) {
          // No word from PostgreSQL (no connection to be had, or none answering): each append alone
          // would wait as long again, and so would those queued meanwhile, behind this group. They
          // all fail now; their callers resend (the same mid is stored once).
          for (const p of [...pending, ...this.pending.splice(0)]) p.reject(err);
        } else if (pending.length === 1) pending[0]!.reject(err);
        else {
          // Isolate the failure: commit each append alone so one bad batch cannot fail the others.
          // Only while PostgreSQL answers: once a commit fails without a word from it (no
          // connection to be had, or none answering), so would each of the others, one after the
          // other, each after its own wait (connect or transaction timeout): the last sender would
          // hear of it minutes later, and every send arriving meanwhile would wait behind them.
          let unavailable: unknown;
          for (const p of pending) {
            if (unavailable !== undefined) {
              p.reject(unavailable);
              continue;
            }
            try {
              p.resolve((await this.commitGroup([p]))[0]!);
            } catch (e) {
              p.reject(e);
              if (!answeredByPostgres(e)) unavailable = e;
            }
          }
        }
      } finally {
        this.flushing = undefined;
        if (this.pending.length > 0) this.scheduleFlush();
      }
    })();
    return this.flushing;
  }

  private async commitGroup(group: readonly PendingAppend[]): Promise<AppendResult[][]> {
    let inFlight: bigint | undefined; // the clock, from the counter's lock until the transaction ends
    const committed = this.tx(async (c) => {
      const counter = (
        await c.query<Row>({ name: 'counter_lock', text: "SELECT last_id, last_mtime FROM counters WHERE name = 'messages' FOR UPDATE" })
      ).rows[0]!;
      let lastId = counter['last_id'] as bigint;
      const lastMtime = counter['last_mtime'] as bigint;
      const clock = (inFlight = this.clock.take());
      const mtime = clock > lastMtime ? clock : lastMtime;

      // Existing rows for every key of the group, in one query.
      const all = group.flatMap((p) => p.batch);
      const existing = new Map<string, StoredMessage>();
      const found = await c.query<Row>({
        name: 'append_existing',
        text: `SELECT ${MESSAGE_COLUMNS} FROM messages
               WHERE (pid, kind, from_id, to_id, mid) IN (SELECT * FROM unnest($1::int[], $2::smallint[], $3::bigint[], $4::bigint[], $5::bigint[]))`,
        values: [all.map((m) => m.pid), all.map((m) => m.kind), all.map((m) => m.from), all.map((m) => m.to), all.map((m) => m.mid)],
      });
      for (const r of found.rows) {
        const m = rowToMessage(r);
        existing.set(keyOf(m), m);
      }

      const inserts: StoredMessage[] = [];
      const sessions = new Map<string, [number, bigint, bigint, bigint]>();
      const results = group.map((p) => {
        const batchFrom = lastId;
        const batchSessions: typeof sessions = new Map();
        const batchKeys: string[] = [];
        const out = p.batch.map((m): AppendResult => {
          const key = keyOf(m);
          const original = existing.get(key);
          if (original) return sameContent(original, m) ? { status: 'duplicate', message: original } : { status: 'collision' };
          const message: StoredMessage = { ...m, id: ++lastId, mtime };
          existing.set(key, message);
          batchKeys.push(key);
          if (m.kind === MessageKind.P2P) {
            batchSessions.set(`${m.pid}:${m.from}:${m.to}`, [m.pid, m.from, m.to, message.id]);
            batchSessions.set(`${m.pid}:${m.to}:${m.from}`, [m.pid, m.to, m.from, message.id]);
          }
          return { status: 'stored', message };
        });
        if (!out.some((r) => r.status === 'collision')) {
          for (const r of out) if (r.status === 'stored') inserts.push(r.message);
          for (const [key, row] of batchSessions) sessions.set(key, row);
          return out;
        }
        // All or nothing: a batch with a collision stores none of it (Store.append).
        lastId = batchFrom;
        for (const key of batchKeys) existing.delete(key);
        return out.map((r): AppendResult =>
          r.status === 'stored' || (r.status === 'duplicate' && r.message.id > batchFrom) ? { status: 'withheld' } : r,
        );
      });

      for (let i = 0; i < inserts.length; i += INSERT_CHUNK) {
        const chunk = inserts.slice(i, i + INSERT_CHUNK);
        const convs = chunk.map(conversationOfMessage);
        await c.query({
          name: 'append_insert',
          text: `INSERT INTO messages (id, pid, kind, conv_lo, conv_hi, from_id, to_id, mid, mtype, msg, msg_bin, attrs, mtime)
                 SELECT * FROM unnest($1::bigint[], $2::int[], $3::smallint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[],
                                      $8::bigint[], $9::int[], $10::bytea[], $11::boolean[], $12::text[], $13::bigint[])`,
          values: [
            chunk.map((m) => m.id),
            chunk.map((m) => m.pid),
            chunk.map((m) => m.kind),
            convs.map((k) => k.lo),
            convs.map((k) => k.hi),
            chunk.map((m) => m.from),
            chunk.map((m) => m.to),
            chunk.map((m) => m.mid),
            chunk.map((m) => m.mtype),
            chunk.map((m) => (typeof m.msg === 'string' ? Buffer.from(m.msg, 'utf8') : m.msg)),
            // A StrBytes (a str whose bytes are not UTF-8) is a str: its bytes, msg_bin false.
            chunk.map((m) => typeof m.msg !== 'string' && !(m.msg instanceof StrBytes)),
            chunk.map((m) => m.attrs),
            chunk.map((m) => m.mtime),
          ],
        });
      }
      if (sessions.size > 0) {
        const s = [...sessions.values()];
        await c.query({
          name: 'append_sessions',
          text: `INSERT INTO p2p_sessions (pid, uid, peer, last_id)
                 SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::bigint[])
                 ON CONFLICT (pid, uid, peer) DO UPDATE SET last_id = excluded.last_id`,
          values: [s.map((x) => x[0]), s.map((x) => x[1]), s.map((x) => x[2]), s.map((x) => x[3])],
        });
      }
      if (inserts.length > 0) {
        await c.query({
          name: 'counter_set',
          text: "UPDATE counters SET last_id = $1, last_mtime = $2 WHERE name = 'messages'",
          values: [lastId, mtime],
        });
      }
      return results;
    });
    try {
      return await committed;
    } finally {
      if (inFlight !== undefined) this.clock.settled(inFlight);
    }
  }

  async history(query: HistoryQuery): Promise<StoredMessage[]> {
    const range = await this.historyRange(query);
    return range ? this.historyRows(query, range) : [];
  }

  async historyWithin(query: HistoryQuery, maxScan: number): Promise<HistoryWindow> {
    const range = await this.historyRange(query);
    if (!range) return { messages: [] };
    if (!query.mtypes?.length) return { messages: await this.historyRows(query, range) };
    const dir = query.desc ? 'DESC' : 'ASC';
    return historyWindow(
      query.num,
      maxScan,
      async (n) => {
        const [row] = await this.rows(
          `SELECT id FROM messages WHERE pid = $1 AND kind = $2 AND conv_lo = $3 AND conv_hi = $4 AND id > $5 AND id < $6
           ORDER BY id ${dir} LIMIT 1 OFFSET $7`,
          [...range.key, range.lo, range.hi, n - 1],
          `history_edge_${dir}`,
        );
        return row?.['id'] as bigint | undefined;
      },
      (edge) => this.historyRows(query, throughEdge(range, query.desc, edge)),
    );
  }

  private async historyRange(query: HistoryQuery): Promise<HistoryRange | undefined> {
    return historyRange(query, await this.idBounds(this.bounded, query.begin, query.end));
  }

  private async historyRows(query: HistoryQuery, range: HistoryRange): Promise<StoredMessage[]> {
    const mtypes = query.mtypes ?? [];
    const dir = query.desc ? 'DESC' : 'ASC';
    const filtered = mtypes.length > 0;
    const rows = await this.rows(
      `SELECT ${MESSAGE_COLUMNS} FROM messages
       WHERE pid = $1 AND kind = $2 AND conv_lo = $3 AND conv_hi = $4 AND id > $5 AND id < $6 AND NOT deleted
       ${filtered ? 'AND mtype = ANY($8::int[])' : ''}
       ORDER BY id ${dir} LIMIT $7`,
      [...range.key, range.lo, range.hi, query.num, ...(filtered ? [mtypes] : [])],
      `history_${dir}_${filtered ? 'f' : 'a'}`,
    );
    return rows.map(rowToMessage);
  }

  /** Exclusive id bounds equivalent to the inclusive mtime window (mtime never decreases with id). */
  private async idBounds(q: Queryable, begin?: bigint, end?: bigint): Promise<{ lo: bigint; hi: bigint } | undefined> {
    let lo = 0n;
    let hi = INT64_MAX;
    if (begin !== undefined && begin !== 0n) {
      const r = await q.query<Row>({
        name: 'first_id_from',
        text: 'SELECT id FROM messages WHERE mtime >= $1 ORDER BY mtime, id LIMIT 1',
        values: [begin],
      });
      if (r.rows.length === 0) return undefined;
      lo = (r.rows[0]!['id'] as bigint) - 1n;
    }
    if (end !== undefined && end !== 0n) {
      const r = await q.query<Row>({
        name: 'last_id_until',
        text: 'SELECT id FROM messages WHERE mtime <= $1 ORDER BY mtime DESC, id DESC LIMIT 1',
        values: [end],
      });
      if (r.rows.length === 0) return undefined;
      hi = (r.rows[0]!['id'] as bigint) + 1n;
    }
    return lo < hi ? { lo, hi } : undefined;
  }

  async getMessage(key: MessageKey): Promise<StoredMessage | undefined> {
    const rows = await this.rows(
      `SELECT ${MESSAGE_COLUMNS} FROM messages WHERE pid = $1 AND kind = $2 AND from_id = $3 AND to_id = $4 AND mid = $5 AND NOT deleted`,
      [key.pid, key.kind, key.from, key.to, key.mid],
      'get_message',
    );
    return rows[0] ? rowToMessage(rows[0]) : undefined;
  }

  async deleteMessage(key: MessageKey): Promise<boolean> {
    const r = await this.bounded.query({
      name: 'delete_message',
      text: 'UPDATE messages SET deleted = TRUE WHERE pid = $1 AND kind = $2 AND from_id = $3 AND to_id = $4 AND mid = $5 AND NOT deleted',
      values: [key.pid, key.kind, key.from, key.to, key.mid],
    });
    return (r.rowCount ?? 0) > 0;
  }

  async countMessages(query: CountQuery): Promise<{ sender: number; num: number }> {
    const bounds = await this.idBounds(this.bounded, query.begin, query.end);
    if (!bounds) return { sender: 0, num: 0 };
    const mtypes = query.mtypes ?? [];
    const filtered = mtypes.length > 0;
    const [row] = await this.rows(
      `SELECT COUNT(DISTINCT from_id) AS sender, COUNT(*) AS num FROM messages
       WHERE pid = $1 AND kind = $2 AND conv_lo = $3 AND conv_hi = 0 AND id > $4 AND id < $5 AND NOT deleted
       ${filtered ? 'AND mtype = ANY($6::int[])' : ''}`,
      [query.pid, query.kind, query.to, bounds.lo, bounds.hi, ...(filtered ? [mtypes] : [])],
    );
    return { sender: Number(row!['sender']), num: Number(row!['num']) };
  }

  // --- unread and conversations ----------------------------------------------------------------

  async unreadP2P(query: UnreadQuery & { peers?: readonly bigint[] }): Promise<Map<bigint, UnreadCount>> {
    if (query.peers && query.peers.length === 0) return new Map();
    const mtypes = query.mtypes ?? [];
    const rows = await this.rows(
      `SELECT from_id AS k, COUNT(*) AS n, MAX(mtime) AS t FROM messages
       WHERE pid = $1 AND kind = 1 AND to_id = $2 AND from_id <> $2 AND mtime > $3 AND NOT deleted
         AND ($4::bigint[] IS NULL OR from_id = ANY($4::bigint[]))
         AND ($5::int[] IS NULL OR mtype = ANY($5::int[]))
       GROUP BY from_id`,
      [query.pid, query.uid, query.since, query.peers ? [...query.peers] : null, mtypes.length ? [...mtypes] : null],
      'unread_p2p',
    );
    return unreadMap(rows);
  }

  async unreadGroups(query: UnreadQuery & { gids: readonly bigint[] }): Promise<Map<bigint, UnreadCount>> {
    // Nothing is stored after the largest bigint (and since + 1 would not fit in one).
    if (query.gids.length === 0 || query.since >= INT64_MAX) return new Map();
    // mtime > since ⇔ id above the bound idBounds derives (mtime never decreases with id).
    const bounds = await this.idBounds(this.bounded, query.since + 1n, undefined);
    if (!bounds) return new Map();
    const mtypes = query.mtypes ?? [];
    // Of the groups uid is in, the messages stored after both `since` (the id bound) and uid's join.
    const rows = await this.rows(
      `SELECT m.conv_lo AS k, COUNT(*) AS n, MAX(m.mtime) AS t
       FROM group_members AS g
       JOIN messages AS m ON m.pid = g.pid AND m.kind = $2 AND m.conv_lo = g.gid AND m.conv_hi = 0 AND m.id > $4
       WHERE g.pid = $1 AND g.uid = $5 AND g.gid = ANY($3::bigint[]) AND m.mtime > g.joined_at AND m.from_id <> $5 AND NOT m.deleted
         AND ($6::int[] IS NULL OR m.mtype = ANY($6::int[]))
       GROUP BY m.conv_lo`,
      [query.pid, MessageKind.GROUP, [...query.gids], bounds.lo, query.uid, mtypes.length ? [...mtypes] : null],
      'unread_groups',
    );
    return unreadMap(rows);
  }

  async p2pPeers(pid: number, uid: bigint): Promise<bigint[]> {
    const rows = await this.rows(
      'SELECT peer FROM p2p_sessions WHERE pid = $1 AND uid = $2 ORDER BY last_id DESC',
      [pid, uid],
      'p2p_peers',
    );
    return rows.map((r) => r['peer'] as bigint);
  }

  async removeP2PSession(pid: number, uid: bigint, peer: bigint): Promise<void> {
    await this.rows('DELETE FROM p2p_sessions WHERE pid = $1 AND uid = $2 AND peer = $3', [pid, uid, peer]);
  }

  async getUnreadBaseline(pid: number, uid: bigint): Promise<UnreadBaseline> {
    const [row] = await this.rows(
      'SELECT logout_time, clear_time FROM unread_baselines WHERE pid = $1 AND uid = $2',
      [pid, uid],
      'baseline',
    );
    const out: UnreadBaseline = {};
    if (row?.['logout_time'] != null) out.logoutTime = row['logout_time'] as bigint;
    if (row?.['clear_time'] != null) out.clearTime = row['clear_time'] as bigint;
    return out;
  }

  unreadMark(): bigint {
    return this.clock.mark();
  }

  roomsCut(): bigint {
    return this.clock.cut();
  }

  async setClearTime(pid: number, uid: bigint, ms: bigint): Promise<void> {
    await this.rows(
      `INSERT INTO unread_baselines (pid, uid, clear_time) VALUES ($1, $2, $3)
       ON CONFLICT (pid, uid) DO UPDATE SET clear_time = GREATEST(unread_baselines.clear_time, excluded.clear_time)`,
      [pid, uid, ms],
    );
  }

  async savePresenceEnds(ends: readonly PendingPresenceEnd[]): Promise<void> {
    if (ends.length === 0) return;
    await this.rows(
      `INSERT INTO presence_ends (pid, uid, ended_at, deadline)
       SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::bigint[])
       ON CONFLICT (pid, uid) DO UPDATE SET ended_at = excluded.ended_at, deadline = excluded.deadline`,
      [ends.map((e) => e.pid), ends.map((e) => e.uid), ends.map((e) => e.endedAt), ends.map((e) => e.deadline)],
    );
  }

  async takePresenceEnd(pid: number, uid: bigint): Promise<PendingPresenceEnd | undefined> {
    const rows = await this.rows(
      'DELETE FROM presence_ends WHERE pid = $1 AND uid = $2 RETURNING pid, uid, ended_at, deadline',
      [pid, uid],
      'take_presence_end',
    );
    return presenceEnds(rows)[0];
  }

  async takeExpiredPresenceEnds(now: bigint, limit: number): Promise<PendingPresenceEnd[]> {
    // SKIP LOCKED: nodes sweeping at once take different rows, each row one node's.
    const rows = await this.rows(
      `DELETE FROM presence_ends WHERE (pid, uid) IN (
         SELECT pid, uid FROM presence_ends WHERE deadline <= $1 ORDER BY deadline LIMIT $2 FOR UPDATE SKIP LOCKED)
       RETURNING pid, uid, ended_at, deadline`,
      [now, limit],
      'take_expired_presence_ends',
    );
    return presenceEnds(rows);
  }

  async recordPresences(node: string, changes: readonly NodePresence[], replace = false): Promise<void> {
    const held = changes.filter((c) => c.held);
    const released = changes.filter((c) => !c.held);
    const hold = (c: Queryable) =>
      held.length > 0 &&
      c.query({
        name: 'hold_presences',
        text: `INSERT INTO node_presences (node, pid, uid, ended_at)
               SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::bigint[])
               ON CONFLICT (node, pid, uid) DO UPDATE SET ended_at = excluded.ended_at`,
        values: [node, held.map((h) => h.pid), held.map((h) => h.uid), held.map((h) => h.endedAt ?? null)],
      });
    if (replace) {
      await this.tx(async (c) => {
        await c.query('DELETE FROM node_presences WHERE node = $1', [node]);
        await hold(c);
      });
      return;
    }
    // Each user at most once: the two statements touch different rows, in either order.
    await Promise.all([
      hold(this.bounded),
      released.length > 0 &&
        this.rows(
          'DELETE FROM node_presences WHERE node = $1 AND (pid, uid) IN (SELECT * FROM unnest($2::int[], $3::bigint[]))',
          [node, released.map((c) => c.pid), released.map((c) => c.uid)],
          'release_presences',
        ),
    ]);
  }

  async presenceHolders(pid: number, uid: bigint): Promise<PresenceHolder[]> {
    return presenceHolders(
      await this.rows(
        'SELECT p.node, p.ended_at, n.seen_at FROM node_presences p LEFT JOIN nodes n ON n.node = p.node WHERE p.pid = $1 AND p.uid = $2 ORDER BY p.node',
        [pid, uid],
        'presence_holders',
      ),
    );
  }

  async joinPresence(pid: number, uid: bigint, node: string): Promise<PresenceJoin> {
    // ON CONFLICT DO UPDATE locks the row and sets from its latest version: of two joins at once,
    // the second waits for the first and sees its presence live. The holder's record is written
    // by the same statement (a data-modifying WITH runs whether or not it is read): one round trip.
    const [row] = await this.rows(
      `WITH held AS (
         INSERT INTO node_presences (node, pid, uid, ended_at) VALUES ($3, $1, $2, NULL)
         ON CONFLICT (node, pid, uid) DO UPDATE SET ended_at = NULL
       )
       INSERT INTO presences (pid, uid, version, began, live) VALUES ($1, $2, 1, 1, true)
       ON CONFLICT (pid, uid) DO UPDATE SET version = presences.version + 1,
         began = CASE WHEN presences.live THEN presences.began ELSE presences.version + 1 END, live = true
       RETURNING version, began`,
      [pid, uid, node],
      'join_presence',
    );
    const version = row!['version'] as bigint;
    return { version, began: row!['began'] === version };
  }

  async presenceClaim(pid: number, uid: bigint): Promise<PresenceClaim> {
    const [row] = await this.rows('SELECT version, live FROM presences WHERE pid = $1 AND uid = $2', [pid, uid], 'presence_claim');
    return row ? { version: row['version'] as bigint, live: row['live'] === true } : { version: 0n, live: false };
  }

  async endPresence(pid: number, uid: bigint, version: bigint, endedAt: bigint, roomsThrough: bigint): Promise<bigint[] | undefined> {
    // One statement, so one round trip: the logout time and the rooms only if the claim is won.
    const [row] = await this.rows(
      `WITH ended AS (
         UPDATE presences SET version = version + 1, live = false WHERE pid = $1 AND uid = $2 AND version = $3 AND live RETURNING pid, uid
       ), logout AS (
         INSERT INTO unread_baselines (pid, uid, logout_time) SELECT pid, uid, $4 FROM ended
         ON CONFLICT (pid, uid) DO UPDATE SET logout_time = GREATEST(unread_baselines.logout_time, excluded.logout_time)
       ), left_rooms AS (
         DELETE FROM room_members WHERE pid = $1 AND uid = $2 AND joined_at <= $5 AND EXISTS (SELECT 1 FROM ended) RETURNING rid
       )
       SELECT EXISTS (SELECT 1 FROM ended) AS ended, ARRAY(SELECT rid FROM left_rooms ORDER BY rid) AS rids`,
      [pid, uid, version, endedAt, roomsThrough],
      'end_presence',
    );
    // int8[] comes as strings (this pool parses only int8 itself as bigint).
    return row?.['ended'] === true ? (row['rids'] as (string | bigint)[]).map((rid) => BigInt(rid)) : undefined;
  }

  async touchNode(node: string, now: bigint, mark: bigint): Promise<boolean> {
    const updated = await this.bounded.query({
      text: 'UPDATE nodes SET seen_at = $2, mark = $3 WHERE node = $1',
      values: [node, now, mark],
    });
    if ((updated.rowCount ?? 0) > 0) return true;
    await this.rows('INSERT INTO nodes (node, seen_at, mark) VALUES ($1, $2, $3) ON CONFLICT (node) DO NOTHING', [node, now, mark]);
    return false;
  }

  async liveNodes(since: bigint): Promise<string[]> {
    const rows = await this.rows('SELECT node FROM nodes WHERE seen_at >= $1 ORDER BY node', [since], 'live_nodes');
    return rows.map((r) => r['node'] as string);
  }

  async dropNode(node: string): Promise<void> {
    await this.tx(async (c) => {
      await c.query('DELETE FROM node_presences WHERE node = $1', [node]);
      await c.query('DELETE FROM nodes WHERE node = $1', [node]);
    });
  }

  async takeOrphanedPresences(deadBefore: bigint, graceMs: bigint, limit: number): Promise<PendingPresenceEnd[]> {
    // SKIP LOCKED: nodes sweeping at once take different rows, each presence one node's to end.
    const rows = await this.rows(
      `WITH dead AS (SELECT node, seen_at, mark FROM nodes WHERE seen_at < $1),
       taken AS (SELECT p.node, p.pid, p.uid FROM node_presences p JOIN dead d ON d.node = p.node LIMIT $3 FOR UPDATE OF p SKIP LOCKED)
       DELETE FROM node_presences p USING taken t, dead d
       WHERE p.node = t.node AND p.pid = t.pid AND p.uid = t.uid AND d.node = p.node
       RETURNING p.pid, p.uid, COALESCE(p.ended_at, d.mark) AS ended_at, d.seen_at + $2::bigint AS deadline`,
      [deadBefore, graceMs, limit],
      'take_orphaned_presences',
    );
    if (rows.length < limit) {
      await this.rows(
        'DELETE FROM nodes n WHERE n.seen_at < $1 AND NOT EXISTS (SELECT 1 FROM node_presences p WHERE p.node = n.node)',
        [deadBefore],
        'drop_dead_nodes',
      );
    }
    return presenceEnds(rows);
  }

  // --- tokens ----------------------------------------------------------------------------------

  async getToken(pid: number, uid: bigint): Promise<string | undefined> {
    const [row] = await this.rows('SELECT token FROM tokens WHERE pid = $1 AND uid = $2', [pid, uid], 'token_get');
    return row?.['token'] as string | undefined;
  }

  async issueToken(pid: number, uid: bigint, candidate: string): Promise<string> {
    // The no-op update locks the existing row and makes RETURNING give it: concurrent callers on
    // any node all get the token that was stored first.
    const [row] = await this.rows(
      'INSERT INTO tokens (pid, uid, token) VALUES ($1, $2, $3) ON CONFLICT (pid, uid) DO UPDATE SET token = tokens.token RETURNING token',
      [pid, uid, candidate],
    );
    return row!['token'] as string;
  }

  async deleteToken(pid: number, uid: bigint): Promise<void> {
    await this.rows('DELETE FROM tokens WHERE pid = $1 AND uid = $2', [pid, uid]);
  }

  // --- groups ----------------------------------------------------------------------------------

  async addGroupMembers(pid: number, gid: bigint, uids: readonly bigint[]): Promise<void> {
    if (uids.length === 0) return;
    // A member added again keeps the join time: their unread counts go on from it.
    await this.rows(
      'INSERT INTO group_members (pid, gid, uid, joined_at) SELECT $1, $2, u, $4 FROM unnest($3::bigint[]) AS u ON CONFLICT DO NOTHING',
      [pid, gid, [...uids], this.clock.mark()],
    );
  }

  async removeGroupMembers(pid: number, gid: bigint, uids: readonly bigint[]): Promise<void> {
    if (uids.length === 0) return;
    await this.rows('DELETE FROM group_members WHERE pid = $1 AND gid = $2 AND uid = ANY($3::bigint[])', [pid, gid, [...uids]]);
  }

  async deleteGroup(pid: number, gid: bigint): Promise<void> {
    await this.tx(async (c) => {
      await c.query('DELETE FROM group_members WHERE pid = $1 AND gid = $2', [pid, gid]);
      await c.query("DELETE FROM infos WHERE pid = $1 AND kind = 'group' AND id = $2", [pid, gid]);
    });
  }

  async groupMembers(pid: number, gid: bigint): Promise<bigint[]> {
    const rows = await this.rows('SELECT uid FROM group_members WHERE pid = $1 AND gid = $2 ORDER BY uid', [pid, gid], 'group_members');
    return rows.map((r) => r['uid'] as bigint);
  }

  async groupMemberCount(pid: number, gid: bigint): Promise<number> {
    const [row] = await this.rows('SELECT COUNT(*) AS n FROM group_members WHERE pid = $1 AND gid = $2', [pid, gid]);
    return Number(row!['n']);
  }

  async isGroupMember(pid: number, gid: bigint, uid: bigint): Promise<boolean> {
    const rows = await this.rows(
      'SELECT 1 FROM group_members WHERE pid = $1 AND gid = $2 AND uid = $3',
      [pid, gid, uid],
      'group_is_member',
    );
    return rows.length > 0;
  }

  async userGroups(pid: number, uid: bigint): Promise<bigint[]> {
    const rows = await this.rows('SELECT gid FROM group_members WHERE pid = $1 AND uid = $2 ORDER BY gid', [pid, uid], 'user_groups');
    return rows.map((r) => r['gid'] as bigint);
  }

  async countGroups(pid: number, upTo = 0x7fffffff): Promise<number> {
    if (upTo <= 0) return 0;
    // A skip scan of the primary key (pid, gid, uid), as SQLite's: each step an index-only seek
    // of the next gid, whatever the size of the groups; the row after the last group has a NULL gid.
    const [row] = await this.rows(
      `WITH RECURSIVE g (gid, n) AS (
         SELECT (SELECT gid FROM group_members WHERE pid = $1 ORDER BY gid LIMIT 1), 1
         UNION ALL
         SELECT (SELECT m.gid FROM group_members AS m WHERE m.pid = $1 AND m.gid > g.gid ORDER BY m.gid LIMIT 1), g.n + 1
           FROM g WHERE g.gid IS NOT NULL AND g.n < $2
       )
       SELECT count(gid)::int AS n FROM g`,
      [pid, Math.min(upTo, 0x7fffffff)],
      'count_groups',
    );
    return Number(row!['n']);
  }

  // --- rooms -----------------------------------------------------------------------------------

  async addRoomMember(pid: number, rid: bigint, uid: bigint): Promise<void> {
    await this.rows(
      `INSERT INTO room_members (pid, rid, uid, joined_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (pid, rid, uid) DO UPDATE SET joined_at = excluded.joined_at`,
      [pid, rid, uid, this.clock.stamp()],
      'room_add',
    );
  }

  async removeRoomMember(pid: number, rid: bigint, uid: bigint): Promise<void> {
    await this.rows('DELETE FROM room_members WHERE pid = $1 AND rid = $2 AND uid = $3', [pid, rid, uid], 'room_remove');
  }

  async roomMembers(pid: number, rid: bigint): Promise<bigint[]> {
    const rows = await this.rows('SELECT uid FROM room_members WHERE pid = $1 AND rid = $2 ORDER BY uid', [pid, rid], 'room_members');
    return rows.map((r) => r['uid'] as bigint);
  }

  async roomCounts(pid: number, rids: readonly bigint[]): Promise<Map<bigint, number>> {
    const out = new Map<bigint, number>();
    if (rids.length === 0) return out;
    const rows = await this.rows(
      'SELECT rid, COUNT(*) AS n FROM room_members WHERE pid = $1 AND rid = ANY($2::bigint[]) GROUP BY rid',
      [pid, [...rids]],
      'room_counts',
    );
    for (const r of rows) out.set(r['rid'] as bigint, Number(r['n']));
    return out;
  }

  async userRooms(pid: number, uid: bigint): Promise<bigint[]> {
    const rows = await this.rows('SELECT rid FROM room_members WHERE pid = $1 AND uid = $2 ORDER BY rid', [pid, uid], 'user_rooms');
    return rows.map((r) => r['rid'] as bigint);
  }

  // --- bans and project blacklist --------------------------------------------------------------

  async addBan(pid: number, scope: BanScope, target: bigint, uid: bigint, until?: bigint): Promise<void> {
    await this.rows(
      `INSERT INTO bans (pid, scope, uid, target, until) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (pid, scope, uid, target) DO UPDATE SET until = excluded.until`,
      [pid, scope, uid, target, until ?? null],
    );
  }

  async removeBan(pid: number, scope: BanScope, target: bigint, uid: bigint): Promise<void> {
    await this.rows('DELETE FROM bans WHERE pid = $1 AND scope = $2 AND uid = $3 AND target = $4', [pid, scope, uid, target]);
  }

  async isBanned(pid: number, scope: BanScope, target: bigint, uid: bigint, now: bigint): Promise<boolean> {
    const rows = await this.rows(
      'SELECT 1 FROM bans WHERE pid = $1 AND scope = $2 AND uid = $3 AND target IN ($4, 0) AND (until IS NULL OR until > $5) LIMIT 1',
      [pid, scope, uid, target, now],
      'is_banned',
    );
    return rows.length > 0;
  }

  async addProjectBlack(pid: number, uid: bigint, until?: bigint): Promise<void> {
    await this.rows(
      'INSERT INTO project_blacks (pid, uid, until) VALUES ($1, $2, $3) ON CONFLICT (pid, uid) DO UPDATE SET until = excluded.until',
      [pid, uid, until ?? null],
    );
  }

  async removeProjectBlack(pid: number, uid: bigint): Promise<void> {
    await this.rows('DELETE FROM project_blacks WHERE pid = $1 AND uid = $2', [pid, uid]);
  }

  async recordKickout(k: KickoutRecord, forgetBefore: bigint): Promise<void> {
    await this.rows('DELETE FROM kickouts WHERE at < $1', [forgetBefore]);
    await this.rows('INSERT INTO kickouts (pid, uid, at, endpoint) VALUES ($1, $2, $3, $4)', [k.pid, k.uid, k.at, k.endpoint ?? null]);
  }

  async kickoutsSince(since: bigint, limit: number): Promise<KickoutRecord[]> {
    const rows = await this.rows('SELECT pid, uid, at, endpoint FROM kickouts WHERE at >= $1 ORDER BY at LIMIT $2', [since, limit]);
    return rows.map(kickoutOf);
  }

  async isProjectBlack(pid: number, uid: bigint, now: bigint): Promise<boolean> {
    const rows = await this.rows(
      'SELECT 1 FROM project_blacks WHERE pid = $1 AND uid = $2 AND (until IS NULL OR until > $3)',
      [pid, uid, now],
      'is_project_black',
    );
    return rows.length > 0;
  }

  // --- friends and blacklists ------------------------------------------------------------------

  async addFriends(pid: number, uid: bigint, friends: readonly bigint[]): Promise<void> {
    if (friends.length === 0) return;
    await this.rows(
      `INSERT INTO friends (pid, uid, friend)
       SELECT $1::int, $2::bigint, f FROM unnest($3::bigint[]) AS f UNION SELECT $1::int, f, $2::bigint FROM unnest($3::bigint[]) AS f
       ON CONFLICT DO NOTHING`,
      [pid, uid, [...friends]],
    );
  }

  async removeFriends(pid: number, uid: bigint, friends: readonly bigint[]): Promise<void> {
    if (friends.length === 0) return;
    await this.rows(
      `DELETE FROM friends WHERE pid = $1 AND ((uid = $2 AND friend = ANY($3::bigint[])) OR (friend = $2 AND uid = ANY($3::bigint[])))`,
      [pid, uid, [...friends]],
    );
  }

  async friends(pid: number, uid: bigint): Promise<bigint[]> {
    const rows = await this.rows('SELECT friend FROM friends WHERE pid = $1 AND uid = $2 ORDER BY friend', [pid, uid], 'friends');
    return rows.map((r) => r['friend'] as bigint);
  }

  async filterFriends(pid: number, uid: bigint, candidates: readonly bigint[]): Promise<bigint[]> {
    if (candidates.length === 0) return [];
    const rows = await this.rows(
      'SELECT friend FROM friends WHERE pid = $1 AND uid = $2 AND friend = ANY($3::bigint[]) ORDER BY friend',
      [pid, uid, [...candidates]],
      'filter_friends',
    );
    return rows.map((r) => r['friend'] as bigint);
  }

  async addBlacks(pid: number, uid: bigint, blacks: readonly bigint[]): Promise<void> {
    if (blacks.length === 0) return;
    await this.rows('INSERT INTO blacks (pid, uid, black) SELECT $1, $2, b FROM unnest($3::bigint[]) AS b ON CONFLICT DO NOTHING', [
      pid,
      uid,
      [...blacks],
    ]);
  }

  async removeBlacks(pid: number, uid: bigint, blacks: readonly bigint[]): Promise<void> {
    if (blacks.length === 0) return;
    await this.rows('DELETE FROM blacks WHERE pid = $1 AND uid = $2 AND black = ANY($3::bigint[])', [pid, uid, [...blacks]]);
  }

  async blacks(pid: number, uid: bigint): Promise<bigint[]> {
    const rows = await this.rows('SELECT black FROM blacks WHERE pid = $1 AND uid = $2 ORDER BY black', [pid, uid], 'blacks');
    return rows.map((r) => r['black'] as bigint);
  }

  async blockedBy(pid: number, uid: bigint, candidates: readonly bigint[]): Promise<bigint[]> {
    if (candidates.length === 0) return [];
    const rows = await this.rows(
      'SELECT uid FROM blacks WHERE pid = $1 AND black = $2 AND uid = ANY($3::bigint[]) ORDER BY uid',
      [pid, uid, [...candidates]],
      'blocked_by',
    );
    return rows.map((r) => r['uid'] as bigint);
  }

  // --- info and key-value data -----------------------------------------------------------------

  async setInfo(pid: number, kind: InfoKind, id: bigint, info: Partial<Info>): Promise<void> {
    if (info.oinfo === undefined && info.pinfo === undefined) return;
    await this.rows(
      `INSERT INTO infos (pid, kind, id, oinfo, pinfo) VALUES ($1, $2, $3, COALESCE($4::text, ''), COALESCE($5::text, ''))
       ON CONFLICT (pid, kind, id) DO UPDATE SET oinfo = COALESCE($4::text, infos.oinfo), pinfo = COALESCE($5::text, infos.pinfo)`,
      [pid, kind, id, info.oinfo ?? null, info.pinfo ?? null],
    );
  }

  async getInfo(pid: number, kind: InfoKind, id: bigint): Promise<Info> {
    const [row] = await this.rows('SELECT oinfo, pinfo FROM infos WHERE pid = $1 AND kind = $2 AND id = $3', [pid, kind, id], 'info_get');
    return { oinfo: (row?.['oinfo'] as string | undefined) ?? '', pinfo: (row?.['pinfo'] as string | undefined) ?? '' };
  }

  async getOpenInfos(pid: number, kind: InfoKind, ids: readonly bigint[]): Promise<Map<bigint, string>> {
    const out = new Map<bigint, string>();
    if (ids.length === 0) return out;
    const rows = await this.rows(
      "SELECT id, oinfo FROM infos WHERE pid = $1 AND kind = $2 AND id = ANY($3::bigint[]) AND oinfo <> ''",
      [pid, kind, [...ids]],
      'open_infos',
    );
    for (const r of rows) out.set(r['id'] as bigint, r['oinfo'] as string);
    return out;
  }

  async dataSet(pid: number, uid: bigint, key: string, val: string): Promise<void> {
    await this.rows(
      'INSERT INTO user_data (pid, uid, key, val) VALUES ($1, $2, $3, $4) ON CONFLICT (pid, uid, key) DO UPDATE SET val = excluded.val',
      [pid, uid, key, val],
    );
  }

  async dataGet(pid: number, uid: bigint, key: string): Promise<string | undefined> {
    const [row] = await this.rows('SELECT val FROM user_data WHERE pid = $1 AND uid = $2 AND key = $3', [pid, uid, key], 'data_get');
    return row?.['val'] as string | undefined;
  }

  async dataDelete(pid: number, uid: bigint, key: string): Promise<void> {
    await this.rows('DELETE FROM user_data WHERE pid = $1 AND uid = $2 AND key = $3', [pid, uid, key]);
  }

  // --- retention -------------------------------------------------------------------------------

  /**
   * Deletes in statements of RETENTION_CHUNK rows, each its own transaction (short locks, no long
   * bloat). Each statement is bounded by `retentionStatementTimeoutMs`, not by the quests' bound:
   * a background sweep serves no quest, and finding the oversized conversations reads every
   * message, which may rightly take longer.
   */
  async sweepRetention(policy: RetentionPolicy, now: bigint): Promise<number> {
    let removed = 0;
    const query = (sql: string, values: unknown[]) =>
      this.onClient('retention statement', (c) => c.query<Row>(sql, values), this.retentionStatementTimeoutMs);
    const rows = async (sql: string, values: unknown[]) => (await query(sql, values)).rows;
    const chunked = async (sql: string, values: unknown[]) => {
      for (;;) {
        const r = await query(sql, [...values, RETENTION_CHUNK]);
        const n = r.rowCount ?? 0;
        removed += n;
        if (n < RETENTION_CHUNK) return;
      }
    };
    if (policy.maxAgeMs !== undefined) {
      const cutoff = now - BigInt(Math.trunc(policy.maxAgeMs));
      await chunked('DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE mtime < $1 ORDER BY mtime LIMIT $2)', [cutoff]);
    }
    if (policy.maxPerConversation !== undefined) {
      const keep = Math.max(0, Math.trunc(policy.maxPerConversation));
      const convs = await rows(
        'SELECT pid, kind, conv_lo, conv_hi FROM messages GROUP BY pid, kind, conv_lo, conv_hi HAVING COUNT(*) > $1',
        [keep],
      );
      for (const c of convs) {
        const conv = [c['pid'], c['kind'], c['conv_lo'], c['conv_hi']];
        const [cut] = await rows(
          'SELECT id FROM messages WHERE pid = $1 AND kind = $2 AND conv_lo = $3 AND conv_hi = $4 ORDER BY id DESC LIMIT 1 OFFSET $5',
          [...conv, keep],
        );
        if (!cut) continue;
        await chunked(
          `DELETE FROM messages WHERE id IN (SELECT id FROM messages
             WHERE pid = $1 AND kind = $2 AND conv_lo = $3 AND conv_hi = $4 AND id <= $5 ORDER BY id LIMIT $6)`,
          [...conv, cut['id']],
        );
      }
    }
    return removed;
  }
}

/**
 * Creates the schema if missing and applies missing migrations in one transaction under an
 * advisory lock keyed by the schema name: concurrent starters queue on the lock, the first does
 * the work, the others then see every version recorded and do nothing. Refuses a schema that a
 * newer server has migrated further, as the SQLite store does.
 */
async function migrate(pool: pg.Pool, schema: string, upgrade: (event: UpgradeEvent) => void): Promise<void> {
  // A lost connection fails the query in flight, and with it the start: the listener only keeps
  // the 'error' event from ending the process.
  const ignore = (): void => {};
  const c = await checkout(pool, ignore);
  try {
    await c.query('BEGIN');
    await c.query("SELECT pg_advisory_xact_lock(hashtext('rtm_store_migrations'), hashtext($1))", [schema]);
    // Only when missing: CREATE SCHEMA, even IF NOT EXISTS, needs the CREATE privilege on the
    // database, which a role given only its own schema (created by a DBA) does not have.
    const exists = await c.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    if (exists.rowCount === 0) await c.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await c.query(`SET LOCAL search_path TO ${schema}`);
    await c.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)',
    );
    const applied = new Set((await c.query<Row>('SELECT version FROM schema_migrations')).rows.map((r) => Number(r['version'])));
    const newest = Math.max(0, ...POSTGRES_MIGRATIONS.map((m) => m.version));
    const unknown = [...applied].filter((v) => v > newest);
    if (unknown.length > 0) {
      // A newer server has been here (a rolling upgrade half done, or a rollback): its data may
      // mean what this one does not know, so this node must not serve it.
      throw new StoreRefusal(
        `PostgresStore: schema ${schema} has version ${Math.max(...unknown)}, newer than this server knows (${newest}): run the newer server`,
      );
    }
    const pending = [...POSTGRES_MIGRATIONS].sort((a, b) => a.version - b.version).filter((m) => !applied.has(m.version));
    const upgrading = { from: Math.max(0, ...applied), to: newest, migrations: pending.length };
    const began = performance.now();
    if (pending.length > 0) upgrade(upgrading);
    for (const m of pending) {
      await c.query(m.sql).catch((err: unknown) => {
        throw failedMigration(err, m);
      });
      await c.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, Date.now()]);
    }
    await c.query('COMMIT');
    if (pending.length > 0) upgrade({ ...upgrading, ms: Math.round(performance.now() - began) });
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    c.removeListener('error', ignore);
    c.release();
  }
}

/**
 * A client of the pool, with `onError` listening from the moment the pool hands it over. Not
 * `await pool.connect()`: the promise resolves a turn later, and a new client may emit 'error'
 * before that, from the very read that completed its connection (PostgreSQL ended it right away: a
 * backend terminated, a restart); with no listener, that 'error' event ends the process.
 */
function checkout(pool: pg.Pool, onError: (err: Error) => void): Promise<pg.PoolClient> {
  return new Promise((resolve, reject) =>
    pool.connect((err, client) => {
      if (err || !client) return reject(err ?? new Error('PostgresStore: the pool gave no client'));
      client.on('error', onError);
      resolve(client);
    }),
  );
}

/**
 * The error came from PostgreSQL itself (it has a severity): the server answered, refusing the
 * statement (maybe for the batch's own sake) or ending the connection (a backend terminated: the
 * next connection may work). Not so a connection refused, reset or timed out.
 */
function answeredByPostgres(err: unknown): boolean {
  return typeof (err as { severity?: unknown } | undefined)?.severity === 'string';
}

/**
 * Whether PostgreSQL refused a commit for a reason of the server, not of the messages, that every
 * write meets until an operator acts (SQLSTATE): a read-only transaction (25006, a standby or
 * `default_transaction_read_only`), insufficient resources (class 53: a full disk, out of memory,
 * too many connections), an I/O error (58030).
 */
function refusesWrites(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return answeredByPostgres(err) && typeof code === 'string' && (code === '25006' || code.startsWith('53') || code === '58030');
}

function keyOf(m: { pid: number; kind: number; from: bigint; to: bigint; mid: bigint }): string {
  return `${m.pid}:${m.kind}:${m.from}:${m.to}:${m.mid}`;
}

function rowToMessage(r: Row): StoredMessage {
  const bytes = r['msg'] as Buffer;
  return {
    id: r['id'] as bigint,
    pid: Number(r['pid']),
    kind: Number(r['kind']) as StoredMessage['kind'],
    from: r['from_id'] as bigint,
    to: r['to_id'] as bigint,
    mid: r['mid'] as bigint,
    mtype: Number(r['mtype']),
    msg: r['msg_bin'] ? plainBytes(bytes) : strBody(bytes),
    attrs: r['attrs'] as string,
    mtime: r['mtime'] as bigint,
  };
}
