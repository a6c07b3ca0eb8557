import type { Connection } from '../gate/connection.js';

/** The state of a logged-in client connection (client gate `session`). */
export interface ClientSession {
  readonly pid: number;
  readonly uid: bigint;
  /** Connection attributes (`auth.attrs`, `addattrs`). */
  attrs: Record<string, string>;
  /** SDK tag sent at login. */
  readonly version: string;
  /** When its `auth` began (ms): with RTM_SINGLE_SESSION, the newest login stays (services/delivery.ts `loginBefore`). */
  readonly loginAt: number;
}

export type ClientConnection = Connection<ClientSession>;

/** pid → id → value. Keyed by the bigint itself: no string is built on the fan-out path. */
class ByProject<V> {
  private readonly projects = new Map<number, Map<bigint, V>>();

  get(pid: number, id: bigint): V | undefined {
    return this.projects.get(pid)?.get(id);
  }

  has(pid: number, id: bigint): boolean {
    return this.projects.get(pid)?.has(id) ?? false;
  }

  set(pid: number, id: bigint, value: V): void {
    let map = this.projects.get(pid);
    if (!map) this.projects.set(pid, (map = new Map()));
    map.set(id, value);
  }

  delete(pid: number, id: bigint): void {
    const map = this.projects.get(pid);
    if (!map) return;
    map.delete(id);
    if (map.size === 0) this.projects.delete(pid);
  }

  keys(pid: number): IterableIterator<bigint> | readonly bigint[] {
    return this.projects.get(pid)?.keys() ?? [];
  }

  *ids(): IterableIterator<[pid: number, id: bigint]> {
    for (const [pid, map] of this.projects) for (const id of map.keys()) yield [pid, id];
  }

  *values(): IterableIterator<V> {
    for (const map of this.projects.values()) yield* map.values();
  }
}

/**
 * Who is online on this node: the client sessions of each user, and the rooms of the users that
 * have a session here (the index room fan-out walks). Pure bookkeeping, no I/O.
 */
export class LocalPresence {
  private readonly sessions = new ByProject<Set<ClientConnection>>();
  private readonly roomMembers = new ByProject<Set<bigint>>();
  private readonly userRooms = new ByProject<Set<bigint>>();
  /**
   * The sessions of each room's members, as one array: a room message walks it instead of looking
   * up every member's sessions (a bigint-keyed lookup per member and message). Built on first use,
   * dropped when the room's members or their sessions change; never mutated, so a fan-out that
   * closes a connection on its way keeps walking the array it started with.
   */
  private readonly roomConns = new ByProject<readonly ClientConnection[]>();

  /** Adds a session; true if it is the user's first one on this node. */
  add(conn: ClientConnection): boolean {
    const { pid, uid } = conn.session!;
    let set = this.sessions.get(pid, uid);
    const first = !set;
    if (!set) this.sessions.set(pid, uid, (set = new Set()));
    set.add(conn);
    this.dropRoomConnections(pid, uid);
    return first;
  }

  /** Removes a session; true if it was the user's last one on this node. */
  remove(conn: ClientConnection): boolean {
    const s = conn.session;
    if (!s) return false;
    const set = this.sessions.get(s.pid, s.uid);
    if (!set || !set.delete(conn)) return false;
    this.dropRoomConnections(s.pid, s.uid);
    if (set.size > 0) return false;
    this.sessions.delete(s.pid, s.uid);
    return true;
  }

  connectionsOf(pid: number, uid: bigint): ReadonlySet<ClientConnection> | undefined {
    return this.sessions.get(pid, uid);
  }

  isOnline(pid: number, uid: bigint): boolean {
    return this.sessions.has(pid, uid);
  }

  onlineOf(pid: number, uids: readonly bigint[]): bigint[] {
    return uids.filter((uid) => this.sessions.has(pid, uid));
  }

  /** Users of a project with a session on this node. */
  usersOf(pid: number): Iterable<bigint> {
    return this.sessions.keys(pid);
  }

  /** Every user with a session on this node, as [pid, uid]. */
  users(): Iterable<[pid: number, uid: bigint]> {
    return this.sessions.ids();
  }

  get sessionCount(): number {
    let n = 0;
    for (const set of this.sessions.values()) n += set.size;
    return n;
  }

  // --- rooms of locally online users -----------------------------------------------------------

  joinRoom(pid: number, rid: bigint, uid: bigint): void {
    let members = this.roomMembers.get(pid, rid);
    if (!members) this.roomMembers.set(pid, rid, (members = new Set()));
    members.add(uid);
    this.roomConns.delete(pid, rid);
    let rooms = this.userRooms.get(pid, uid);
    if (!rooms) this.userRooms.set(pid, uid, (rooms = new Set()));
    rooms.add(rid);
  }

  leaveRoom(pid: number, rid: bigint, uid: bigint): void {
    this.roomConns.delete(pid, rid);
    const members = this.roomMembers.get(pid, rid);
    if (members) {
      members.delete(uid);
      if (members.size === 0) this.roomMembers.delete(pid, rid);
    }
    const rooms = this.userRooms.get(pid, uid);
    if (rooms) {
      rooms.delete(rid);
      if (rooms.size === 0) this.userRooms.delete(pid, uid);
    }
  }

  /** Forgets the user's rooms on this node (their last local session ended). */
  forgetRooms(pid: number, uid: bigint): void {
    const rooms = this.userRooms.get(pid, uid);
    if (!rooms) return;
    for (const rid of [...rooms]) this.leaveRoom(pid, rid, uid);
  }

  /** Every session on this node of the room's members (empty if none). */
  roomConnections(pid: number, rid: bigint): readonly ClientConnection[] {
    const kept = this.roomConns.get(pid, rid);
    if (kept) return kept;
    const members = this.roomMembers.get(pid, rid);
    if (!members) return NO_CONNECTIONS;
    const built: ClientConnection[] = [];
    for (const uid of members) {
      const set = this.sessions.get(pid, uid);
      if (set) for (const conn of set) built.push(conn);
    }
    this.roomConns.set(pid, rid, built);
    return built;
  }

  /** The user's sessions changed: the rooms they are in rebuild their arrays on next use. */
  private dropRoomConnections(pid: number, uid: bigint): void {
    const rooms = this.userRooms.get(pid, uid);
    if (rooms) for (const rid of rooms) this.roomConns.delete(pid, rid);
  }

  /** The rooms of a user with a session here, as this node knows them (undefined: none). */
  roomsOf(pid: number, uid: bigint): ReadonlySet<bigint> | undefined {
    return this.userRooms.get(pid, uid);
  }

  isInRoomLocally(pid: number, rid: bigint, uid: bigint): boolean {
    return this.roomMembers.get(pid, rid)?.has(uid) ?? false;
  }
}

const NO_CONNECTIONS: readonly ClientConnection[] = [];
