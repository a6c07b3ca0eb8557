/**
 * `rtm restore <file>`: puts a backup (`GET /backup`, `rtm backup`) in place of the embedded
 * store's database, with the server stopped. Nothing is deleted: the database that was there, with
 * its -wal and -shm files, is moved into a directory of its own beside it.
 *
 * In this order, so that a refusal at any step leaves the data directory as it was:
 * 1. the backup is copied into the data directory (the rename at the end is then atomic, and what
 *    is checked is what goes in place), made a one-file database, and checked: SQLite's integrity
 *    check, an rtm schema no newer than this release knows (the next `rtm serve` migrates an older
 *    one);
 * 2. no process may hold the database (`holdUnused`): a server running on the directory would
 *    go on with the old files, and its next commits would land there;
 * 3. the database files go aside, and the copy takes the database's name. The old file's lock is
 *    held until then: a server starting meanwhile waits for it, and finds (`openConnection`) that
 *    the file it opened is no longer the database, and opens the restored one.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, constants, existsSync, linkSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { DATABASE_FILE_SUFFIXES, fileStamp, inspectBackup, removeDatabaseFiles, syncPath, type BackupInspection } from './sqlite-backup.js';
import { openConnection } from './sqlite-connection.js';

/** The backup cannot be restored, or not now: said to the operator as is (exit code 1). */
export class RestoreRefusal extends Error {
  override readonly name = 'RestoreRefusal';
}

export interface RestoreReport extends BackupInspection {
  /** The database file now holding the backup. */
  database: string;
  /** Where the files that were there went (undefined: there were none), and their names. */
  aside?: { directory: string; files: string[] };
}

/** For tests: what runs once the old database is held, before its files move. */
export interface RestoreHooks {
  whileHeld?: () => void;
}

export function restoreDatabase(backupFile: string, database: string, now = new Date(), hooks: RestoreHooks = {}): RestoreReport {
  const dataDir = dirname(database);
  const stamp = fileStamp(now);
  try {
    statSync(backupFile);
  } catch (err) {
    // Not "does not exist" for a file this user may not reach (a backup in root's 0700 directory).
    const code = (err as NodeJS.ErrnoException).code;
    throw new RestoreRefusal(
      code === 'ENOENT' || code === 'ENOTDIR' ? `${backupFile} does not exist` : `${backupFile} cannot be read: ${(err as Error).message}`,
    );
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const incoming = join(dataDir, `restore-${stamp}-${randomBytes(4).toString('hex')}.sqlite.tmp`);
  try {
    try {
      copyFileSync(backupFile, incoming, constants.COPYFILE_EXCL);
    } catch (err) {
      throw new RestoreRefusal(`${backupFile} cannot be copied into ${dataDir}: ${(err as Error).message}`);
    }
    chmodSync(incoming, 0o600); // messages and login tokens: the owner's, as the database it replaces
    const found = check(incoming, backupFile);
    syncPath(incoming);

    const release = holdUnused(database);
    try {
      hooks.whileHeld?.();
      const aside = moveAside(database, join(dataDir, `before-restore-${stamp}`));
      renameSync(incoming, database);
      syncPath(dataDir);
      return { ...found, database, ...(aside ? { aside } : {}) };
    } finally {
      release();
    }
  } finally {
    removeDatabaseFiles(incoming);
  }
}

/** Makes `copy` (of `original`) one file without a WAL, and checks it: a refusal naming `original` if it is no good. */
function check(copy: string, original: string): BackupInspection {
  let found: BackupInspection;
  try {
    // A backup of ours is one file already; a database file copied from a stopped server still says
    // WAL in its header, and reading it read-only would leave -wal and -shm files beside it.
    const db = new Database(copy, { fileMustExist: true });
    try {
      db.pragma('journal_mode = DELETE');
    } finally {
      db.close();
    }
    found = inspectBackup(copy);
  } catch (err) {
    throw new RestoreRefusal(`${original} is not a good backup: ${(err as Error).message.split(copy).join(original)}`);
  }
  if (found.schemaVersion > found.knownVersion)
    throw new RestoreRefusal(
      `${original} has schema version ${found.schemaVersion}, newer than this release knows (${found.knownVersion}): ` +
        'restore it with the release that made it, or a newer one',
    );
  return found;
}

/**
 * Refuses while any process holds `database` open, as a running server does (exclusively, or
 * with RTM_SQLITE_EXCLUSIVE=false, in shared mode), and otherwise holds it until the returned
 * function is called. The test is the one a second server meets: an exclusive lock, which SQLite
 * cannot take while another process holds the file in any mode. It is taken through a hard link
 * of the file (the lock is the file's, whatever its name): SQLite would checkpoint a WAL left by a
 * crash into the database when the connection closes; under another name it finds no WAL, and
 * changes nothing.
 */
function holdUnused(database: string): () => void {
  if (!existsSync(database)) return () => {};
  let probe = join(dirname(database), `.${basename(database)}.lock-probe-${randomBytes(4).toString('hex')}`);
  try {
    linkSync(database, probe);
  } catch {
    probe = database; // no hard links here: the file itself (a WAL left by a crash is then checkpointed into it)
  }
  const forget = (): void => {
    if (probe !== database) removeDatabaseFiles(probe);
  };
  try {
    // Opened as the store opens it, exclusively; its first read takes the lock, without waiting.
    const held = openConnection(probe, { exclusive: true, busyTimeoutMs: 0, synchronous: 'NORMAL', cacheSizeKiB: 1024 });
    return () => {
      held.close();
      forget();
    };
  } catch (err) {
    forget();
    const code = ((err as Error).cause as { code?: string } | undefined)?.code ?? (err as { code?: string }).code;
    if (code === 'SQLITE_BUSY')
      throw new RestoreRefusal(
        `${database} is in use: a server runs on this data directory (or another process has the database open); stop it first`,
      );
    // A damaged file is the old database's trouble: it goes aside all the same. Anything else
    // (SQLite URI filenames off) leaves the question open: no guess.
    if (code !== 'SQLITE_NOTADB' && code !== 'SQLITE_CORRUPT')
      throw new RestoreRefusal(`cannot tell whether a server uses ${database}: ${(err as Error).message}`);
    return () => {};
  }
}

/** Moves the files of `database` into `directory`; undefined if there were none. All or none: a failure puts back what moved. */
function moveAside(database: string, directory: string): RestoreReport['aside'] {
  const present = DATABASE_FILE_SUFFIXES.map((s) => database + s).filter((f) => existsSync(f));
  if (present.length === 0) return undefined;
  // A second restore within the same second: the directory of the first stays as it is.
  const first = directory;
  for (let n = 2; existsSync(directory); n++) directory = `${first}-${n}`;
  mkdirSync(directory, { mode: 0o700 });
  const moved: string[] = [];
  try {
    for (const file of present) {
      renameSync(file, join(directory, basename(file)));
      moved.push(file);
    }
  } catch (err) {
    for (const file of moved) renameSync(join(directory, basename(file)), file);
    rmSync(directory, { recursive: true, force: true });
    throw new RestoreRefusal(`the database files cannot be moved into ${directory}: ${(err as Error).message}`);
  }
  // A -wal left beside the restored file would be read as its own: none may stay.
  const left = DATABASE_FILE_SUFFIXES.map((s) => database + s).filter((f) => existsSync(f));
  if (left.length > 0)
    throw new RestoreRefusal(`${left.join(', ')} appeared while restoring: is a server starting on this data directory?`);
  return { directory, files: moved.map((f) => basename(f)) };
}
