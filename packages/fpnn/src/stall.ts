/**
 * Timers that judge silence (quest timeouts, idle peers, ping watchdogs) after a stall of the
 * process: a frozen or throttled tab, a suspended machine, a long GC or busy loop. Node runs
 * overdue timers before it reads its sockets, so the first tick after a stall would judge peers
 * whose frames are already waiting unread. A tick that comes late judges after those reads.
 */

/**
 * Runs `fn` once what the event loop has received is handled: Node's setImmediate runs after the
 * poll for I/O that follows the timers; a browser has none, and a short timeout lets the network
 * tasks already queued run first.
 */
export const afterPendingReads: (fn: () => void) => void =
  typeof setImmediate === 'function' ? (fn) => void setImmediate(fn) : (fn) => void setTimeout(fn, 20);

/**
 * Runs `judge` for a timer that was due at `dueAt` (ms) and runs every (or once after) `periodMs`:
 * at once, or, when it came late by more than a quarter of that (20 ms at the least), after the
 * pending reads.
 */
export function judgeAfterStall(dueAt: number, periodMs: number, judge: () => void): void {
  if (Date.now() - dueAt > Math.max(20, periodMs / 4)) afterPendingReads(judge);
  else judge();
}
