import { FpnnErrorCode } from './codes.js';
import { decodeFramePayload, encodeAnswerFrame, encodeQuestFrame, type Payload } from './codec.js';
import { connectionClosedError, RtmError, timeoutError } from './errors.js';
import { Flag, type AnswerFrame, type Frame, type PayloadFlag, type QuestFrame } from './frame.js';
import { judgeAfterStall } from './stall.js';

/** A quest received from the other side, after its payload was decoded. */
export interface IncomingQuest {
  readonly method: string;
  readonly payload: Payload;
  readonly oneway: boolean;
  readonly flag: PayloadFlag;
  readonly seq: number;
}

/**
 * Handles one incoming quest. Return the answer payload (or a promise of it); throw an `RtmError`
 * for an error answer. Anything else thrown becomes a 20001 "internal error" answer and is reported
 * through `onInternalError`. The return value of a oneway quest is ignored.
 */
export type QuestHandler = (quest: IncomingQuest) => Payload | Promise<Payload> | void | Promise<void>;

export interface PeerOptions {
  /** Writes one whole frame to the transport. */
  write(frame: Uint8Array): void;
  /** Serves quests from the other side. Without one, every quest gets 20004 unknown method. */
  onQuest?: QuestHandler;
  /** Default time to wait for an answer to our quests. @default 20000 ms */
  questTimeoutMs?: number;
  /** Called with unexpected handler errors (they are answered with 20001). */
  onInternalError?(err: unknown, quest: IncomingQuest): void;
  /**
   * The owner calls `expire()` itself (e.g. one timer for all the connections of a server)
   * instead of the peer keeping a timer of its own while quests are pending. @default false
   */
  externalExpiry?: boolean;
}

interface Pending {
  method: string;
  deadline: number;
  timeoutMs: number;
  resolve(answer: Payload): void;
  reject(err: RtmError): void;
}

export interface QuestOptions {
  timeoutMs?: number;
  flag?: PayloadFlag;
}

/**
 * One end of an FPNN connection, with no I/O of its own (spec/fpnn.md §3): numbers its own
 * quests, matches answers by seq, times quests out, answers incoming quests in the quest's own
 * encoding, and fails everything pending when the connection closes. Used by server connections
 * and by both SDKs; the transport feeds `receive()` and provides `write()`.
 */
export class FpnnPeer {
  private nextSeq = 1;
  private readonly pending = new Map<number, Pending>();
  private sweepTimer: ReturnType<typeof setInterval> | undefined;
  private sweepEvery = 0;
  /** When the sweep last ran (or was started), to tell a tick that comes late. */
  private sweptAt = 0;
  private closedReason: string | undefined;
  readonly questTimeoutMs: number;

  constructor(private readonly options: PeerOptions) {
    this.questTimeoutMs = options.questTimeoutMs ?? 20_000;
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  get pendingQuests(): number {
    return this.pending.size;
  }

  /** Allocates the seq for a twoway quest we send (uint32, wraps, never 0). */
  allocSeq(): number {
    const seq = this.nextSeq;
    this.nextSeq = seq >= 0xffffffff ? 1 : seq + 1;
    return seq;
  }

  /**
   * Sends a twoway quest and resolves with the answer payload, or rejects with an `RtmError`.
   * Never throws: a payload that cannot be encoded rejects with 20005, so callers that chain
   * `.catch()` on the result see every failure.
   */
  quest(method: string, payload: Payload, options: QuestOptions = {}): Promise<Payload> {
    if (this.closedReason !== undefined) return Promise.reject(connectionClosedError(this.closedReason));
    const seq = this.allocSeq();
    const timeoutMs = options.timeoutMs ?? this.questTimeoutMs;
    const flag = options.flag ?? Flag.MSGPACK;
    let frame: Uint8Array;
    try {
      frame = encodeQuestFrame(method, payload, flag, false, seq);
    } catch (err) {
      return Promise.reject(
        new RtmError(FpnnErrorCode.CORE_ENCODING, `quest '${method}' could not be encoded: ${(err as Error).message}`, { cause: err }),
      );
    }
    return new Promise<Payload>((resolve, reject) => {
      this.pending.set(seq, { method, deadline: Date.now() + timeoutMs, timeoutMs, resolve, reject });
      this.ensureSweep(timeoutMs);
      try {
        this.options.write(frame);
      } catch (err) {
        this.pending.delete(seq);
        reject(new RtmError(FpnnErrorCode.CORE_SEND_ERROR, `could not send '${method}': ${(err as Error).message}`));
      }
    });
  }

  /**
   * Waits for the answer to a quest the caller wrote itself with `seq` from `allocSeq()` (used for
   * `*key`, which must go out in plaintext before the connection switches to encryption).
   */
  expectAnswer(seq: number, method: string, timeoutMs = this.questTimeoutMs): Promise<Payload> {
    if (this.closedReason !== undefined) return Promise.reject(connectionClosedError(this.closedReason));
    return new Promise<Payload>((resolve, reject) => {
      this.pending.set(seq, { method, deadline: Date.now() + timeoutMs, timeoutMs, resolve, reject });
      this.ensureSweep(timeoutMs);
    });
  }

  /** Sends a oneway quest (no seq, never answered). */
  oneway(method: string, payload: Payload, flag: PayloadFlag = Flag.MSGPACK): void {
    if (this.closedReason !== undefined) return;
    this.options.write(encodeQuestFrame(method, payload, flag, true));
  }

  /** Feeds one decoded frame from the transport. */
  receive(frame: Frame): void {
    if (frame.kind === 'answer') return this.receiveAnswer(frame);
    void this.receiveQuest(frame);
  }

  private receiveAnswer(frame: AnswerFrame): void {
    const entry = this.pending.get(frame.seq);
    if (!entry) return; // late answer to a timed-out quest, or to an untracked push
    this.pending.delete(frame.seq);
    const ok = frame.ok;
    let payload: Payload;
    try {
      payload = decodeFramePayload(frame);
    } catch (err) {
      entry.reject(err as RtmError);
      return;
    }
    if (ok) return entry.resolve(payload);
    const code = typeof payload.code === 'number' ? payload.code : Number(payload.code ?? FpnnErrorCode.CORE_UNKNOWN_ERROR);
    entry.reject(
      new RtmError(Number.isFinite(code) ? code : FpnnErrorCode.CORE_UNKNOWN_ERROR, String(payload.ex ?? 'error answer without ex')),
    );
  }

  private async receiveQuest(frame: QuestFrame): Promise<void> {
    let quest: IncomingQuest | undefined;
    let answer: Payload;
    let ok = true;
    try {
      const payload = decodeFramePayload(frame);
      quest = {
        method: frame.method,
        payload,
        oneway: frame.oneway,
        flag: frame.flag,
        seq: frame.seq,
      };
      if (!this.options.onQuest) throw new RtmError(FpnnErrorCode.CORE_UNKNOWN_METHOD, `unknown method '${frame.method}'`);
      const result = this.options.onQuest(quest);
      answer = ((result instanceof Promise ? await result : result) ?? {}) as Payload;
    } catch (err) {
      ok = false;
      if (err instanceof RtmError) answer = err.toAnswer();
      else {
        this.options.onInternalError?.(
          err,
          quest ?? { method: frame.method, payload: {}, oneway: frame.oneway, flag: frame.flag, seq: frame.seq },
        );
        answer = { code: FpnnErrorCode.CORE_UNKNOWN_ERROR, ex: 'internal server error' };
      }
    }
    if (frame.oneway || this.closedReason !== undefined) return;
    try {
      this.writeAnswer(frame.seq, frame.flag, answer, ok);
    } catch {
      // The transport refused the write: it is closing, and its close will end this peer. Thrown
      // on, it would be an unhandled rejection (nobody awaits this method).
    }
  }

  /** Writes an answer frame for a quest we received. */
  writeAnswer(seq: number, flag: PayloadFlag, payload: Payload, ok = true): void {
    let frame: Uint8Array;
    try {
      frame = encodeAnswerFrame(seq, payload, flag, ok);
    } catch (err) {
      const error = { code: FpnnErrorCode.CORE_ENCODING, ex: `answer could not be encoded: ${(err as Error).message}` };
      frame = encodeAnswerFrame(seq, error, flag, false);
    }
    this.options.write(frame);
  }

  /** Fails every pending quest; later quests reject at once. Idempotent. */
  close(reason = 'connection closed'): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    this.stopSweep();
    const pending = [...this.pending.values()];
    this.pending.clear();
    // Each its own error: a caller may add to the one it gets (the client SDK's `mid` of a send).
    for (const entry of pending) entry.reject(connectionClosedError(reason));
  }

  // One coarse timer per peer instead of one timer per quest: cheap at 100k quests/s. It ticks at
  // a quarter of the shortest timeout pending (10 ms to 1 s), so that a quest is rejected at most
  // that long after its time is up: paced on questTimeoutMs alone, a call with timeoutMs 100 under
  // the default 20 s would be rejected up to 1 s late.
  private ensureSweep(timeoutMs: number): void {
    if (this.options.externalExpiry) return;
    const every = sweepEveryMs(timeoutMs);
    if (this.sweepTimer && this.sweepEvery <= every) return;
    this.startSweep(every);
  }

  private startSweep(every: number): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepEvery = every;
    this.sweptAt = Date.now();
    this.sweepTimer = setInterval(() => this.sweep(), every);
    (this.sweepTimer as { unref?: () => void }).unref?.();
  }

  private stopSweep(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  /**
   * Rejects the pending quests whose time is up (call it yourself with `externalExpiry`); returns
   * the shortest timeout among the quests still pending (Infinity when none is).
   */
  expire(now = Date.now()): number {
    let shortest = Infinity;
    for (const [seq, entry] of this.pending) {
      if (entry.deadline <= now) {
        this.pending.delete(seq);
        entry.reject(timeoutError(entry.method, entry.timeoutMs));
      } else if (entry.timeoutMs < shortest) shortest = entry.timeoutMs;
    }
    return shortest;
  }

  private sweep(): void {
    const dueAt = this.sweptAt + this.sweepEvery;
    this.sweptAt = Date.now();
    // After a stall, answers that came in time may be waiting unread: expired after the reads.
    judgeAfterStall(dueAt, this.sweepEvery, () => {
      if (this.sweepTimer) this.sweepNow();
    });
  }

  private sweepNow(): void {
    const every = sweepEveryMs(this.expire());
    if (this.pending.size === 0) this.stopSweep();
    // The short quest that sped the timer up is gone: back to the pace of the ones left.
    else if (every > this.sweepEvery) this.startSweep(every);
  }
}

/** How often to look for expired quests when the shortest pending timeout is `timeoutMs`. */
function sweepEveryMs(timeoutMs: number): number {
  return Math.max(10, Math.min(1000, Math.floor(timeoutMs / 4)));
}
