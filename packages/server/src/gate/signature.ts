import { hash } from 'node:crypto';
import { asInt64, RtmError, RtmErrorCode, type Payload } from '@rtm/fpnn';
import type { ProjectConfig } from '../config.js';

/**
 * The server-gate request signature (server-api.md §1):
 *   sign = UPPER(hex(md5("<pid>:<secret>:<salt>:<method>:<ts>")))
 * with a ts window and exact-replay detection.
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
 * for every quest within the same millisecond.
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
 * Two FNV-1a-style hashes over the payload bytes folded into one 53-bit integer (a number, so no
 * string is made per quest): a cheap fingerprint that tells two quests with one salt apart.
 */
function fingerprint(bytes: Uint8Array): number {
  let h1 = 0x811c9dc5 ^ bytes.length;
  let h2 = 0x01000193;
  for (let i = 0; i < bytes.length; i++) {
    h1 = Math.imul(h1 ^ bytes[i]!, 0x01000193);
    h2 = Math.imul(h2 ^ bytes[i]!, 0x5bd1e995);
  }
  return (h1 >>> 0) * 0x200000 + ((h2 >>> 0) & 0x1fffff);
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
  verify(method: string, payload: Payload, bytes: Uint8Array, admit?: (pid: number) => void): number {
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
      const skew = Math.abs(Date.now() / 1000 - Number(ts));
      if (skew > this.options.windowSeconds) {
        throw new RtmError(
          RtmErrorCode.INVALID_SERFVER_TIME,
          `ts ${ts} is ${Math.round(skew)} s away from the server clock (window ${this.options.windowSeconds} s)`,
        );
      }
      expected = computeSign(pid, project.secret, salt, method, ts);
      signedAt = Number(ts) * 1000;
    }
    if (expected !== sign.toUpperCase()) throw new RtmError(RtmErrorCode.INVALID_PROJECT_ID_OR_SIGN, 'signature does not match');
    admit?.(pid);
    // The sign already binds pid, salt, method and ts; the payload fingerprint tells apart two
    // quests signed alike (same salt within one millisecond).
    // Remembered while the signature would pass the ts check: until ts + the window.
    const validUntil = (signedAt ?? Date.now()) + this.options.windowSeconds * 1000;
    if (this.replays.seen(expected, fingerprint(bytes), validUntil)) {
      throw new RtmError(RtmErrorCode.SAME_SIGN, 'replayed quest: the same signed quest was already received');
    }
    return pid;
  }
}
