import type { WebSocketFactory } from './transport.js';

/** Where diagnostics go. Every method is optional; the default logger drops everything. */
export interface Logger {
  debug?(message: string, ...details: unknown[]): void;
  info?(message: string, ...details: unknown[]): void;
  warn?(message: string, ...details: unknown[]): void;
  error?(message: string, ...details: unknown[]): void;
}

/**
 * Back-off between relogin attempts after the connection was lost (client-api.md §9, the browser
 * SDK's `regressiveStrategy`): the first `startConnectFailedCount` attempts are immediate, then each
 * wait grows by `maxIntervalSeconds / linearRegressiveCount` seconds up to `maxIntervalSeconds`.
 */
export interface ReconnectStrategy {
  /** Attempts made without waiting. @default 3 */
  startConnectFailedCount?: number;
  /** Longest wait between two attempts, in seconds. @default 8 */
  maxIntervalSeconds?: number;
  /** Number of steps from 0 to `maxIntervalSeconds` (step = 8 / 4 = 2 s by default). @default 4 */
  linearRegressiveCount?: number;
  /**
   * A connection that drops sooner than this after its login counts as a failed attempt (the
   * back-off goes on instead of starting over), as the server SDK's `reconnect.stableAfterMs`.
   * In milliseconds. @default 1500
   */
  stableAfterMs?: number;
}

export interface RTMClientOptions {
  /**
   * The client gate: `"host:port"` (becomes `ws://host:port/service/websocket`; port 13325, the
   * FPNN/TCP port, is rewritten to 13321 as the official SDK does) or a full `ws://` / `wss://` URL.
   * Required unless `sslEndpoint` is given.
   */
  endpoint?: string;
  /**
   * The client gate's TLS port, `"host:port"` (becomes `wss://host:port/service/websocket`; the
   * official browser SDK's `ssl_endpoint`): used instead of `endpoint` when given. Pages served over
   * https need it.
   */
  sslEndpoint?: string;
  /** Project id. */
  pid: number;
  /** Time to wait for the answer to any quest, in milliseconds. @default 20000 */
  questTimeoutMs?: number;
  /** Time to wait for the WebSocket to open, in milliseconds. @default 30000 */
  connectTimeoutMs?: number;
  /** Reconnect and log in again after the connection is lost. @default true */
  autoReconnect?: boolean;
  /** Back-off for automatic relogin. @default { startConnectFailedCount: 3, maxIntervalSeconds: 8, linearRegressiveCount: 4, stableAfterMs: 1500 } */
  reconnectStrategy?: ReconnectStrategy;
  /**
   * Ping watchdog: when the server has sent no `ping` for this many seconds, the connection is
   * closed and (with `autoReconnect`) re-established. Checked every half of this interval; a
   * check that runs late (throttled or frozen tab, suspended machine) defers its verdict to the
   * next one and asks the connection for a `*ping` (no answer within 5 s: replaced). Fractions
   * are allowed. `0` disables the watchdog. @default 60
   */
  maxPingIntervalSeconds?: number;
  /** How long a pushed message's key is remembered to drop duplicates, in milliseconds. @default 5000 */
  duplicateFilterMs?: number;
  /** Connection attributes sent with `auth` (the same map as `addAttrs`). @default none */
  attrs?: Record<string, string>;
  /** SDK tag sent as `version` in `auth`. @default "TypeScript_<package version>" */
  sdkVersion?: string;
  /**
   * Creates the WebSocket. @default the global `WebSocket` (browsers, Node ≥ 22); when there is
   * none (Node 20), the `ws` package, loaded on first use with a dynamic import.
   */
  webSocketFactory?: WebSocketFactory;
  /** Receives diagnostics. @default no logging */
  logger?: Logger;
  /**
   * Where the SDK hears that the network is back: its `online` events. Then a relogin waiting out
   * its back-off is tried at once, and a connection that looks online is checked with a `*ping`
   * (a socket over a network that went away can be dead without a close; the ping watchdog would
   * see it only after `maxPingIntervalSeconds`). @default the global object where it has
   * `addEventListener` (browsers: `window`); `null` turns this off
   */
  networkEvents?: NetworkEvents | null;
}

/** What `networkEvents` needs: a browser's `window`, or anything that emits `online` the same way. */
export interface NetworkEvents {
  addEventListener(type: 'online', listener: () => void): void;
  removeEventListener(type: 'online', listener: () => void): void;
}

export const SDK_VERSION = '0.1.0';
export const DEFAULT_QUEST_TIMEOUT_MS = 20_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_PING_INTERVAL_SECONDS = 60;
export const DEFAULT_DUPLICATE_FILTER_MS = 5_000;
export const DEFAULT_RECONNECT_STRATEGY: Readonly<Required<ReconnectStrategy>> = Object.freeze({
  startConnectFailedCount: 3,
  maxIntervalSeconds: 8,
  linearRegressiveCount: 4,
  stableAfterMs: 1_500,
});

export interface ResolvedOptions {
  readonly url: string;
  readonly pid: number;
  readonly questTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly autoReconnect: boolean;
  readonly reconnectStrategy: Readonly<Required<ReconnectStrategy>>;
  readonly maxPingIntervalSeconds: number;
  readonly duplicateFilterMs: number;
  readonly attrs: Readonly<Record<string, string>> | undefined;
  readonly sdkVersion: string;
  readonly webSocketFactory: WebSocketFactory | undefined;
  readonly logger: Logger;
  readonly networkEvents: NetworkEvents | undefined;
}

function fail(name: string, why: string): never {
  throw new TypeError(`RTMClient option '${name}' ${why}`);
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) fail(name, `must be a number ≥ 0, got ${String(value)}`);
  return value;
}

/** The longest a timer can wait: above it, setTimeout and setInterval fire after 1 ms instead. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A wait that a timer keeps, in units of `unitMs` milliseconds (1 or 1000). */
function timerWait(name: string, value: number | undefined, fallback: number, unitMs: number): number {
  const wait = nonNegative(name, value, fallback);
  if (wait * unitMs > MAX_TIMER_MS)
    fail(name, `must be at most ${Math.floor(MAX_TIMER_MS / unitMs)} (a timer cannot wait longer), got ${wait}`);
  return wait;
}

/** Turns `endpoint` into the WebSocket URL (client-api.md §1). */
export function endpointToUrl(endpoint: string): string {
  if (/^wss?:\/\//i.test(endpoint)) return endpoint;
  const match = /^(.*):(\d+)$/.exec(endpoint);
  if (!match) fail('endpoint', `must be "host:port" or a ws:// / wss:// URL, got "${endpoint}"`);
  const port = match[2] === '13325' ? '13321' : match[2];
  return `ws://${match[1]}:${port}/service/websocket`;
}

/** Turns `sslEndpoint` ("host:port" of the TLS port) into the wss:// URL. */
function sslEndpointToUrl(sslEndpoint: unknown): string {
  const match = typeof sslEndpoint === 'string' ? /^(.+):(\d+)$/.exec(sslEndpoint) : null;
  if (!match) fail('sslEndpoint', `must be "host:port" (the client gate's TLS port), got ${JSON.stringify(sslEndpoint)}`);
  return `wss://${match[1]}:${match[2]}/service/websocket`;
}

/** Validates the options and fills in defaults; a bad option throws a TypeError naming it. */
export function resolveOptions(options: RTMClientOptions): ResolvedOptions {
  if (!options || typeof options !== 'object') throw new TypeError('RTMClient needs an options object');
  if (options.sslEndpoint === undefined && (typeof options.endpoint !== 'string' || options.endpoint === ''))
    fail('endpoint', 'is required (or sslEndpoint)');
  if (!Number.isSafeInteger(options.pid) || options.pid <= 0) fail('pid', `must be a positive integer, got ${String(options.pid)}`);
  // Field by field: a field given as undefined keeps its default (a spread would copy the undefined).
  const given = options.reconnectStrategy ?? {};
  const defaults = DEFAULT_RECONNECT_STRATEGY;
  const strategy: Required<ReconnectStrategy> = {
    startConnectFailedCount: nonNegative(
      'reconnectStrategy.startConnectFailedCount',
      given.startConnectFailedCount,
      defaults.startConnectFailedCount,
    ),
    maxIntervalSeconds: timerWait('reconnectStrategy.maxIntervalSeconds', given.maxIntervalSeconds, defaults.maxIntervalSeconds, 1000),
    linearRegressiveCount: nonNegative(
      'reconnectStrategy.linearRegressiveCount',
      given.linearRegressiveCount,
      defaults.linearRegressiveCount,
    ),
    stableAfterMs: nonNegative('reconnectStrategy.stableAfterMs', given.stableAfterMs, defaults.stableAfterMs),
  };
  // 0 would relogin in a loop with no wait at all, against a server that is down.
  if (!(strategy.maxIntervalSeconds > 0)) fail('reconnectStrategy.maxIntervalSeconds', 'must be > 0');
  if (!(strategy.linearRegressiveCount >= 1)) fail('reconnectStrategy.linearRegressiveCount', 'must be ≥ 1');
  const questTimeoutMs = timerWait('questTimeoutMs', options.questTimeoutMs, DEFAULT_QUEST_TIMEOUT_MS, 1);
  if (questTimeoutMs === 0) fail('questTimeoutMs', 'must be > 0');
  const connectTimeoutMs = timerWait('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 1);
  if (connectTimeoutMs === 0) fail('connectTimeoutMs', 'must be > 0');
  return Object.freeze({
    url: options.sslEndpoint !== undefined ? sslEndpointToUrl(options.sslEndpoint) : endpointToUrl(options.endpoint!),
    pid: options.pid,
    questTimeoutMs,
    connectTimeoutMs,
    autoReconnect: options.autoReconnect ?? true,
    reconnectStrategy: Object.freeze(strategy),
    maxPingIntervalSeconds: timerWait('maxPingIntervalSeconds', options.maxPingIntervalSeconds, DEFAULT_MAX_PING_INTERVAL_SECONDS, 1000),
    duplicateFilterMs: nonNegative('duplicateFilterMs', options.duplicateFilterMs, DEFAULT_DUPLICATE_FILTER_MS),
    attrs: options.attrs ? Object.freeze({ ...options.attrs }) : undefined,
    sdkVersion: options.sdkVersion ?? `TypeScript_${SDK_VERSION}`,
    webSocketFactory: options.webSocketFactory,
    logger: options.logger ?? {},
    networkEvents: options.networkEvents === null ? undefined : (options.networkEvents ?? globalNetworkEvents()),
  });
}

/** The global object when it emits `online` (a browser's window, a worker's self); Node's does not. */
function globalNetworkEvents(): NetworkEvents | undefined {
  const g = globalThis as Partial<NetworkEvents>;
  return typeof g.addEventListener === 'function' && typeof g.removeEventListener === 'function' ? (g as NetworkEvents) : undefined;
}
