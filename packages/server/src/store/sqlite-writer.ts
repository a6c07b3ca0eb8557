import { Worker } from 'node:worker_threads';
import type { BatchOutcome } from './sqlite-appender.js';
import type { NewMessage } from './store.js';

/**
 * Commits appends of a file database in a thread of their own, so the event loop never waits on
 * the disk.
 *
 * Why: a commit writes every page it dirties to the WAL (≈ 20 KiB per P2P message: the table, its
 * three indexes and the conversation row), and on a busy disk a plain `write()` can block for tens
 * of milliseconds (journal commits, writeback of the WAL behind a checkpoint's fsync). In the
 * event loop such a stall held up every connection; in this thread it only delays the commits
 * queued behind it, which then go out as one bigger group. Reads stay on the event loop's
 * connection (WAL: readers never wait for the writer) and see a message as soon as its append has
 * resolved.
 */
export interface WriterOptions {
  synchronous: 'FULL' | 'NORMAL';
  cacheSizeKiB: number;
  busyTimeoutMs: number;
  walAutocheckpointPages: number;
  /** Open the database exclusively, as the event loop's connection does (sqlite-connection.ts). */
  exclusive: boolean;
}

/** One flush of the event loop: the batches of one turn, in order. */
export interface WriterRequest {
  seq: number;
  batches: (readonly NewMessage[])[];
  /** The store's clock when the turn ended (the store's `now`, so tests can set it). */
  clock: bigint;
}

export interface WriterReply {
  seq: number;
  outcomes: BatchOutcome[];
}

interface Waiter {
  resolve(outcomes: BatchOutcome[]): void;
  batches: number;
}

export class SqliteWriterThread {
  private worker: Worker;
  private nextSeq = 1;
  private readonly inflight = new Map<number, Waiter>();
  private drained: (() => void) | undefined;
  private stopping = false;
  /** Set when a new thread died before committing anything (it cannot open the database…). */
  private broken: string | undefined;

  constructor(
    private readonly path: string,
    private readonly options: WriterOptions,
    private readonly onFailure: (message: string) => void,
  ) {
    this.worker = this.spawn();
  }

  /** Commits the batches (one transaction if possible); resolves with one outcome per batch, never rejects. */
  commit(batches: (readonly NewMessage[])[], clock: bigint): Promise<BatchOutcome[]> {
    const refused = this.stopping ? 'SqliteStore: the store is closing' : this.broken;
    if (refused) return Promise.resolve(batches.map(() => ({ error: refused })));
    const seq = this.nextSeq++;
    const request: WriterRequest = { seq, batches, clock };
    return new Promise((resolve) => {
      this.inflight.set(seq, { resolve, batches: batches.length });
      this.worker.postMessage(request);
    });
  }

  /** Waits for every commit in flight, then closes the thread's connection. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.inflight.size > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    const exited = new Promise((resolve) => this.worker.once('exit', resolve));
    this.worker.postMessage('stop');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    await this.worker.terminate();
  }

  private spawn(): Worker {
    const worker = new Worker(workerEntry(), { eval: true, workerData: { ...this.options, path: this.path } });
    let committed = false;
    let lastError = '';
    worker.on('message', (reply: WriterReply) => {
      committed = true;
      const waiter = this.inflight.get(reply.seq);
      this.inflight.delete(reply.seq);
      waiter?.resolve(reply.outcomes);
      if (this.inflight.size === 0) this.drained?.();
    });
    worker.on('error', (err) => {
      lastError = err.message;
      this.onFailure(err.message);
    });
    worker.on('exit', (code) => {
      if (this.stopping && this.inflight.size === 0) return;
      // The thread died (a bug or an out-of-memory): what was in flight may or may not be
      // committed, so it fails (a client resend is deduplicated); later appends get a new thread.
      const failed = [...this.inflight.values()];
      this.inflight.clear();
      const error = { error: `SqliteStore: the writer thread exited (code ${code}) with this commit in flight` };
      for (const waiter of failed) waiter.resolve(Array.from({ length: waiter.batches }, () => error));
      this.drained?.();
      if (!committed) {
        // It never worked: a new one would die the same way, so appends fail with the reason.
        this.broken = `SqliteStore: the writer thread cannot run: ${lastError || `exit code ${code}`}`;
        this.onFailure(this.broken);
      } else if (!this.stopping) {
        this.onFailure(`the SQLite writer thread exited (code ${code}); starting a new one`);
        this.worker = this.spawn();
      }
    });
    return worker;
  }
}

/**
 * The thread's bootstrap: it imports sqlite-writer-worker from beside this module. Built (.js), a
 * plain import; from source (.ts, `--import tsx`), tsx's loader is registered in the thread first,
 * since a worker thread does not inherit the loader hooks of the main thread.
 */
function workerEntry(): string {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = new URL(`./sqlite-writer-worker${fromSource ? '.ts' : '.js'}`, import.meta.url).href;
  if (!fromSource) return `import(${JSON.stringify(entry)});`;
  const tsx = import.meta.resolve('tsx/esm/api');
  return `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry)}); });`;
}
