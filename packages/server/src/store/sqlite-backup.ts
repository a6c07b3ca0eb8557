/**
 * Online backup of the embedded store: a consistent copy of the database file, taken while the
 * server runs and keeps committing.
 *
 * With SQLite's online backup API (better-sqlite3 `db.backup()`), which copies the database a number
 * of pages per step. Left to itself, the API opens a read transaction for each step and starts over
 * whenever another connection changed the database in between: the copy stays consistent, but
 * under steady traffic (every commit comes from another connection, the event loop's or the
 * writer thread's) it never ends. Run on the event loop's own connection instead, it would copy
 * each commit's pages into the backup too, inside the commit: on the message hot path.
 *
 * So the copy is read through a connection of its own, in a thread of its own (`BACKUP_THREAD`),
 * that holds one read transaction from the first step to the last. In WAL mode a read transaction
 * sees the database as of its start, and neither waits for commits nor makes them wait: every
 * page copied, whichever step, comes from that one snapshot. That is why the copy is consistent:
 * it is the database exactly as it was after some commit, every message with all its rows and none
 * of a later commit. The API uses an open read transaction instead of making its own,
 * so it never starts over. Meanwhile the WAL cannot restart behind the snapshot: it grows by what
 * is committed during the backup (checkpoints copy up to the snapshot; the next restart comes
 * after the backup).
 *
 * Exclusive access (RTM_SQLITE_EXCLUSIVE, `sqlite-connection.ts`) locks other processes out, not
 * connections of this one: the backup's connection opens the database as the store's others do.
 *
 * The copy is then turned into a plain rollback-journal database (`journal_mode = DELETE`): one
 * self-contained file, readable by `sqlite3` without a WAL; `rtm serve` puts it back in WAL mode
 * when it opens it after a restore.
 */
import { closeSync, fsyncSync, openSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { connectionName } from './sqlite-connection.js';
import { SQLITE_MIGRATIONS } from './sqlite-migrations.js';
import type { BackupOptions, BackupStats } from './store.js';

/** The files of a database: the file itself, its WAL and WAL index, a rollback journal. */
export const DATABASE_FILE_SUFFIXES: readonly string[] = ['', '-wal', '-shm', '-journal'];

/** Removes the database `file` and what SQLite may have left beside it. */
export function removeDatabaseFiles(file: string): void {
  for (const suffix of DATABASE_FILE_SUFFIXES) rmSync(file + suffix, { force: true });
}

/** fsync of a file, or of a directory (the renames in it), so that a power loss keeps what was written. */
export function syncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** `20261203T101500Z`: a time for the names of backups and of what a restore puts aside. */
export function fileStamp(at: Date): string {
  return at.toISOString().replace(/[-:]|\.\d+/g, '');
}

/**
 * 256 pages (1 MiB) a step: a step is the thread's, not the event loop's, so it need not be short;
 * between two steps the thread hears an abort.
 */
export const DEFAULT_BACKUP_PAGES_PER_STEP = 256;

/** The source connection's page cache, KiB: every page is read once, so a small one does. */
const BACKUP_CACHE_KIB = 1024;

export interface BackupSource {
  /** The database file. */
  path: string;
  /** Open it as the store does (`unix-excl` or not). */
  exclusive: boolean;
  busyTimeoutMs: number;
}

/** What the thread says as it ends: the copy made, or why not. */
type ThreadOutcome = { done: { pages: number; schemaVersion: number } } | { error: string };

/**
 * Copies the database at `source` into `destination`, a path that must not exist yet (it is made
 * 0600: the copy holds every message and login token), in a thread of its own. On failure or abort
 * the caller removes `destination` (and `destination-journal`, which SQLite may leave beside it).
 */
export function backupDatabase(source: BackupSource, destination: string, options: BackupOptions = {}): Promise<BackupStats> {
  const pagesPerStep = options.pagesPerStep ?? DEFAULT_BACKUP_PAGES_PER_STEP;
  if (!Number.isInteger(pagesPerStep) || pagesPerStep < 1)
    return Promise.reject(new RangeError(`backupDatabase: pagesPerStep must be a positive integer, got ${String(pagesPerStep)}`));
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const started = performance.now();
  try {
    // Made here, owner-only, before SQLite opens it: SQLite would make it with the umask's mode.
    closeSync(openSync(destination, 'wx', 0o600));
  } catch (err) {
    return Promise.reject(err);
  }
  const worker = new Worker(BACKUP_THREAD, {
    eval: true,
    workerData: {
      moduleUrl: createRequire(import.meta.url).resolve('better-sqlite3'),
      name: connectionName(source.path, source.exclusive),
      busyTimeoutMs: source.busyTimeoutMs,
      cacheSizeKiB: BACKUP_CACHE_KIB,
      destination,
      pagesPerStep,
    },
  });
  return new Promise((resolve, reject) => {
    const abort = (): void => worker.postMessage('abort');
    signal?.addEventListener('abort', abort, { once: true });
    let outcome: ThreadOutcome | undefined;
    worker.on('message', (m: ThreadOutcome) => (outcome = m));
    worker.on('error', (err) => (outcome ??= { error: err.message }));
    worker.once('exit', (code) => {
      signal?.removeEventListener('abort', abort);
      if (outcome && 'done' in outcome) {
        const { pages, schemaVersion } = outcome.done;
        resolve({ bytes: statSync(destination).size, pages, schemaVersion, ms: Math.round(performance.now() - started) });
      } else if (signal?.aborted) reject(signal.reason);
      else reject(new Error(`backup: ${outcome?.error ?? `the backup thread exited (code ${code})`}`));
    });
  });
}

/**
 * The thread (plain CommonJS evaluated in a worker: no TypeScript loader needed there). The copy
 * runs there rather than on the event loop: each step is short (0.2 ms for 64 pages on the bench
 * machine), but the last one commits the copy, an fsync of the whole file (45 – 55 ms for 67 MB),
 * which the event loop would sit out. On `bench/backup.ts` (2,000 sends/s, backups back to back),
 * send → answer p99 during backups was 66 – 68 ms with the copy on the event loop, 29 – 32 ms with
 * it here; what is left is the copy's writing to the disk (bench/RESULTS.md, "Online backup").
 */
const BACKUP_THREAD = `
const { parentPort, workerData: w } = require('node:worker_threads');
const Database = require(w.moduleUrl);
let aborted = false;
parentPort.on('message', (m) => { if (m === 'abort') aborted = true; });
(async () => {
  const db = new Database(w.name, { timeout: w.busyTimeoutMs });
  let done;
  try {
    db.pragma('cache_size = -' + w.cacheSizeKiB);
    // The snapshot: a read transaction begins at the first read after BEGIN and lasts until the
    // COMMIT, across every step of the copy.
    db.exec('BEGIN');
    const schemaVersion = Number(db.prepare('SELECT MAX(version) FROM schema_migrations').pluck().get());
    const copied = await db.backup(w.destination, {
      progress: () => {
        if (aborted) throw new Error('aborted');
        return w.pagesPerStep;
      },
    });
    db.exec('COMMIT');
    done = { pages: copied.totalPages, schemaVersion };
  } finally {
    db.close();
  }
  // The copy says WAL in its header, as its source: one file instead, needing no -wal to be read.
  const copy = new Database(w.destination);
  try { copy.pragma('journal_mode = DELETE'); } finally { copy.close(); }
  parentPort.postMessage({ done });
})()
  .catch((err) => parentPort.postMessage({ error: String((err && err.message) || err) }))
  .finally(() => parentPort.close());
`;

/** What `inspectBackup` found in a good copy. */
export interface BackupInspection {
  bytes: number;
  schemaVersion: number;
  /** The newest schema version this release knows: a copy above it needs a newer release. */
  knownVersion: number;
  /** The newest message id in the copy (0 if none): new messages get ids above it. */
  newestMessageId: bigint;
}

/** The newest schema version of this release's SQLite store. */
export const NEWEST_SQLITE_SCHEMA_VERSION = Math.max(...SQLITE_MIGRATIONS.map((m) => m.version));

/**
 * Checks that `file` is a whole, sound database of this store: SQLite's `integrity_check` passes
 * and its schema version is readable. Throws an Error saying what is wrong. Opens the file
 * read-only: nothing is written beside it (a copy in WAL mode would need its -wal file and gets
 * refused here with SQLite's own message).
 */
export function inspectBackup(file: string): BackupInspection {
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new Error(`${file} cannot be opened as a database: ${(err as Error).message}`, { cause: err });
  }
  try {
    let found: unknown[];
    try {
      found = (db.pragma('integrity_check') as Record<string, unknown>[]).map((row) => row['integrity_check']);
    } catch (err) {
      throw new Error(`${file} is not a sound SQLite database: ${(err as Error).message}`, { cause: err });
    }
    if (found.length !== 1 || found[0] !== 'ok')
      throw new Error(`${file} fails SQLite's integrity check: ${found.slice(0, 5).join('; ')}${found.length > 5 ? '; …' : ''}`);
    let version: unknown;
    let newest: unknown;
    try {
      version = db.prepare('SELECT MAX(version) FROM schema_migrations').pluck().get();
      newest = db.prepare('SELECT MAX(id) FROM messages').pluck().safeIntegers().get();
    } catch (err) {
      throw new Error(`${file} is an SQLite database but not an rtm store: ${(err as Error).message}`, { cause: err });
    }
    if (typeof version !== 'number' || version < 1) throw new Error(`${file} is an rtm store without a schema version`);
    return {
      bytes: statSync(file).size,
      schemaVersion: version,
      knownVersion: NEWEST_SQLITE_SCHEMA_VERSION,
      newestMessageId: typeof newest === 'bigint' ? newest : 0n,
    };
  } finally {
    db.close();
  }
}
