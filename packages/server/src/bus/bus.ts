import type { StoredMessage } from '../store/store.js';

/**
 * What crosses nodes (DESIGN.md "Cluster"). Implementations: `local.ts` (in-process, the default)
 * and `nats.ts`. Every implementation passes `busConformance` (@rtm/testkit).
 *
 * Contract:
 * - `publish` delivers the event to the handler of every node, this one included, exactly once.
 * - Events published by one node are handled by every node in publish order.
 * - Causal order across nodes (buses with other nodes): once `sent(mark)` resolves, the events
 *   this node published since `mark` are handled by every node before any event published after
 *   that, by any node. A gate answers a quest only then (gate.ts), so a caller who waits for one
 *   answer before the next call has the events of both calls in that order everywhere, whichever
 *   nodes the two calls went to.
 * - `queryOnline` answers which of `uids` have a session on any node (the union of every node's
 *   local answer); a node that does not answer in time is left out (its users count as offline).
 *   `askOnline` says, with that answer, which nodes it heard from: a node left out may hold
 *   sessions no one can see (it is cut off from the bus, or slow), which its presence records in
 *   the store still show (services/sessions.ts).
 * - A bus that loses the other nodes for a while (NatsBus: NATS is down or unreachable from this
 *   node) keeps handling its own events locally, keeps what it publishes meanwhile in a bounded
 *   queue and sends it, in publish order, on reconnect, before any later event. It may hold the
 *   queue a bounded while after reconnecting, until the other nodes can hear it (NatsBus: until
 *   those it knew are back on NATS, which restarted under all of them); meanwhile later events
 *   join the queue and the bus is not `connected`. The other nodes' events of that time never
 *   reach this node: once the queue is sent it calls `onReconnect`, so that what this node
 *   derives from events (cached group members, the room index, kickouts) is read again from the
 *   store. A bus that cannot lose the other nodes (LocalBus) never calls it.
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
  | {
      type: 'kickout';
      pid: number;
      uid: bigint;
      endpoint?: string;
      except?: { node: string; conn: number };
      /**
       * A login's kickout (RTM_SINGLE_SESSION): when the login `except` names began (ms, its node's
       * clock). It closes only the sessions, and ends only the logins under way, that began before
       * it (`loginBefore`): of logins at once on several nodes, the newest one stays. Also a
       * recorded server-API kickout replayed after an outage (services/resync.ts): when it was made.
       */
      loginAt?: number;
    }
  /** A user entered or left a room (server API or another node): keep local room indexes right. */
  | { type: 'room'; pid: number; rid: bigint; uid: bigint; joined: boolean; kick: boolean }
  /** A group's members changed: nodes forget the members they hold (services/group-members.ts). */
  | { type: 'group'; pid: number; gid: bigint }
  /** A login/logout to push to listening backends as `pushevent`. */
  | { type: 'presence'; pid: number; uid: bigint; event: 'login' | 'logout'; time: number; endpoint: string };

export type BusHandler = (event: BusEvent) => void;

/** What `askOnline` answers. */
export interface OnlineAnswer {
  /** Which of the uids asked have a session on a node that answered. */
  online: bigint[];
  /** The nodes that answered, this one included. */
  answered: ReadonlySet<string>;
}
export type OnlineResponder = (pid: number, uids: bigint[]) => bigint[];

/** What `onReconnect` hears: the bus is back after an outage during which this node may have missed events. */
export interface BusReconnect {
  /** Events published by this node during the outage, sent now (in publish order, before any later one). */
  resent: number;
  /** Events published by this node during the outage that did not fit the queue: handled here, never sent. */
  dropped: number;
  /** How long the bus was down, in ms: until the queue was sent. */
  downMs: number;
}
/**
 * Called once the bus is back after an outage, after the queued events were sent and before any
 * later event of this node is: a local signal, never sent to the other nodes.
 */
export type ReconnectHandler = (info: BusReconnect) => void;

/** The outage queue of a bus that can lose the other nodes (NatsBus), for /metrics. */
export interface BusQueueStats {
  /** Events waiting for the reconnect (and for the other nodes to be back), and their bytes. */
  queuedEvents: number;
  queuedBytes: number;
  /** Since start: events dropped because the queue was full, and queued events sent on a reconnect. */
  droppedEvents: number;
  resentEvents: number;
  reconnects: number;
}

export interface Bus {
  /** Unique id of this node. */
  readonly nodeId: string;
  /**
   * What the nodes sharing this bus put before its subjects: nodes on different prefixes never
   * hear each other (the start line shows it). Undefined for a bus no other node shares (LocalBus).
   */
  readonly subjectPrefix?: string;
  /**
   * Whether the other nodes are reachable now, this node's events going out (/healthz; group
   * members are not cached while they are not). A bus that cannot lose them (LocalBus) leaves it
   * undefined.
   */
  readonly connected?: boolean;
  /** Its outage queue (a bus that has one). */
  readonly queueStats?: BusQueueStats;
  /**
   * The other nodes this bus hears now (NatsBus: those heard within 3 heartbeats; LocalBus: none).
   * Compared with the nodes alive in the store (services/bus-watch.ts): a node alive there and
   * never heard here is on another bus.
   */
  heardNodes?(): string[];
  /**
   * Connects; from now on events reach `handler` and presence queries reach `responder`, and
   * `onReconnect` hears of every reconnect after an outage (never, on a bus that has none).
   */
  start(handler: BusHandler, responder: OnlineResponder, onReconnect?: ReconnectHandler): Promise<void>;
  publish(event: BusEvent): void;
  /**
   * Causal order (see the contract): `sentMark()` marks this node's publications so far; `sent(mark)`
   * resolves once those published since are ordered at the bus server, or is undefined when there
   * is nothing to wait for. A bus with no other nodes (LocalBus) has neither.
   */
  sentMark?(): number;
  sent?(mark: number): Promise<void> | undefined;
  /** Which of `uids` are online on any node. */
  queryOnline(pid: number, uids: bigint[]): Promise<bigint[]>;
  /** `queryOnline`, and which nodes answered it. */
  askOnline(pid: number, uids: bigint[]): Promise<OnlineAnswer>;
  close(): Promise<void>;
}
