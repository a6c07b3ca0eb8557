/**
 * `rtm backup <file>`: fetches `GET /backup` from a running server's admin port into
 * `<file>.partial`, checks the copy (whole, SQLite's integrity check, an rtm schema version), and
 * only then renames it to `<file>`: a file of that name is always a whole, checked backup (one there
 * before is replaced only by a good one).
 */
import { closeSync, createWriteStream, mkdirSync, openSync, renameSync, rmSync } from 'node:fs';
import { request, type IncomingMessage } from 'node:http';
import { dirname, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { inspectBackup, syncPath, type BackupInspection } from '../store/sqlite-backup.js';

export interface BackupTarget {
  host: string;
  port: number;
  /** RTM_ADMIN_TOKEN, sent as `Authorization: Bearer …` when set. */
  token?: string;
}

export interface DownloadReport extends BackupInspection {
  file: string;
  ms: number;
}

/**
 * How long the download may go without a byte: the server sends nothing while it copies the store
 * (≈ 3 s per GiB on the bench machine), then streams it.
 */
const DOWNLOAD_IDLE_TIMEOUT_MS = 10 * 60_000;

/** What the server answered instead of a backup, or why there was no answer: said to the operator as is. */
export class BackupDownloadError extends Error {
  override readonly name = 'BackupDownloadError';
}

export async function downloadBackup(target: BackupTarget, file: string): Promise<DownloadReport> {
  const started = Date.now();
  const partial = `${file}.partial`;
  // Before the server copies its store for nothing: the file's directory (made if missing, owner-only)
  // and the partial file (one left by a download cut short is made again, owner-only).
  makePartial(file, partial);
  try {
    return await download(target, file, partial, started);
  } finally {
    rmSync(partial, { force: true });
  }
}

function makePartial(file: string, partial: string): void {
  const dir = dirname(resolve(file));
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new BackupDownloadError(`cannot make the directory ${dir} for the backup: ${(err as Error).message}`);
  }
  try {
    rmSync(partial, { force: true });
    closeSync(openSync(partial, 'w', 0o600));
  } catch (err) {
    throw new BackupDownloadError(`cannot write the backup next to ${file}: ${(err as Error).message}`);
  }
}

async function download(target: BackupTarget, file: string, partial: string, started: number): Promise<DownloadReport> {
  const where = `the admin port at ${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
  const res = await new Promise<IncomingMessage>((resolveResponse, reject) => {
    const req = request({
      host: target.host,
      port: target.port,
      path: '/backup',
      headers: target.token === undefined ? {} : { Authorization: `Bearer ${target.token}` },
      timeout: DOWNLOAD_IDLE_TIMEOUT_MS,
    });
    req.once('response', resolveResponse);
    req.once('timeout', () => req.destroy(new BackupDownloadError(`${where} sent nothing for ${DOWNLOAD_IDLE_TIMEOUT_MS / 60_000} min`)));
    req.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ECONNREFUSED'
          ? new BackupDownloadError(`cannot reach ${where} (RTM_HOST, RTM_ADMIN_PORT): is the server running, with its admin port on?`)
          : err instanceof BackupDownloadError
            ? err
            : new BackupDownloadError(`${where}: ${err.message}`),
      ),
    );
    req.end();
  });
  if (res.statusCode !== 200) {
    let body = '';
    res.setEncoding('utf8');
    for await (const chunk of res) if (body.length < 4096) body += chunk;
    throw new BackupDownloadError(`the server refused the backup (${res.statusCode}): ${body.trim() || res.statusMessage}`);
  }
  const expected = Number(res.headers['content-length']);
  if (!Number.isSafeInteger(expected)) {
    res.destroy();
    throw new BackupDownloadError(
      `${where} answered without a Content-Length: is it an rtm server's admin port (behind a proxy that drops it)?`,
    );
  }
  let received = 0;
  res.on('data', (chunk: Buffer) => (received += chunk.length));
  try {
    await pipeline(res, createWriteStream(partial)); // made by makePartial, owner-only
  } catch (err) {
    throw new BackupDownloadError(`the download stopped after ${received} of ${expected} bytes: ${(err as Error).message}`);
  }
  // A connection that ends early ends the body without an error: the length tells.
  if (!(received === expected)) throw new BackupDownloadError(`the download stopped after ${received} of ${expected} bytes`);
  syncPath(partial);
  let found: BackupInspection;
  try {
    found = inspectBackup(partial);
  } catch (err) {
    throw new BackupDownloadError(`the copy received is no good: ${(err as Error).message}`);
  }
  renameSync(partial, file);
  syncPath(dirname(resolve(file)));
  return { ...found, file, ms: Date.now() - started };
}
