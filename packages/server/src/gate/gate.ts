import { FpnnErrorCode, judgeAfterStall, RtmError, type IncomingQuest, type Payload } from '@rtm/fpnn';
import type { Logger } from '../observability/logger.js';
import type { HistogramSeries, Metrics, Tally } from '../observability/metrics.js';
import { RepeatFilter } from '../observability/repeats.js';
import { transportLabel, type Transport } from '../transport/transport.js';
import { Connection, type ConnectionCipher, type ConnectionHooks } from './connection.js';
import { isInternalPeer } from './internal-address.js';

export type GateName = 'server' | 'client';

export interface GateOptions {
  name: GateName;
  log: Logger;
  metrics: Metrics;
  maxFrameBytes: number;
  /** Largest frame of a connection before `Connection.liftFrameLimit()` (client gate: its login). */
  maxFrameBytesBeforeLift?: number;
  /** Quests a connection may send before `Connection.liftFrameLimit()` (client gate: its login). */
  maxQuestsBeforeLift?: number;
  maxOutboundBytes: number;
  pushTimeoutMs: number;
  pingIntervalMs: number;
  idleTimeoutMs: number;
  /**
   * Whether frames we send count as activity for the idle timeout. The reference measures frames
   * either way (server gate: the Python SDK does not answer pings without a push processor, so a
   * backend that only listens to pushes may send nothing for long); the client gate counts only
   * frames received, so a vanished device is noticed. Even here our frames count only for a peer
   * that has sent a whole frame, and never while it holds one unfinished (see `idleSince`).
   */
  idleCountsOutbound: boolean;
  /**
   * The cluster bus, when it orders events across nodes (bus.ts `sent`): the answer of a quest that
   * published events waits until they are ordered, so a call made after that answer, to any node,
   * has its events handled after them on every node.
   */
  published?: { sentMark(): number; sent(mark: number): Promise<void> | undefined };
  /** What `*infos` tells of this node (spec/fpnn.md §8: a server-defined map). */
  infos?: () => Payload;
  /** Creates the cipher of an encrypted TCP connection from a `*key` payload; undefined = encryption off. */
  keyExchange?: (payload: Payload) => ConnectionCipher;
}

/**
 * What both gates share: the connections of one listener, keepalive (`ping` every interval to
 * connections that `shouldPing`; idle ones closed), metrics per quest, in-flight tracking for a
 * graceful stop. Subclasses decide what a quest means (`serve`).
 */
export abstract class Gate<Session> {
  protected readonly connections = new Set<Connection<Session>>();
  private keepalive: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  protected stopping = false;

  constructor(protected readonly options: GateOptions) {
    this.hooks = this.makeHooks();
  }

  get log(): Logger {
    return this.options.log;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  // Series kept per (method, outcome): building a 3-label key per quest costs ~300 ns (see TalliedCounter).
  private readonly questTallies = new Map<string, Tally>();
  private durations: HistogramSeries | undefined;

  /** Counts one answered quest and its duration. */
  protected count(method: string, outcome: string, started: number): void {
    const { metrics, name } = this.options;
    const label = this.methodLabel(method);
    const key = `${label}\u0000${outcome}`;
    let tally = this.questTallies.get(key);
    if (!tally) this.questTallies.set(key, (tally = metrics.quests.tally(name, label, outcome)));
    tally.n++;
    (this.durations ??= metrics.questSeconds.tally(name)).observe((performance.now() - started) / 1000);
  }

  /** Whether `method` is served by this gate (anything else is labelled 'unknown' in metrics). */
  protected abstract knows(method: string): boolean;

  /**
   * The metrics label of a method: peers choose method names, so only known ones become labels
   * (random names would grow the time series without bound).
   */
  protected methodLabel(method: string): string {
    return this.isBuiltin(method) || this.knows(method) ? method : 'unknown';
  }

  /**
   * The built-in methods a gate serves itself (spec/fpnn.md §8), on either gate, before a login too
   * (the reference serves the `*` methods in its I/O layer), to loopback and private addresses
   * only; from anywhere else 20013 FORBIDDEN, as the reference answers its internal-only methods.
   * `*status`: `{status: true}` while the gate serves (during a stop, 20014 like any quest).
   * `*infos`: what this node is and holds (`infos`), and this gate's name and quests in flight.
   * `*tune` is not implemented (20004, as any unknown method): nothing here is tuned at run time.
   */
  protected builtin(method: string, remote: string): Payload {
    if (!isInternalPeer(remote)) throw new RtmError(FpnnErrorCode.CORE_FORBIDDEN, `${method} is served to internal networks only`);
    if (method === '*status') return { status: true };
    return { ...this.options.infos?.(), gate: this.options.name, inFlight: this.inFlight };
  }

  /** Whether `method` is one of the built-ins of `builtin`. */
  protected isBuiltin(method: string): boolean {
    return method.charCodeAt(0) === 42 /* '*' */ && (method === '*status' || method === '*infos');
  }

  /** Serves one quest (never `*ping`/`*key` nor a `builtin`). Throw RtmError for an error answer. */
  protected abstract serve(conn: Connection<Session>, quest: IncomingQuest): Payload | Promise<Payload>;
  /** Whether keepalive pings go to this connection (client gate: logged-in ones only). */
  protected abstract shouldPing(conn: Connection<Session>): boolean;
  /** Whether a connection that should have logged in by `now` has not (client gate); closed then. */
  protected loginOverdue(_conn: Connection<Session>, _now: number): boolean {
    return false;
  }
  /** A connection of this gate closed. */
  protected abstract closed(conn: Connection<Session>, reason: string): void;

  /** 'handler failed' lines: one per kind of failure per 10 s (a store outage fails every quest alike). */
  private readonly internalErrors = new RepeatFilter();

  /**
   * A quest failed unexpectedly (answered 20001): logged at error, but one line per method and
   * error message per 10 s (`internalErrors`), over TCP, WebSocket and the HTTP bridge alike.
   */
  protected internalError(err: unknown, method: string, fields: Record<string, unknown>, message: string): void {
    const seen = this.internalErrors.admit(`${method}\0${(err as Error | undefined)?.message ?? String(err)}`);
    if (!seen.log) return;
    const all = { err, ...fields, method };
    this.log.error(seen.repeats > 0 ? { ...all, repeats: seen.repeats } : all, message);
  }

  /** The same hooks serve every connection of this gate (no closures per connection). */
  private readonly hooks: ConnectionHooks<Session>;

  private makeHooks(): ConnectionHooks<Session> {
    return {
      onQuest: (c, quest) => this.track(c, quest),
      onKeyExchange: this.options.keyExchange ? (_c, payload) => this.options.keyExchange!(payload) : undefined,
      onClose: (c, reason) => {
        // A connection whose first bytes were bad closes inside its constructor, before accept()
        // counted it: only what was counted is taken off (the gauge went below zero).
        if (this.connections.delete(c))
          this.options.metrics.connections.dec({ gate: this.options.name, transport: transportLabel(c.transport) });
        if (reason !== 'peer closed') this.options.metrics.disconnects.inc({ gate: this.options.name, reason: reason.split(':')[0]! });
        this.log.debug({ conn: c.id, remote: c.remote, reason }, 'connection closed');
        this.closed(c, reason);
      },
      onInternalError: (c, err, quest) => this.internalError(err, quest.method, { conn: c.id }, 'handler failed'),
      onBytesIn: (n) => (this.traffic.in += n),
      onBytesOut: (n) => (this.traffic.out += n),
    };
  }

  private get traffic(): { in: number; out: number } {
    return this.options.metrics.traffic[this.options.name];
  }

  accept(transport: Transport): void {
    if (this.stopping) {
      transport.start({ onTransportData: () => undefined, onTransportClose: () => undefined });
      transport.close();
      return;
    }
    const { name, metrics } = this.options;
    const conn: Connection<Session> = new Connection<Session>(
      transport,
      this.hooks,
      {
        maxFrameBytes: this.options.maxFrameBytes,
        maxFrameBytesBeforeLift: this.options.maxFrameBytesBeforeLift,
        maxQuestsBeforeLift: this.options.maxQuestsBeforeLift,
        maxOutboundBytes: this.options.maxOutboundBytes,
        pushTimeoutMs: this.options.pushTimeoutMs,
      },
      this.log,
    );
    if (conn.closed) return;
    this.connections.add(conn);
    metrics.connections.inc({ gate: name, transport: transportLabel(transport) });
    this.log.debug({ conn: conn.id, remote: conn.remote, transport: transportLabel(transport) }, 'connection opened');
    this.startKeepalive();
  }

  /**
   * Runs a quest with metrics and in-flight accounting; errors propagate to become error answers.
   * Not an async function: a handler that answers at once is counted at once, and one that
   * returns a promise gets one `then` (it runs for every quest).
   */
  protected track(conn: Connection<Session>, quest: IncomingQuest): Payload | Promise<Payload> {
    const started = performance.now();
    this.inFlight++;
    const mark = this.options.published?.sentMark();
    let result: Payload | Promise<Payload>;
    try {
      if (this.stopping) throw new RtmError(FpnnErrorCode.CORE_SERVER_STOPPING, 'server is shutting down');
      result = this.isBuiltin(quest.method) ? this.builtin(quest.method, conn.remote) : this.serve(conn, quest);
    } catch (err) {
      this.done(quest.method, failure(err), started);
      throw err;
    }
    if (!(result instanceof Promise)) {
      const ordered = this.ordered(mark, result, conn);
      if (ordered) return this.tracked(quest.method, ordered, started);
      this.done(quest.method, 'ok', started);
      return result;
    }
    if (mark !== undefined) result = result.then((answer) => this.ordered(mark, answer, conn) ?? answer);
    return this.tracked(quest.method, result, started);
  }

  /**
   * The answer once the events published since `mark` are ordered across nodes (`published`);
   * undefined when there is nothing to wait for. Meanwhile pushes to `conn` wait behind the answer,
   * as they would without the wait (a listening sender gets its own message after the answer).
   */
  protected ordered(mark: number | undefined, answer: Payload, conn?: Connection<Session>): Promise<Payload> | undefined {
    const sent = mark === undefined ? undefined : this.options.published!.sent(mark);
    if (!sent) return undefined;
    conn?.holdPushes();
    return sent.then(() => {
      // The answer is written in this microtask drain; setImmediate runs after it.
      if (conn) setImmediate(() => conn.releasePushes());
      return answer;
    });
  }

  private tracked(method: string, result: Promise<Payload>, started: number): Promise<Payload> {
    return result.then(
      (answer) => {
        this.done(method, 'ok', started);
        return answer;
      },
      (err: unknown) => {
        this.done(method, failure(err), started);
        throw err;
      },
    );
  }

  /** A quest that arrived another way (the HTTP bridge) starts: `stop()` waits for it too. */
  protected begin(): void {
    this.inFlight++;
  }

  /** A tracked quest ended with this outcome ('ok', an error code, or 'internal'). */
  protected done(method: string, outcome: string, started: number): void {
    this.count(method, outcome, started);
    if (--this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private startKeepalive(): void {
    if (this.keepalive) return;
    // Checks at least 4 times per idle timeout, and a whole number of times per ping interval, so
    // that pings go out every RTM_PING_INTERVAL_MS, not at the check nearest to it (defaults: a
    // check every 10 s, a ping every 20 s; with checks every idle ÷ 4 = 15 s they came every 15 s).
    const finest = Math.min(this.options.pingIntervalMs, Math.max(100, Math.floor(this.options.idleTimeoutMs / 4)));
    const every = Math.max(100, Math.floor(this.options.pingIntervalMs / Math.ceil(this.options.pingIntervalMs / finest)));
    let lastPing = Date.now();
    let tickedAt = lastPing;
    const check = (): void => {
      const now = Date.now();
      const pingDue = now - lastPing >= this.options.pingIntervalMs - every / 2;
      if (pingDue) lastPing = now;
      for (const conn of this.connections) {
        conn.peer.expire(now);
        if (now - this.idleSince(conn, now) > this.options.idleTimeoutMs) {
          this.log.info({ conn: conn.id, remote: conn.remote }, 'idle connection closed');
          conn.close('idle timeout');
        } else if (this.loginOverdue(conn, now)) {
          this.log.info({ conn: conn.id, remote: conn.remote }, 'connection closed: no login within the idle timeout');
          conn.close('login timeout');
        } else if (pingDue && this.shouldPing(conn)) {
          conn.quest('ping').catch(() => undefined); // a missing answer is not fatal; idleness is
        }
      }
    };
    this.keepalive = setInterval(() => {
      const dueAt = tickedAt + every;
      tickedAt = Date.now();
      // After a stall, frames that came meanwhile may be waiting unread: judged before the reads,
      // answered pushes would time out and active peers look idle.
      judgeAfterStall(dueAt, every, check);
    }, every);
    this.keepalive.unref();
  }

  /**
   * Since when (ms) a connection counts as idle (spec/fpnn.md §4: no complete frame either way).
   * Where our frames count (`idleCountsOutbound`), they do only for a peer that has sent a whole
   * frame (not for a WebSocket opened and left silent; over TCP the listener's sniff timeout and
   * the rule below cover it), and not while the peer holds a frame unfinished: a started frame
   * must complete within the timeout, or a peer that sends a header declaring a large payload and
   * then stops would be kept for ever by our pings, its bytes buffered (slowloris).
   */
  private idleSince(conn: Connection<Session>, now: number): number {
    if (!this.options.idleCountsOutbound || !conn.heard) return conn.lastActivity;
    const unfinished = conn.unfinishedSince(now);
    if (unfinished !== undefined) return Math.max(conn.lastActivity, unfinished);
    return Math.max(conn.lastActivity, conn.lastWrite);
  }

  /** Refuses new quests, waits (bounded) for in-flight ones, then closes every connection. */
  async stop(graceMs = 5000): Promise<void> {
    this.stopping = true;
    if (this.inFlight > 0) {
      await Promise.race([new Promise<void>((r) => this.idleWaiters.push(r)), new Promise((r) => setTimeout(r, graceMs).unref())]);
    }
    if (this.keepalive) clearInterval(this.keepalive);
    for (const conn of [...this.connections]) conn.close('server stopping');
  }
}

/** The metrics outcome of a failed quest: its error code, or 'internal' for anything not an RtmError. */
function failure(err: unknown): string {
  return err instanceof RtmError ? String(err.code) : 'internal';
}
