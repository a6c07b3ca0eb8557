/**
 * Keeps one failure that repeats from flooding the log. While the store is down every send fails
 * the same way — thousands of identical error lines a second, each with its stack — and the one
 * line that differs scrolls away. The first of a kind (same key: the method and the error's
 * message) is logged; the same kind again within `windowMs` is only counted, and the next one
 * logged after the window says how many were left out (`repeats`). Exact counts are in the
 * metrics (`rtm_quests_total{outcome="internal"}`: answered 20001).
 */
export class RepeatFilter {
  private readonly seen = new Map<string, { at: number; repeats: number }>();

  constructor(
    private readonly windowMs = 10_000,
    /** Kinds remembered at most: errors whose messages carry ids must not grow the map for ever. */
    private readonly maxKinds = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Whether to log this occurrence of `key`; if so, how many of its kind were left out since the
   * last one logged (0: none).
   */
  admit(key: string): { log: false } | { log: true; repeats: number } {
    const now = this.now();
    const entry = this.seen.get(key);
    if (entry && now - entry.at < this.windowMs) {
      entry.repeats++;
      return { log: false };
    }
    const repeats = entry?.repeats ?? 0;
    if (!entry && this.seen.size >= this.maxKinds) this.seen.clear();
    this.seen.set(key, { at: now, repeats: 0 });
    return { log: true, repeats };
  }
}
