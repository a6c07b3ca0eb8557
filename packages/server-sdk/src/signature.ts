import * as crypto from 'node:crypto';

// One-shot hashing (Node >= 20.12) skips a Hash object per quest; createHash on older Nodes.
const md5Hex: (text: string) => string =
  typeof crypto.hash === 'function'
    ? (text) => crypto.hash('md5', text, 'hex')
    : (text) => crypto.createHash('md5').update(text, 'utf8').digest('hex');

/**
 * The server-gate signature (server-api.md §1):
 * `UPPER(hex(md5("<pid>:<secret>:<salt>:<method>:<ts>")))`, integers as exact decimal text.
 */
export function signQuest(pid: number | bigint, secret: string, salt: bigint | number, method: string, ts: number | bigint): string {
  return md5Hex(`${pid}:${secret}:${salt}:${method}:${ts}`).toUpperCase();
}

/**
 * Unique, increasing 64-bit ids for salts and generated mids: `(ms << 20) + offset + n`, and
 * always at least the previous value + 1, so two ids from one generator never repeat (even within
 * one millisecond or when the clock steps back). ≈ 2^60.6 today (so ids exercise the > 2^53 path)
 * and below 2^63 until the year 2248; `ms << 22` (the Go SDK's layout) would overflow int64 in 2039.
 *
 * `offset` is random per generator (below 2^19). Without it two clients (two backend processes,
 * or a listener and a sender in one) made the same ids in the same millisecond: the same salt and
 * mid, so the second of two equal sends was refused as a replayed quest, or taken for a resend.
 */
export class IdGenerator {
  private last = 0n;
  private readonly offset: bigint;

  constructor(
    private readonly now: () => number = Date.now,
    offset: number = crypto.randomInt(2 ** 19),
  ) {
    this.offset = BigInt(offset);
  }

  next(): bigint {
    const base = (BigInt(Math.floor(this.now())) << 20n) + this.offset;
    this.last = base > this.last ? base : this.last + 1n;
    return this.last;
  }
}
