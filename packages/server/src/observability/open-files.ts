import { readdirSync, readFileSync } from 'node:fs';

/**
 * What this process may have open at once, and has. Every connection is a file descriptor, and
 * at the limit the kernel refuses `accept`: libuv then accepts and closes the waiting connections
 * itself (its EMFILE trick) and tells node nothing, so without these the clients fail to connect
 * and the log says nothing. Node raises the soft limit to the hard one at start; what is read here
 * is the limit in force.
 */

/** The soft limit on open files (Linux: `/proc/self/limits`); undefined if unlimited or unknown. */
export function openFileLimit(limits: () => string = () => readFileSync('/proc/self/limits', 'utf8')): number | undefined {
  let text: string;
  try {
    text = limits();
  } catch {
    return undefined; // not Linux, or /proc not mounted
  }
  const soft = /^Max open files\s+(\S+)/m.exec(text)?.[1];
  const n = soft === undefined ? NaN : Number(soft);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/** How many files this process has open now (Linux: `/proc/self/fd`); undefined if unknown. */
export function openFileCount(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length - 1; // less the descriptor that reads the directory
  } catch {
    return undefined;
  }
}

/**
 * Files kept for what is not a client-gate connection, beyond those open at start: server-gate
 * and admin connections, the store's and the bus's, the TLS files read again at a reload.
 */
export const FILES_KEPT = 100;

/**
 * The client-gate connections a node can hold: `configured` (RTM_MAX_CLIENT_CONNECTIONS, 0 = no
 * limit), lowered (`lowered`) to what the open-file `limit` leaves once the files open at start
 * (`openAtStart`) and FILES_KEPT are set aside. Past that, accept fails and libuv closes the
 * connections unseen; under it, a refusal is the gate's own, counted and logged.
 */
export function clientConnectionCap(
  configured: number,
  limit: number | undefined,
  openAtStart: number | undefined,
): { cap: number; lowered: boolean } {
  if (limit === undefined) return { cap: configured, lowered: false };
  const room = Math.max(1, limit - (openAtStart ?? 0) - FILES_KEPT);
  return configured === 0 || configured > room ? { cap: room, lowered: true } : { cap: configured, lowered: false };
}
