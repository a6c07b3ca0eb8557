import { FpnnErrorCode, RtmError, timeoutError, type IncomingQuest, type QuestHandler } from '@rtm/fpnn';
import { reconnectDelayMs, type ResolvedOptions } from './options.js';
import { TcpConnection } from './tcp.js';
import type { ClosedInfo, ConnectedInfo, ConnectionState } from './types.js';

export interface ConnectionHooks {
  onQuest: QuestHandler;
  /** Runs on every new connection before waiting calls are released (restores the listen state). */
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

/**
 * Owns the connection to the server gate: opens it, reconnects with the back-off of
 * server-api.md §8, lets calls wait for a usable connection, and watches server pings.
 *
 * States: idle → connecting → connected ⇄ reconnecting (autoReconnect) or → disconnected
 * (no autoReconnect); close() → closed from anywhere; connect() again from idle, disconnected
 * or closed.
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
  /** The connection attempt in flight (connect() or a reconnect): close() aborts it and waits for it. */
  private opening: { readonly abort: AbortController; readonly settled: Promise<unknown> } | undefined;
  private readonly waiters = new Set<Waiter>();
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

  async connect(): Promise<void> {
    const s = this.stateValue;
    if (s === 'connected' && this.ready) return;
    if (s === 'connecting' || s === 'reconnecting' || s === 'connected') {
      await this.waitReady('connect', this.options.connectTimeoutMs);
      return;
    }
    const epoch = ++this.epoch;
    this.stateValue = 'connecting';
    this.failures = 0;
    let connection: TcpConnection;
    try {
      connection = await this.open();
    } catch (err) {
      if (epoch === this.epoch) {
        this.stateValue = 'idle';
        this.rejectWaiters(err as RtmError);
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
    if (this.ready && this.current) return Promise.resolve(this.current);
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
    this.pingTimer = setTimeout(() => {
      this.pingTimer = undefined;
      if (this.current === connection) connection.close(`no ping from the server for ${timeout} ms`);
    }, timeout);
    this.pingTimer.unref();
  }

  /** Closes the connection, stops reconnecting, fails waiting calls with 20012. Leaves no timer or socket. */
  async close(): Promise<void> {
    const wasActive = this.stateValue !== 'idle' && this.stateValue !== 'closed' && this.stateValue !== 'disconnected';
    this.epoch++;
    this.stateValue = 'closed';
    this.ready = false;
    this.clearTimers();
    this.rejectWaiters(closedByClient());
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

  private async adopt(connection: TcpConnection, reconnected: boolean, epoch: number): Promise<void> {
    this.current = connection;
    this.ready = false;
    this.stateValue = 'connected';
    this.openedAt = Date.now();
    this.lastPingAt = undefined;
    try {
      await this.hooks.onOpen(connection, reconnected);
    } catch (err) {
      this.options.logger.error('restoring the connection state failed', err);
      this.hooks.error(err as Error);
    }
    if (epoch !== this.epoch || this.current !== connection || !connection.isOpen) return;
    this.ready = true;
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.resolve(connection);
    }
    this.hooks.connected({ endpoint: this.options.endpoint, reconnected });
  }

  /** The current connection closed without close(): reconnect or give up. */
  private lost(connection: TcpConnection, reason: string): void {
    if (connection !== this.current) return;
    this.current = undefined;
    this.ready = false;
    if (this.pingTimer) clearTimeout(this.pingTimer);
    this.pingTimer = undefined;
    const stable = Date.now() - this.openedAt >= this.options.reconnect.stableAfterMs;
    this.failures = stable ? 0 : this.failures + 1;
    this.options.logger.warn(`connection to ${this.options.endpoint} lost: ${reason}`);
    if (this.options.autoReconnect) {
      this.stateValue = 'reconnecting';
      this.hooks.closed({ reason, willReconnect: true });
      if (this.stateValue === 'reconnecting') this.scheduleReconnect(this.epoch);
    } else {
      this.stateValue = 'disconnected';
      this.rejectWaiters(new RtmError(FpnnErrorCode.CORE_INVALID_CONNECTION, `connection lost: ${reason}`));
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
          reject(timeoutError(method, timeoutMs));
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  private rejectWaiters(err: RtmError): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  private clearTimers(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.pingTimer) clearTimeout(this.pingTimer);
    this.reconnectTimer = undefined;
    this.pingTimer = undefined;
  }
}
