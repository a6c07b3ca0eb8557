/**
 * Runs async work one call after another per key, in call order. A limit that is read, checked,
 * then written (members of a group, rooms of a user, friends) holds only if no other change of
 * the same key runs between the read and the write: two calls in one TCP read, or from two
 * connections in one turn, would otherwise both pass the check.
 *
 * In this process only: across cluster nodes these limits stay best effort.
 */
export class KeyedSerial {
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key);
    const result = before ? before.then(work) : work();
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}

/**
 * Changes of one thing (a user's blacklist, data, info, bans, token…) in call order. Two changes
 * of the same thing sent together (pipelined on one connection) must end as the later one says;
 * the embedded store applies them in call order, but PostgreSQL runs each on whichever pooled
 * connection is free, and the later one could commit first.
 */
const inOrder = new KeyedSerial();

export function inTurn<T>(key: string, work: () => Promise<T>): Promise<T> {
  return inOrder.run(key, work);
}
