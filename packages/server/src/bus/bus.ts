import type { StoredMessage } from '../store/store.js';

/**
 * What crosses nodes (DESIGN.md "Cluster"). Implementations: `local.ts` (in-process, the default)
 * and `nats.ts`. Every implementation passes `busConformance` (@rtm/testkit).
 *
 * Contract:
 * - `publish` delivers the event to the handler of every node, this one included, exactly once.
 * - Events published by one node are handled by every node in publish order.
 * - `queryOnline` answers which of `uids` have a session on any node (the union of every node's
 *   local answer); a node that does not answer in time is left out (its users count as offline).
 */
export type BusEvent =
  /** A stored message to push to online sessions of its recipients and to listening backends. */
  | {
      type: 'message';
      message: StoredMessage;
      /** p2p/multi-user: the receivers (group: members; room and broadcast: resolved on each node). */
      recipients?: readonly bigint[];
      /** The session that sent it (never pushed back to it): node id and connection id. */
      origin?: { node: string; conn: number };
    }
  /**
   * Close client sessions of a user (server-API kickout, project blacklist, a newer login):
   * every one, or only those at the gate `endpoint` ("host:port", kickout's `ce`), never `except`.
   */
  | { type: 'kickout'; pid: number; uid: bigint; endpoint?: string; except?: { node: string; conn: number } }
  /** A user entered or left a room (server API or another node): keep local room indexes right. */
  | { type: 'room'; pid: number; rid: bigint; uid: bigint; joined: boolean; kick: boolean }
  /** A group's members changed: nodes forget the members they hold (services/group-members.ts). */
  | { type: 'group'; pid: number; gid: bigint }
  /** A login/logout to push to listening backends as `pushevent`. */
  | { type: 'presence'; pid: number; uid: bigint; event: 'login' | 'logout'; time: number; endpoint: string };

export type BusHandler = (event: BusEvent) => void;
export type OnlineResponder = (pid: number, uids: bigint[]) => bigint[];

export interface Bus {
  /** Unique id of this node. */
  readonly nodeId: string;
  /** Connects; from now on events reach `handler` and presence queries reach `responder`. */
  start(handler: BusHandler, responder: OnlineResponder): Promise<void>;
  publish(event: BusEvent): void;
  /** Which of `uids` are online on any node. */
  queryOnline(pid: number, uids: bigint[]): Promise<bigint[]>;
  close(): Promise<void>;
}
