import { FpnnErrorCode, RtmError, RtmErrorCode, type Payload, type QuestHandler } from '@rtm/fpnn';
import { Connection } from './connection.js';
import type { NetworkEvents, ReconnectStrategy, ResolvedOptions } from './options.js';
import { defaultWebSocketFactory } from './transport.js';
import type { ClosedEvent, ConnectedEvent, DisconnectedEvent, ReloginCompletedEvent } from './types.js';

export type SessionState = 'idle' | 'connecting' | 'online' | 'reconnecting' | 'closed';

/** What the session reports to its owner (the client turns these into events). */
export interface SessionHooks {
  onQuest: QuestHandler;
  connected(event: ConnectedEvent): void;
  reloginCompleted(event: ReloginCompletedEvent): void;
  disconnected(event: DisconnectedEvent): void;
  closed(event: ClosedEvent): void;
}

/** How long a connection that looks online has to answer a `*ping` when it may have died unseen (`probe`). */
const PROBE_TIMEOUT_MS = 5_000;

const cancelled = (): RtmError =>
  new RtmError(FpnnErrorCode.CORE_CANCELLED, 'superseded by a later login(), logout(), close() or a kickout');

/**
 * The wait before relogin attempt `failedSoFar + 1`, as the browser SDK computes it: the first
 * `startConnectFailedCount` attempts are immediate, then each waits `maxIntervalSeconds /
 * linearRegressiveCount` seconds longer than the previous one, up to `maxIntervalSeconds`.
 */
export function reloginDelayMs(strategy: Readonly<Required<ReconnectStrategy>>, failedSoFar: number, previousMs: number): number {
  if (failedSoFar < strategy.startConnectFailedCount) return previousMs;
  const maxMs = strategy.maxIntervalSeconds * 1000;
  return Math.min(maxMs, previousMs + maxMs / strategy.linearRegressiveCount);
}

/**
 * The wait actually used for a back-off step of `ms`: a random point of its upper half. Clients
 * that lost their connections together (a server restart, a node going away) would otherwise come
 * back in the same millisecond at every step of the schedule, all their logins at once; spread
 * over [ms/2, ms] they arrive over half a step, and no wait is longer than the schedule's (nor
 * `maxIntervalSeconds`). Immediate attempts stay immediate (a network blip is mended at once).
 */
export function jitteredMs(ms: number, random: () => number = Math.random): number {
  return ms <= 0 ? 0 : ms / 2 + (random() * ms) / 2;
}

/**
 * The login session (client-api.md §2, §9): connect + `auth`, automatic relogin with the browser
 * SDK's back-off after the connection is lost, the ping watchdog, `bye`, and kickout handling.
 *
 * Every login()/logout()/close() starts a new generation; work of an older generation (a pending
 * reconnect, a connection still opening) notices and drops its result.
 */
export class Session {
  private state: SessionState = 'idle';
  private conn: Connection | undefined;
  private uid = 0n;
  private token = '';
  private generation = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private reconnectCount = 0;
  private reconnectIntervalMs = 0;
  /** When the current connection was logged in (to tell a stable connection from a crash loop). */
  private onlineSince = 0;
  /** Connection work in flight (open + auth, or logout's `bye`); a new generation aborts it. */
  private inFlight: AbortController | undefined;
  private watchdogTimer: ReturnType<typeof setInterval> | undefined;
  private lastPingAt = 0;
  /** The connection a `*ping` probe is waiting on (`probe`), if any. */
  private probing: Connection | undefined;
  /** Where `networkBack` listens, from the first login until the session ends (no listener left behind). */
  private listening: NetworkEvents | undefined;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly hooks: SessionHooks,
  ) {}

  get currentState(): SessionState {
    return this.state;
  }

  get currentUid(): bigint {
    return this.uid;
  }

  /** Changes with every login(), logout(), close() and kickout: what came before is not for the session after. */
  get currentGeneration(): number {
    return this.generation;
  }

  /** Connects and sends `auth`. `{ok: false}` means the token was refused (no retry follows). */
  async login(uid: bigint, token: string): Promise<{ ok: boolean }> {
    const generation = this.newGeneration();
    this.dropConnection('a new login started');
    this.uid = uid;
    this.token = token;
    this.state = 'connecting';
    this.reconnectCount = 0;
    this.reconnectIntervalMs = 0;
    let ok: boolean;
    try {
      ok = await this.connectAndAuth(generation);
    } catch (err) {
      if (generation === this.generation) {
        this.state = 'idle';
        this.stopListening();
      }
      throw err;
    }
    // The answer came, but the app may have moved on before this resumes: a push that arrived with
    // it can have reached a listener that called close(), logout() or login() (or been a kickout).
    if (generation !== this.generation) throw cancelled();
    if (!ok) {
      this.state = 'idle';
      this.stopListening();
      return { ok: false };
    }
    this.listenForNetwork();
    this.hooks.connected({ uid, relogin: false });
    return { ok: true };
  }

  /** Sends `bye`, waits for its answer (or failure), then closes. */
  async logout(): Promise<void> {
    const wasActive = this.isActive();
    const online = this.state === 'online';
    const generation = this.newGeneration();
    // Detached first: if the connection drops before `bye` is answered, the session is ending
    // anyway; it must not count as a lost connection (that would relogin after the logout).
    const conn = this.detachConnection();
    if (conn && online) await this.sayBye(conn);
    conn?.close('logout');
    if (generation !== this.generation) return; // a login() or close() during `bye` took over
    this.end(wasActive, { reason: 'logout', code: 0 }, 'logout');
  }

  /** Sends `bye` and waits for its answer (or failure); a login() or close() meanwhile cuts it short. */
  private async sayBye(conn: Connection): Promise<void> {
    const cancel = (this.inFlight = new AbortController());
    cancel.signal.addEventListener('abort', () => conn.close('superseded'));
    try {
      await conn.quest('bye', {});
    } catch (err) {
      this.options.logger.debug?.('bye failed', err);
    } finally {
      if (this.inFlight === cancel) this.inFlight = undefined;
    }
  }

  /** Closes at once; no relogin. */
  close(): void {
    this.end(this.isActive(), { reason: 'close', code: 0 }, 'closed by the application');
  }

  /**
   * The server sent `kickout`: close and stay offline (client-api.md §6). `tell` reports the
   * kickout to the application first; if it starts a login() or ends the session itself meanwhile,
   * that is what happens, not this end.
   */
  kickedOut(tell: () => void): void {
    const generation = this.generation;
    tell();
    if (generation !== this.generation) return;
    this.end(this.isActive(), { reason: 'kickout', code: 0 }, 'kicked out by the server');
  }

  /** The server pinged: feeds the watchdog. */
  notePing(): void {
    this.lastPingAt = Date.now();
  }

  /** Sends a quest on the logged-in connection. */
  quest(method: string, payload: Payload, timeoutMs?: number): Promise<Payload> {
    const conn = this.conn;
    if (!conn || this.state !== 'online') {
      const why = this.state === 'reconnecting' ? 'the connection was lost; relogin in progress' : 'not logged in';
      return Promise.reject(new RtmError(FpnnErrorCode.CORE_INVALID_CONNECTION, why));
    }
    return conn.quest(method, payload, timeoutMs);
  }

  private isActive(): boolean {
    return this.state === 'online' || this.state === 'reconnecting' || this.state === 'connecting';
  }

  /** Supersedes all work in progress: pending relogin, connection attempt or `bye`, watchdog. */
  private newGeneration(): number {
    this.clearTimers();
    this.inFlight?.abort(cancelled());
    this.inFlight = undefined;
    return ++this.generation;
  }

  /** The session is over: nothing of it may run afterwards (no relogin, no socket, no timer). */
  private end(wasActive: boolean, event: ClosedEvent, reason: string): void {
    this.newGeneration();
    this.dropConnection(reason);
    this.state = 'closed';
    this.stopListening();
    this.reconnectCount = 0;
    this.reconnectIntervalMs = 0;
    if (wasActive) this.hooks.closed(event);
  }

  /** Opens a connection and authenticates. true = online; false = token refused. */
  private async connectAndAuth(generation: number): Promise<boolean> {
    const attempt = (this.inFlight = new AbortController());
    try {
      return await this.openAndAuth(generation, attempt.signal);
    } finally {
      if (this.inFlight === attempt) this.inFlight = undefined;
    }
  }

  private async openAndAuth(generation: number, signal: AbortSignal): Promise<boolean> {
    const conn = await Connection.open({
      url: this.options.url,
      factory: this.options.webSocketFactory ?? defaultWebSocketFactory,
      connectTimeoutMs: this.options.connectTimeoutMs,
      questTimeoutMs: this.options.questTimeoutMs,
      logger: this.options.logger,
      onQuest: this.hooks.onQuest,
      onClose: (reason, byUs) => this.connectionClosed(conn, reason, byUs),
      signal,
    });
    if (generation !== this.generation) {
      conn.close('superseded');
      throw cancelled();
    }
    // Aborted while `auth` is pending: close now rather than when the answer or its timeout comes.
    signal.addEventListener('abort', () => conn.close('superseded'));
    const payload: Payload = { pid: this.options.pid, uid: this.uid, token: this.token, version: this.options.sdkVersion };
    if (this.options.attrs) payload.attrs = { ...this.options.attrs };
    let answer: Payload;
    try {
      answer = await conn.quest('auth', payload);
    } catch (err) {
      conn.close('auth failed');
      throw generation === this.generation ? err : cancelled();
    }
    if (generation !== this.generation) {
      conn.close('superseded');
      throw cancelled();
    }
    if (answer.ok !== true) {
      conn.close('token refused');
      return false;
    }
    // The relogin back-off is not reset here but in lost(), once this connection proved stable.
    this.conn = conn;
    this.state = 'online';
    this.onlineSince = Date.now();
    this.startWatchdog();
    return true;
  }

  private connectionClosed(conn: Connection, reason: string, byUs: boolean): void {
    if (conn !== this.conn) return; // not adopted yet, or already replaced
    this.conn = undefined;
    this.stopWatchdog();
    if (!byUs) this.lost(reason);
  }

  /** Takes the current connection out of the session: its close is no longer reported as lost. */
  private detachConnection(): Connection | undefined {
    const conn = this.conn;
    this.conn = undefined;
    this.stopWatchdog();
    return conn;
  }

  /** Drops the current connection without reporting it as lost. */
  private dropConnection(reason: string): void {
    this.detachConnection()?.close(reason);
  }

  /** The connection went away without being asked to: reconnect, or end the session. */
  private lost(reason: string): void {
    this.options.logger.warn?.(`connection lost: ${reason}`);
    // A connection that drops soon after its login (a server in a crash loop, a proxy closing at
    // once) counts as one more failed attempt, so relogin backs off instead of looping at once.
    if (Date.now() - this.onlineSince >= this.options.reconnectStrategy.stableAfterMs) {
      this.reconnectCount = 0;
      this.reconnectIntervalMs = 0;
    }
    if (!this.options.autoReconnect) {
      // Over before the application hears of it: a close() or logout() from its listener has
      // nothing left to end, and a login() from it starts a new session whose events follow.
      this.state = 'closed';
      this.stopListening();
      this.hooks.disconnected({ reason, willReconnect: false });
      if (this.state === 'closed') this.hooks.closed({ reason: 'connectionLost', code: FpnnErrorCode.CORE_CONNECTION_CLOSED });
      return;
    }
    this.state = 'reconnecting';
    const generation = this.generation;
    this.hooks.disconnected({ reason, willReconnect: true });
    // A login(), logout() or close() from the listener decides what follows, not this relogin.
    if (generation === this.generation) this.scheduleRelogin();
  }

  private nextDelayMs(): number {
    this.reconnectIntervalMs = reloginDelayMs(this.options.reconnectStrategy, this.reconnectCount, this.reconnectIntervalMs);
    this.reconnectCount += 1;
    return this.reconnectIntervalMs;
  }

  private scheduleRelogin(): void {
    const generation = this.generation;
    // The schedule itself (reconnectIntervalMs) grows without the randomness.
    const delay = Math.round(jitteredMs(this.nextDelayMs()));
    const attempt = this.reconnectCount;
    this.options.logger.info?.(`relogin attempt ${attempt} in ${delay} ms`);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.relogin(generation, attempt);
    }, delay);
  }

  private async relogin(generation: number, attempt: number): Promise<void> {
    let ok: boolean;
    try {
      ok = await this.connectAndAuth(generation);
    } catch (err) {
      if (generation !== this.generation) return;
      const error = err instanceof RtmError ? err : new RtmError(FpnnErrorCode.CORE_UNKNOWN_ERROR, String(err), { cause: err });
      this.hooks.reloginCompleted({ successful: false, retryAgain: true, error, attempt });
      if (generation === this.generation && this.state === 'reconnecting') this.scheduleRelogin();
      return;
    }
    if (generation !== this.generation) return;
    if (ok) {
      this.hooks.reloginCompleted({ successful: true, retryAgain: false, attempt });
      // A close(), logout() or login() from that listener ended this session already.
      if (generation === this.generation) this.hooks.connected({ uid: this.uid, relogin: true });
      return;
    }
    this.state = 'closed';
    this.stopListening();
    this.reconnectCount = 0;
    this.reconnectIntervalMs = 0;
    const error = new RtmError(RtmErrorCode.INVALID_AUTH_TOEKN, 'relogin refused: invalid token');
    this.hooks.reloginCompleted({ successful: false, retryAgain: false, error, attempt });
    // Unless the listener started a login() with a fresh token (its events follow instead).
    if (this.state === 'closed') this.hooks.closed({ reason: 'invalidToken', code: RtmErrorCode.INVALID_AUTH_TOEKN });
  }

  private listenForNetwork(): void {
    const target = this.options.networkEvents;
    if (!target || this.listening) return;
    target.addEventListener('online', this.networkBack);
    this.listening = target;
  }

  private stopListening(): void {
    this.listening?.removeEventListener('online', this.networkBack);
    this.listening = undefined;
  }

  /**
   * The network is back (an `online` event). A relogin waiting out its back-off goes at once: the
   * wait was for the network, and a user who reopens a laptop should not wait up to
   * `maxIntervalSeconds` more. A connection that looks online must answer a `*ping` soon: after a
   * change of network its socket can be dead without a close, which the watchdog would only see
   * after `maxPingIntervalSeconds`. Any answer, an error too, proves it alive.
   */
  private readonly networkBack = (): void => {
    if (this.state === 'reconnecting' && this.reconnectTimer !== undefined) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = undefined;
      this.options.logger.info?.('the network is back: relogin now');
      void this.relogin(this.generation, this.reconnectCount);
      return;
    }
    this.probe('the network came back');
  };

  /**
   * Asks the online connection for a `*ping`, for the moments its socket may have died without a
   * close (the network came back, the page or process was suspended): any answer, an error too,
   * proves it alive; none within 5 s (or `questTimeoutMs`) and it is replaced. One at a time.
   */
  private probe(after: string): void {
    const conn = this.conn;
    if (this.state !== 'online' || !conn || this.probing === conn) return;
    this.probing = conn;
    const timeoutMs = Math.min(this.options.questTimeoutMs, PROBE_TIMEOUT_MS);
    conn.quest('*ping', {}, timeoutMs).then(
      () => {
        if (this.probing === conn) this.probing = undefined;
      },
      (err: unknown) => {
        if (this.probing === conn) this.probing = undefined;
        if (conn !== this.conn || !(err instanceof RtmError) || err.code !== FpnnErrorCode.CORE_TIMEOUT) return;
        const why = `no answer to a ping within ${timeoutMs} ms after ${after}`;
        this.options.logger.warn?.(why);
        this.dropConnection(why);
        this.lost(why);
      },
    );
  }

  /** No server `ping` for maxPingIntervalSeconds → close and reconnect (fpnn.md §4). */
  private startWatchdog(): void {
    this.stopWatchdog();
    const maxMs = this.options.maxPingIntervalSeconds * 1000;
    if (maxMs <= 0) return;
    const every = Math.max(10, maxMs / 2);
    this.lastPingAt = Date.now();
    let lastCheckAt = this.lastPingAt;
    let deferred = false;
    this.watchdogTimer = setInterval(() => {
      const now = Date.now();
      // A check that runs late woke from a stall (a frozen or throttled tab, a suspended machine,
      // a busy event loop): pings that arrived meanwhile may still wait unread behind it (Node
      // runs overdue timers before it reads its sockets). Its verdict waits for the next check,
      // once: in a tab whose timers are always late (Chrome's intensive throttling) that one
      // decides.
      const late = now - lastCheckAt > every * 1.5;
      lastCheckAt = now;
      // Woken from a suspension, the socket may be dead without a close: ask it now rather than
      // wait for the verdict on the server's pings.
      if (late) this.probe('the page or process was suspended');
      if (now - this.lastPingAt < maxMs) {
        deferred = false;
        return;
      }
      if (late && !deferred) {
        deferred = true;
        return;
      }
      const conn = this.conn;
      if (!conn) return this.stopWatchdog();
      this.options.logger.warn?.(`no ping from the server for ${this.options.maxPingIntervalSeconds} s`);
      this.dropConnection('no ping from the server');
      this.lost(`no ping from the server for ${this.options.maxPingIntervalSeconds} s`);
    }, every);
  }

  private stopWatchdog(): void {
    if (this.watchdogTimer !== undefined) clearInterval(this.watchdogTimer);
    this.watchdogTimer = undefined;
  }

  private clearTimers(): void {
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.stopWatchdog();
  }
}
