import type { Bus, BusEvent } from '../bus/bus.js';
import { PreparedPush } from '../gate/connection.js';
import type { GroupMembers } from './group-members.js';
import type { Metrics } from '../observability/metrics.js';
import { MessageKind, type StoredMessage } from '../store/store.js';
import { wantsEvent, wantsMessage, type ListenRegistry, type ServerConnection } from './listen.js';
import type { ClientConnection, LocalPresence } from './presence.js';
import { clientPush, serverPush } from './pushes.js';
import { KICKED_OUT } from './sessions.js';

export interface DeliveryOptions {
  /**
   * Push p2p, group and room messages to the sender's other sessions too (multi-device sync);
   * never to the session that sent it (client-api.md §6: only if an option says so). @default false
   */
  pushToSenderDevices: boolean;
  /** "host:port" of this node's client gate, as `pushevent` gives it and kickout's `ce` names it. */
  endpoint: () => string;
  /** A kickout of the user reached this node (after its sessions here were closed): Sessions ends a grace period running here. */
  kickedOut: (pid: number, uid: bigint) => void;
  /** How long a kicked-out connection stays open for its client to close it (ServerConfig.kickoutCloseMs). */
  kickoutCloseMs: number;
}

/**
 * The last step of the delivery path (DESIGN.md): turns bus events into pushes to this node's
 * connections. Each message is encoded once per node and written to every connection that gets it.
 * (And hands the bus's group changes to the group members this node holds.)
 */
export class Delivery {
  constructor(
    private readonly bus: Bus,
    private readonly presence: LocalPresence,
    private readonly listeners: ListenRegistry,
    private readonly metrics: Metrics,
    private readonly groupMembers: GroupMembers,
    private readonly options: DeliveryOptions,
  ) {}

  /** Handles one bus event on this node. */
  handle = (event: BusEvent): void => {
    switch (event.type) {
      case 'message':
        return this.deliverMessage(event.message, event.recipients, event.origin);
      case 'kickout': {
        if (event.endpoint !== undefined && event.endpoint !== this.options.endpoint()) return;
        // A login's kickout (RTM_SINGLE_SESSION) spares the logins that began after it: theirs closes
        // it; so does a recorded kickout replayed after a bus outage (no `except`: services/resync.ts).
        const by =
          event.loginAt !== undefined ? { at: event.loginAt, node: event.except?.node ?? '', conn: event.except?.conn ?? -1 } : undefined;
        this.noteKick(event.pid, event.uid, by);
        this.kickout(event.pid, event.uid, event.except?.node === this.bus.nodeId ? event.except.conn : -1, by);
        return this.options.kickedOut(event.pid, event.uid);
      }
      case 'room':
        return this.roomChange(event.pid, event.rid, event.uid, event.joined, event.kick);
      case 'presence':
        return this.presenceEvent(event.pid, event.uid, event.event, event.time, event.endpoint);
      case 'group':
        return this.groupMembers.forget(event.pid, event.gid);
    }
  };

  private deliverMessage(
    m: StoredMessage,
    recipients: readonly bigint[] | undefined,
    origin: { node: string; conn: number } | undefined,
  ): void {
    const echo = this.options.pushToSenderDevices;
    // A broadcast reaches everyone online; the other kinds skip the sender's sessions unless echoed,
    // or unless the sender is a receiver too (a backend's p2p note from a user to the same user).
    const toSelf = m.kind === MessageKind.P2P && (recipients ? recipients.includes(m.from) : m.to === m.from);
    const skipUid = echo || toSelf || m.kind === MessageKind.BROADCAST ? undefined : m.from;
    // The connection the send came on, if on this node: a client one gets nothing, a listening one waits for the answer.
    const sender = origin && origin.node === this.bus.nodeId ? origin.conn : -1;
    const out = new ClientFanout(m, sender, skipUid);
    switch (m.kind) {
      case MessageKind.P2P:
        this.toUsers(out, recipients ?? [m.to]);
        // A message to the sender itself reached their sessions already: echoed again, each would get it twice.
        if (echo && !toSelf) this.toUsers(out, [m.from]);
        break;
      case MessageKind.GROUP:
        this.toUsers(out, recipients ?? []);
        break;
      case MessageKind.ROOM:
        for (const conn of this.presence.roomConnections(m.pid, m.to)) out.push(conn);
        break;
      case MessageKind.BROADCAST:
        this.toUsers(out, this.presence.usersOf(m.pid));
        break;
    }
    if (out.prepared) this.metrics.pushes.tally(out.prepared.method).n += out.written;

    const listening = this.listeners.listeners(m.pid);
    if (listening) {
      let serverPrepared: PreparedPush | undefined;
      for (const conn of listening) {
        if (!wantsMessage(conn.session!.listen, m)) continue;
        if (!serverPrepared) {
          const p = serverPush(m);
          if (!p) break;
          serverPrepared = new PreparedPush(p.method, p.payload);
        }
        if (conn.id === sender) holdUntilAnswered(conn);
        conn.pushPrepared(serverPrepared);
      }
    }
  }

  private toUsers(out: ClientFanout, uids: Iterable<bigint>): void {
    for (const uid of uids) {
      const conns = this.presence.connectionsOf(out.message.pid, uid);
      if (conns) for (const conn of conns) out.push(conn);
    }
  }

  /**
   * Kickouts (server API, project blacklist, a newer login) of the last minute, by user: a login
   * under way when one came is not yet a session it could close, and must not outlive it. `at`:
   * when the last one came; `all`: when the last that closes every session came; `newest`: the
   * newest login whose kickout came (RTM_SINGLE_SESSION).
   */
  private readonly kicks = new Map<string, { at: number; all?: number; newest?: Login }>();

  /**
   * Whether `login` (under way on this node) is over: a kickout for the user reached this node
   * since it began, or (whenever it came) the kickout of a login that began after it.
   */
  kickedSince(pid: number, uid: bigint, login: Login): boolean {
    const kick = this.kicks.get(`${pid}:${uid}`);
    if (!kick) return false;
    if (kick.all !== undefined && kick.all >= login.at) return true;
    return kick.newest !== undefined && loginBefore(login, kick.newest);
  }

  private noteKick(pid: number, uid: bigint, by: Login | undefined): void {
    const now = Date.now();
    const key = `${pid}:${uid}`;
    const kick = this.kicks.get(key) ?? { at: now };
    this.kicks.delete(key); // re-inserted last: the map stays in time order
    kick.at = now;
    if (!by) kick.all = now;
    else if (!kick.newest || loginBefore(kick.newest, by)) kick.newest = by;
    this.kicks.set(key, kick);
    for (const [k, { at }] of this.kicks) {
      if (now - at < KICK_MEMORY_MS) break;
      this.kicks.delete(k);
    }
  }

  /** Closes the user's sessions here but `keepConn`; a login's kickout (`by`) only those that logged in before it. */
  private kickout(pid: number, uid: bigint, keepConn: number, by: Login | undefined): void {
    const conns = this.presence.connectionsOf(pid, uid);
    if (!conns) return;
    for (const conn of [...conns]) {
      if (conn.id === keepConn) continue;
      if (by && !loginBefore({ at: conn.session!.loginAt, node: this.bus.nodeId, conn: conn.id }, by)) continue;
      // Oneway: no client SDK answers kickout (spec/fpnn.md §3).
      conn.oneway('kickout', {});
      conn.close(KICKED_OUT, this.options.kickoutCloseMs);
    }
  }

  private roomChange(pid: number, rid: bigint, uid: bigint, joined: boolean, kick: boolean): void {
    const conns = this.presence.connectionsOf(pid, uid);
    if (!conns) return; // not online here: nothing to index
    if (joined) this.presence.joinRoom(pid, rid, uid);
    else {
      this.presence.leaveRoom(pid, rid, uid);
      if (kick) for (const conn of conns) conn.oneway('kickoutroom', { rid });
    }
  }

  private presenceEvent(pid: number, uid: bigint, event: 'login' | 'logout', time: number, endpoint: string): void {
    const listening = this.listeners.listeners(pid);
    if (!listening) return;
    let prepared: PreparedPush | undefined;
    for (const conn of listening) {
      if (!wantsEvent(conn.session!.listen, event)) continue;
      prepared ??= new PreparedPush('pushevent', { pid, event, uid, time, endpoint });
      conn.pushPrepared(prepared);
    }
  }
}

/** How long a kickout is remembered for logins under way (a login takes milliseconds to seconds). */
const KICK_MEMORY_MS = 60_000;

/** A client login: when its `auth` began (ms, its node's clock), its node, its connection there. */
export interface Login {
  at: number;
  node: string;
  conn: number;
}

/**
 * Whether login `a` began before login `b` (RTM_SINGLE_SESSION keeps the later one): by start
 * time, then (the same millisecond, on clocks that agree: NTP) by node id, then by connection id.
 * A total order on the cluster's logins: of two at once, each node finds the same one newer.
 */
export function loginBefore(a: Login, b: Login): boolean {
  if (a.at !== b.at) return a.at < b.at;
  if (a.node !== b.node) return a.node < b.node;
  return a.conn < b.conn;
}

/**
 * A backend that listens to what it sends gets the push after the send's answer (server-api.md
 * §2.1), and every later push behind it: its pushes wait until this turn's microtasks, which
 * write the answer, are done.
 */
function holdUntilAnswered(conn: ServerConnection): void {
  // Held already: by this turn's first message, or by a gate waiting to answer (it holds for this quest too).
  if (conn.holdingPushes) return;
  conn.holdPushes();
  setImmediate(() => conn.releasePushes());
}

/**
 * One message's pushes to client sessions: encoded on the first connection that gets it, never
 * to the sending session, nor to the sender's other sessions when `skipUid` is the sender. A
 * class, not closures: this runs once per message.
 */
class ClientFanout {
  prepared: PreparedPush | undefined;
  written = 0;

  constructor(
    readonly message: StoredMessage,
    private readonly skipConn: number,
    private readonly skipUid: bigint | undefined,
  ) {}

  push(conn: ClientConnection): void {
    const uid = conn.session!.uid;
    if (conn.id === this.skipConn || uid === this.skipUid) return;
    if (!this.prepared) {
      const p = clientPush(this.message);
      this.prepared = new PreparedPush(p.method, p.payload);
    }
    // p2p and group messages from others count as unread: the connection remembers them until
    // answered, for the unread baseline should it die without a word (gate/unanswered-pushes.ts).
    const m = this.message;
    const countsUnread = (m.kind === MessageKind.P2P || m.kind === MessageKind.GROUP) && uid !== m.from;
    conn.pushPrepared(this.prepared, countsUnread ? m.mtime : undefined);
    this.written++;
  }
}
