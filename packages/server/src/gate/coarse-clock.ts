/**
 * The time in ms, read from a variable that a timer refreshes every `TICK_MS`, for bookkeeping
 * that needs no better: a connection's last activity and last write (idle detection at 1 s and
 * more). Reading the clock per push and per frame was 2.5 % of the server's CPU in a room fan-out
 * (`v8::base::Time::Now`, bench/RESULTS.md, fifteenth session).
 */
const TICK_MS = 50;
let now = Date.now();
let ticking: NodeJS.Timeout | undefined;

export function coarseNow(): number {
  if (!ticking) {
    now = Date.now();
    // Unref'd: it never keeps a process alive, and runs while any server of the process does.
    ticking = setInterval(() => (now = Date.now()), TICK_MS);
    ticking.unref();
  }
  return now;
}
