import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { StrBytes } from '@rtm/fpnn/str-bytes';
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

/** One flush of the event loop: the batches of one turn, in order; or a probe write (`probe`, no batches). */
export interface WriterRequest {
  seq: number;
  batches: (readonly NewMessage[])[];
  /** The store's clock when the turn ended (the store's `now`, so tests can set it). */
  clock: bigint;
  /** A write that stores nothing (`AppendCommitter.probe`): whether the thread can write now. */
  probe?: true;
}

export interface WriterReply {
  seq: number;
  /** One per batch; for a probe, none, or one error. */
  outcomes: BatchOutcome[];
}

/**
 * A message as it crosses to or from the thread. A structured clone keeps no StrBytes (a str body
 * whose bytes are not UTF-8), so its kind travels beside its bytes.
 */
type Carried<T extends { msg: string | Uint8Array }> = T & { strBytes?: true };

export function carried<T extends { msg: string | Uint8Array }>(m: T): Carried<T> {
  return m.msg instanceof StrBytes ? { ...m, msg: m.msg.plain(), strBytes: true } : m;
}

export function landed<T extends { msg: string | Uint8Array }>(m: Carried<T>): T {
  if (!m.strBytes) return m;
  const { strBytes: _, ...rest } = m;
  return { ...rest, msg: StrBytes.view(m.msg as Uint8Array) } as unknown as T;
}

/** An outcome as it crosses: the stored original of a duplicate is a message too. */
export const carriedOutcome = (o: BatchOutcome): BatchOutcome => eachDuplicate(o, carried);

const landedOutcome = (o: BatchOutcome): BatchOutcome => eachDuplicate(o, landed);

function eachDuplicate(o: BatchOutcome, f: <T extends { msg: string | Uint8Array }>(m: T) => T): BatchOutcome {
  return Array.isArray(o) ? o.map((x) => ('duplicate' in x ? { duplicate: f(x.duplicate) } : x)) : o;
}

/** What the thread says once its connection is open and its statements prepared. */
export const WRITER_READY = 'ready';

interface Waiter {
  resolve(outcomes: BatchOutcome[]): void;
  batches: number;
}

/** Back-off between attempts to start a writer thread that could not start: 100 ms doubling to 30 s. */
const RESPAWN_FIRST_MS = 100;
const RESPAWN_MAX_MS = 30_000;
/** A thread that keeps failing to start for the same reason is logged again at most this often. */
const RESPAWN_LOG_EVERY_MS = 60_000;
/**
 * A thread started in place of one that exited, and exits itself sooner than this after its
 * start, counts as a failed start: threads that die at every commit (a bug, too little memory for
 * a commit) are started again with the same back-off, not in a loop that spends the process on
 * thread starts and the log on their lines.
 */
const STABLE_AFTER_MS = 10_000;

export class SqliteWriterThread {
  private worker: Worker | undefined;
  private nextSeq = 1;
  private readonly inflight = new Map<number, Waiter>();
  private drained: (() => void) | undefined;
  private stopping = false;
  /** Resolves when the current thread has exited (undefined: none runs). */
  private exited: Promise<void> | undefined;
  /**
   * Why no thread can commit now: the last one could not start (it cannot open the database…).
   * Appends fail at once with it meanwhile, instead of waiting on a thread that fails the same way.
   */
  private broken: string | undefined;
  /**
   * Starts that failed in a row (a thread that could not start, or exited within STABLE_AFTER_MS of
   * its start), and the failure last logged (reason and when), to keep the log short.
   */
  private failedStarts = 0;
  private logged = { reason: '', at: 0 };
  private respawnTimer: NodeJS.Timeout | undefined;
  /**
   * The thread runs (or is being started) in place of one that exited, and has not run for
   * STABLE_AFTER_MS yet (`stableTimer`): should it exit, that is a failed start.
   */
  private replacing = false;
  private stableTimer: NodeJS.Timeout | undefined;
  /** Whether the last failed start was a thread that started, then exited soon after. */
  private crashed = false;

  constructor(
    private readonly path: string,
    private readonly options: WriterOptions,
    private readonly onFailure: (message: string) => void,
    /** A thread runs again after failed starts (for the operator's log). */
    private readonly onRecovery: (message: string) => void = () => {},
  ) {
    this.spawn();
  }

  /** Why appends cannot be committed now (no writer thread could start), or undefined. */
  get problem(): string | undefined {
    return this.broken;
  }

  /** Commits the batches (one transaction if possible); resolves with one outcome per batch, never rejects. */
  commit(batches: (readonly NewMessage[])[], clock: bigint): Promise<BatchOutcome[]> {
    return this.request({ seq: 0, batches: batches.map((b) => b.map(carried)), clock }, batches.length);
  }

  /** A write that stores nothing, on the thread's connection: undefined if it committed, else why not. */
  async probe(): Promise<string | undefined> {
    const [outcome] = await this.request({ seq: 0, batches: [], clock: 0n, probe: true }, 1);
    return outcome && 'error' in outcome ? outcome.error : undefined;
  }

  private request(request: WriterRequest, outcomes: number): Promise<BatchOutcome[]> {
    const refused = this.stopping ? 'SqliteStore: the store is closing' : this.broken;
    if (refused || !this.worker) {
      const error = { error: refused ?? 'SqliteStore: no writer thread runs' };
      return Promise.resolve(Array.from({ length: outcomes }, () => error));
    }
    request.seq = this.nextSeq++;
    const worker = this.worker;
    return new Promise((resolve) => {
      this.inflight.set(request.seq, { resolve, batches: outcomes });
      worker.postMessage(request);
    });
  }

  /** Waits for every commit in flight, then closes the thread's connection. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.respawnTimer);
    clearTimeout(this.stableTimer);
    if (this.inflight.size > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    const worker = this.worker;
    // None runs (it died and could not start again): nothing to wait for.
    if (!worker || !this.exited) return;
    worker.postMessage('stop');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.exited, new Promise((r) => (timer = setTimeout(r, 5000)))]);
    clearTimeout(timer);
    await worker.terminate();
  }

  private spawn(): void {
    this.respawnTimer = undefined;
    const worker = new Worker(workerEntry(), { eval: true, workerData: { ...this.options, path: this.path } });
    this.worker = worker;
    let readyAt: number | undefined;
    let lastError = '';
    let exited = (): void => {};
    this.exited = new Promise((resolve) => (exited = resolve));
    worker.on('message', (reply: WriterReply | typeof WRITER_READY) => {
      if (reply === WRITER_READY) {
        readyAt = Date.now();
        this.broken = undefined;
        const recovered = (): void => {
          if (this.failedStarts > 0) this.onRecovery(`the SQLite writer thread runs again (after ${this.failedStarts} failed starts)`);
          this.failedStarts = 0;
          this.crashed = false;
          this.logged = { reason: '', at: 0 };
        };
        // After threads that could not start, this one is what was missing. After threads that
        // exited soon after their start, it must outlast that first.
        if (!this.crashed) recovered();
        if (this.replacing) {
          this.stableTimer = setTimeout(() => {
            this.replacing = false;
            recovered();
          }, STABLE_AFTER_MS);
          this.stableTimer.unref();
        }
        return;
      }
      const waiter = this.inflight.get(reply.seq);
      this.inflight.delete(reply.seq);
      waiter?.resolve(reply.outcomes.map(landedOutcome));
      if (this.inflight.size === 0) this.drained?.();
    });
    // Not logged here: the exit that follows says what became of the thread, in one line.
    worker.on('error', (err) => (lastError = err.message));
    worker.on('exit', (code) => {
      exited();
      if (this.worker === worker) {
        this.worker = undefined;
        this.exited = undefined;
      }
      // What was in flight may or may not be committed, so it fails (a client resend is
      // deduplicated).
      const failed = [...this.inflight.values()];
      this.inflight.clear();
      const error = { error: `SqliteStore: the writer thread exited (code ${code}) with this commit in flight` };
      for (const waiter of failed) waiter.resolve(Array.from({ length: waiter.batches }, () => error));
      this.drained?.();
      if (this.stopping) return;
      clearTimeout(this.stableTimer);
      const reason = lastError || `exit code ${code}`;
      const ranMs = readyAt === undefined ? undefined : Date.now() - readyAt;
      if (ranMs !== undefined && !(this.replacing && ranMs < STABLE_AFTER_MS)) {
        // It ran, then died (a bug, an out-of-memory): a new one, at once.
        this.failedStarts = 0;
        this.crashed = false;
        this.replacing = true;
        this.onFailure(`the SQLite writer thread exited (${reason}); starting a new one`);
        this.spawn();
        return;
      }
      // It could not start (the database cannot be opened: a file gone or made unreadable, no file
      // descriptors left…), or died soon after it did. That may pass, so starts are tried again with
      // back-off; appends fail at once with the reason meanwhile. Logged at the first failure, then
      // only when the reason changes or once a minute: a cause that lasts must not fill the log.
      this.crashed = ranMs !== undefined;
      this.broken =
        ranMs === undefined
          ? `SqliteStore: the writer thread cannot start: ${reason}`
          : `SqliteStore: the writer thread exited ${ranMs} ms after its start, as the one before it: ${reason}`;
      this.failedStarts++;
      const delay = Math.min(RESPAWN_FIRST_MS * 2 ** (this.failedStarts - 1), RESPAWN_MAX_MS);
      const now = Date.now();
      const logKey = `${this.crashed ? 'exited' : 'start'}: ${reason}`;
      if (logKey !== this.logged.reason || now - this.logged.at >= RESPAWN_LOG_EVERY_MS) {
        this.onFailure(`${this.broken}; appends fail until one starts (${this.failedStarts} failed starts, the next in ${delay} ms)`);
        this.logged = { reason: logKey, at: now };
      }
      this.respawnTimer = setTimeout(() => this.spawn(), delay);
      // The server's sockets keep the process alive; a store alone must not be kept open by this.
      this.respawnTimer.unref();
    });
  }
}

/**
 * The thread's bootstrap: it imports sqlite-writer-worker from beside this module. Built (.js), a
 * plain import; from source (.ts, `--import tsx`), tsx's loader is registered in the thread first,
 * since a worker thread does not inherit the loader hooks of the main thread. tsx's require hook,
 * not its ESM one: on Node 20 the ESM hooks run in a thread of their own, started for every writer
 * thread, which made each start ~0.3 s against ~0.1 s (tests open hundreds of stores). The code
 * reaches `require` through a dynamic import, which works whether the thread evaluates it as a
 * script or, under an inherited `--input-type=module`, as a module.
 */
function workerEntry(): string {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = new URL(`./sqlite-writer-worker${fromSource ? '.ts' : '.js'}`, import.meta.url).href;
  if (!fromSource) return `import(${JSON.stringify(entry)});`;
  const tsx = createRequire(import.meta.url).resolve('tsx/cjs/api');
  return `import('node:module').then(({ createRequire }) => {
    const require = createRequire(${JSON.stringify(tsx)});
    require(${JSON.stringify(tsx)}).register();
    require(${JSON.stringify(fileURLToPath(entry))});
  });`;
}
