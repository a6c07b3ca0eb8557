import { randomBytes } from 'node:crypto';
import { createReadStream, readdirSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ServerConfig } from '../config.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { RepeatFilter } from '../observability/repeats.js';
import type { BackupStats, Store } from '../store/store.js';
import { fileStamp, removeDatabaseFiles } from '../store/sqlite-backup.js';
import { backupAccess } from './backup-access.js';

/**
 * `GET /backup` on the admin port: a consistent copy of the embedded store, as
 * `application/vnd.sqlite3` with its Content-Length (`rtm backup <file>` fetches it).
 *
 * The store first copies itself into a temporary file in the data directory (`Store.backup`: a
 * snapshot, while commits go on), then the file is sent and removed, whatever happens: sent whole,
 * the client gone mid-way (also during the copy, which is then abandoned), a client that stops
 * reading, the server stopping. A file left by a process that died during a backup is removed at
 * the next start.
 *
 * One backup at a time: a second request meanwhile is refused (409), not queued: each holds a
 * copy of the whole database on disk, and a client that wants one can try again in a moment.
 * Access: `backup-access.ts`. PostgreSQL and in-memory stores are refused (501), naming what to
 * use instead.
 */

/** A client that reads nothing of the copy for this long is cut off, so that it cannot hold the one backup slot for ever. */
export const BACKUP_IDLE_TIMEOUT_MS = 60_000;

/** The temporary copies, with what SQLite may leave beside them. */
const TEMPORARY = /^backup-[0-9TZ-]+-[0-9a-f]+\.sqlite\.tmp(-journal|-wal|-shm)?$/;

/** Why a running backup ended early, as the log and the counter say it. */
class BackupAbort extends Error {
  override readonly name = 'BackupAbort';
}

interface Running {
  since: number;
  controller: AbortController;
  done: Promise<void>;
}

export class BackupEndpoint {
  private running: Running | undefined;
  private stopping = false;
  /** Refusals (a scanner probing /backup on a wildcard address) logged once a minute per kind, with how many were left out. */
  private readonly refusals = new RepeatFilter(60_000);

  constructor(
    private readonly config: ServerConfig,
    private readonly store: Store,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    /** Bytes per read of the copy as it is sent. @default 256 KiB (tests: small, to be cut off mid-way) */
    private readonly readChunkBytes = 256 * 1024,
  ) {
    this.removeLeftovers();
  }

  /** Answers one request to `/backup`. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const remote = req.socket.remoteAddress;
    const access = backupAccess(remote, req.headers.authorization, this.config.adminToken);
    if (!access.allowed) return this.refuse(res, remote, 403, access.reason);
    if (req.method !== 'GET') return this.refuse(res, remote, 405, 'GET /backup', { Allow: 'GET' });
    if (this.config.store !== 'sqlite' || !this.store.backup)
      return this.refuse(
        res,
        remote,
        501,
        `this server's store is PostgreSQL (RTM_STORE): back it up with pg_dump of the schema '${this.config.storeSchema}' ` +
          '(RTM_STORE_SCHEMA; docs/cluster.md, "Backups")',
      );
    if (this.config.dataDir === ':memory:')
      return this.refuse(res, remote, 501, 'this server keeps its store in memory (RTM_DATA_DIR=:memory:): there is nothing to back up');
    if (this.stopping) return this.refuse(res, remote, 503, 'the server is stopping');
    if (this.running) {
      const seconds = Math.round((Date.now() - this.running.since) / 1000);
      return this.refuse(res, remote, 409, `a backup is running (for ${seconds} s): one at a time; try again once it has finished`);
    }
    const controller = new AbortController();
    const running: Running = { since: Date.now(), controller, done: Promise.resolve() };
    const release = (): void => {
      if (this.running === running) this.running = undefined;
    };
    this.running = running;
    running.done = this.run(res, remote, controller, release).finally(release);
  }

  /** Abandons a running backup (its file removed) and refuses new ones: the server stops. */
  async stop(): Promise<void> {
    this.stopping = true;
    const running = this.running;
    if (!running) return;
    running.controller.abort(new BackupAbort('the server is stopping'));
    await running.done;
  }

  /**
   * `release` frees the one backup slot once the whole copy is handed to the response: the client
   * may have it all before the response says it has finished, and a next backup asked for at once
   * must not be refused for this one's last steps.
   */
  private async run(res: ServerResponse, remote: string | undefined, controller: AbortController, release: () => void): Promise<void> {
    const started = Date.now();
    const file = join(this.config.dataDir, `backup-${fileStamp(new Date(started))}-${randomBytes(4).toString('hex')}.sqlite.tmp`);
    // The response closes before it has finished: the client went away (or was cut off).
    const closed = (): void => {
      if (!res.writableFinished) controller.abort(new BackupAbort('the client went away'));
    };
    res.once('close', closed);
    let stats: BackupStats | undefined;
    let sent = 0;
    try {
      stats = await this.store.backup!(file, { signal: controller.signal });
      // The client may have gone during the copy's last step, after its last look at the signal.
      controller.signal.throwIfAborted();
      res.writeHead(200, {
        'Content-Type': 'application/vnd.sqlite3',
        'Content-Length': stats.bytes,
        'Content-Disposition': `attachment; filename="rtm-backup-${fileStamp(new Date(started))}.sqlite"`,
        'Cache-Control': 'no-store',
      });
      res.setTimeout(BACKUP_IDLE_TIMEOUT_MS, () =>
        controller.abort(new BackupAbort(`the client read nothing for ${BACKUP_IDLE_TIMEOUT_MS / 1000} s`)),
      );
      const source = createReadStream(file, { highWaterMark: this.readChunkBytes });
      let readFailure: Error | undefined;
      source.once('error', (err) => (readFailure = err));
      source.on('data', (chunk) => (sent += chunk.length));
      source.once('end', release);
      try {
        await pipeline(source, res, { signal: controller.signal });
      } catch (err) {
        if (readFailure) throw readFailure;
        throw controller.signal.aborted ? controller.signal.reason : new BackupAbort(`the client went away (${(err as Error).message})`);
      }
      const ms = Date.now() - started;
      this.metrics.backups.inc({ result: 'ok' });
      this.log.info(
        { remote, bytes: stats.bytes, pages: stats.pages, schemaVersion: stats.schemaVersion, copyMs: stats.ms, ms },
        `backup sent: ${mib(stats.bytes)} (${stats.pages} pages, schema version ${stats.schemaVersion}), copied in ${seconds(stats.ms)}, sent in ${seconds(ms - stats.ms)}`,
      );
    } catch (err) {
      const aborted = err instanceof BackupAbort || (err as Error).name === 'AbortError';
      const why = (err as Error).message;
      this.metrics.backups.inc({ result: aborted ? 'aborted' : 'failed' });
      if (aborted) {
        const where = stats ? `after ${sent} of ${stats.bytes} bytes` : 'while copying the store';
        this.log.warn(
          { remote, reason: why, ...(stats ? { sent, bytes: stats.bytes } : {}), ms: Date.now() - started },
          `backup aborted ${where}: ${why}`,
        );
      } else {
        this.log.error({ remote, err, ms: Date.now() - started }, `backup failed: ${why}`);
        if (!res.headersSent && !res.destroyed) {
          res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
          res.end(`backup failed: ${why}\n`);
        } else res.destroy(); // part sent: the client sees a short body, never a whole-looking one
      }
    } finally {
      res.off('close', closed);
      removeDatabaseFiles(file);
    }
  }

  private refuse(
    res: ServerResponse,
    remote: string | undefined,
    status: number,
    reason: string,
    headers: Record<string, string> = {},
  ): void {
    this.metrics.backups.inc({ result: 'refused' });
    const admitted = this.refusals.admit(String(status));
    if (admitted.log)
      this.log.warn({ remote, status, reason, ...(admitted.repeats ? { repeats: admitted.repeats } : {}) }, `backup refused (${status})`);
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...headers });
    res.end(`${reason}\n`);
  }

  /** Copies left by a process that died during a backup (one server per data directory: none is anyone's now). */
  private removeLeftovers(): void {
    if (this.config.store !== 'sqlite' || this.config.dataDir === ':memory:') return;
    let names: string[];
    try {
      names = readdirSync(this.config.dataDir).filter((n) => TEMPORARY.test(n));
    } catch {
      return; // no directory: nothing left
    }
    for (const name of names) rmSync(join(this.config.dataDir, name), { force: true });
    if (names.length > 0) this.log.info({ files: names }, 'removed the temporary copies of a backup that did not finish');
  }
}

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
