/**
 * Options of `RTMServerClient`, their defaults and the resolver that validates them
 * (one typed config: `DEFAULT_*` constants, a bad setting fails at construction naming itself).
 */
import { startKeyExchange } from './tcp.js';

/** Where log lines go. `console` fits; the default logger drops everything. */
export interface Logger {
  debug(message: string, ...details: unknown[]): void;
  info(message: string, ...details: unknown[]): void;
  warn(message: string, ...details: unknown[]): void;
  error(message: string, ...details: unknown[]): void;
}

/**
 * The reconnect schedule (server-api.md §8, "regressive strategy" of the Node and Python SDKs):
 * after a failure, retry at once up to `immediateRetries` times, then wait `minDelayMs` growing
 * linearly to `maxDelayMs` over `steps` attempts, then keep waiting `maxDelayMs`.
 */
export interface ReconnectPolicy {
  /** Consecutive failures retried without waiting. @default 5 */
  immediateRetries: number;
  /** First back-off delay, in milliseconds (at most 2^31-1). @default 2000 */
  minDelayMs: number;
  /**
   * Largest back-off delay, in milliseconds: from `MIN_RECONNECT_MAX_DELAY_MS` (100, so that a
   * reconnect loop always backs off) to 2^31-1. @default 120000
   */
  maxDelayMs: number;
  /** Number of linear steps from `minDelayMs` to `maxDelayMs`. @default 5 */
  steps: number;
  /**
   * A connection that drops sooner than this after opening counts as a failed attempt, in
   * milliseconds (at most 2^31-1); so does one whose listen state could not be restored. @default 1500
   */
  stableAfterMs: number;
}

/**
 * Encryption of the connection with ECDH + AES-CFB (fpnn.md §6, `*key`): every connection first
 * sends `*key` with an ephemeral public key, then encrypts every frame both ways.
 */
export interface EncryptionOptions {
  /** The server's EC public key: PEM text or raw bytes. */
  serverPublicKey: string | Uint8Array;
  /** Curve name. @default 'secp256k1' */
  curve?: 'secp256k1' | 'secp256r1';
  /** AES key size in bits. @default 128 */
  bits?: 128 | 256;
  /** Stream mode (Go SDK) instead of package mode (Node and Python SDKs). @default false */
  streamMode?: boolean;
}

export interface RTMServerClientOptions {
  /** Project id. Positive integer (int32 in the Go SDK). Required. */
  pid: number;
  /** Project secret key, used to sign every quest (server-api.md §1). Required. */
  secret: string;
  /** Server gate address, `host:port` (`[v6-address]:port` for IPv6), e.g. `rtm.example.com:13315`. Required. */
  endpoint: string;
  /**
   * Default time to wait for an answer, in milliseconds (1 to 2^31-1); also bounds waiting for a
   * reconnection. @default 20000
   */
  questTimeoutMs?: number;
  /** Time allowed to open the TCP connection, in milliseconds (1 to 2^31-1). @default 30000 */
  connectTimeoutMs?: number;
  /**
   * Reconnect after the connection drops, re-sending the listen state. While reconnecting, calls
   * wait for the connection (within their timeout). When false, calls on a dropped connection fail
   * with 20012 until `connect()` is called again. @default true
   */
  autoReconnect?: boolean;
  /** Overrides of the reconnect schedule; see `ReconnectPolicy` for each default. */
  reconnect?: Partial<ReconnectPolicy>;
  /**
   * Once the server has sent a `ping`, close and reconnect when no further ping comes within this
   * many milliseconds (the Node SDK's 40 s rule, fpnn.md §4; at most 2^31-1). 0 disables the check. @default 40000
   */
  pingTimeoutMs?: number;
  /**
   * Send a `*ping` when no server `ping` came for this many milliseconds (at most 2^31-1; 0: never).
   * The server pings only connections that listen and closes others once idle (60 s by default);
   * this keeps such a connection open between calls. @default 20000
   */
  keepAliveMs?: number;
  /**
   * Pushed messages already seen (same kind, sender, target and mid) within this window are not
   * emitted again (server-api.md §6), in milliseconds. 0 disables. @default 300000
   */
  dedupWindowMs?: number;
  /**
   * At most this many pushed messages are remembered for the duplicate check; past it the oldest
   * are forgotten first (a backend listening to everything at 10,000 pushes/s would otherwise keep
   * 3 million keys, ~500 MB, for the default 5-minute window). @default 100000
   */
  dedupMaxEntries?: number;
  /** Where warnings and errors are logged. @default a logger that drops everything */
  logger?: Logger;
  /** Encrypt the connection (`*key`); see `EncryptionOptions`. @default undefined (plain TCP) */
  encryption?: EncryptionOptions;
}

export const DEFAULT_QUEST_TIMEOUT_MS = 20_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
export const DEFAULT_AUTO_RECONNECT = true;
export const DEFAULT_PING_TIMEOUT_MS = 40_000;
export const DEFAULT_KEEP_ALIVE_MS = 20_000;
export const DEFAULT_DEDUP_WINDOW_MS = 300_000;
export const DEFAULT_DEDUP_MAX_ENTRIES = 100_000;
export const DEFAULT_RECONNECT_POLICY: Readonly<ReconnectPolicy> = Object.freeze({
  immediateRetries: 5,
  minDelayMs: 2_000,
  maxDelayMs: 120_000,
  steps: 5,
  stableAfterMs: 1_500,
});

const silent = (): void => {};
export const SILENT_LOGGER: Logger = Object.freeze({ debug: silent, info: silent, warn: silent, error: silent });

export interface ResolvedOptions {
  readonly pid: number;
  readonly secret: string;
  readonly endpoint: string;
  readonly host: string;
  readonly port: number;
  readonly questTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly autoReconnect: boolean;
  readonly reconnect: Readonly<ReconnectPolicy>;
  readonly pingTimeoutMs: number;
  readonly keepAliveMs: number;
  readonly dedupWindowMs: number;
  readonly dedupMaxEntries: number;
  readonly logger: Logger;
  readonly encryption: Readonly<EncryptionOptions> | undefined;
}

/**
 * The longest a timer can wait: Node's `setTimeout` takes a signed 32-bit delay and fires a larger
 * one after 1 ms (with a TimeoutOverflowWarning), so every timeout and delay is at most this.
 */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * The smallest `reconnect.maxDelayMs`. Once the immediate retries are spent, every further attempt
 * waits at least `maxDelayMs` (the schedule grows from `minDelayMs` to it): with 0 — or a few ms — a
 * client whose endpoint is gone would retry in a tight loop (hundreds of refused connections per
 * second, forever). 100 ms caps that at 10 attempts per second.
 */
export const MIN_RECONNECT_MAX_DELAY_MS = 100;

function fail(name: string, why: string): never {
  throw new TypeError(`RTMServerClient option '${name}' ${why}`);
}

function nonNegativeInt(name: string, value: unknown, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
    fail(name, `must be a non-negative integer, got ${String(value)}`);
  if (value > max) fail(name, `must be at most ${max}, got ${value}`);
  return value;
}

function positiveInt(name: string, value: unknown, fallback: number, max?: number): number {
  const n = nonNegativeInt(name, value, fallback, max);
  if (n === 0) fail(name, 'must be greater than 0');
  return n;
}

/**
 * The most immediate retries and back-off steps: beyond, a client whose endpoint is gone would
 * retry in a tight loop (every step of a million from 0 to 120 s rounds to 0 ms), which the floor
 * of `maxDelayMs` is there to prevent.
 */
export const MAX_RECONNECT_STEPS = 1000;

/** A duration in milliseconds: an integer from `min` to MAX_TIMEOUT_MS. */
function timeMs(name: string, value: unknown, fallback: number, min: number): number {
  const n = nonNegativeInt(name, value, fallback);
  if (n < min) fail(name, min === 1 ? 'must be greater than 0' : `must be at least ${min} ms, got ${n}`);
  if (n > MAX_TIMEOUT_MS) fail(name, `must be at most ${MAX_TIMEOUT_MS} ms (2^31-1, the longest a timer can wait), got ${n}`);
  return n;
}

/**
 * A key that is not PEM/DER/hex/raw, not a point of the curve, or of another curve is a
 * configuration error: report it here, not at every connection attempt. The check is a trial key
 * exchange, so it accepts exactly what connecting will.
 */
function checkServerPublicKey(enc: EncryptionOptions): void {
  try {
    startKeyExchange(enc);
  } catch (err) {
    fail('encryption.serverPublicKey', `is not a usable ${enc.curve ?? 'secp256k1'} public key: ${(err as Error).message}`);
  }
}

/** Splits `host:port` / `[v6]:port`. */
export function parseEndpoint(endpoint: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(endpoint) ?? /^([^:\s]+):(\d{1,5})$/.exec(endpoint);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) fail('endpoint', `must be 'host:port', got '${endpoint}'`);
  return { host: m[1]!, port };
}

/** Validates the options and returns a frozen, complete copy. Throws a `TypeError` naming the bad option. */
export function resolveOptions(options: RTMServerClientOptions): ResolvedOptions {
  if (options === null || typeof options !== 'object') fail('options', 'must be an object');
  const { pid, secret, endpoint } = options;
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) fail('pid', `must be a positive integer, got ${String(pid)}`);
  if (typeof secret !== 'string' || secret.length === 0) fail('secret', 'must be a non-empty string');
  if (typeof endpoint !== 'string') fail('endpoint', "must be a 'host:port' string");
  const enc = options.encryption;
  if (enc !== undefined) {
    if (enc === null || typeof enc !== 'object') fail('encryption', 'must be an object');
    if (typeof enc.serverPublicKey !== 'string' && !(enc.serverPublicKey instanceof Uint8Array))
      fail('encryption.serverPublicKey', 'must be PEM text or raw bytes');
    if (enc.curve !== undefined && enc.curve !== 'secp256k1' && enc.curve !== 'secp256r1')
      fail('encryption.curve', "must be 'secp256k1' or 'secp256r1'");
    if (enc.bits !== undefined && enc.bits !== 128 && enc.bits !== 256) fail('encryption.bits', 'must be 128 or 256');
    if (enc.streamMode !== undefined && typeof enc.streamMode !== 'boolean') fail('encryption.streamMode', 'must be a boolean');
    checkServerPublicKey(enc);
  }
  if (options.autoReconnect !== undefined && typeof options.autoReconnect !== 'boolean') fail('autoReconnect', 'must be a boolean');
  const r = options.reconnect ?? {};
  const reconnect = Object.freeze({
    immediateRetries: nonNegativeInt(
      'reconnect.immediateRetries',
      r.immediateRetries,
      DEFAULT_RECONNECT_POLICY.immediateRetries,
      MAX_RECONNECT_STEPS,
    ),
    minDelayMs: timeMs('reconnect.minDelayMs', r.minDelayMs, DEFAULT_RECONNECT_POLICY.minDelayMs, 0),
    maxDelayMs: timeMs('reconnect.maxDelayMs', r.maxDelayMs, DEFAULT_RECONNECT_POLICY.maxDelayMs, MIN_RECONNECT_MAX_DELAY_MS),
    steps: positiveInt('reconnect.steps', r.steps, DEFAULT_RECONNECT_POLICY.steps, MAX_RECONNECT_STEPS),
    stableAfterMs: timeMs('reconnect.stableAfterMs', r.stableAfterMs, DEFAULT_RECONNECT_POLICY.stableAfterMs, 0),
  });
  if (reconnect.maxDelayMs < reconnect.minDelayMs) fail('reconnect.maxDelayMs', 'must not be below reconnect.minDelayMs');
  const logger = options.logger ?? SILENT_LOGGER;
  for (const level of ['debug', 'info', 'warn', 'error'] as const) {
    if (typeof logger[level] !== 'function') fail('logger', `must have a ${level}() method`);
  }
  return Object.freeze({
    pid,
    secret,
    endpoint,
    ...parseEndpoint(endpoint),
    questTimeoutMs: timeMs('questTimeoutMs', options.questTimeoutMs, DEFAULT_QUEST_TIMEOUT_MS, 1),
    connectTimeoutMs: timeMs('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 1),
    autoReconnect: options.autoReconnect ?? DEFAULT_AUTO_RECONNECT,
    reconnect,
    pingTimeoutMs: timeMs('pingTimeoutMs', options.pingTimeoutMs, DEFAULT_PING_TIMEOUT_MS, 0),
    keepAliveMs: timeMs('keepAliveMs', options.keepAliveMs, DEFAULT_KEEP_ALIVE_MS, 0),
    dedupWindowMs: nonNegativeInt('dedupWindowMs', options.dedupWindowMs, DEFAULT_DEDUP_WINDOW_MS),
    dedupMaxEntries: positiveInt('dedupMaxEntries', options.dedupMaxEntries, DEFAULT_DEDUP_MAX_ENTRIES),
    logger,
    encryption: enc === undefined ? undefined : Object.freeze({ ...enc }),
  });
}

/**
 * Delay before the next connection attempt, given the number of consecutive failures so far
 * (0 after a connection that stayed up). With the defaults: attempts 1–5 at once (failures 0–4),
 * then 2 s, 31.5 s, 61 s, 90.5 s, then 120 s for every further attempt.
 */
export function reconnectDelayMs(failures: number, policy: Readonly<ReconnectPolicy> = DEFAULT_RECONNECT_POLICY): number {
  if (failures < policy.immediateRetries) return 0;
  const step = Math.min(failures - policy.immediateRetries + 1, policy.steps);
  if (policy.steps === 1) return policy.maxDelayMs;
  return Math.round(policy.minDelayMs + ((policy.maxDelayMs - policy.minDelayMs) * (step - 1)) / (policy.steps - 1));
}
