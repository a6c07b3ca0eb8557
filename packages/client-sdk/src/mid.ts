/**
 * Message ids as the browser SDK makes them (client-api.md §3.1): `Date.now()` followed by a
 * 3-digit counter 000..998, i.e. ms·1000 + n (≈ 2^50.6). Strictly increasing within one generator,
 * even when the clock stands still or steps back.
 *
 * The counter starts at a random place. The server keys a message by (sender, target, mid), and
 * a user's devices are one sender: with every counter starting at 0 (as in the browser SDK), two
 * devices sending to the same peer or group in the same millisecond made the same mid, and the
 * second send was refused as a collision (200053). Now that takes the same millisecond *and* the
 * same one of 999 starting places.
 */
export class MidGenerator {
  private counter: number;
  private last = 0n;

  constructor(start: number = randomStart()) {
    this.counter = start;
  }

  next(now: number = Date.now()): bigint {
    this.counter = this.counter >= 998 ? 0 : this.counter + 1;
    let mid = BigInt(now) * 1000n + BigInt(this.counter);
    if (mid <= this.last) mid = this.last + 1n;
    this.last = mid;
    return mid;
  }
}

function randomStart(): number {
  return globalThis.crypto.getRandomValues(new Uint16Array(1))[0]! % 999;
}
