import type { Connection } from '../gate/connection.js';
import { MessageKind, type StoredMessage } from '../store/store.js';

/**
 * What one server-gate connection listens to (server-api.md §4 "Listening"). Belongs to the
 * connection and disappears with it; SDKs re-send it with `setlisten` after reconnecting.
 */
export interface ListenState {
  p2p: boolean;
  group: boolean;
  room: boolean;
  ev: boolean;
  uids: Set<bigint>;
  gids: Set<bigint>;
  rids: Set<bigint>;
  events: Set<string>;
}

export interface ServerSession {
  readonly pid: number;
  listen: ListenState;
  /**
   * The connection used a listen method: its SDK reads server quests (pushes), so it is pinged.
   * Others are not: the PHP SDK is synchronous and reads any frame that comes as the answer to its
   * next call, so one ping desynchronises it for good (server-api.md §6; the hosted service's
   * pings, the Node SDK's README says, depend on listening too).
   */
  listened: boolean;
}

export type ServerConnection = Connection<ServerSession>;

export const emptyListen = (): ListenState => ({
  p2p: false,
  group: false,
  room: false,
  ev: false,
  uids: new Set(),
  gids: new Set(),
  rids: new Set(),
  events: new Set(),
});

export function isListening(s: ListenState): boolean {
  return s.p2p || s.group || s.room || s.ev || s.uids.size > 0 || s.gids.size > 0 || s.rids.size > 0 || s.events.size > 0;
}

/** Whether a listening connection wants this message (proposal: p2p matches sender or receiver). */
export function wantsMessage(s: ListenState, m: StoredMessage): boolean {
  switch (m.kind) {
    case MessageKind.P2P:
      return s.p2p || s.uids.has(m.from) || s.uids.has(m.to);
    case MessageKind.GROUP:
      return s.group || s.gids.has(m.to);
    case MessageKind.ROOM:
      return s.room || s.rids.has(m.to);
    default:
      return false; // no broadcast push exists on the server gate (server-api.md §6)
  }
}

export function wantsEvent(s: ListenState, event: string): boolean {
  return s.ev || s.events.has(event);
}

/** The listening server-gate connections of this node, per project. */
export class ListenRegistry {
  private readonly byProject = new Map<number, Set<ServerConnection>>();

  /** Call after any change of a connection's listen state. */
  update(conn: ServerConnection): void {
    const s = conn.session!;
    let set = this.byProject.get(s.pid);
    if (isListening(s.listen) && !conn.closed) {
      if (!set) this.byProject.set(s.pid, (set = new Set()));
      set.add(conn);
    } else set?.delete(conn);
  }

  remove(conn: ServerConnection): void {
    if (conn.session) this.byProject.get(conn.session.pid)?.delete(conn);
  }

  listeners(pid: number): ReadonlySet<ServerConnection> | undefined {
    const set = this.byProject.get(pid);
    return set && set.size > 0 ? set : undefined;
  }
}
