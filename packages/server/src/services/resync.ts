import type { Bus, BusEvent, BusReconnect } from '../bus/bus.js';
import type { Logger } from '../observability/logger.js';
import type { KickoutRecord, Store } from '../store/store.js';
import type { GroupMembers } from './group-members.js';
import type { LocalPresence } from './presence.js';

/** Users read from the store at a time; the event loop turns between batches. */
const RESYNC_BATCH = 100;
/** Kickouts recorded this long before the outage was noticed are replayed too (NatsBus notices a silent partition in ~10 s). */
const KICKOUT_REPLAY_MARGIN_MS = 30_000;
/** At most this many recorded kickouts replayed after one outage. */
const MAX_KICKOUTS_REPLAYED = 10_000;

type KickoutEvent = Extract<BusEvent, { type: 'kickout' }>;

/** What a resync did, for its log line. */
interface ResyncCounts {
  users: number;
  roomsJoined: number;
  roomsLeft: number;
  kicked: number;
  failed: number;
  kickoutsReplayed: number;
}

/** How long a kickout is kept for the nodes cut off from the bus when it was published. */
const KICKOUT_KEPT_MS = 24 * 3_600_000;

/**
 * Records a kickout just published (server-API `kickout`, a login's with RTM_SINGLE_SESSION) for
 * the nodes cut off from the bus now, which replay it when they are back (`BusResync`); only with
 * a bus that can lose nodes. A store that fails is logged: the kickout reached every node the bus
 * did.
 */
export async function keepKickout(services: { bus: Bus; store: Store; log: Logger }, kickout: KickoutRecord): Promise<void> {
  if (services.bus.connected === undefined) return;
  await services.store
    .recordKickout(kickout, kickout.at - BigInt(KICKOUT_KEPT_MS))
    .catch((err: unknown) =>
      services.log.warn({ err, pid: kickout.pid, uid: String(kickout.uid) }, 'kickout not recorded for the nodes cut off from the bus'),
    );
}

/**
 * After a bus outage (docs/cluster.md "What crosses NATS"): this node may have missed the events
 * of the other nodes, so what it derives from events is read again from the store.
 *
 * - Group members held for sends: forgotten at once (`GroupMembers.forgetAll`), the next send reads them.
 * - The room index of the users online here (the `room` events): rebuilt from `store.userRooms`,
 *   RESYNC_BATCH users at a time. A `room` event that arrives while a user's rooms are read wins
 *   over the read for that room (it is newer); a user who logged out (or out and in again, a login
 *   reads their rooms itself) meanwhile is left alone. A missed removal only leaves the index: the
 *   `kickoutroom` push it may have carried is not replayed.
 * - Kickouts: a user online here whom the project blacklist now holds is kicked out, as the
 *   blacklist's kickout would have done (`kick`). The kickouts recorded since the outage began
 *   (`keepKickout`: server-API ones, and a newer login's with RTM_SINGLE_SESSION; and
 *   KICKOUT_REPLAY_MARGIN_MS before: a silent partition is noticed late) are replayed first, each
 *   closing only the sessions that began before it: one this node had applied already changes
 *   nothing.
 *
 * A reconnect while a resync runs starts it over.
 */
export class BusResync {
  private generation = 0;
  /** The resync under way, if any (tests wait for it). */
  running: Promise<void> | undefined;

  constructor(
    private readonly store: Store,
    private readonly presence: LocalPresence,
    private readonly groups: GroupMembers,
    private readonly log: Logger,
    /** Handles a kickout on this node as one from the bus (Delivery). */
    private readonly kick: (event: KickoutEvent) => void,
  ) {}

  /** The bus's `onReconnect`. */
  reconnected = (info: BusReconnect): void => {
    const groups = this.groups.forgetAll();
    const generation = ++this.generation;
    const run = this.run(generation, info, groups).catch((err: unknown) => this.log.error({ err }, 'bus reconnected: resync failed'));
    this.running = run.finally(() => {
      if (this.generation === generation) this.running = undefined;
    });
  };

  private async run(generation: number, info: BusReconnect, groups: number): Promise<void> {
    const t0 = Date.now();
    const done: ResyncCounts = { users: 0, roomsJoined: 0, roomsLeft: 0, kicked: 0, failed: 0, kickoutsReplayed: 0 };
    try {
      const since = BigInt(t0 - info.downMs - KICKOUT_REPLAY_MARGIN_MS);
      const kickouts = await this.store.kickoutsSince(since, MAX_KICKOUTS_REPLAYED);
      if (generation !== this.generation) return;
      for (const k of kickouts) {
        // Only the sessions (and logins under way) that began before it: `loginAt` (Delivery).
        this.kick({ type: 'kickout', pid: k.pid, uid: k.uid, loginAt: Number(k.at), ...(k.endpoint ? { endpoint: k.endpoint } : {}) });
      }
      done.kickoutsReplayed = kickouts.length;
    } catch (err) {
      done.failed++;
      this.log.warn({ err }, 'bus reconnected: could not read the kickouts of the outage');
    }
    const users = [...this.presence.users()];
    for (let i = 0; i < users.length; i += RESYNC_BATCH) {
      if (generation !== this.generation) return; // a newer reconnect started over
      await Promise.all(users.slice(i, i + RESYNC_BATCH).map(([pid, uid]) => this.user(generation, pid, uid, done)));
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (generation !== this.generation) return;
    const fields = { ...info, groupsForgotten: groups, ...done, ms: Date.now() - t0 };
    const text = `bus reconnected after ${info.downMs} ms: resent ${info.resent} queued events${info.dropped ? ` (${info.dropped} dropped: the queue was full)` : ''}, resynced from the store`;
    if (info.dropped > 0 || done.failed > 0) this.log.warn(fields, text);
    else this.log.info(fields, text);
  }

  private async user(generation: number, pid: number, uid: bigint, done: ResyncCounts): Promise<void> {
    const sessions = this.presence.connectionsOf(pid, uid);
    if (!sessions) return;
    const before = new Set(this.presence.roomsOf(pid, uid) ?? []);
    let stored: bigint[];
    let black: boolean;
    try {
      [stored, black] = await Promise.all([this.store.userRooms(pid, uid), this.store.isProjectBlack(pid, uid, BigInt(Date.now()))]);
    } catch (err) {
      done.failed++;
      this.log.warn({ err, pid, uid: String(uid) }, 'bus reconnected: could not resync a user');
      return;
    }
    // Gone, or a new presence (its login read the rooms itself), or a newer reconnect: leave it.
    if (generation !== this.generation || this.presence.connectionsOf(pid, uid) !== sessions) return;
    done.users++;
    if (black) {
      done.kicked++;
      this.kick({ type: 'kickout', pid, uid });
      return;
    }
    const now = this.presence.roomsOf(pid, uid);
    const inStore = new Set(stored);
    for (const rid of inStore) {
      // Not here before the read nor now: missed. (Here before and not now: a newer event removed it.)
      if (!before.has(rid) && !now?.has(rid)) {
        this.presence.joinRoom(pid, rid, uid);
        done.roomsJoined++;
      }
    }
    if (now) {
      for (const rid of [...now]) {
        // Here before the read and still, but not in the store: a removal missed.
        if (before.has(rid) && !inStore.has(rid)) {
          this.presence.leaveRoom(pid, rid, uid);
          done.roomsLeft++;
        }
      }
    }
  }
}
