import { FpnnErrorCode, judgeAfterStall, RtmError, type IncomingQuest, type QuestHandler } from '@rtm/fpnn';
import { reconnectDelayMs, type ResolvedOptions } from './options.js';
import { TcpConnection } from './tcp.js';
import type { ClosedInfo, ConnectedInfo, ConnectionState } from './types.js';

export interface ConnectionHooks {
  onQuest: QuestHandler;
  /**
   * Runs on every new connection before waiting calls are released (restores the listen state).
   * When it rejects, the connection is not adopted (see adopt).
   */
  onOpen(connection: TcpConnection, reconnected: boolean): Promise<void>;
  connected(info: ConnectedInfo): void;
  closed(info: ClosedInfo): void;
  error(err: Error): void;
}

interface Waiter {
  resolve(connection: TcpConnection): void;
  reject(err: RtmError): void;
  timer: ReturnType<typeof setTimeout>;
}

const closedByClient = (): RtmError => new RtmError(FpnnErrorCode.CORE_INVALID_CONNECTION, 'client closed');
const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const copyOf = (err: RtmError): RtmError => new RtmError(err.code, err.message, { cause: err });

/**
 * Owns the connection to the server gate: opens it, reconnects with the back-off of
 * server-api.md §8, lets calls wait for a usable connection, and watches server pings.
 *
 * States: idle → connecting → connected ⇄ reconnecting (autoReconnect) or → disconnected
 * (no autoReconnect); close() → closed from anywhere; connect() again from idle, disconnected
 * or closed. `connected` starts when the TCP connection is open; calls use it once its listen
 * state is restored (`ready`). A connect() whose open or restore fails goes back to idle.
 */
export class ConnectionManager {
  private stateValue: ConnectionState = 'idle';
  private current: TcpConnection | undefined;
  /** The current connection finished onOpen (listen restored): calls may use it. */
  private ready = false;
  /** Bumped by close() and connect(): async work of an older epoch discards its result. */
  private epoch = 0;
  private failures = 0;
  private openedAt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setTimeout> | undefined;
  private keepaliveTimer: ReturnType<typeof setInterval> | undefined;
  /** The connection whose listen state connect() is restoring: if it drops, connect() fails (lost() leaves it alone). */
  private restoringForConnect: TcpConnection | undefined;
  /** The connection attempt in flight (connect() or a reconnect): close() aborts it and waits for it. */
  private opening: { readonly abort: AbortController; readonly settled: Promise<unknown> } | undefined;
  private readonly waiters = new Set<Waiter>();
  /** The connect() under way, which a second connect() joins. */
  private connecting: Promise<void> | undefined;
  lastPingAt: number | undefined;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly hooks: ConnectionHooks,
  ) {}

  get state(): ConnectionState {
    return this.stateValue;
  }

  /** Consecutive failed connection attempts (0 once a connection stayed up). */
  get consecutiveFailures(): number {
    return this.failures;
  }

  /** Changes with every close() and connect(): what arrived before belongs to an ended session. */
  get currentEpoch(): number {
    return this.epoch;
  }

  connect(): Promise<void> {
    // A connect() while another is under way shares its outcome: waiting on its own timer, it
    // could fail while the first (whose `*key` and listen restore take longer) succeeds.
    if (this.connecting) return this.connecting;
    const s = this.stateValue;
    if (s === 'connected' && this.ready) return Promise.resolve();
    if (s === 'reconnecting' || s === 'connected') return this.waitReady('connect', this.options.connectTimeoutMs).then(() => undefined);
    const connecting = this.connectNow().finally(() => {
      if (this.connecting === connecting) this.connecting = undefined;
    });
    this.connecting = connecting;
    return connecting;
  }

  private async connectNow(): Promise<void> {
    const epoch = ++this.epoch;
    this.stateValue = 'connecting';
    this.failures = 0;
    let connection: TcpConnection;
    try {
      connection = await this.open();
    } catch (err) {
      if (epoch === this.epoch) {
        this.stateValue = 'idle';
        this.rejectWaiters(() => copyOf(err as RtmError));
      }
      throw err;
    }
    if (epoch !== this.epoch) {
      connection.close('closed by client');
      throw closedByClient();
    }
    await this.adopt(connection, false, epoch);
  }

  /** A connection usable for a quest, waiting for a (re)connection within `timeoutMs`. */
  acquire(method: string, timeoutMs: number): Promise<TcpConnection> {
    // A connection closed by us (the ping watchdog) is reported lost only at its socket's close
    // event: until then a call waits for the next one, as during a reconnect.
    if (this.ready && this.current?.isOpen) return Promise.resolve(this.current);
    switch (this.stateValue) {
      case 'idle':
        return Promise.reject(
          new RtmError(FpnnErrorCode.CORE_INVALID_CONNECTION, `cannot send '${method}': not connected (call connect() first)`),
        );
      case 'closed':
        return Promise.reject(new RtmError(FpnnErrorCode.CORE_INVALID_CONNECTION, `cannot send '${method}': client closed`));
      case 'disconnected':
        return Promise.reject(
          new RtmError(FpnnErrorCode.CORE_INVALID_CONNECTION, `cannot send '${method}': connection lost and autoReconnect is off`),
        );
      default:
        return this.waitReady(method, timeoutMs);
    }
  }

  /** Records a server ping and re-arms the ping watchdog of the current connection. */
  notePing(): void {
    this.lastPingAt = Date.now();
    const timeout = this.options.pingTimeoutMs;
    const connection = this.current;
    if (timeout <= 0 || !connection) return;
    if (this.pingTimer) clearTimeout(this.pingTimer);
    const armedAt = this.lastPingAt;
    this.pingTimer = setTimeout(() => {
      this.pingTimer = undefined;
      const judge = (): void => {
        if (this.current === connection && this.lastPingAt === armedAt) connection.close(`no ping from the server for ${timeout} ms`);
      };
      // After a stall, pings that came meanwhile may be waiting unread: judged after the reads, a
      // ping among them re-arms the watchdog instead.
      judgeAfterStall(armedAt + timeout, timeout, judge);
    }, timeout);
    this.pingTimer.unref();
  }

  /** Closes the connection, stops reconnecting, fails waiting calls with 20012. Leaves no timer or socket. */
  async close(): Promise<void> {
    const wasActive = this.stateValue !== 'idle' && this.stateValue !== 'closed' && this.stateValue !== 'disconnected';
    this.epoch++;
    this.connecting = undefined;
    this.stateValue = 'closed';
    this.ready = false;
    this.clearTimers();
    this.rejectWaiters(closedByClient);
    // An attempt still connecting would otherwise keep its socket and connect timer (up to
    // connectTimeoutMs) after close(), and with them the process.
    const opening = this.opening;
    this.opening = undefined;
    opening?.abort.abort(closedByClient());
    const connection = this.current;
    this.current = undefined;
    if (connection) {
      connection.close('closed by client');
      await connection.closed;
    }
    await opening?.settled;
    if (wasActive) this.hooks.closed({ reason: 'closed by client', willReconnect: false });
  }

  private open(): Promise<TcpConnection> {
    const o = this.options;
    let connection: TcpConnection | undefined;
    const abort = new AbortController();
    const opening = TcpConnection.open({
      host: o.host,
      port: o.port,
      connectTimeoutMs: o.connectTimeoutMs,
      questTimeoutMs: o.questTimeoutMs,
      encryption: o.encryption,
      onQuest: this.hooks.onQuest,
      onClose: (reason) => {
        if (connection) this.lost(connection, reason);
      },
      onInternalError: (err: unknown, quest: IncomingQuest) => o.logger.error(`push '${quest.method}' handler failed`, err),
      signal: abort.signal,
    });
    const attempt = { abort, settled: opening.catch(() => undefined) };
    this.opening = attempt;
    return opening
      .then((c) => (connection = c))
      .finally(() => {
        if (this.opening === attempt) this.opening = undefined;
      });
  }

  /**
   * Makes a new connection the current one: restores its listen state (hooks.onOpen), then releases
   * the waiting calls and reports `connected`. A connection whose listen state could not be
   * restored is never adopted: it would be connected but receive no push, for good. From connect()
   * (`reconnected` false) that fails connect() as a failed open does: back to idle, nothing retried
   * in the background. On a reconnect the connection is closed and lost() retries with back-off.
   */
  private async adopt(connection: TcpConnection, reconnected: boolean, epoch: number): Promise<void> {
    this.current = connection;
    this.ready = false;
    this.stateValue = 'connected';
    this.openedAt = Date.now();
    this.lastPingAt = undefined;
    if (!reconnected) this.restoringForConnect = connection;
    let failure: { error: unknown } | undefined;
    try {
      await this.hooks.onOpen(connection, reconnected);
    } catch (err) {
      failure = { error: err };
    } finally {
      if (this.restoringForConnect === connection) this.restoringForConnect = undefined;
    }
    if (epoch !== this.epoch) {
      // close() ran meanwhile: it closed this connection and failed the waiting calls. Not an error.
      connection.close('closed by client');
      if (!reconnected) throw closedByClient();
      return;
    }
    const usable = this.current === connection && connection.isOpen;
    if (!reconnected && (failure || !usable)) return this.failConnect(connection, usable, failure?.error);
    if (failure && usable) {
      this.options.logger.error(`restoring the listen state on ${this.options.endpoint} failed; reconnecting`, failure.error);
      this.hooks.error(failure.error as Error);
      // lost() then reports the close and schedules the next attempt (a failed one: the back-off grows).
      if (epoch === this.epoch && this.current === connection)
        connection.close(`the listen state could not be restored: ${messageOf(failure.error)}`);
      return;
    }
    // A reconnection that dropped during the restore: lost() has reported it and reconnects (or will, once its close is seen).
    if (!usable) return;
    this.ready = true;
    this.keepAlive(connection);
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.resolve(connection);
    }
    this.hooks.connected({ endpoint: this.options.endpoint, reconnected });
  }

  /**
   * connect() opened `connection` but could not restore its listen state (`usable`: the restore
   * failed with `error`), or the connection dropped meanwhile: as after a failed open, the client
   * goes back to idle, the waiting calls fail, nothing is retried, and connect() rejects.
   */
  private async failConnect(connection: TcpConnection, usable: boolean, error: unknown): Promise<never> {
    const endpoint = this.options.endpoint;
    const why = error === undefined ? 'connection closed' : messageOf(error);
    const failure = usable
      ? new RtmError(
          error instanceof RtmError ? error.code : FpnnErrorCode.CORE_INVALID_CONNECTION,
          `connected to ${endpoint} but restoring the listen state failed: ${why}`,
          { cause: error },
        )
      : new RtmError(
          FpnnErrorCode.CORE_INVALID_CONNECTION,
          `the connection to ${endpoint} closed while restoring the listen state: ${why}`,
        );
    this.options.logger.error(failure.message);
    if (this.current === connection) this.current = undefined; // lost() leaves its close alone
    this.ready = false;
    this.clearConnectionTimers();
    this.stateValue = 'idle';
    this.rejectWaiters(() => copyOf(failure));
    // As for a failed open: reject once the socket is gone.
    connection.close(failure.message);
    await connection.closed;
    throw failure;
  }

  /** The current connection closed without close(): reconnect or give up. */
  private lost(connection: TcpConnection, reason: string): void {
    if (connection !== this.current) return;
    this.current = undefined;
    // connect() is restoring this connection's listen state: it fails, as a failed open does (adopt).
    if (connection === this.restoringForConnect) return;
    // A connection that never became usable (its listen state was not restored) is a failed attempt too.
    const stable = this.ready && Date.now() - this.openedAt >= this.options.reconnect.stableAfterMs;
    this.ready = false;
    this.clearConnectionTimers();
    this.failures = stable ? 0 : this.failures + 1;
    this.options.logger.warn(`connection to ${this.options.endpoint} lost: ${reason}`);
    if (this.options.autoReconnect) {
      this.stateValue = 'reconnecting';
      this.hooks.closed({ reason, willReconnect: true });
      if (this.stateValue === 'reconnecting') this.scheduleReconnect(this.epoch);
    } else {
      this.stateValue = 'disconnected';
      this.rejectWaiters(() => new RtmError(FpnnErrorCode.CORE_INVALID_CONNECTION, `connection lost: ${reason}`));
      this.hooks.closed({ reason, willReconnect: false });
    }
  }

  private scheduleReconnect(epoch: number): void {
    const delay = reconnectDelayMs(this.failures, this.options.reconnect);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.attempt(epoch);
    }, delay);
  }

  private async attempt(epoch: number): Promise<void> {
    let connection: TcpConnection;
    try {
      connection = await this.open();
    } catch (err) {
      if (epoch !== this.epoch) return;
      this.failures++;
      this.options.logger.warn(`reconnecting to ${this.options.endpoint} failed (${this.failures} in a row)`, err);
      this.hooks.error(err as Error);
      if (epoch === this.epoch && this.stateValue === 'reconnecting') this.scheduleReconnect(epoch);
      return;
    }
    if (epoch !== this.epoch) {
      connection.close('closed by client');
      return;
    }
    await this.adopt(connection, true, epoch);
  }

  private waitReady(method: string, timeoutMs: number): Promise<TcpConnection> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          reject(this.notReadyError(method, timeoutMs));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  /**
   * 20003 like a quest without answer, but saying that nothing was sent: a send that timed out here
   * cannot have been stored, unlike one whose answer did not come (fpnn's timeoutError says "got no answer").
   */
  private notReadyError(method: string, timeoutMs: number): RtmError {
    const what = method === 'connect' ? 'connect()' : `'${method}' was not sent`;
    return new RtmError(
      FpnnErrorCode.CORE_TIMEOUT,
      `${what}: no usable connection to ${this.options.endpoint} within ${timeoutMs} ms (state: ${this.stateValue})`,
    );
  }

  /** Fails every waiting call, each with an error of its own (a caller may add to it, as sends add `mid`). */
  private rejectWaiters(error: () => RtmError): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(error());
    }
  }

  private clearTimers(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.clearConnectionTimers();
  }

  /** The timers of the current connection: the ping watchdog and the keepalive. */
  private clearConnectionTimers(): void {
    if (this.pingTimer) clearTimeout(this.pingTimer);
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.pingTimer = undefined;
    this.keepaliveTimer = undefined;
  }

  /**
   * Sends a `*ping` whenever no server `ping` came for `keepAliveMs`: the server pings only
   * connections that listen, and closes the others once idle, which would cost a reconnection
   * (and a line in both logs) every idle timeout.
   */
  private keepAlive(connection: TcpConnection): void {
    const every = this.options.keepAliveMs;
    if (every <= 0) return;
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = setInterval(() => {
      if (this.current !== connection || !connection.isOpen) return;
      if (Date.now() - (this.lastPingAt ?? 0) < every) return;
      connection.peer.quest('*ping', {}).catch(() => undefined); // a lost connection is seen by its close
    }, every);
    this.keepaliveTimer.unref();
  }
}
