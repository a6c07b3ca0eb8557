import { hash } from 'node:crypto';
import { asInt64, RtmError, RtmErrorCode, type Payload } from '@rtm/fpnn';
import type { ProjectConfig } from '../config.js';

/**
 * The server-gate request signature (server-api.md §1):
 *   sign = UPPER(hex(md5("<pid>:<secret>:<salt>:<method>:<ts>")))
 * with a ts window and exact-replay detection (the same call again, however it is encoded).
 */
export function computeSign(pid: number, secret: string, salt: bigint, method: string, ts: bigint | number): string {
  return hash('md5', `${pid}:${secret}:${salt}:${method}:${ts}`, 'hex').toUpperCase();
}

export function computeLegacySign(pid: number, secret: string, salt: bigint): string {
  return hash('md5', `${pid}:${secret}:${salt}`, 'hex').toUpperCase();
}

export interface SignatureOptions {
  projects: ReadonlyMap<number, ProjectConfig>;
  windowSeconds: number;
  allowLegacySign: boolean;
  /** Most quests remembered for replay detection (memory bound). @default 2_000_000 */
  maxRemembered?: number;
}

/**
 * Remembers each signed quest until its signature stops passing the ts check, so an exact replay
 * (same pid, salt, sign *and* payload) is refused. Not salt alone: the Python SDK reuses one salt
 * for every quest within the same millisecond. "The same" is by value, not by bytes: the sign as
 * the server computes it and `questPrint` of the decoded quest, so a replay re-encoded (sign in
 * lower case, keys reordered, other integer widths) or sent over another transport is caught.
 *
 * A quest is valid until its `ts` + the window, which is up to two windows after it arrives when
 * `ts` is ahead of our clock (the Go SDK signs with now + 5 s; a backend's clock may run fast).
 * So quests are kept in buckets by that expiry, one window wide: at most three are live, and a
 * bucket is dropped once all of it has expired. Memory is bounded: over `maxRemembered` quests,
 * the bucket that expires first is dropped early (replays of it are then caught only by the ts
 * window).
 */
export class ReplayGuard {
  // Ordered by expiry. In each bucket: sign → the payload fingerprints seen with it (one, or
  // several when the Python SDK reuses a salt).
  private buckets: { index: number; signs: Map<string, number | number[]>; count: number }[] = [];
  private count = 0;

  constructor(
    private readonly windowMs: number,
    private readonly maxRemembered: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** true if (sign, print) was seen before; remembers it otherwise, until `expiresAt` (ms). */
  seen(sign: string, print: number, expiresAt: number): boolean {
    const live = Math.floor(this.now() / this.windowMs);
    this.dropWhile((b) => b.index < live); // all of it expired
    for (const b of this.buckets) if (holds(b.signs.get(sign), print)) return true;
    this.dropWhile(() => this.count >= this.maxRemembered); // room for one more
    const index = Math.floor(expiresAt / this.windowMs);
    let bucket = this.buckets.find((b) => b.index === index);
    if (!bucket) {
      bucket = { index, signs: new Map(), count: 0 };
      this.buckets.push(bucket);
      // Rarely out of order: a quest signed ahead of the clock, then one signed on time.
      this.buckets.sort((a, b) => a.index - b.index);
    }
    const prints = bucket.signs.get(sign);
    if (prints === undefined) bucket.signs.set(sign, print);
    else if (typeof prints === 'number') bucket.signs.set(sign, [prints, print]);
    else prints.push(print);
    bucket.count++;
    this.count++;
    return false;
  }

  /** How many quests are remembered. */
  get remembered(): number {
    return this.count;
  }

  /** Drops buckets, soonest to expire first, while `drop` says so. */
  private dropWhile(drop: (bucket: { index: number }) => boolean): void {
    while (this.buckets.length > 0 && drop(this.buckets[0]!)) this.count -= this.buckets.shift()!.count;
  }
}

function holds(prints: number | number[] | undefined, print: number): boolean {
  return prints === undefined ? false : typeof prints === 'number' ? prints === print : prints.includes(print);
}

/**
 * The fingerprint of a quest's call: its method and its payload fields but the signature's own
 * (pid, salt, ts, sign: the sign the server computes binds their values, however they were
 * encoded), as a 48-bit integer (a number: the replay guard keeps millions, and no string is
 * made). It tells two quests signed alike apart (same salt within one millisecond), and it must
 * not tell a replay from its original (server-api.md §1: "the same payload"), so it reads the
 * decoded values, never the bytes: a captured quest re-encoded by another SDK or sent over another
 * transport is the same quest.
 * - Map keys in any order; a nil value is an absent key (fpnn.md §2).
 * - An integer is its value, whatever its width: fixint … uint32 (Python) or int64 (msgpack-lite,
 *   Node), a float64 holding an integer (msgpack-lite), a bigint, a JSON number (HTTP bridge).
 * - A string and a bin of its UTF-8 bytes are the same: the SDKs send either for a string field,
 *   and JSON (the HTTP bridge) has no bin. Decimal strings and 0/1 booleans stay what they are:
 *   they read as integers or booleans only in some fields, and no SDK re-encodes them so.
 * Not a defence against a forger (the sign does not cover the payload: a changed payload is
 * another quest): a key for an exact replay. Two FNV-1a-style hashes over the values, a few hundred
 * ns for a small send.
 */
export function questPrint(method: string, payload: Payload): number {
  h1 = SEED1;
  h2 = SEED2;
  text(method);
  map(payload as Record<string, unknown>, 0);
  return (fmix(h1) >>> 0) * 0x10000 + (fmix(h2) >>> 16); // 48 bits
}

// The running hashes (module state: nothing is allocated per value but a bin's text).
const SEED1 = 0x811c9dc5;
const SEED2 = 0x01000193;
let h1 = 0;
let h2 = 0;
// A tag before each value.
const [STRING, BYTES, INTEGER, NEGATIVE, FLOAT, TRUE, FALSE, NIL, ARRAY, MAP, DEEP, OTHER] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
/** The signature's own fields: bound by the sign, left out of the print. */
const SIGNATURE_FIELDS = new Set(['pid', 'salt', 'ts', 'sign']);
/**
 * Arrays and maps are read to this depth, deeper ones are their tag alone: no method reads past
 * the second level, and the decoder accepts nesting deep enough to overflow this recursion.
 */
const MAX_DEPTH = 32;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const INT64_MIN = -(1n << 63n);
const UINT64_MAX = (1n << 64n) - 1n;
// A bigint's 64 bits, read without allocating (a bigint `&` or `>>` makes a new one).
const int64 = new BigInt64Array(1);
const int64Words = new Uint32Array(int64.buffer);
const float = new Float64Array(1);
const floatWords = new Uint32Array(float.buffer);

/** One 32-bit word into both hashes (FNV-1a steps; the shift lets high bits reach low ones). */
function word(w: number): void {
  h1 = Math.imul(h1 ^ w, 0x01000193);
  h1 ^= h1 >>> 15;
  h2 = Math.imul(h2 ^ w, 0x5bd1e995);
  h2 ^= h2 >>> 13;
}

/** murmur3's finaliser: every input bit moves every output bit. */
function fmix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** A string by its UTF-16 code units, two to a word, then their count. */
function text(s: string): void {
  word(STRING);
  const n = s.length;
  let i = 0;
  for (; i + 1 < n; i += 2) word(s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16));
  if (i < n) word(s.charCodeAt(i));
  word(n);
}

function value(v: unknown, depth: number): void {
  switch (typeof v) {
    case 'string':
      return text(v);
    case 'number':
      if (!Number.isInteger(v)) {
        float[0] = v;
        word(FLOAT);
        word(floatWords[0]!);
        return word(floatWords[1]!);
      }
      if (Number.isSafeInteger(v)) {
        word(v < 0 ? NEGATIVE : INTEGER);
        word(v >>> 0); // the low 32 bits (two's complement), as integer() has them
        return word(Math.floor(v / 0x100000000) >>> 0);
      }
      return integer(BigInt(v)); // a float64 holding an integer (msgpack-lite) is that integer
    case 'bigint':
      return integer(v);
    case 'boolean':
      return word(v ? TRUE : FALSE);
    case 'object':
      break;
    default:
      return word(NIL); // undefined
  }
  if (v === null) return word(NIL);
  if (v instanceof Uint8Array) {
    let decoded: string | undefined;
    try {
      decoded = strictUtf8.decode(v);
    } catch {
      // not UTF-8: no string is the same, so its bytes stand for it
    }
    if (decoded !== undefined) return text(decoded);
    word(BYTES);
    for (const b of v) word(b);
    return word(v.length);
  }
  if (depth === MAX_DEPTH) return word(DEEP);
  if (Array.isArray(v)) {
    word(ARRAY);
    for (const item of v) value(item, depth + 1);
    return word(v.length);
  }
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto === Object.prototype || proto === null) return map(v as Record<string, unknown>, depth + 1);
  word(OTHER); // a Date or an ext, which no method reads
  text(v instanceof Date ? String(v.getTime()) : String(v));
}

/** An integer by value, whatever its width: its sign, then its 64 bits (JSON's bigger ones as text). */
function integer(v: bigint): void {
  if (v < INT64_MIN || v > UINT64_MAX) return text(v.toString());
  int64[0] = v; // modulo 2^64: the sign tells an int64 from a uint64 of the same bits
  word(v < 0n ? NEGATIVE : INTEGER);
  word(int64Words[0]!);
  word(int64Words[1]!);
}

/** A map whatever the order of its keys: each entry hashed on its own, their sums fed on. */
function map(m: Record<string, unknown>, depth: number): void {
  const [outer1, outer2] = [h1, h2];
  let [sum1, sum2, count] = [0, 0, 0];
  for (const key in m) {
    const v = m[key];
    if (v === undefined || v === null || (depth === 0 && SIGNATURE_FIELDS.has(key))) continue; // nil = absent
    h1 = SEED1;
    h2 = SEED2;
    text(key);
    value(v, depth);
    sum1 = (sum1 + fmix(h1)) | 0;
    sum2 = (sum2 + fmix(h2)) | 0;
    count++;
  }
  [h1, h2] = [outer1, outer2];
  word(MAP);
  word(count);
  word(sum1);
  word(sum2);
}

export class SignatureVerifier {
  private readonly replays: ReplayGuard;

  constructor(private readonly options: SignatureOptions) {
    this.replays = new ReplayGuard(options.windowSeconds * 1000, options.maxRemembered ?? 2_000_000);
  }

  /**
   * Checks pid, sign, ts and replay; returns the project id. `admit` (a rate limit) runs once the
   * signature holds and before the quest is remembered, so a quest it refuses may be sent again.
   */
  verify(method: string, payload: Payload, admit?: (pid: number) => void): number {
    const pidValue = asInt64(payload.pid);
    if (pidValue === undefined) throw new RtmError(RtmErrorCode.INVALID_PROJECT_ID_OR_SIGN, "missing or invalid 'pid'");
    const pid = Number(pidValue);
    const project = this.options.projects.get(pid);
    if (!project) throw new RtmError(RtmErrorCode.INVALID_PROJECT_ID_OR_SIGN, `unknown project ${pidValue}`);
    const salt = asInt64(payload.salt);
    const sign = payload.sign instanceof Uint8Array ? new TextDecoder().decode(payload.sign) : payload.sign;
    if (salt === undefined || typeof sign !== 'string')
      throw new RtmError(RtmErrorCode.INVALID_PROJECT_ID_OR_SIGN, "missing 'salt' or 'sign'");
    const tsRaw = payload.ts;
    let expected: string;
    let signedAt: number | undefined; // ms; the legacy signature has no ts
    if (tsRaw === undefined || tsRaw === null) {
      if (!(project.allowLegacySign ?? this.options.allowLegacySign))
        throw new RtmError(RtmErrorCode.INVALID_PROJECT_ID_OR_SIGN, "missing 'ts' (the legacy signature is not enabled)");
      expected = computeLegacySign(pid, project.secret, salt);
    } else {
      const ts = asInt64(tsRaw);
      if (ts === undefined) throw new RtmError(RtmErrorCode.INVALID_SERFVER_TIME, "'ts' must be an integer (seconds)");
      // In whole seconds, as `ts` is: a ts exactly the window away passes on either side, one
      // second more does not (errors-and-limits.md §3: ±300 s). Comparing with the clock's
      // fraction refused a ts exactly 300 s old except on the tick, while 300 s ahead passed.
      const skew = Math.abs(Math.floor(Date.now() / 1000) - Number(ts));
      if (skew > this.options.windowSeconds) {
        throw new RtmError(
          RtmErrorCode.INVALID_SERFVER_TIME,
          `ts ${ts} is ${skew} s away from the server clock (window ${this.options.windowSeconds} s)`,
        );
      }
      expected = computeSign(pid, project.secret, salt, method, ts);
      signedAt = Number(ts) * 1000;
    }
    if (expected !== sign.toUpperCase()) throw new RtmError(RtmErrorCode.INVALID_PROJECT_ID_OR_SIGN, 'signature does not match');
    admit?.(pid);
    // Keyed by the sign we computed (upper case, from the decoded pid, salt, method and ts: a
    // replay's sign in lower case or its pid as an int64 is the same key); the fingerprint of the
    // method and the rest of the payload tells apart two quests signed alike (same salt within one
    // millisecond), and is the same over TCP, WebSocket and the HTTP bridge. The method is in it
    // for the legacy sign, which does not bind it.
    // Remembered while the signature would pass the ts check: until the end of the second
    // ts + the window (the check compares whole seconds).
    const validUntil =
      signedAt === undefined ? Date.now() + this.options.windowSeconds * 1000 : signedAt + (this.options.windowSeconds + 1) * 1000;
    if (this.replays.seen(expected, questPrint(method, payload), validUntil)) {
      throw new RtmError(RtmErrorCode.SAME_SIGN, 'replayed quest: the same signed quest was already received');
    }
    return pid;
  }
}
