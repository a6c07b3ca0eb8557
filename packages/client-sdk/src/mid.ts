/**
 * Message ids as the browser SDK makes them (client-api.md §3.1): `Date.now()` followed by a
 * 3-digit counter 000..998, i.e. ms·1000 + n (≈ 2^50.6). Strictly increasing within one generator,
 * even when the clock stands still or steps back.
 */
export class MidGenerator {
  private counter = 0;
  private last = 0n;

  next(now: number = Date.now()): bigint {
    this.counter = this.counter >= 998 ? 0 : this.counter + 1;
    let mid = BigInt(now) * 1000n + BigInt(this.counter);
    if (mid <= this.last) mid = this.last + 1n;
    this.last = mid;
    return mid;
  }
}
