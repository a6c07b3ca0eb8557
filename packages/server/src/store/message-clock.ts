/**
 * The clock that new messages' mtimes come from, and the unread marks cut from the same clock.
 *
 * Why one clock for both: a message is unread when its mtime is after the user's baseline (a clear
 * or a logout, client-api.md §3.3). With the wall clock for the baseline and the store's clock for
 * mtimes, a message stored in the same millisecond as a clear, after it, had mtime == baseline and
 * was never counted; a message whose commit was under way when the user's last session closed
 * could be stored just after, pushed to nobody, and counted as seen. A mark from this clock sits
 * between what is stored and what is not:
 * - every clock handed out after a mark is above it (the floor), so a later message counts;
 * - a mark is below every clock still in flight (handed to a commit that has not finished), so a
 *   message committed after the mark counts, even if its clock was taken before.
 * The price, only when a commit is in flight: messages stored in that commit's millisecond just
 * before the mark count as unread too. Counting a message twice is better than hiding one.
 *
 * Exact within one process, and across a restart: the store records the highest mark at a stop
 * (`highestMark`) and the next process `resume`s after it and after the newest mtime stored, so a
 * clock that runs behind them then (stepped back, or a test's stopped clock) neither hides a later
 * message behind an earlier clear nor counts an earlier message after a later one. Across the nodes
 * of a cluster, marks and mtimes are as close as the nodes' clocks are.
 */
export class MessageClock {
  /** The highest clock handed out. */
  private last = 0n;
  /** The least clock to hand out next: one above the latest mark. */
  private floor = 0n;
  /** Clocks handed to commits that have not settled, with how many commits hold each. */
  private readonly inFlight = new Map<bigint, number>();

  constructor(private readonly now: () => number) {}

  /**
   * Goes on after an earlier process: `newest` is the newest mtime stored, `marks` the highest mark
   * it recorded at its stop (`highestMark`). Later marks cover everything stored, and later clocks
   * sort after every earlier mark.
   */
  resume(newest: bigint, marks: bigint): void {
    const high = newest > marks ? newest : marks;
    if (high > this.last) this.last = high;
    if (marks + 1n > this.floor) this.floor = marks + 1n;
  }

  /** The highest mark handed out so far (0 for none), for the next process to `resume` after. */
  get highestMark(): bigint {
    return this.floor > 0n ? this.floor - 1n : 0n;
  }

  /** The clock for a commit about to start (never lower than one before it); pair with `settled`. */
  take(): bigint {
    const clock = this.stamp();
    this.inFlight.set(clock, (this.inFlight.get(clock) ?? 0) + 1);
    return clock;
  }

  /** The commit that took `clock` is over (stored or failed). */
  settled(clock: bigint): void {
    const n = this.inFlight.get(clock) ?? 0;
    if (n <= 1) this.inFlight.delete(clock);
    else this.inFlight.set(clock, n - 1);
  }

  /**
   * A time that sorts after every mark taken before it, and at or before every mark taken after it
   * (unless a commit is in flight then: see `mark`), never lower than one before it. Commits take
   * theirs through `take`; a room's join time is one (Store.endPresence leaves the rooms joined
   * after the `cut` of a presence's end).
   */
  stamp(): bigint {
    let t = BigInt(Math.trunc(this.now()));
    if (t < this.floor) t = this.floor;
    if (t < this.last) t = this.last;
    this.last = t;
    return t;
  }

  /**
   * A baseline (ms) for unread counting: messages stored from now on get a higher mtime, and so do
   * those whose commit is in flight.
   */
  mark(): bigint {
    let mark = this.cut();
    for (const clock of this.inFlight.keys()) if (clock <= mark) mark = clock - 1n;
    return mark;
  }

  /**
   * A time at or after every stamp and clock handed out before it, and before every one handed
   * out after it; commits in flight do not lower it. What a presence's end leaves its rooms
   * through: a room joined (stamped) while a commit was in flight is before it, where a `mark`
   * lowered below that commit would leave the room joined for good.
   */
  cut(): bigint {
    const now = BigInt(Math.trunc(this.now()));
    const cut = now > this.last ? now : this.last;
    if (cut + 1n > this.floor) this.floor = cut + 1n;
    return cut;
  }
}
