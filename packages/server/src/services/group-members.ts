import type { Bus } from '../bus/bus.js';
import type { Store } from '../store/store.js';

/** A read of a group's members under way; `stale` once a change overtook it. */
interface Load {
  promise: Promise<readonly bigint[]>;
  stale: boolean;
}

/**
 * Group members for sends, kept in memory (a group send needs them all: the sender's membership,
 * then the recipients).
 *
 * Why: read from the store at every send, a group of 10,000 members cost about 4 ms of SQLite
 * on the event loop per message (measured), every other connection waiting meanwhile.
 *
 * Kept right by `changed`, called after every membership change: here at once, on the other nodes
 * of a cluster when the bus brings them the `group` event (until then a send through another node
 * still sees the old members, by the bus's latency; docs/cluster.md). A load that a change
 * overtakes is not kept. While the bus is cut off from the other nodes (`connected` false), no
 * change of theirs can reach this node: every send reads the store and nothing is kept; when it is
 * back, `forgetAll` drops what was kept before (the changes made meanwhile never arrive). Bounded:
 * groups used least recently go first once `maxIds` are held, a group costing its member ids plus
 * `GROUP_COST_IN_IDS` (the default, 1,000,000, is about 35 MB however large or small the groups).
 */
/**
 * What a held group costs beyond its member ids, in ids: its key, its array and its map entry
 * take about 140 bytes, an id about 35 (measured on Node 20). Counted by ids alone, a million
 * one-member groups fitted the default bound and took 173 MB.
 */
const GROUP_COST_IN_IDS = 4;

export class GroupMembers {
  /** `pid:gid` → members, least recently used first. */
  private readonly cached = new Map<string, readonly bigint[]>();
  /** Loads under way, by `pid:gid`. */
  private readonly loading = new Map<string, Load>();
  private held = 0;

  constructor(
    private readonly store: Store,
    private readonly bus: Bus,
    private readonly maxIds = 1_000_000,
  ) {}

  /** The members of a group (empty: no such group), in the store's order. */
  members(pid: number, gid: bigint): Promise<readonly bigint[]> {
    if (this.bus.connected === false) return this.store.groupMembers(pid, gid).then((m) => Object.freeze(m));
    const k = `${pid}:${gid}`;
    const hit = this.cached.get(k);
    if (hit) {
      this.cached.delete(k); // re-inserted last: most recently used
      this.cached.set(k, hit);
      return Promise.resolve(hit);
    }
    const pending = this.loading.get(k);
    if (pending && !pending.stale) return pending.promise;
    const load: Load = { promise: undefined as unknown as Promise<readonly bigint[]>, stale: false };
    load.promise = this.load(pid, gid, k, load);
    this.loading.set(k, load);
    return load.promise;
  }

  private async load(pid: number, gid: bigint, k: string, load: Load): Promise<readonly bigint[]> {
    try {
      const members = Object.freeze(await this.store.groupMembers(pid, gid));
      // Not kept: a load a change overtook, and groups without members (unknown ids).
      if (!load.stale && members.length > 0) this.keep(k, members);
      return members;
    } finally {
      if (this.loading.get(k) === load) this.loading.delete(k);
    }
  }

  private keep(k: string, members: readonly bigint[]): void {
    if (cost(members) > this.maxIds) return;
    const before = this.cached.get(k);
    if (before) this.held -= cost(before);
    this.cached.set(k, members);
    this.held += cost(members);
    for (const [old, m] of this.cached) {
      if (this.held <= this.maxIds) break;
      this.cached.delete(old);
      this.held -= cost(m);
    }
  }

  /** After a change of the group's members, on this node: forgets them here and tells the other nodes. */
  changed(pid: number, gid: bigint): void {
    this.forget(pid, gid);
    this.bus.publish({ type: 'group', pid, gid });
  }

  /**
   * The bus is back after an outage (it may have missed changes made through other nodes):
   * forgets every group held, and loads under way are not kept. Returns how many groups it held.
   */
  forgetAll(): number {
    const n = this.cached.size;
    this.cached.clear();
    this.held = 0;
    for (const load of this.loading.values()) load.stale = true;
    return n;
  }

  /** A change of the group's members (here, or on another node): forgets what is held. */
  forget(pid: number, gid: bigint): void {
    const k = `${pid}:${gid}`;
    const m = this.cached.get(k);
    if (m) {
      this.cached.delete(k);
      this.held -= cost(m);
    }
    const pending = this.loading.get(k);
    if (pending) pending.stale = true;
  }
}

/** What holding a group's members costs, in ids. */
function cost(members: readonly bigint[]): number {
  return members.length + GROUP_COST_IN_IDS;
}
