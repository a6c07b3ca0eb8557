/**
 * How the store opens its connections: the event loop's, the writer thread's and the
 * checkpointer's.
 *
 * Exclusive access (`exclusive`, the default for a file database; RTM_SQLITE_EXCLUSIVE). The
 * connections then use SQLite's `unix-excl` VFS: the process takes one exclusive lock on the
 * database file at its first access and keeps it until its last connection closes. Connections of
 * this process coordinate in memory, and the WAL index lives on the heap instead of in the `-shm`
 * file. With the default `unix` VFS every transaction takes and drops byte locks of the WAL index
 * with `fcntl`, six calls a commit. On the bench machine, where a system call costs about 1 µs, a
 * one-row commit fell from 42 to 32 µs, and the server's main thread made 19 % fewer system calls
 * at 5k msgs/s; its CPU per message moved within the noise (bench/RESULTS.md).
 *
 * What it changes for an operator:
 * - no other process can open the database while the server runs, not even the `sqlite3` shell:
 *   stop the server first, or run it with RTM_SQLITE_EXCLUSIVE=false;
 * - a second server on the same data directory is refused at start (`lockedMessage`), where with
 *   shared locking both would run, each pushing only to its own connections.
 *
 * better-sqlite3 has no option for the VFS; a URI filename names it (`?vfs=unix-excl`). URI
 * filenames are on only if SQLITE_USE_URI=1 is in the environment when the addon loads, at the
 * first `new Database` of the process, hence the assignment below, made when the store is
 * imported. A process that loaded the addon before, or runs with SQLITE_USE_URI=0, cannot open
 * the store exclusively, and `openConnection` says so.
 */
import { closeSync, existsSync, openSync, realpathSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';

process.env.SQLITE_USE_URI ??= '1';

export interface ConnectionOptions {
  busyTimeoutMs: number;
  synchronous: 'FULL' | 'NORMAL';
  cacheSizeKiB: number;
  /** Open with the `unix-excl` VFS (file databases only; see above). */
  exclusive: boolean;
}

/** What `new Database` is given: the path, or for exclusive access a URI naming the `unix-excl` VFS. */
export function connectionName(path: string, exclusive: boolean): string {
  return exclusive && path !== ':memory:' ? `${pathToFileURL(path).href}?vfs=unix-excl` : path;
}

/**
 * A connection set up as the store's connections are: int64 columns read as bigint, the
 * durability and page cache asked for, exclusive access if asked for.
 *
 * The file it holds is the one `path` names once its lock is taken. `rtm restore` holds the old
 * database's lock while it moves that file aside and renames the backup into its place; a server
 * that opened the old file in that window waits for the lock, then would run on the file set aside,
 * and its commits would go where nobody looks. So the file named before opening is compared with
 * the one named after the lock, and a connection to a file since replaced is opened again.
 */
export function openConnection(path: string, options: ConnectionOptions): Database.Database {
  if (path === ':memory:') return openLocked(path, options);
  for (let attempt = 1; ; attempt++) {
    const made = !existsSync(path);
    const before = fileIdentity(path, made);
    let db: Database.Database;
    try {
      db = openLocked(path, options);
    } catch (err) {
      if (made) removeIfEmpty(path); // a refusal leaves no file behind
      throw err;
    }
    if (fileIdentity(path) === before) return db;
    db.close();
    if (attempt === 3)
      throw new Error(
        `SqliteStore: ${path} was replaced by another file each time it was opened: is an rtm restore running on this data directory?`,
      );
  }
}

/**
 * The device and inode `path` names now. With `make`, a file that does not exist is made first
 * (empty, which SQLite takes for a new database): a new database has an identity before it opens.
 */
function fileIdentity(path: string, make = false): string | undefined {
  try {
    if (make) closeSync(openSync(path, 'a', 0o600));
    const { dev, ino } = statSync(path, { bigint: true });
    return `${dev}:${ino}`;
  } catch {
    return undefined; // no directory, no permission: SQLite's open says so, in the store's words
  }
}

function removeIfEmpty(path: string): void {
  try {
    if (statSync(path).size === 0) unlinkSync(path);
  } catch {
    // not there, or not ours to remove: nothing was made
  }
}

function openLocked(path: string, options: ConnectionOptions): Database.Database {
  const name = connectionName(path, options.exclusive);
  // better-sqlite3 checks the directory of a plain path only; a URI would fail with SQLite's
  // vaguer "unable to open database file".
  if (name !== path && !existsSync(dirname(path))) {
    throw new TypeError(`Cannot open database because the directory does not exist: ${dirname(path)}`);
  }
  // Said plainly, before SQLite's "unable to open database file" (and our guess about URIs).
  if (path !== ':memory:' && existsSync(path) && !statSync(path).isFile()) {
    throw new Error(
      `SqliteStore: cannot open ${path}: it is ${statSync(path).isDirectory() ? 'a directory' : 'not a regular file'}, not a database file`,
    );
  }
  let db: Database.Database;
  try {
    db = new Database(name, { timeout: options.busyTimeoutMs });
  } catch (err) {
    // With URIs off, SQLite takes the URI for a relative file name, in a directory "file:".
    if (name !== path && (err as { code?: string }).code === 'SQLITE_CANTOPEN') throw urisOff(path, err as Error);
    throw err;
  }
  try {
    // Should such a directory exist, refuse what was opened there.
    const [main] = db.pragma('database_list') as { file: string }[];
    if (name !== path && main?.file !== realpathSync(path)) throw urisOff(path);
    db.defaultSafeIntegers(true);
    // The first statement that reads the file: it takes the lock (the exclusive one, if asked
    // for), waiting up to busyTimeoutMs for another process that holds one.
    db.pragma(`synchronous = ${options.synchronous}`);
    db.pragma(`cache_size = -${options.cacheSizeKiB}`);
    return db;
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') throw new Error(lockedMessage(path, options), { cause: err });
    throw err;
  }
}

function urisOff(path: string, cause?: Error): Error {
  return new Error(
    `SqliteStore: cannot open ${path} exclusively${cause ? ` (${cause.message})` : ''}: are SQLite URI filenames ` +
      `off in this process (SQLITE_USE_URI=${process.env.SQLITE_USE_URI ?? ''}, or better-sqlite3 loaded before ` +
      `the store)? RTM_SQLITE_EXCLUSIVE=false (option exclusive: false) opens it with shared locking`,
    { cause },
  );
}

function lockedMessage(path: string, { exclusive, busyTimeoutMs }: ConnectionOptions): string {
  return (
    `SqliteStore: ${path} stayed locked by another process for ${busyTimeoutMs} ms` +
    (exclusive ? ': is another rtm server using this data directory? (this server opens it exclusively)' : '')
  );
}
