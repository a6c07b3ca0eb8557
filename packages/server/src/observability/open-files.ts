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
 * Files kept for what is neither gate's connection, beyond those open at start: admin connections
 * (scrapes, health checks, backups), the store's and the bus's, the TLS files read again at a
 * reload; and one free for a gate to accept a connection over its limit, and close it, counted.
 */
export const FILES_KEPT = 100;

/**
 * The server gate's share of the room for connections is a tenth of it, and never less than
 * SERVER_SHARE_FLOOR connections (while there is room for one client connection beside them).
 *
 * A tenth, because backends are few processes with small pools while the client gate serves the
 * node's users: with the systemd unit's LimitNOFILE (262,144) a tenth is ~26,000, far above the
 * server gate's default 1,000, so the share only bites when the open-file limit is small, and then
 * both gates are lowered and say so. The floor keeps a few backends served under a tiny limit
 * (below ~230 files, where a tenth is fewer). What the server gate does not take, its own limit
 * being lower, is the client gate's.
 */
export const SERVER_SHARE_FLOOR = 10;

/** One gate's connection limit once the open-file limit is accounted for. */
export interface GateCap {
  /** Connections the gate holds at once; 0 = no limit (only when no open-file limit is known). */
  readonly cap: number;
  /** The open-file limit set `cap`: below the configured limit, or a limit where none was configured (0). */
  readonly lowered: boolean;
}

/**
 * The connections each gate can hold: its configured limit (RTM_MAX_SERVER_CONNECTIONS,
 * RTM_MAX_CLIENT_CONNECTIONS; 0 = no limit of its own), lowered so that together they never take
 * more than the `room` the open-file `limit` leaves once the files open at start (`openAtStart`)
 * and FILES_KEPT are set aside. Past that, accept fails and libuv closes the connections unseen, on
 * both gates; under it, each refusal is a gate's own, counted and logged. The server gate is given
 * its share first (a tenth of the room, at least SERVER_SHARE_FLOOR), the client gate the rest.
 * Neither cap is ever 0, which would mean no limit: a limit with no room left gives each gate one.
 */
export function connectionCaps(
  configured: { readonly server: number; readonly client: number },
  limit: number | undefined,
  openAtStart: number | undefined,
): { readonly server: GateCap; readonly client: GateCap; readonly room: number | undefined } {
  if (limit === undefined)
    return { server: { cap: configured.server, lowered: false }, client: { cap: configured.client, lowered: false }, room: undefined };
  const room = Math.max(2, limit - (openAtStart ?? 0) - FILES_KEPT);
  const share = Math.min(room - 1, Math.max(SERVER_SHARE_FLOOR, Math.floor(room / 10)));
  const server = within(configured.server, share);
  const client = within(configured.client, room - server.cap);
  return { server, client, room };
}

/** `configured` (0 = none) within `most`. */
function within(configured: number, most: number): GateCap {
  return configured === 0 || configured > most ? { cap: most, lowered: true } : { cap: configured, lowered: false };
}
