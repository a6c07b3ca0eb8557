/**
 * The oldest message push a connection has not answered yet, in O(1) memory.
 *
 * Why: a device whose network dies without a word (no FIN, no reset) is noticed only when it has
 * been silent for the idle timeout; the pushes written to it meanwhile went nowhere. When its
 * presence then ends, the unread baseline must sit before the first of them, not at the moment
 * the server noticed, or those messages are never counted (client-api.md §3.3). Every SDK answers
 * each twoway push as it handles it, in order, so an answer says the pushes before it arrived too.
 *
 * Tracking every push would cost memory per push in flight; this keeps one checkpoint instead:
 * when the answer to the latest push written at the checkpoint arrives, the oldest unanswered
 * becomes the first push written after it. Under a steady stream the mark is late by at most one
 * round trip's worth of pushes: it may count a few answered messages again, never hide one.
 */
export class UnansweredPushes {
  /** Least mark of the pushes through the checkpoint that may be unanswered; undefined when all are answered. */
  private oldest: bigint | undefined;
  /** The seq whose answer moves `oldest` on. */
  private checkpoint = -1;
  /** Least mark of the pushes written after the checkpoint; undefined: none since. */
  private next: bigint | undefined;
  /** The seq of the latest push written. */
  private latest = -1;

  /** A push went out with `seq`; `mark` is what its message counts from (its mtime). */
  written(seq: number, mark: bigint): void {
    this.latest = seq;
    if (this.oldest === undefined) {
      this.oldest = mark;
      this.checkpoint = seq;
    } else if (this.next === undefined || mark < this.next) {
      // The least: messages of different conversations (or nodes) need not come in mtime order.
      this.next = mark;
    }
  }

  /** The peer answered the quest `seq` (a push, or anything else: only the checkpoint matters). */
  answered(seq: number): void {
    if (this.oldest === undefined || seq !== this.checkpoint) return;
    this.oldest = this.next;
    this.next = undefined;
    this.checkpoint = this.oldest === undefined ? -1 : this.latest;
  }

  /** The mark of the oldest push not known to be answered, if any. */
  get oldestMark(): bigint | undefined {
    return this.next !== undefined && this.oldest !== undefined && this.next < this.oldest ? this.next : this.oldest;
  }
}
