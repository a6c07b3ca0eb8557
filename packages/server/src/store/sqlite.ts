/**
 * The embedded Store: SQLite through better-sqlite3, in WAL mode (DESIGN.md "Storage").
 *
 * - Reads and the rare writes (membership, tokens, deletes…) use the event loop's connection,
 *   synchronously; every method is still async to honour the `Store` interface.
 * - Appends are group-committed: every `append` issued in one event-loop turn goes into ONE
 *   transaction (flushed from `setImmediate`); every promise resolves after the COMMIT. Should the
 *   group fail, each append is retried in its own transaction, so a failing batch rejects alone.
 * - With `writerThread`, a file database's commits run in a writer thread with its own connection
 *   (`sqlite-writer.ts`): a commit that waits on the disk never blocks the event loop, and turns
 *   that pile up behind it are committed together.
 * - Message ids and mtimes come from the newest message and the newest `seconds` row, read
 *   inside that transaction (`sqlite-appender.ts`): ids strictly increase in commit order (also
 *   across restarts and after deletions) and mtime = max(now, last mtime), so mtime never
 *   decreases with id. History relies on that to turn `begin`/`end` into id bounds through
 *   `seconds`, whose newest row may lag behind the newest message (see `idBounds`).
 * - Ids are INTEGER columns read with safe integers: they come back as bigint, exact above 2^53.
 * - Appends that fail (a full disk, I/O errors) are remembered until a commit or a probe write
 *   succeeds: /healthz then says the node cannot store messages (`writeProblem`).
 */
import Database from 'better-sqlite3';
import { chmodSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  MessageKind,
  type AppendResult,
  type BackupOptions,
  type BackupStats,
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
import { checkNewMessage, failedMigration, presenceEnds, presenceHolders, unreadMap } from './conversation.js';
import { AppendCommitter, MESSAGE_COLUMNS, rowToMessage, type BatchOutcome, type AppendOutcome } from './sqlite-appender.js';
import { backupDatabase } from './sqlite-backup.js';
import { WalCheckpointer } from './sqlite-checkpointer.js';
import { connectionName, openConnection } from './sqlite-connection.js';
import { SqliteWriterThread } from './sqlite-writer.js';
import { historyRange, historyWindow, throughEdge, type HistoryRange } from './history-window.js';
import { MessageClock } from './message-clock.js';
import { SQLITE_MIGRATIONS, type SqliteMigration } from './sqlite-migrations.js';

/**
 * `synchronous` pragma in WAL mode:
 * - `FULL` (default): the WAL is fsynced at every commit, so an acknowledged message survives a
 *   process crash AND a power loss / kernel crash. With group commit the fsync is paid once per
 *   event-loop turn, not once per message.
 * - `NORMAL`: no fsync at commit (only at checkpoints). An acknowledged message survives a process
 *   crash (SIGKILL: the OS still holds the written WAL pages) but the last commits may be lost on
 *   power loss. Faster on disks with slow fsync.
 */
export type SqliteSynchronous = 'FULL' | 'NORMAL';

export interface SqliteStoreOptions {
  /**
   * Directory holding the database file (created if missing), or `':memory:'` for a private
   * in-memory database (tests).
   * @default DEFAULT_SQLITE_DATA_DIR ('data', relative to the working directory; RTM_DATA_DIR)
   */
  dataDir?: string;
  /** Database file name inside `dataDir`. @default 'rtm.sqlite' */
  filename?: string;
  /** How long (ms) a statement waits for a lock held by another connection. @default 5000 */
  busyTimeoutMs?: number;
  /** Durability of a commit, see `SqliteSynchronous`. @default 'FULL' */
  synchronous?: SqliteSynchronous;
  /**
   * SQLite page cache of the connection, in KiB: bigger keeps more of a large store's pages hot,
   * but makes some commits slower (see `DEFAULT_SQLITE_CACHE_SIZE_KIB`). @default 16384 (16 MiB)
   */
  cacheSizeKiB?: number;
  /** Clock of the store in ms (tests). @default Date.now */
  now?: () => number;
  /**
   * Checkpoint the WAL from a worker thread every this many ms (0 = SQLite's automatic
   * checkpoints inside commits, which stall the event loop). File databases only. Short: each
   * checkpoint then has little to fsync (P2P p99 at 5k msgs/s: 14–18 ms at 100 ms, 37–43 ms at
   * 1000 ms on the bench machine, before `walRestartPages`). @default 100
   */
  checkpointEveryMs?: number;
  /**
   * WAL size (pages) at which the checkpointer lets the WAL restart (see `WalCheckpointer`); a
   * commit checkpoints by itself at 4× this (a backstop, should the checkpointer fall behind).
   * @default 10000 (about 40 MiB of WAL file)
   */
  walRestartPages?: number;
  /**
   * Commit appends of a file database in a writer thread (`sqlite-writer.ts`) instead of the
   * event loop (`:memory:` databases always commit in the event loop). It keeps disk stalls off
   * the event loop and frees it of the commit's CPU, at ≈ 10 µs more CPU per message and one
   * thread hop of latency: worth it with ≥ 4 cores or a slow disk, not on 2. @default false
   */
  writerThread?: boolean;
  /**
   * Hold the database file exclusively (`sqlite-connection.ts`): fewer system calls per commit,
   * and a second server on the same data directory is refused at start; no other process can
   * open the file meanwhile. File databases only. @default true
   */
  exclusive?: boolean;
  /**
   * Failures of the background threads (checkpoints, the writer) and of appends (once per
   * episode: see `writeProblem`), for the operator's log.
   */
  onError?: (message: string) => void;
  /** The end of such a failure (writes work again, a writer thread runs again), for the operator's log. */
  onRecovery?: (message: string) => void;
  /**
   * Schema migrations as they run at `init()`, for the operator's log: on a large database one
   * may take a while (migration 4 rebuilds an index: ≈ 0.4 s per million messages).
   */
  onMigration?: (event: MigrationEvent) => void;
  /**
   * The same migrations together, once a start finds any to apply: as they begin and once all are
   * applied. One event for the operator's log where a new database has a dozen steps.
   */
  onUpgrade?: (event: UpgradeEvent) => void;
}

/** One schema migration starting (`ms` absent) or applied (`ms`: how long it took). */
export interface MigrationEvent {
  version: number;
  name: string;
  ms?: number;
}

export const DEFAULT_SQLITE_DATA_DIR = 'data';
export const DEFAULT_SQLITE_FILENAME = 'rtm.sqlite';

/**
 * The database holds login tokens and messages: only its owner may read it (0600, as the dev
 * project's secret), whatever the umask. Set once SQLite has opened (made) the file, before
 * anything is written to it; SQLite creates the -wal and -shm files with the database file's
 * mode (fchmod, umask or not), and those left by an older server are set here too. The owner
 * (the `sqlite3` shell run by the same user) reads it as before.
 */
function ownerOnly(path: string): void {
  for (const file of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    try {
      chmodSync(file, 0o600);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EPERM') throw err; // EPERM: not ours; SQLite says whether it can use it
    }
  }
}
export const DEFAULT_SQLITE_BUSY_TIMEOUT_MS = 5000;
export const DEFAULT_SQLITE_SYNCHRONOUS: SqliteSynchronous = 'FULL';
/**
 * 16 MiB, not more: the end of a commit costs SQLite's page cache a walk over every page it
 * holds whenever a b-tree balance in that commit renumbered pages. `balance_nonroot` moves a page
 * through the lock page's number (page 262,145 with 4 KiB pages) to swap two siblings, the cache
 * then takes that number for its highest page, and truncating the cache to the database's size
 * walks the whole hash table instead of the few slots past the end. Inserts into an index at
 * random places (`messages_history`, by conversation) do it in about 3 % of single-message
 * commits. With a full 64 MiB cache each such walk took 474 µs on average (5.1 ms at worst);
 * with 16 MiB 171 µs; on a store of 1,000,000 messages, commit p99 640 – 780 → 270 – 360 µs,
 * while a history read that misses the smaller cache pays a few tens of µs (bench/store.ts,
 * bench/RESULTS.md). `RTM_SQLITE_CACHE_MIB` sets another size.
 */
export const DEFAULT_SQLITE_CACHE_SIZE_KIB = 16384;
/** `PRAGMA synchronous` answers a number. */
const SYNCHRONOUS_NAMES: Record<number, string> = { 0: 'OFF', 1: 'NORMAL', 2: 'FULL', 3: 'EXTRA' };
/** Rows deleted per transaction by the retention sweep (appends interleave between chunks). */
const RETENTION_CHUNK = 5000;

type Row = Record<string, unknown>;
type Stmt = Database.Statement<unknown[], Row>;

interface PendingAppend {
  batch: readonly NewMessage[];
  resolve(results: AppendResult[]): void;
  reject(err: unknown): void;
}

/**
 * WAL size (pages) at which the checkpointer lets the WAL restart (see `WalCheckpointer`): about
 * 40 MiB of WAL file. Under load a restart then comes about once a second (5k P2P msgs/s write
 * ~12k pages/s); at rest the WAL stays as it is. 16000 did no better on the P2P bench.
 */
const WAL_RESTART_PAGES = 10000;

export class SqliteStore implements Store {
  readonly path: string;
  private readonly options: Required<Omit<SqliteStoreOptions, 'dataDir' | 'filename'>>;
  /** Commits appends on the event loop's connection (`:memory:`, writerThread false) and bulk loads. */
  private committer: AppendCommitter | undefined;
  private writer: SqliteWriterThread | undefined;
  private db: Database.Database | undefined;
  private stmts: ReturnType<SqliteStore['prepareStatements']> | undefined;
  /** Statements whose text depends on the query shape (number of mtypes), prepared once per shape. */
  private readonly shapedStmts = new Map<string, Stmt>();
  private pending: PendingAppend[] = [];
  private flushScheduled = false;
  private readonly clock: MessageClock;
  private checkpointer: WalCheckpointer | undefined;
  /** Why the last append commit failed, while no commit has succeeded since (see `writeProblem`). */
  private writeFailure: string | undefined;

  constructor(options: SqliteStoreOptions = {}) {
    const dataDir = options.dataDir ?? DEFAULT_SQLITE_DATA_DIR;
    this.path = dataDir === ':memory:' ? ':memory:' : join(dataDir, options.filename ?? DEFAULT_SQLITE_FILENAME);
    const synchronous = options.synchronous ?? DEFAULT_SQLITE_SYNCHRONOUS;
    if (synchronous !== 'FULL' && synchronous !== 'NORMAL') {
      throw new RangeError(`SqliteStore: synchronous must be 'FULL' or 'NORMAL', got ${String(synchronous)}`);
    }
    const busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_SQLITE_BUSY_TIMEOUT_MS;
    if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new RangeError(`SqliteStore: busyTimeoutMs must be a non-negative integer, got ${String(busyTimeoutMs)}`);
    }
    const cacheSizeKiB = options.cacheSizeKiB ?? DEFAULT_SQLITE_CACHE_SIZE_KIB;
    if (!Number.isInteger(cacheSizeKiB) || cacheSizeKiB < 0) {
      throw new RangeError(`SqliteStore: cacheSizeKiB must be a non-negative integer, got ${String(cacheSizeKiB)}`);
    }
    const checkpointEveryMs = options.checkpointEveryMs ?? 100;
    if (!Number.isInteger(checkpointEveryMs) || checkpointEveryMs < 0) {
      throw new RangeError(`SqliteStore: checkpointEveryMs must be a non-negative integer, got ${String(checkpointEveryMs)}`);
    }
    const walRestartPages = options.walRestartPages ?? WAL_RESTART_PAGES;
    if (!Number.isInteger(walRestartPages) || walRestartPages < 1) {
      throw new RangeError(`SqliteStore: walRestartPages must be a positive integer, got ${String(walRestartPages)}`);
    }
    this.options = {
      busyTimeoutMs,
      walRestartPages,
      synchronous,
      cacheSizeKiB,
      now: options.now ?? Date.now,
      checkpointEveryMs,
      writerThread: options.writerThread ?? false,
      exclusive: options.exclusive ?? true,
      onError: options.onError ?? (() => {}),
      onRecovery: options.onRecovery ?? (() => {}),
      onMigration: options.onMigration ?? (() => {}),
      onUpgrade: options.onUpgrade ?? (() => {}),
    };
    this.clock = new MessageClock(this.options.now);
  }

  // --- lifecycle -------------------------------------------------------------------------------

  async init(): Promise<void> {
    if (this.db) return;
    if (this.path !== ':memory:') mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const db = openConnection(this.path, this.options);
    try {
      if (this.path !== ':memory:') {
        ownerOnly(this.path); // before the WAL is made: SQLite gives it the database file's mode
        db.pragma('journal_mode = WAL');
      }
      db.pragma('foreign_keys = OFF');
      migrate(db, SQLITE_MIGRATIONS, this.options.onMigration, this.options.onUpgrade);
      this.db = db;
      this.stmts = this.prepareStatements(db);
      this.committer = new AppendCommitter(db);
      this.loadFilters(db);
      this.clock.resume(...clockOfLastProcess(db));
      const checkpointing = this.path !== ':memory:' && this.options.checkpointEveryMs > 0;
      if (checkpointing) {
        db.pragma(`wal_autocheckpoint = ${this.backstopPages}`);
        this.checkpointer = new WalCheckpointer(
          this.path,
          connectionName(this.path, this.options.exclusive),
          this.options.checkpointEveryMs,
          this.options.walRestartPages,
        );
        this.checkpointer.onError((m) => this.options.onError(`WAL checkpoint: ${m}`));
        this.checkpointer.onRecovery((m) => this.options.onRecovery(`WAL checkpoints work again (they failed with: ${m})`));
        // After this turn's commit: the frames since the worker's last checkpoint are few.
        this.checkpointer.onRestartWanted(() => setImmediate(() => this.checkpointForRestart()));
      }
      if (this.path !== ':memory:' && this.options.writerThread) {
        this.writer = new SqliteWriterThread(
          this.path,
          {
            synchronous: this.options.synchronous,
            cacheSizeKiB: this.options.cacheSizeKiB,
            busyTimeoutMs: this.options.busyTimeoutMs,
            walAutocheckpointPages: checkpointing ? this.backstopPages : 1000,
            exclusive: this.options.exclusive,
          },
          (m) => this.options.onError(m),
          (m) => this.options.onRecovery(m),
        );
      }
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** WAL size (pages) at which a commit checkpoints by itself when the checkpointer thread is on. */
  private get backstopPages(): number {
    return 4 * this.options.walRestartPages;
  }

  /** The last checkpoint before a WAL restart, on the writer's connection (see `WalCheckpointer`). */
  private checkpointForRestart(): void {
    try {
      this.db?.pragma('wal_checkpoint(PASSIVE)');
    } catch (err) {
      this.options.onError(`WAL checkpoint before a restart: ${(err as Error).message}`);
    }
  }

  /** A trivial query (the admin /healthz). */
  async ping(): Promise<void> {
    this.conn.prepare('SELECT 1').get();
  }

  /**
   * Why messages cannot be stored now, or undefined (the admin /healthz). A read (`ping`) answers
   * on a full disk, a read-only file or failing writes alike, so the store remembers how its
   * appends went: while the last commit failed, a probe write (`AppendCommitter.probe`, on the
   * connection that commits appends) decides. The probe ends the failure as soon as there is room
   * again, without waiting for a send (a balancer that took the node out sends none). Healthy, it
   * costs nothing: no probe, no write. With the writer thread on, a thread that cannot start is a
   * failure by itself.
   */
  async writeProblem(): Promise<string | undefined> {
    const thread = this.writer?.problem;
    if (thread) return thread;
    if (this.writeFailure === undefined) return undefined;
    let failure: string | undefined;
    if (this.writer) failure = await this.writer.probe();
    else {
      try {
        this.committer!.probe();
      } catch (err) {
        failure = (err as Error).message;
      }
    }
    if (failure === undefined) this.writesWork();
    else this.writesFail(failure);
    return failure;
  }

  /**
   * Appends failed: said once per episode (the failed quests are logged by the gates, one line per
   * kind per 10 s), with what the operator needs to know.
   */
  private writesFail(reason: string): void {
    if (this.writeFailure === undefined) {
      this.options.onError(`SQLite cannot write (${reason}): sends are answered with an error until a write succeeds`);
    }
    this.writeFailure = reason;
  }

  private writesWork(): void {
    if (this.writeFailure === undefined) return;
    this.writeFailure = undefined;
    this.options.onRecovery('SQLite writes work again');
  }

  /** Notes how a group commit went: failing while all its batches failed, working once one committed. */
  private noteCommit(outcomes: readonly BatchOutcome[]): void {
    const failed = outcomes.find((o): o is { error: string } => 'error' in o);
    if (!failed) this.writesWork();
    else if (outcomes.every((o) => 'error' in o)) this.writesFail(failed.error);
  }

  /** Opened exclusively, the file is this server's alone: no other can use it meanwhile. */
  get soleServer(): boolean {
    return this.options.exclusive;
  }

  /**
   * What the connection runs with, read back from SQLite (journal mode, synchronous, page cache)
   * and from the options (exclusive access, writer thread, checkpoints).
   */
  describe(): Record<string, string | number | boolean> {
    const db = this.conn;
    const pragma = (name: string): unknown => db.pragma(name, { simple: true });
    // Negative: KiB; positive: pages.
    const cacheSize = Number(pragma('cache_size'));
    const cacheKiB = cacheSize < 0 ? -cacheSize : (cacheSize * Number(pragma('page_size'))) / 1024;
    const synchronous = Number(pragma('synchronous'));
    return {
      store: 'sqlite',
      path: this.path,
      journalMode: String(pragma('journal_mode')),
      synchronous: SYNCHRONOUS_NAMES[synchronous] ?? String(synchronous),
      cacheMiB: Math.round((cacheKiB / 1024) * 100) / 100,
      exclusive: this.path !== ':memory:' && this.options.exclusive,
      writerThread: this.writer !== undefined,
      checkpointEveryMs: this.checkpointer ? this.options.checkpointEveryMs : 0,
    };
  }

  async close(): Promise<void> {
    if (!this.db) return;
    this.flush();
    const writer = this.writer;
    this.writer = undefined;
    await writer?.stop();
    try {
      this.db.prepare(RECORD_CLOCK_HIGH).run(this.clock.highestMark);
    } catch (err) {
      this.options.onError(`recording the unread clock at close: ${(err as Error).message}`);
    }
    const checkpointer = this.checkpointer;
    this.checkpointer = undefined;
    await checkpointer?.stop();
    this.db.close();
    this.db = undefined;
    this.stmts = undefined;
    this.committer = undefined;
    this.shapedStmts.clear();
  }

  /**
   * A consistent copy of the database in `destination` (a new file), taken while the store runs:
   * through a connection of its own that holds one snapshot from the first step of the copy to
   * the last (`sqlite-backup.ts`), so commits, on the event loop or in the writer thread, go on
   * meanwhile and never make the copy start over.
   */
  async backup(destination: string, options: BackupOptions = {}): Promise<BackupStats> {
    if (this.path === ':memory:') throw new Error('SqliteStore: an in-memory database has no file to back up');
    if (!this.db) throw new Error('SqliteStore: init() has not been called (or the store is closed)');
    return backupDatabase(
      { path: this.path, exclusive: this.options.exclusive, busyTimeoutMs: this.options.busyTimeoutMs },
      destination,
      options,
    );
  }

  /** Schema versions applied, in order (diagnostics). */
  schemaVersions(): number[] {
    return this.s.schemaVersions.all().map((r) => Number(r['version']));
  }

  private get s(): NonNullable<SqliteStore['stmts']> {
    if (!this.stmts) throw new Error('SqliteStore: init() has not been called (or the store is closed)');
    return this.stmts;
  }

  private get conn(): Database.Database {
    if (!this.db) throw new Error('SqliteStore: init() has not been called (or the store is closed)');
    return this.db;
  }

  private prepareStatements(db: Database.Database) {
    const p = (sql: string): Stmt => db.prepare<unknown[], Row>(sql);
    return {
      schemaVersions: p('SELECT version FROM schema_migrations ORDER BY version'),
      byKey: p(`SELECT ${MESSAGE_COLUMNS}, deleted FROM messages WHERE pid = ? AND kind = ? AND from_id = ? AND to_id = ? AND mid = ?`),
      deleteMessage: p(
        'UPDATE messages SET deleted = 1 WHERE pid = ? AND kind = ? AND from_id = ? AND to_id = ? AND mid = ? AND deleted = 0',
      ),
      /** Last id stored before second `sec` (everything up to it has mtime < sec * 1000). */
      lastIdBefore: p('SELECT last_id FROM seconds WHERE sec < ? ORDER BY sec DESC LIMIT 1'),
      /**
       * Last id stored in or before second `sec`; `newest` when that is the newest row, which may
       * lag behind the newest message (sqlite-appender.ts): every message is then in or before `sec`.
       */
      lastIdThrough: p(
        'SELECT last_id, sec = (SELECT MAX(sec) FROM seconds) AS newest FROM seconds WHERE sec <= ? ORDER BY sec DESC LIMIT 1',
      ),

      // Newest activity first, by each pair's newest id in messages_history (one index seek per
      // pair): p2p_pairs.last_id is only an id of the pair's newest second (sqlite-appender.ts),
      // and stays the order should retention have removed all of a pair's messages.
      p2pPeers: p(
        `SELECT peer FROM (
           SELECT hi AS peer, lo, hi, last_id FROM p2p_pairs WHERE pid = @pid AND lo = @uid AND hidden_lo = 0
           UNION ALL SELECT lo AS peer, lo, hi, last_id FROM p2p_pairs INDEXED BY p2p_pairs_hi WHERE pid = @pid AND hi = @uid AND lo <> hi AND hidden_hi = 0
         ) AS c
         ORDER BY COALESCE((SELECT m.id FROM messages AS m INDEXED BY messages_history
                            WHERE m.pid = @pid AND m.kind = 1 AND m.conv_lo = c.lo AND m.conv_hi = c.hi ORDER BY m.id DESC LIMIT 1), c.last_id) DESC`,
      ),
      hideLo: p('UPDATE p2p_pairs SET hidden_lo = 1 WHERE pid = ? AND lo = ? AND hi = ?'),
      hideHi: p('UPDATE p2p_pairs SET hidden_hi = 1 WHERE pid = ? AND lo = ? AND hi = ?'),
      baselineGet: p('SELECT logout_time, clear_time FROM unread_baselines WHERE pid = ? AND uid = ?'),
      logoutSet: p(
        'INSERT INTO unread_baselines (pid, uid, logout_time) VALUES (?, ?, ?) ON CONFLICT (pid, uid) DO UPDATE SET logout_time = max(COALESCE(logout_time, excluded.logout_time), excluded.logout_time)',
      ),
      clearSet: p(
        'INSERT INTO unread_baselines (pid, uid, clear_time) VALUES (?, ?, ?) ON CONFLICT (pid, uid) DO UPDATE SET clear_time = max(COALESCE(clear_time, excluded.clear_time), excluded.clear_time)',
      ),

      presenceEndSave: p(
        'INSERT INTO presence_ends (pid, uid, ended_at, deadline) VALUES (?, ?, ?, ?) ON CONFLICT (pid, uid) DO UPDATE SET ended_at = excluded.ended_at, deadline = excluded.deadline',
      ),
      // Looked up first (a read takes no lock): nearly every login finds none.
      presenceEndFind: p('SELECT 1 FROM presence_ends WHERE pid = ? AND uid = ?'),
      presenceEndTake: p('DELETE FROM presence_ends WHERE pid = ? AND uid = ? RETURNING pid, uid, ended_at, deadline'),
      presenceEndsDue: p('SELECT 1 FROM presence_ends WHERE deadline <= ? LIMIT 1'),
      presenceEndsTakeDue: p(
        `DELETE FROM presence_ends WHERE (pid, uid) IN (SELECT pid, uid FROM presence_ends WHERE deadline <= ? ORDER BY deadline LIMIT ?)
         RETURNING pid, uid, ended_at, deadline`,
      ),

      presenceHold: p(
        'INSERT INTO node_presences (node, pid, uid, ended_at) VALUES (?, ?, ?, ?) ON CONFLICT (node, pid, uid) DO UPDATE SET ended_at = excluded.ended_at',
      ),
      presenceHolders: p(
        'SELECT p.node, p.ended_at, n.seen_at FROM node_presences p LEFT JOIN nodes n ON n.node = p.node WHERE p.pid = ? AND p.uid = ? ORDER BY p.node',
      ),
      presenceRelease: p('DELETE FROM node_presences WHERE node = ? AND pid = ? AND uid = ?'),
      // A claim's columns, on a join: the version up, `began` moved to it when no presence went on.
      presenceJoin: p(
        `INSERT INTO presences (pid, uid, version, began, live) VALUES (?, ?, 1, 1, 1)
         ON CONFLICT (pid, uid) DO UPDATE SET version = version + 1, began = CASE WHEN live THEN began ELSE version + 1 END, live = 1
         RETURNING version, began`,
      ),
      presenceClaim: p('SELECT version, live FROM presences WHERE pid = ? AND uid = ?'),
      presenceEnd: p('UPDATE presences SET version = version + 1, live = 0 WHERE pid = ? AND uid = ? AND version = ? AND live = 1'),
      nodeUpdate: p('UPDATE nodes SET seen_at = ?, mark = ? WHERE node = ?'),
      nodeInsert: p('INSERT INTO nodes (node, seen_at, mark) VALUES (?, ?, ?)'),
      nodeDrop: p('DELETE FROM nodes WHERE node = ?'),
      nodesLive: p('SELECT node FROM nodes WHERE seen_at >= ? ORDER BY node'),
      nodePresencesDrop: p('DELETE FROM node_presences WHERE node = ?'),
      nodesDead: p('SELECT node, seen_at, mark FROM nodes WHERE seen_at < ? ORDER BY seen_at'),
      orphansTake: p(
        `DELETE FROM node_presences WHERE node = @node AND (pid, uid) IN (SELECT pid, uid FROM node_presences WHERE node = @node LIMIT @limit)
         RETURNING pid, uid, COALESCE(ended_at, @mark) AS ended_at, @deadline AS deadline`,
      ),

      tokenGet: p('SELECT token FROM tokens WHERE pid = ? AND uid = ?'),
      // The no-op update makes RETURNING give the row that won: the existing token, else the new one.
      tokenIssue: p(
        'INSERT INTO tokens (pid, uid, token) VALUES (?, ?, ?) ON CONFLICT (pid, uid) DO UPDATE SET token = token RETURNING token',
      ),
      tokenDelete: p('DELETE FROM tokens WHERE pid = ? AND uid = ?'),

      // A member added again keeps the join time: their unread counts go on from it.
      groupAdd: p('INSERT OR IGNORE INTO group_members (pid, gid, uid, joined_at) VALUES (?, ?, ?, ?)'),
      groupRemove: p('DELETE FROM group_members WHERE pid = ? AND gid = ? AND uid = ?'),
      groupDelete: p('DELETE FROM group_members WHERE pid = ? AND gid = ?'),
      groupMembers: p('SELECT uid FROM group_members WHERE pid = ? AND gid = ? ORDER BY uid'),
      groupCount: p('SELECT COUNT(*) AS n FROM group_members WHERE pid = ? AND gid = ?'),
      groupIsMember: p('SELECT 1 FROM group_members WHERE pid = ? AND gid = ? AND uid = ?'),
      userGroups: p('SELECT gid FROM group_members WHERE pid = ? AND uid = ? ORDER BY gid'),
      // A skip scan of the primary key (pid, gid, uid): each step seeks the next gid, whatever the
      // size of the groups. Stops at @upTo (≥ 1); the row after the last group has a NULL gid.
      groupsCount: p(
        `WITH RECURSIVE g (gid, n) AS (
           SELECT (SELECT gid FROM group_members WHERE pid = @pid ORDER BY gid LIMIT 1), 1
           UNION ALL
           SELECT (SELECT m.gid FROM group_members AS m WHERE m.pid = @pid AND m.gid > g.gid ORDER BY m.gid LIMIT 1), g.n + 1
             FROM g WHERE g.gid IS NOT NULL AND g.n < @upTo
         )
         SELECT COUNT(gid) AS n FROM g`,
      ),

      roomAdd: p(
        'INSERT INTO room_members (pid, rid, uid, joined_at) VALUES (?, ?, ?, ?) ON CONFLICT (pid, rid, uid) DO UPDATE SET joined_at = excluded.joined_at',
      ),
      roomRemove: p('DELETE FROM room_members WHERE pid = ? AND rid = ? AND uid = ?'),
      roomMembers: p('SELECT uid FROM room_members WHERE pid = ? AND rid = ? ORDER BY uid'),
      roomCounts: p('SELECT rid, COUNT(*) AS n FROM room_members WHERE pid = ? AND rid IN (SELECT value FROM json_each(?)) GROUP BY rid'),
      userRooms: p('SELECT rid FROM room_members WHERE pid = ? AND uid = ? ORDER BY rid'),
      clearUserRooms: p('DELETE FROM room_members WHERE pid = ? AND uid = ? AND joined_at <= ? RETURNING rid'),

      banSet: p(
        'INSERT INTO bans (pid, scope, uid, target, until) VALUES (?, ?, ?, ?, ?) ON CONFLICT (pid, scope, uid, target) DO UPDATE SET until = excluded.until',
      ),
      banDelete: p('DELETE FROM bans WHERE pid = ? AND scope = ? AND uid = ? AND target = ?'),
      banCheck: p(
        'SELECT 1 FROM bans WHERE pid = ? AND scope = ? AND uid = ? AND target IN (?, 0) AND (until IS NULL OR until > ?) LIMIT 1',
      ),
      blackSet: p(
        'INSERT INTO project_blacks (pid, uid, until) VALUES (?, ?, ?) ON CONFLICT (pid, uid) DO UPDATE SET until = excluded.until',
      ),
      blackDelete: p('DELETE FROM project_blacks WHERE pid = ? AND uid = ?'),
      blackCheck: p('SELECT 1 FROM project_blacks WHERE pid = ? AND uid = ? AND (until IS NULL OR until > ?)'),
      kickoutAdd: p('INSERT INTO kickouts (pid, uid, at, endpoint) VALUES (?, ?, ?, ?)'),
      kickoutsForget: p('DELETE FROM kickouts WHERE at < ?'),
      kickoutsSince: p('SELECT pid, uid, at, endpoint FROM kickouts WHERE at >= ? ORDER BY at LIMIT ?'),

      friendAdd: p('INSERT OR IGNORE INTO friends (pid, uid, friend) VALUES (?, ?, ?)'),
      friendRemove: p('DELETE FROM friends WHERE pid = ? AND uid = ? AND friend = ?'),
      friends: p('SELECT friend FROM friends WHERE pid = ? AND uid = ? ORDER BY friend'),
      filterFriends: p(
        'SELECT friend FROM friends WHERE pid = ? AND uid = ? AND friend IN (SELECT value FROM json_each(?)) ORDER BY friend',
      ),
      blacksAdd: p('INSERT OR IGNORE INTO blacks (pid, uid, black) VALUES (?, ?, ?)'),
      blacksRemove: p('DELETE FROM blacks WHERE pid = ? AND uid = ? AND black = ?'),
      blacks: p('SELECT black FROM blacks WHERE pid = ? AND uid = ? ORDER BY black'),
      blockedBy: p('SELECT uid FROM blacks WHERE pid = ? AND black = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid'),

      infoSet: p(
        `INSERT INTO infos (pid, kind, id, oinfo, pinfo) VALUES (@pid, @kind, @id, COALESCE(@oinfo, ''), COALESCE(@pinfo, ''))
         ON CONFLICT (pid, kind, id) DO UPDATE SET oinfo = COALESCE(@oinfo, oinfo), pinfo = COALESCE(@pinfo, pinfo)`,
      ),
      infoGet: p('SELECT oinfo, pinfo FROM infos WHERE pid = ? AND kind = ? AND id = ?'),
      infoDelete: p('DELETE FROM infos WHERE pid = ? AND kind = ? AND id = ?'),
      openInfos: p("SELECT id, oinfo FROM infos WHERE pid = ? AND kind = ? AND id IN (SELECT value FROM json_each(?)) AND oinfo <> ''"),
      dataSet: p(
        'INSERT INTO user_data (pid, uid, key, val) VALUES (?, ?, ?, ?) ON CONFLICT (pid, uid, key) DO UPDATE SET val = excluded.val',
      ),
      dataGet: p('SELECT val FROM user_data WHERE pid = ? AND uid = ? AND key = ?'),
      dataDelete: p('DELETE FROM user_data WHERE pid = ? AND uid = ? AND key = ?'),

      // Oldest first by rowid below an id bound from `seconds`; the edge second is filtered by mtime.
      retentionAge: p('DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE id < ? AND mtime < ? ORDER BY id LIMIT ?)'),
      retentionOversized: p(
        'SELECT pid, kind, conv_lo, conv_hi FROM messages INDEXED BY messages_history GROUP BY pid, kind, conv_lo, conv_hi HAVING COUNT(*) > ?',
      ),
      retentionCutoff: p(
        'SELECT id FROM messages INDEXED BY messages_history WHERE pid = ? AND kind = ? AND conv_lo = ? AND conv_hi = ? ORDER BY id DESC LIMIT 1 OFFSET ?',
      ),
      retentionTrim: p(
        `DELETE FROM messages WHERE id IN (SELECT id FROM messages INDEXED BY messages_history
           WHERE pid = ? AND kind = ? AND conv_lo = ? AND conv_hi = ? AND id <= ? ORDER BY id LIMIT ?)`,
      ),
    };
  }

  // --- messages --------------------------------------------------------------------------------

  append(batch: readonly NewMessage[]): Promise<AppendResult[]> {
    try {
      if (!this.db) throw new Error('SqliteStore: init() has not been called (or the store is closed)');
      for (const m of batch) checkNewMessage(m);
    } catch (err) {
      return Promise.reject(err);
    }
    if (batch.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.pending.push({ batch, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Commits every pending append of this turn as one group (see `AppendCommitter`). */
  private flush(): void {
    this.flushScheduled = false;
    const pending = this.pending;
    if (pending.length === 0) return;
    this.pending = [];
    const batches = pending.map((p) => p.batch);
    const clock = this.clock.take();
    if (this.writer) {
      void this.writer.commit(batches, clock).then((outcomes) => {
        this.clock.settled(clock);
        this.noteCommit(outcomes);
        settle(pending, outcomes);
      });
    } else {
      const outcomes = this.committer!.commitBatches(batches, clock);
      this.clock.settled(clock);
      this.noteCommit(outcomes);
      settle(pending, outcomes);
    }
  }

  unreadMark(): bigint {
    return this.clock.mark();
  }

  roomsCut(): bigint {
    return this.clock.cut();
  }

  async history(query: HistoryQuery): Promise<StoredMessage[]> {
    const range = this.historyRange(query);
    return range ? this.historyRows(query, range) : [];
  }

  async historyWithin(query: HistoryQuery, maxScan: number): Promise<HistoryWindow> {
    const range = this.historyRange(query);
    if (!range) return { messages: [] };
    if (!query.mtypes?.length) return { messages: this.historyRows(query, range) };
    return historyWindow(
      query.num,
      maxScan,
      (n) => this.historyEdge(query, range, n),
      (edge) => this.historyRows(query, throughEdge(range, query.desc, edge)),
    );
  }

  private historyRange(query: HistoryQuery): HistoryRange | undefined {
    return historyRange(query, this.idBounds(query.begin, query.end));
  }

  private historyRows(query: HistoryQuery, range: HistoryRange): StoredMessage[] {
    const plan = this.historyPlan(query, range);
    return plan.stmt.all(...plan.params).map(rowToMessage);
  }

  /** The id of the n-th row of the range in page order (an index-only read), if it has n. */
  private historyEdge(query: HistoryQuery, range: HistoryRange, n: number): bigint | undefined {
    const row = this.shaped(
      `SELECT id FROM messages INDEXED BY messages_history
       WHERE pid = ? AND kind = ? AND conv_lo = ? AND conv_hi = ? AND id > ? AND id < ?
       ORDER BY id ${query.desc ? 'DESC' : 'ASC'} LIMIT 1 OFFSET ?`,
    ).get(...range.key, range.lo, range.hi, n - 1);
    return row?.['id'] as bigint | undefined;
  }

  /**
   * `EXPLAIN QUERY PLAN` lines of the statement `history(query)` runs (diagnostics and tests: it
   * must search `messages_history`, never scan `messages` nor sort in a temp b-tree).
   */
  explainHistory(query: HistoryQuery): string[] {
    const range = this.historyRange(query);
    return range ? this.explain(this.historyPlan(query, range)) : [];
  }

  /** `EXPLAIN QUERY PLAN` lines of `unreadP2P(query)` (tests: index searches only, no scan). */
  explainUnreadP2P(query: UnreadQuery & { peers?: readonly bigint[] }): string[] {
    return this.explain(this.unreadP2PPlan(query));
  }

  private explain(plan: { stmt: Stmt; params: unknown[] } | undefined): string[] {
    if (!plan) return [];
    const sql = `EXPLAIN QUERY PLAN ${plan.stmt.source}`;
    return this.conn
      .prepare<unknown[], Row>(sql)
      .all(...plan.params)
      .map((r) => String(r['detail']));
  }

  private historyPlan(query: HistoryQuery, range: HistoryRange): { stmt: Stmt; params: unknown[] } {
    const mtypes = query.mtypes ?? [];
    const stmt = this.shaped(
      `SELECT ${MESSAGE_COLUMNS} FROM messages INDEXED BY messages_history
       WHERE pid = ? AND kind = ? AND conv_lo = ? AND conv_hi = ? AND id > ? AND id < ? AND deleted = 0${mtimeWindow(query.begin, query.end)}${mtypeFilter(mtypes)}
       ORDER BY id ${query.desc ? 'DESC' : 'ASC'} LIMIT ?`,
    );
    return { stmt, params: [...range.key, range.lo, range.hi, ...mtimeParams(query.begin, query.end), ...mtypes, query.num] };
  }

  /**
   * Exclusive id bounds (lo, hi) equivalent to the inclusive mtime window [begin, end], or
   * undefined when the window holds no message. Exact because mtime never decreases with id.
   * The newest `seconds` row may lag behind the newest message (its second is still open): as
   * `lo` it only lowers the bound, and as `hi` it is read as "no bound".
   */
  private idBounds(begin: bigint | undefined, end: bigint | undefined): { lo: bigint; hi: bigint } | undefined {
    // Second granularity: the bounds may include the edge seconds' other messages, so every
    // query that uses them also filters on mtime (see mtimeWindow).
    let lo = 0n;
    let hi = 2n ** 63n - 1n;
    if (begin !== undefined && begin !== 0n) {
      const row = this.s.lastIdBefore.get(floorDiv(begin, 1000n));
      if (row) lo = row['last_id'] as bigint;
    }
    if (end !== undefined && end !== 0n) {
      const row = this.s.lastIdThrough.get(floorDiv(end, 1000n));
      if (!row) return undefined;
      if (row['newest'] !== 1n) hi = (row['last_id'] as bigint) + 1n;
    }
    return lo < hi ? { lo, hi } : undefined;
  }

  async getMessage(key: MessageKey): Promise<StoredMessage | undefined> {
    const row = this.s.byKey.get(key.pid, key.kind, key.from, key.to, key.mid);
    return row && row['deleted'] === 0n ? rowToMessage(row) : undefined;
  }

  async deleteMessage(key: MessageKey): Promise<boolean> {
    return this.s.deleteMessage.run(key.pid, key.kind, key.from, key.to, key.mid).changes > 0;
  }

  async countMessages(query: CountQuery): Promise<{ sender: number; num: number }> {
    const bounds = this.idBounds(query.begin, query.end);
    if (!bounds) return { sender: 0, num: 0 };
    const mtypes = query.mtypes ?? [];
    const row = this.shaped(
      `SELECT COUNT(DISTINCT from_id) AS sender, COUNT(*) AS num FROM messages INDEXED BY messages_history
       WHERE pid = ? AND kind = ? AND conv_lo = ? AND conv_hi = 0 AND id > ? AND id < ? AND deleted = 0${mtimeWindow(query.begin, query.end)}${mtypeFilter(mtypes)}`,
    ).get(query.pid, query.kind, query.to, bounds.lo, bounds.hi, ...mtimeParams(query.begin, query.end), ...mtypes)!;
    return { sender: Number(row['sender']), num: Number(row['num']) };
  }

  // --- unread and conversations ----------------------------------------------------------------

  async unreadP2P(query: UnreadQuery & { peers?: readonly bigint[] }): Promise<Map<bigint, UnreadCount>> {
    const plan = this.unreadP2PPlan(query);
    return plan ? unreadMap(plan.stmt.all(...plan.params)) : new Map();
  }

  private unreadP2PPlan(query: UnreadQuery & { peers?: readonly bigint[] }): { stmt: Stmt; params: unknown[] } | undefined {
    if (query.peers?.length === 0) return undefined;
    // mtime > since ⇔ id above the bound idBounds derives (mtime never decreases with id).
    const bounds = this.idBounds(query.since + 1n, undefined);
    if (!bounds) return undefined;
    // The conversations of uid that changed after the bound (p2p_pairs.last_id), then each one's
    // messages after it in messages_history: index ranges only, no index of its own to keep up.
    // last_id may lag the pair's newest id, but only within that id's second, and the bound is
    // the last id before a whole second (idBounds): a pair with a message after it is never missed.
    const { pid, uid } = query;
    const params: unknown[] = [pid, uid, bounds.lo, pid, uid, bounds.lo, pid, bounds.lo, uid, query.since];
    let filter = '';
    if (query.peers) {
      filter += ' AND m.from_id IN (SELECT value FROM json_each(?))';
      params.push(idsJson(query.peers));
    }
    const mtypes = query.mtypes ?? [];
    filter += mtypeFilter(mtypes, 'm.');
    params.push(...mtypes);
    const stmt = this.shaped(
      `SELECT m.from_id AS k, COUNT(*) AS n, MAX(m.mtime) AS t
       FROM (SELECT lo, hi FROM p2p_pairs WHERE pid = ? AND lo = ? AND hi <> lo AND last_id > ?
             UNION ALL SELECT lo, hi FROM p2p_pairs INDEXED BY p2p_pairs_hi WHERE pid = ? AND hi = ? AND lo <> hi AND last_id > ?) AS c
       JOIN messages AS m INDEXED BY messages_history
         ON m.pid = ? AND m.kind = 1 AND m.conv_lo = c.lo AND m.conv_hi = c.hi AND m.id > ?
       WHERE m.to_id = ? AND m.mtime > ? AND m.deleted = 0${filter}
       GROUP BY m.from_id`,
    );
    return { stmt, params };
  }

  async unreadGroups(query: UnreadQuery & { gids: readonly bigint[] }): Promise<Map<bigint, UnreadCount>> {
    if (query.gids.length === 0) return new Map();
    // mtime > since ⇔ id above the bound idBounds derives (mtime never decreases with id).
    const bounds = this.idBounds(query.since + 1n, undefined);
    if (!bounds) return new Map();
    const mtypes = query.mtypes ?? [];
    // Of the groups uid is in, the messages stored after both `since` and uid's join.
    const rows = this.shaped(
      `SELECT m.conv_lo AS k, COUNT(*) AS n, MAX(m.mtime) AS t
       FROM group_members AS g
       JOIN messages AS m INDEXED BY messages_history
         ON m.pid = g.pid AND m.kind = ? AND m.conv_lo = g.gid AND m.conv_hi = 0 AND m.id > ?
       WHERE g.pid = ? AND g.uid = ? AND g.gid IN (SELECT value FROM json_each(?))
         AND m.mtime > MAX(?, g.joined_at) AND m.from_id <> g.uid AND m.deleted = 0${mtypeFilter(mtypes, 'm.')}
       GROUP BY m.conv_lo`,
    ).all(MessageKind.GROUP, bounds.lo, query.pid, query.uid, idsJson(query.gids), query.since, ...mtypes);
    return unreadMap(rows);
  }

  async p2pPeers(pid: number, uid: bigint): Promise<bigint[]> {
    return this.s.p2pPeers.all({ pid, uid }).map((r) => r['peer'] as bigint);
  }

  async removeP2PSession(pid: number, uid: bigint, peer: bigint): Promise<void> {
    if (uid <= peer) this.s.hideLo.run(pid, uid, peer);
    if (uid >= peer) this.s.hideHi.run(pid, peer, uid);
  }

  async getUnreadBaseline(pid: number, uid: bigint): Promise<UnreadBaseline> {
    const row = this.s.baselineGet.get(pid, uid);
    const out: UnreadBaseline = {};
    if (row?.['logout_time'] != null) out.logoutTime = row['logout_time'] as bigint;
    if (row?.['clear_time'] != null) out.clearTime = row['clear_time'] as bigint;
    return out;
  }

  async setClearTime(pid: number, uid: bigint, ms: bigint): Promise<void> {
    this.s.clearSet.run(pid, uid, ms);
  }

  async savePresenceEnds(ends: readonly PendingPresenceEnd[]): Promise<void> {
    this.tx(() => {
      for (const e of ends) this.s.presenceEndSave.run(e.pid, e.uid, e.endedAt, e.deadline);
    });
  }

  async takePresenceEnd(pid: number, uid: bigint): Promise<PendingPresenceEnd | undefined> {
    if (!this.s.presenceEndFind.get(pid, uid)) return undefined;
    return presenceEnds(this.s.presenceEndTake.all(pid, uid))[0];
  }

  async takeExpiredPresenceEnds(now: bigint, limit: number): Promise<PendingPresenceEnd[]> {
    if (!this.s.presenceEndsDue.get(now)) return [];
    return presenceEnds(this.s.presenceEndsTakeDue.all(now, limit));
  }

  async recordPresences(node: string, changes: readonly NodePresence[], replace = false): Promise<void> {
    this.tx(() => {
      if (replace) this.s.nodePresencesDrop.run(node);
      for (const c of changes) {
        if (c.held) this.s.presenceHold.run(node, c.pid, c.uid, c.endedAt ?? null);
        else this.s.presenceRelease.run(node, c.pid, c.uid);
      }
    });
  }

  async presenceHolders(pid: number, uid: bigint): Promise<PresenceHolder[]> {
    return presenceHolders(this.s.presenceHolders.all(pid, uid));
  }

  async joinPresence(pid: number, uid: bigint, node: string): Promise<PresenceJoin> {
    let row: Row | undefined;
    this.tx(() => {
      this.s.presenceHold.run(node, pid, uid, null);
      [row] = this.s.presenceJoin.all(pid, uid);
    });
    const version = row!['version'] as bigint;
    return { version, began: row!['began'] === version };
  }

  async presenceClaim(pid: number, uid: bigint): Promise<PresenceClaim> {
    const row = this.s.presenceClaim.get(pid, uid);
    return row ? { version: row['version'] as bigint, live: row['live'] === 1n } : { version: 0n, live: false };
  }

  async endPresence(pid: number, uid: bigint, version: bigint, endedAt: bigint, roomsThrough: bigint): Promise<bigint[] | undefined> {
    let rids: bigint[] | undefined;
    this.tx(() => {
      if (this.s.presenceEnd.run(pid, uid, version).changes === 0) return;
      this.s.logoutSet.run(pid, uid, endedAt);
      rids = this.s.clearUserRooms.all(pid, uid, roomsThrough).map((r) => r['rid'] as bigint);
    });
    return rids?.sort(compareBigint);
  }

  async touchNode(node: string, now: bigint, mark: bigint): Promise<boolean> {
    if (this.s.nodeUpdate.run(now, mark, node).changes > 0) return true;
    this.s.nodeInsert.run(node, now, mark);
    return false;
  }

  async liveNodes(since: bigint): Promise<string[]> {
    return this.s.nodesLive.all(since).map((r) => r['node'] as string);
  }

  async dropNode(node: string): Promise<void> {
    this.tx(() => {
      this.s.nodePresencesDrop.run(node);
      this.s.nodeDrop.run(node);
    });
  }

  async takeOrphanedPresences(deadBefore: bigint, graceMs: bigint, limit: number): Promise<PendingPresenceEnd[]> {
    const dead = this.s.nodesDead.all(deadBefore);
    if (dead.length === 0) return []; // nearly every sweep: no write, no lock
    const rows: Row[] = [];
    this.tx(() => {
      for (const d of dead) {
        const left = limit - rows.length;
        if (left <= 0) break;
        const deadline = (d['seen_at'] as bigint) + graceMs;
        const taken = this.s.orphansTake.all({ node: d['node'], limit: left, mark: d['mark'], deadline });
        rows.push(...taken);
        if (taken.length < left) this.s.nodeDrop.run(d['node']); // it holds none now
      }
    });
    return presenceEnds(rows);
  }

  // --- tokens ----------------------------------------------------------------------------------

  async getToken(pid: number, uid: bigint): Promise<string | undefined> {
    return this.s.tokenGet.get(pid, uid)?.['token'] as string | undefined;
  }

  async issueToken(pid: number, uid: bigint, candidate: string): Promise<string> {
    // all(), not get(): get() stops after the first row and resets the statement, and the commit
    // that the reset does loses its error (a full disk): a token would be answered, never stored.
    return this.s.tokenIssue.all(pid, uid, candidate)[0]!['token'] as string;
  }

  async deleteToken(pid: number, uid: bigint): Promise<void> {
    this.s.tokenDelete.run(pid, uid);
  }

  // --- groups ----------------------------------------------------------------------------------

  async addGroupMembers(pid: number, gid: bigint, uids: readonly bigint[]): Promise<void> {
    const joinedAt = this.clock.mark();
    this.tx(() => {
      for (const uid of uids) this.s.groupAdd.run(pid, gid, uid, joinedAt);
    });
  }

  async removeGroupMembers(pid: number, gid: bigint, uids: readonly bigint[]): Promise<void> {
    this.tx(() => {
      for (const uid of uids) this.s.groupRemove.run(pid, gid, uid);
    });
  }

  async deleteGroup(pid: number, gid: bigint): Promise<void> {
    this.tx(() => {
      this.s.groupDelete.run(pid, gid);
      this.s.infoDelete.run(pid, 'group', gid);
    });
  }

  async groupMembers(pid: number, gid: bigint): Promise<bigint[]> {
    return this.s.groupMembers.all(pid, gid).map((r) => r['uid'] as bigint);
  }

  async groupMemberCount(pid: number, gid: bigint): Promise<number> {
    return Number(this.s.groupCount.get(pid, gid)!['n']);
  }

  async isGroupMember(pid: number, gid: bigint, uid: bigint): Promise<boolean> {
    return this.s.groupIsMember.get(pid, gid, uid) !== undefined;
  }

  async userGroups(pid: number, uid: bigint): Promise<bigint[]> {
    return this.s.userGroups.all(pid, uid).map((r) => r['gid'] as bigint);
  }

  async countGroups(pid: number, upTo = Number.MAX_SAFE_INTEGER): Promise<number> {
    if (upTo <= 0) return 0;
    return Number(this.s.groupsCount.get({ pid, upTo })!['n']);
  }

  /** `EXPLAIN QUERY PLAN` lines of `countGroups` (tests: primary-key searches only, no scan). */
  explainCountGroups(pid: number): string[] {
    return this.explain({ stmt: this.s.groupsCount, params: [{ pid, upTo: 10 }] });
  }

  // --- rooms -----------------------------------------------------------------------------------

  async addRoomMember(pid: number, rid: bigint, uid: bigint): Promise<void> {
    this.s.roomAdd.run(pid, rid, uid, this.clock.stamp());
  }

  async removeRoomMember(pid: number, rid: bigint, uid: bigint): Promise<void> {
    this.s.roomRemove.run(pid, rid, uid);
  }

  async roomMembers(pid: number, rid: bigint): Promise<bigint[]> {
    return this.s.roomMembers.all(pid, rid).map((r) => r['uid'] as bigint);
  }

  async roomCounts(pid: number, rids: readonly bigint[]): Promise<Map<bigint, number>> {
    const out = new Map<bigint, number>();
    if (rids.length === 0) return out;
    for (const r of this.s.roomCounts.all(pid, idsJson(rids))) out.set(r['rid'] as bigint, Number(r['n']));
    return out;
  }

  async userRooms(pid: number, uid: bigint): Promise<bigint[]> {
    return this.s.userRooms.all(pid, uid).map((r) => r['rid'] as bigint);
  }

  // --- bans and project blacklist --------------------------------------------------------------

  async addBan(pid: number, scope: BanScope, target: bigint, uid: bigint, until?: bigint): Promise<void> {
    this.s.banSet.run(pid, scope, uid, target, until ?? null);
  }

  async removeBan(pid: number, scope: BanScope, target: bigint, uid: bigint): Promise<void> {
    this.s.banDelete.run(pid, scope, uid, target);
  }

  async isBanned(pid: number, scope: BanScope, target: bigint, uid: bigint, now: bigint): Promise<boolean> {
    return this.s.banCheck.get(pid, scope, uid, target, now) !== undefined;
  }

  async addProjectBlack(pid: number, uid: bigint, until?: bigint): Promise<void> {
    this.s.blackSet.run(pid, uid, until ?? null);
    this.projectsWithBlacks.add(pid);
  }

  async removeProjectBlack(pid: number, uid: bigint): Promise<void> {
    this.s.blackDelete.run(pid, uid);
  }

  async recordKickout(k: KickoutRecord, forgetBefore: bigint): Promise<void> {
    this.s.kickoutsForget.run(forgetBefore);
    this.s.kickoutAdd.run(k.pid, k.uid, k.at, k.endpoint ?? null);
  }

  async kickoutsSince(since: bigint, limit: number): Promise<KickoutRecord[]> {
    return this.s.kickoutsSince.all(since, limit).map(kickoutOf);
  }

  /** Synchronous: every send asks (see `MaybePromise`). */
  isProjectBlack(pid: number, uid: bigint, now: bigint): boolean {
    // Answer "no" from memory for projects that never blacklisted anyone.
    if (!this.projectsWithBlacks.has(pid)) return false;
    return this.s.blackCheck.get(pid, uid, now) !== undefined;
  }

  /**
   * In-memory filters for the checks every send makes (this process is the only writer of an
   * embedded store, so they are exact): which projects have a blacklist at all, and how many users
   * have blocked each user.
   */
  private projectsWithBlacks = new Set<number>();
  private readonly blockedCount = new Map<string, number>();

  private loadFilters(db: Database.Database): void {
    this.projectsWithBlacks = new Set(
      db
        .prepare('SELECT DISTINCT pid FROM project_blacks')
        .all()
        .map((r) => Number((r as Row)['pid'])),
    );
    this.blockedCount.clear();
    for (const r of db.prepare('SELECT pid, black, COUNT(*) AS n FROM blacks GROUP BY pid, black').all() as Row[]) {
      this.blockedCount.set(`${r['pid']}:${r['black']}`, Number(r['n']));
    }
  }

  private countBlocked(pid: number, black: bigint, delta: number): void {
    const k = `${pid}:${black}`;
    const n = (this.blockedCount.get(k) ?? 0) + delta;
    if (n > 0) this.blockedCount.set(k, n);
    else this.blockedCount.delete(k);
  }

  // --- friends and blacklists ------------------------------------------------------------------

  async addFriends(pid: number, uid: bigint, friends: readonly bigint[]): Promise<void> {
    this.tx(() => {
      for (const f of friends) {
        this.s.friendAdd.run(pid, uid, f);
        this.s.friendAdd.run(pid, f, uid);
      }
    });
  }

  async removeFriends(pid: number, uid: bigint, friends: readonly bigint[]): Promise<void> {
    this.tx(() => {
      for (const f of friends) {
        this.s.friendRemove.run(pid, uid, f);
        this.s.friendRemove.run(pid, f, uid);
      }
    });
  }

  async friends(pid: number, uid: bigint): Promise<bigint[]> {
    return this.s.friends.all(pid, uid).map((r) => r['friend'] as bigint);
  }

  async filterFriends(pid: number, uid: bigint, candidates: readonly bigint[]): Promise<bigint[]> {
    if (candidates.length === 0) return [];
    return this.s.filterFriends.all(pid, uid, idsJson(candidates)).map((r) => r['friend'] as bigint);
  }

  async addBlacks(pid: number, uid: bigint, blacks: readonly bigint[]): Promise<void> {
    const added: bigint[] = [];
    this.tx(() => {
      for (const b of blacks) if (this.s.blacksAdd.run(pid, uid, b).changes > 0) added.push(b);
    });
    for (const b of added) this.countBlocked(pid, b, 1);
  }

  async removeBlacks(pid: number, uid: bigint, blacks: readonly bigint[]): Promise<void> {
    const removed: bigint[] = [];
    this.tx(() => {
      for (const b of blacks) if (this.s.blacksRemove.run(pid, uid, b).changes > 0) removed.push(b);
    });
    for (const b of removed) this.countBlocked(pid, b, -1);
  }

  async blacks(pid: number, uid: bigint): Promise<bigint[]> {
    return this.s.blacks.all(pid, uid).map((r) => r['black'] as bigint);
  }

  /** Synchronous: every send asks (see `MaybePromise`). */
  blockedBy(pid: number, uid: bigint, candidates: readonly bigint[]): bigint[] {
    // Most projects have no blacklist at all: no key to build then.
    if (candidates.length === 0 || this.blockedCount.size === 0 || !this.blockedCount.has(`${pid}:${uid}`)) return [];
    return this.s.blockedBy.all(pid, uid, idsJson(candidates)).map((r) => r['uid'] as bigint);
  }

  // --- info and key-value data -----------------------------------------------------------------

  async setInfo(pid: number, kind: InfoKind, id: bigint, info: Partial<Info>): Promise<void> {
    if (info.oinfo === undefined && info.pinfo === undefined) return;
    this.s.infoSet.run({ pid, kind, id, oinfo: info.oinfo ?? null, pinfo: info.pinfo ?? null });
  }

  async getInfo(pid: number, kind: InfoKind, id: bigint): Promise<Info> {
    const row = this.s.infoGet.get(pid, kind, id);
    return { oinfo: (row?.['oinfo'] as string | undefined) ?? '', pinfo: (row?.['pinfo'] as string | undefined) ?? '' };
  }

  async getOpenInfos(pid: number, kind: InfoKind, ids: readonly bigint[]): Promise<Map<bigint, string>> {
    const out = new Map<bigint, string>();
    if (ids.length === 0) return out;
    for (const r of this.s.openInfos.all(pid, kind, idsJson(ids))) out.set(r['id'] as bigint, r['oinfo'] as string);
    return out;
  }

  async dataSet(pid: number, uid: bigint, key: string, val: string): Promise<void> {
    this.s.dataSet.run(pid, uid, key, val);
  }

  async dataGet(pid: number, uid: bigint, key: string): Promise<string | undefined> {
    return this.s.dataGet.get(pid, uid, key)?.['val'] as string | undefined;
  }

  async dataDelete(pid: number, uid: bigint, key: string): Promise<void> {
    this.s.dataDelete.run(pid, uid, key);
  }

  // --- retention -------------------------------------------------------------------------------

  /** Deletes in chunks of RETENTION_CHUNK rows, one transaction each, yielding to appends between them. */
  async sweepRetention(policy: RetentionPolicy, now: bigint): Promise<number> {
    let removed = 0;
    if (policy.maxAgeMs !== undefined) {
      const cutoff = now - BigInt(Math.trunc(policy.maxAgeMs));
      const bound = this.idBounds(undefined, cutoff - 1n);
      const below = bound ? bound.hi : 0n;
      for (;;) {
        const n = below === 0n ? 0 : this.deleteKeepingIds(() => this.s.retentionAge.run(below, cutoff, RETENTION_CHUNK).changes);
        removed += n;
        if (n < RETENTION_CHUNK) break;
        await yieldTurn();
      }
    }
    if (policy.maxPerConversation !== undefined) {
      const keep = Math.max(0, Math.trunc(policy.maxPerConversation));
      const convs = this.s.retentionOversized.all(keep);
      for (const c of convs) {
        const cutoff = this.s.retentionCutoff.get(c['pid'], c['kind'], c['conv_lo'], c['conv_hi'], keep);
        if (!cutoff) continue;
        for (;;) {
          const n = this.deleteKeepingIds(
            () => this.s.retentionTrim.run(c['pid'], c['kind'], c['conv_lo'], c['conv_hi'], cutoff['id'], RETENTION_CHUNK).changes,
          );
          removed += n;
          if (n < RETENTION_CHUNK) break;
          await yieldTurn();
        }
        await yieldTurn();
      }
    }
    return removed;
  }

  /**
   * Runs a delete of messages in one transaction with `closeNewestSecond`: the newest `seconds`
   * row then holds the newest id, so ids removed from the open second are not given out again.
   */
  private deleteKeepingIds(remove: () => number): number {
    return this.conn
      .transaction(() => {
        this.committer!.closeNewestSecond();
        return remove();
      })
      .immediate();
  }

  // --- bulk load (benchmarks, imports) ---------------------------------------------------------

  /**
   * Inserts already-unique messages without dedupe checks, p2p session upkeep or group commit, in
   * one transaction, assigning ids and mtimes like `append` (`mtime` per message may be given to
   * back-date an import; it is raised to keep mtime non-decreasing with id). Not part of `Store`:
   * for benchmarks and data imports only.
   */
  bulkInsert(messages: readonly (NewMessage & { mtime?: bigint })[]): void {
    if (!this.committer) throw new Error('SqliteStore: init() has not been called (or the store is closed)');
    this.flush();
    this.committer.bulkInsert(messages, BigInt(Math.trunc(this.options.now())));
  }

  private shaped(sql: string): Stmt {
    let stmt = this.shapedStmts.get(sql);
    if (!stmt) {
      stmt = this.conn.prepare<unknown[], Row>(sql);
      this.shapedStmts.set(sql, stmt);
    }
    return stmt;
  }

  private tx(fn: () => void): void {
    this.conn.transaction(fn).immediate();
  }
}

/**
 * Applies the steps not yet recorded in `schema_migrations`, in one transaction, reported each
 * (`report`) and all together (`upgrade`); refuses a database that a newer server has migrated
 * further. Exported for tests.
 */
export function migrate(
  db: Database.Database,
  migrations: readonly SqliteMigration[],
  report: (event: MigrationEvent) => void,
  upgrade: (event: UpgradeEvent) => void = () => {},
): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)');
  const began = performance.now();
  const apply = db.transaction((): UpgradeEvent | undefined => {
    const applied = new Set(
      db
        .prepare<[], Row>('SELECT version FROM schema_migrations')
        .all()
        .map((r) => Number(r['version'])),
    );
    const newest = Math.max(0, ...migrations.map((m) => m.version));
    const unknown = [...applied].filter((v) => v > newest);
    if (unknown.length > 0) {
      // A newer server has been here: its data may mean what this one does not know (step 5).
      throw new StoreRefusal(
        `SqliteStore: the database has schema version ${Math.max(...unknown)}, newer than this server knows (${newest}): run the newer server`,
      );
    }
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    const pending = [...migrations].sort((a, b) => a.version - b.version).filter((m) => !applied.has(m.version));
    if (pending.length === 0) return undefined;
    const upgrading = { from: Math.max(0, ...applied), to: newest, migrations: pending.length };
    upgrade(upgrading);
    for (const m of pending) {
      report({ version: m.version, name: m.name });
      const started = performance.now();
      try {
        db.exec(m.sql);
      } catch (err) {
        throw failedMigration(err, m);
      }
      record.run(m.version, m.name, Date.now());
      report({ version: m.version, name: m.name, ms: Math.round(performance.now() - started) });
    }
    return upgrading;
  });
  const upgraded = apply.immediate();
  // Said once committed: a commit that fails (a full disk) has upgraded nothing.
  if (upgraded) upgrade({ ...upgraded, ms: Math.round(performance.now() - began) });
}

/** ` AND mtype IN (?, …)` for a non-empty mtypes filter, else ''. */
function mtypeFilter(mtypes: readonly number[], table = ''): string {
  return mtypes.length > 0 ? ` AND ${table}mtype IN (${mtypes.map(() => '?').join(', ')})` : '';
}

/** Resolves each pending append with the outcomes of its batch (or rejects it with its error). */
function settle(pending: readonly PendingAppend[], outcomes: readonly BatchOutcome[]): void {
  pending.forEach((p, i) => {
    const o = outcomes[i] ?? { error: 'SqliteStore: no outcome for this append' };
    if ('error' in o) p.reject(new Error(o.error));
    else p.resolve(p.batch.map((m, j) => appendResult(m, o[j]!)));
  });
}

function appendResult(m: NewMessage, o: AppendOutcome): AppendResult {
  // Spelled out, not spread: one object shape for every stored message, made once per message.
  if ('id' in o) {
    const message: StoredMessage = {
      id: o.id,
      pid: m.pid,
      kind: m.kind,
      from: m.from,
      to: m.to,
      mid: m.mid,
      mtype: m.mtype,
      msg: m.msg,
      attrs: m.attrs,
      mtime: o.mtime,
    };
    return { status: 'stored', message };
  }
  if ('duplicate' in o) return { status: 'duplicate', message: o.duplicate };
  return 'withheld' in o ? { status: 'withheld' } : { status: 'collision' };
}

/** A JSON array of int64 ids for `IN (SELECT value FROM json_each(?))` (exact: SQLite reads int64). */
function idsJson(ids: readonly bigint[]): string {
  return `[${ids.map((id) => id.toString()).join(',')}]`;
}

function compareBigint(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Keeps the message clock's highest mark across restarts (message-clock.ts). */
const RECORD_CLOCK_HIGH =
  'INSERT INTO unread_clock (id, high) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET high = MAX(high, excluded.high)';

/** What the message clock resumes after: the newest mtime stored, and the highest mark of the last stop. */
function clockOfLastProcess(db: Database.Database): [newest: bigint, marks: bigint] {
  const newest = db.prepare('SELECT mtime FROM messages ORDER BY id DESC LIMIT 1').safeIntegers().pluck().get() as bigint | undefined;
  const marks = db.prepare('SELECT high FROM unread_clock WHERE id = 1').safeIntegers().pluck().get() as bigint | undefined;
  return [newest ?? 0n, marks ?? 0n];
}

/** The exact mtime filter that goes with idBounds (which is exact only to the second). */
function mtimeWindow(begin: bigint | undefined, end: bigint | undefined): string {
  return (begin !== undefined && begin !== 0n ? ' AND mtime >= ?' : '') + (end !== undefined && end !== 0n ? ' AND mtime <= ?' : '');
}

function mtimeParams(begin: bigint | undefined, end: bigint | undefined): bigint[] {
  const out: bigint[] = [];
  if (begin !== undefined && begin !== 0n) out.push(begin);
  if (end !== undefined && end !== 0n) out.push(end);
  return out;
}

/** Floor division for bigint (ms → s of possibly negative times). */
function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}
