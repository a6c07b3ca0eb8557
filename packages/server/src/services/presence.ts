import type { Connection } from '../gate/connection.js';

/** The state of a logged-in client connection (client gate `session`). */
export interface ClientSession {
  readonly pid: number;
  readonly uid: bigint;
  /** Connection attributes (`auth.attrs`, `addattrs`). */
  attrs: Record<string, string>;
  /** SDK tag sent at login. */
  readonly version: string;
}

export type ClientConnection = Connection<ClientSession>;

const key = (pid: number, id: bigint): string => `${pid}:${id}`;

/**
 * Who is online on this node: the client sessions of each user, and the rooms of the users that
 * have a session here (the index room fan-out walks). Pure bookkeeping, no I/O.
 */
export class LocalPresence {
  private readonly sessions = new Map<string, Set<ClientConnection>>();
  private readonly roomMembers = new Map<string, Set<bigint>>();
  private readonly userRooms = new Map<string, Set<bigint>>();
  private readonly projectUsers = new Map<number, Set<bigint>>();

  /** Adds a session; true if it is the user's first one on this node. */
  add(conn: ClientConnection): boolean {
    const s = conn.session!;
    const k = key(s.pid, s.uid);
    let set = this.sessions.get(k);
    const first = !set;
    if (!set) {
      set = new Set();
      this.sessions.set(k, set);
      let users = this.projectUsers.get(s.pid);
      if (!users) this.projectUsers.set(s.pid, (users = new Set()));
      users.add(s.uid);
    }
    set.add(conn);
    return first;
  }

  /** Removes a session; true if it was the user's last one on this node. */
  remove(conn: ClientConnection): boolean {
    const s = conn.session;
    if (!s) return false;
    const k = key(s.pid, s.uid);
    const set = this.sessions.get(k);
    if (!set || !set.delete(conn)) return false;
    if (set.size > 0) return false;
    this.sessions.delete(k);
    this.projectUsers.get(s.pid)?.delete(s.uid);
    return true;
  }

  connectionsOf(pid: number, uid: bigint): ReadonlySet<ClientConnection> | undefined {
    return this.sessions.get(key(pid, uid));
  }

  isOnline(pid: number, uid: bigint): boolean {
    return this.sessions.has(key(pid, uid));
  }

  onlineOf(pid: number, uids: readonly bigint[]): bigint[] {
    return uids.filter((uid) => this.sessions.has(key(pid, uid)));
  }

  usersOf(pid: number): ReadonlySet<bigint> {
    return this.projectUsers.get(pid) ?? new Set();
  }

  get sessionCount(): number {
    let n = 0;
    for (const set of this.sessions.values()) n += set.size;
    return n;
  }

  // --- rooms of locally online users -----------------------------------------------------------

  joinRoom(pid: number, rid: bigint, uid: bigint): void {
    const rk = key(pid, rid);
    let members = this.roomMembers.get(rk);
    if (!members) this.roomMembers.set(rk, (members = new Set()));
    members.add(uid);
    const uk = key(pid, uid);
    let rooms = this.userRooms.get(uk);
    if (!rooms) this.userRooms.set(uk, (rooms = new Set()));
    rooms.add(rid);
  }

  leaveRoom(pid: number, rid: bigint, uid: bigint): void {
    const rk = key(pid, rid);
    const members = this.roomMembers.get(rk);
    if (members) {
      members.delete(uid);
      if (members.size === 0) this.roomMembers.delete(rk);
    }
    const uk = key(pid, uid);
    const rooms = this.userRooms.get(uk);
    if (rooms) {
      rooms.delete(rid);
      if (rooms.size === 0) this.userRooms.delete(uk);
    }
  }

  /** Forgets the user's rooms on this node (their last local session ended). */
  forgetRooms(pid: number, uid: bigint): void {
    const rooms = this.userRooms.get(key(pid, uid));
    if (!rooms) return;
    for (const rid of [...rooms]) this.leaveRoom(pid, rid, uid);
  }

  localRoomMembers(pid: number, rid: bigint): ReadonlySet<bigint> | undefined {
    return this.roomMembers.get(key(pid, rid));
  }

  isInRoomLocally(pid: number, rid: bigint, uid: bigint): boolean {
    return this.roomMembers.get(key(pid, rid))?.has(uid) ?? false;
  }
}
