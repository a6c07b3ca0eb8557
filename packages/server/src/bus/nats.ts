import { randomUUID } from 'node:crypto';
import { connect, createInbox, type Msg, type NatsConnection } from 'nats';
import { decodeMsgpack, decodeMsgpackKeeping, encodeMsgpack } from '@rtm/fpnn';
import type { StoredMessage } from '../store/store.js';
import type { Bus, BusEvent, BusHandler, BusQueueStats, BusReconnect, OnlineAnswer, OnlineResponder, ReconnectHandler } from './bus.js';

/**
 * The cluster bus over NATS core (DESIGN.md "Cluster"); same contract as `bus.ts`, checked by
 * `busConformance` (@rtm/testkit).
 *
 * Subjects (`<p>` = subjectPrefix):
 *
 * | subject            | payload (msgpack, int64 ⇄ bigint)          | who publishes / subscribes          |
 * |--------------------|---------------------------------------------|-------------------------------------|
 * | `<p>.ev.<pid>`     | a `BusEvent`                                 | every node → every node             |
 * | `<p>.online`       | `{ pid, uids }`, reply = the asker's inbox   | asker → every other node            |
 * | `<inbox>.<n>`      | `{ node, uids }` (the responder's online)    | responder → asker                   |
 * | `<p>.node`         | `{ node, kind: 'hello' \| 'hb' \| 'bye' }`   | every node, every `heartbeatMs`     |
 * | `<inbox>.h`        | `{ node, kind: 'hb' }`                       | answer to a `hello` (discovery)     |
 *
 * Every event of a project goes on ONE subject, so NATS keeps the publish order of one node for
 * all event types (a `message` followed by a `kickout` or a `room` change is seen in that order).
 *
 * Own events: the connection is opened with `noEcho`, so the NATS server never sends this node
 * its own publications; `publish` hands the event to the local handler synchronously, like
 * `LocalBus` (exactly once on every node). Consequences: local delivery never waits for NATS and
 * keeps working while NATS reconnects; this node sees its own events in publish order at once,
 * and another node's events in NATS order; events of two different publishers may interleave
 * differently on different nodes (the contract only orders the events of one publisher).
 *
 * Outages: while the connection is down (from the moment nats.js notices it until it is back),
 * `publish` keeps the encoded events in a queue of at most `maxQueueBytes`; once one does not fit,
 * that one and every later one of the outage are dropped (counted; reported once to `onError`), so
 * what the others get is always a prefix of what was published. (nats.js has a buffer of its own,
 * but it empties it at every reconnect attempt.)
 *
 * Back on NATS, the queue is held until the peers this node knew when it lost NATS are back too:
 * when NATS itself restarts, every node loses it at once, and core NATS drops what no one is
 * subscribed to, so a queue sent by the first node back would reach none of the others. A node
 * announces `hello` as soon as its subscriptions are back (nats.js sends them first on a
 * reconnect, so NATS has read them before the hello); a peer counts as back once it answers this
 * node's `hello` or this node hears its `hello` or heartbeat, after its own reconnect. A peer that
 * died meanwhile never comes back: the hold ends after `3 × heartbeatMs` at most, the time after
 * which a node unheard counts as gone anyway; one still cut off then misses the queue, as it
 * misses everything of its outage. A peer that stops (`bye`) is not waited for. While held, later
 * publishes join the queue and `connected` stays false: as far as its events go, the node is still
 * cut off (and `GroupMembers` keeps reading the store until `onReconnect`). Then the queue is sent
 * in publish order, synchronously, before `connected` turns true: no later event can overtake it.
 * Then `onReconnect` is called: the events the other nodes published meanwhile are lost for this
 * node. Limits: peers unknown at the loss (a silent partition is noticed after ~10 s, by when the
 * peers unheard for 3 heartbeats were forgotten) are not waited for; with a cluster of NATS
 * servers, a peer heard through another server has its interest there, not necessarily here yet.
 * Events written to a connection that died before nats.js noticed (a partition without a reset:
 * up to `pingInterval × maxPingOut`, ~10 s) are lost too: core NATS has no acknowledgements.
 *
 * Causal order across nodes (`sent`): core NATS orders the messages of one connection only, so two
 * nodes' events reach a third one in the order the NATS server read them. `sent(mark)` sends a
 * PING behind this node's publications and resolves on its PONG: the server has read them and
 * queued them for every subscriber, before anything another node publishes after that. One PING
 * covers every publication before it (one per event-loop turn under load); it is waited for
 * `sentTimeoutMs` at most. While NATS is unreachable there is nothing to wait for: the queued
 * events go out on reconnect, ahead of this node's later ones but not of other nodes'. With a
 * cluster of NATS servers the PONG comes from this node's server only, before the routes to the
 * other servers carried the events: there, order across nodes is not promised.
 *
 * Presence queries are scatter-gather: nodes announce themselves on `<p>.node` (a `hello` on
 * start, answered by every live node; a heartbeat every `heartbeatMs`; a `bye` on close). A node
 * unheard for `3 × heartbeatMs` is gone. `queryOnline` answers this node's part locally, asks the
 * others with one publish, and resolves when every known live node has answered or after
 * `queryTimeoutMs` with the union of what arrived.
 */

export interface NatsBusOptions {
  /**
   * NATS server URL, or several separated by commas (`nats://a:4222,nats://b:4222`). A
   * `?prefix=<subjectPrefix>` query on the URL sets `subjectPrefix` (so that RTM_BUS alone can
   * carry it); the `subjectPrefix` option wins over it.
   */
  url: string;
  /** First token(s) of every subject; nodes of one cluster share it. `[A-Za-z0-9_-]` tokens separated by dots. @default 'rtm' */
  subjectPrefix?: string;
  /** How long `queryOnline` waits for the other nodes, in ms. @default 500 */
  queryTimeoutMs?: number;
  /** Interval of the node heartbeat, in ms; a node unheard for 3 intervals is gone. @default 2000 */
  heartbeatMs?: number;
  /** How long `start` listens for the answers to its `hello` before resolving, in ms. @default 100 */
  discoveryMs?: number;
  /** Node id. @default `nats-<random>` */
  nodeId?: string;
  /**
   * Bytes (encoded events and their subjects) kept while NATS is unreachable, sent on reconnect;
   * beyond them, the outage's later events are dropped. @default 8 MiB
   */
  maxQueueBytes?: number;
  /**
   * Bytes published and not yet written to NATS's socket beyond which the connection is taken for
   * dead and dropped (NATS stopped reading: a partition not noticed yet). @default MAX_UNSENT_BYTES (16 MiB)
   */
  maxUnsentBytes?: number;
  /**
   * How long `sent` waits, at most, for NATS to confirm this node's publications (an answer waits
   * for it): past it, the answer goes out without the order across nodes. @default 1000
   */
  sentTimeoutMs?: number;
  /**
   * Interval of nats.js's pings to NATS, in ms; two unanswered ones (twice this) and the connection
   * counts as lost: how soon a silent partition is noticed. @default 5000
   */
  pingIntervalMs?: number;
  /**
   * How long a connection attempt waits for NATS's first bytes, in ms (nats.js: 20 s); the next
   * attempt starts only then, so it bounds the wait after a partition heals. @default 5000
   */
  connectTimeoutMs?: number;
  /**
   * Errors that cannot be thrown to a caller: an undecodable event, a handler or responder that
   * threw, a publish NATS refused (e.g. over max_payload), a lost connection. @default ignore
   */
  onError?: (err: unknown, context: string) => void;
}

export const DEFAULT_NATS_SUBJECT_PREFIX = 'rtm';
export const DEFAULT_NATS_QUERY_TIMEOUT_MS = 500;
export const DEFAULT_NATS_HEARTBEAT_MS = 2000;
export const DEFAULT_NATS_DISCOVERY_MS = 100;
export const DEFAULT_NATS_MAX_QUEUE_BYTES = 8 * 1024 * 1024;
export const DEFAULT_NATS_SENT_TIMEOUT_MS = 1000;
export const DEFAULT_NATS_PING_INTERVAL_MS = 5000;
export const DEFAULT_NATS_CONNECT_TIMEOUT_MS = 5000;
/** Heartbeats a node may miss before it is considered gone. */
const MISSED_HEARTBEATS = 3;

interface PendingQuery {
  readonly waiting: Set<string>;
  readonly answered: Set<string>;
  readonly online: Set<bigint>;
  readonly uids: readonly bigint[];
  readonly timer: NodeJS.Timeout;
  readonly resolve: (answer: OnlineAnswer) => void;
}

interface QueuedEvent {
  readonly subject: string;
  readonly data: Uint8Array;
}

interface NodeAnnouncement {
  node: string;
  kind: 'hello' | 'hb' | 'bye';
}

/** Splits `?prefix=` off the URL list; returns the servers for nats.js. */
function parseUrl(url: string): { servers: string[]; prefix: string | undefined } {
  let prefix: string | undefined;
  const servers = url
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const q = s.indexOf('?');
      if (q < 0) return s;
      const p = new URLSearchParams(s.slice(q + 1)).get('prefix');
      if (p) prefix ??= p;
      return s.slice(0, q);
    });
  return { servers, prefix };
}

export class NatsBus implements Bus {
  readonly nodeId: string;
  readonly subjectPrefix: string;
  private readonly servers: string[];
  private readonly queryTimeoutMs: number;
  private readonly heartbeatMs: number;
  private readonly discoveryMs: number;
  private readonly maxQueueBytes: number;
  private readonly maxUnsentBytes: number;
  private readonly sentTimeoutMs: number;
  private readonly pingIntervalMs: number;
  private readonly connectTimeoutMs: number;
  private readonly onError: (err: unknown, context: string) => void;
  private readonly eventPrefix: string;
  private readonly onlineSubject: string;
  private readonly nodeSubject: string;
  private readonly inbox = createInbox();

  private nc: NatsConnection | undefined;
  private handler: BusHandler | undefined;
  private responder: OnlineResponder | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private closed = false;
  private up = false;
  /** Other live nodes → last time heard (ms). */
  private readonly peers = new Map<string, number>();
  private readonly pending = new Map<number, PendingQuery>();
  private querySeq = 0;
  private onReconnect: ReconnectHandler | undefined;
  /** Events published while the connection is down, in publish order (`maxQueueBytes` at most). */
  private queue: QueuedEvent[] = [];
  private queuedBytes = 0;
  /** Events dropped in this outage (once one is, every later one of the outage is). */
  private droppedNow = 0;
  /** When the current outage began (ms), 0 while up. */
  private downSince = 0;
  /** Peers known when NATS was lost and not heard since it is back: the queue waits for them. */
  private readonly awaited = new Set<string>();
  /** From a reconnect until the queue is sent (`release`): the deadline of the wait for `awaited`. */
  private holding: NodeJS.Timeout | undefined;
  private readonly totals = { droppedEvents: 0, resentEvents: 0, reconnects: 0 };
  /** Events this node published (sent or queued) since start: the marks of `sent`. */
  private publications = 0;
  /** Publications through this count are confirmed by a PONG; `pinging`: the PING under way. */
  private confirmed = 0;
  private pinging: { upTo: number; done: Promise<void> } | undefined;

  constructor(options: NatsBusOptions) {
    if (typeof options?.url !== 'string' || !/^nats:\/\//.test(options.url.trim()))
      throw new RangeError(`NatsBus: url must be a nats:// URL, got ${JSON.stringify(options?.url)}`);
    const { servers, prefix } = parseUrl(options.url);
    const subjectPrefix = options.subjectPrefix ?? prefix ?? DEFAULT_NATS_SUBJECT_PREFIX;
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(subjectPrefix))
      throw new RangeError(`NatsBus: bad subjectPrefix ${JSON.stringify(subjectPrefix)}`);
    const positive = (name: string, v: number | undefined, d: number): number => {
      const n = v ?? d;
      if (!Number.isFinite(n) || n <= 0) throw new RangeError(`NatsBus: ${name} must be a positive number of ms, got ${String(v)}`);
      return n;
    };
    this.servers = servers;
    this.subjectPrefix = subjectPrefix;
    this.queryTimeoutMs = positive('queryTimeoutMs', options.queryTimeoutMs, DEFAULT_NATS_QUERY_TIMEOUT_MS);
    this.heartbeatMs = positive('heartbeatMs', options.heartbeatMs, DEFAULT_NATS_HEARTBEAT_MS);
    this.discoveryMs = positive('discoveryMs', options.discoveryMs, DEFAULT_NATS_DISCOVERY_MS);
    this.sentTimeoutMs = positive('sentTimeoutMs', options.sentTimeoutMs, DEFAULT_NATS_SENT_TIMEOUT_MS);
    this.pingIntervalMs = positive('pingIntervalMs', options.pingIntervalMs, DEFAULT_NATS_PING_INTERVAL_MS);
    this.connectTimeoutMs = positive('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_NATS_CONNECT_TIMEOUT_MS);
    this.nodeId = options.nodeId ?? `nats-${randomUUID().slice(0, 8)}`;
    const maxQueueBytes = options.maxQueueBytes ?? DEFAULT_NATS_MAX_QUEUE_BYTES;
    if (!Number.isInteger(maxQueueBytes) || maxQueueBytes < 0)
      throw new RangeError(`NatsBus: maxQueueBytes must be a whole number of bytes, got ${String(options.maxQueueBytes)}`);
    this.maxQueueBytes = maxQueueBytes;
    this.maxUnsentBytes = options.maxUnsentBytes ?? MAX_UNSENT_BYTES;
    this.onError = options.onError ?? (() => {});
    this.eventPrefix = `${subjectPrefix}.ev.`;
    this.onlineSubject = `${subjectPrefix}.online`;
    this.nodeSubject = `${subjectPrefix}.node`;
  }

  /**
   * Whether the NATS connection is up and this node's events go out (for /healthz): false before
   * start, while reconnecting, while the queue waits for the peers to be back, after close.
   */
  get connected(): boolean {
    return this.up && this.holding === undefined;
  }

  /** The outage queue now, and its totals since start (for /metrics). */
  get queueStats(): BusQueueStats {
    return { queuedEvents: this.queue.length, queuedBytes: this.queuedBytes, ...this.totals };
  }

  /** Ids of the other nodes currently considered live (for tests and /healthz). */
  get liveNodes(): string[] {
    return [...this.peers.keys()];
  }

  heardNodes(): string[] {
    return this.liveNodes;
  }

  async start(handler: BusHandler, responder: OnlineResponder, onReconnect?: ReconnectHandler): Promise<void> {
    if (this.nc) throw new Error('NatsBus: already started');
    if (this.closed) throw new Error('NatsBus: closed');
    const nc = await connect({
      servers: this.servers,
      name: `rtm-${this.nodeId}`,
      noEcho: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      // A NATS that goes silent (a partition, no reset) is noticed after two missed pings: about
      // 10 s, not the client's default of 4 – 6 minutes during which /healthz said "ok" and no
      // push crossed nodes. Then the client reconnects and /healthz says "bus disconnected".
      pingInterval: this.pingIntervalMs,
      maxPingOut: 2,
      // An attempt into a partition waits this long for the server's first bytes (nats.js: 20 s),
      // and the next starts only then: once the network heals, the node may still be cut off that
      // long after. NATS answers a connection at once when it is reachable.
      timeout: this.connectTimeoutMs,
    });
    this.nc = nc;
    this.up = true;
    this.handler = handler;
    this.responder = responder;
    this.onReconnect = onReconnect;
    void this.watchStatus(nc);

    nc.subscribe(`${this.eventPrefix}*`, { callback: (err, msg) => (err ? this.onError(err, 'event subscription') : this.onEvent(msg)) });
    nc.subscribe(this.onlineSubject, { callback: (err, msg) => (err ? this.onError(err, 'online subscription') : this.onQuery(msg)) });
    nc.subscribe(this.nodeSubject, { callback: (err, msg) => (err ? this.onError(err, 'node subscription') : this.onAnnouncement(msg)) });
    nc.subscribe(`${this.inbox}.>`, { callback: (err, msg) => (err ? this.onError(err, 'inbox subscription') : this.onInbox(msg)) });
    await nc.flush(); // subscriptions are registered before anyone can learn of this node

    this.announce('hello', this.inbox + '.h');
    await new Promise<void>((resolve) => setTimeout(resolve, this.discoveryMs));
    this.heartbeat = setInterval(() => this.tick(), this.heartbeatMs);
    this.heartbeat.unref();
  }

  publish(event: BusEvent): void {
    if (!this.handler) return;
    const nc = this.nc;
    if (nc && !nc.isClosed()) {
      try {
        const subject = this.eventPrefix + pidOf(event);
        const data = encodeMsgpack(event);
        if (this.sending(nc)) {
          nc.publish(subject, data);
          this.boundUnsent(nc);
        } else this.enqueue(subject, data);
        this.publications++;
      } catch (err) {
        this.onError(err, 'publish');
      }
    }
    this.handler(event);
  }

  sentMark(): number {
    return this.publications;
  }

  sent(mark: number): Promise<void> | undefined {
    const upTo = this.publications;
    if (mark >= upTo || this.confirmed >= upTo) return undefined;
    if (this.pinging && this.pinging.upTo >= upTo) return this.pinging.done;
    const nc = this.nc;
    if (!nc || nc.isClosed() || !this.sending(nc)) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const pong = nc.flush().then(
      () => void (this.confirmed = Math.max(this.confirmed, upTo)),
      () => undefined, // closed or lost: nothing more to wait for
    );
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.sentTimeoutMs)));
    const done = Promise.race([pong, timeout]).finally(() => {
      clearTimeout(timer);
      if (this.pinging?.done === done) this.pinging = undefined;
    });
    this.pinging = { upTo, done };
    return done;
  }

  /**
   * Whether a publish goes out now. nats.js marks its connection down as soon as the socket
   * closes, a few microtasks before its `disconnect` status reaches `watchStatus`: a publish in
   * between would land in its outbound buffer, which the next reconnect attempt empties. Hence its
   * own flag too (internal; when absent, ours alone decides).
   */
  private linkUp(nc: NatsConnection): boolean {
    return this.up && !socketDown(nc);
  }

  /**
   * A connection whose socket holds more than maxUnsentBytes unwritten is dropped: NATS stopped
   * reading (a partition the pings have not told yet), and nats.js would buffer without a bound.
   */
  private boundUnsent(nc: NatsConnection): void {
    const unsent = socketOf(nc)?.writableLength ?? 0;
    if (unsent <= this.maxUnsentBytes) return;
    this.onError(
      new Error(`NATS has not read ${unsent} bytes of this node's (over ${this.maxUnsentBytes}): dropping the connection as dead`),
      'nats unsent',
    );
    dropSocket(nc);
  }

  /** Whether a publish goes out now rather than into the queue: the link is up and the queue is not held. */
  private sending(nc: NatsConnection): boolean {
    return this.linkUp(nc) && this.holding === undefined;
  }

  private enqueue(subject: string, data: Uint8Array): void {
    if (this.downSince === 0) this.downSince = Date.now();
    const size = subject.length + data.byteLength;
    if (this.droppedNow > 0 || this.queuedBytes + size > this.maxQueueBytes) {
      this.totals.droppedEvents++;
      if (this.droppedNow++ === 0) {
        const err = new Error(
          `NatsBus: ${this.queue.length} events (${this.queuedBytes} bytes) wait for NATS, the queue is full (${this.maxQueueBytes} bytes): ` +
            'the later events of this outage reach this node only',
        );
        this.onError(err, 'outage queue full');
      }
      return;
    }
    this.queue.push({ subject, data });
    this.queuedBytes += size;
  }

  /** NATS is lost: the peers known now (and any a hold cut short still waits for) are waited for when it is back. */
  private lost(): void {
    this.up = false;
    if (this.downSince === 0) this.downSince = Date.now();
    for (const node of this.peers.keys()) this.awaited.add(node);
    clearTimeout(this.holding);
    this.holding = undefined;
  }

  /** NATS is back: the queue is held until the peers are back too (`release`), `3 × heartbeatMs` at most. */
  private reconnected(nc: NatsConnection): void {
    if (this.closed) return;
    // Down again already (its `disconnect` status is on its way): the next reconnect sends the queue.
    if (socketDown(nc)) return;
    clearTimeout(this.holding);
    if (this.awaited.size > 0) {
      this.holding = setTimeout(() => this.release(nc), MISSED_HEARTBEATS * this.heartbeatMs);
      this.holding.unref();
    }
    this.up = true;
    // The other nodes may have forgotten this one, and it them: learn who is there at once. Their
    // answers, or their own hellos once they are back, end the hold.
    this.announce('hello', this.inbox + '.h');
    if (this.awaited.size === 0) this.release(nc);
  }

  /** The peers are back (or the deadline passed): sends the queue in order, lets publishes through, then `onReconnect`. */
  private release(nc: NatsConnection): void {
    // Down again already: the next reconnect holds anew (closed for good: nothing to send).
    if (this.closed || nc.isClosed() || socketDown(nc)) return;
    clearTimeout(this.holding);
    this.holding = undefined;
    this.awaited.clear();
    const info = this.sendQueue(nc);
    this.totals.reconnects++;
    try {
      this.onReconnect?.(info);
    } catch (err) {
      this.onError(err, 'onReconnect');
    }
  }

  /** Publishes the outage queue in order and ends the outage; says what `onReconnect` hears. */
  private sendQueue(nc: NatsConnection): BusReconnect {
    const queue = this.queue;
    const dropped = this.droppedNow;
    const downMs = this.downSince ? Date.now() - this.downSince : 0;
    this.queue = [];
    this.queuedBytes = 0;
    this.droppedNow = 0;
    this.downSince = 0;
    for (const q of queue) {
      try {
        nc.publish(q.subject, q.data);
      } catch (err) {
        this.onError(err, 'publish (queued)');
      }
    }
    this.totals.resentEvents += queue.length;
    return { resent: queue.length, dropped, downMs };
  }

  async queryOnline(pid: number, uids: bigint[]): Promise<bigint[]> {
    return (await this.askOnline(pid, uids)).online;
  }

  async askOnline(pid: number, uids: bigint[]): Promise<OnlineAnswer> {
    const local = uids.length > 0 && this.responder ? this.responder(pid, uids) : [];
    const nc = this.nc;
    // Cut off: no other node can answer; their users count as offline, as after a timeout.
    if (uids.length === 0 || !nc || nc.isClosed() || this.closed || !this.up || this.peers.size === 0)
      return { online: local, answered: new Set([this.nodeId]) };
    const id = ++this.querySeq;
    return new Promise<OnlineAnswer>((resolve) => {
      const timer = setTimeout(() => this.finishQuery(id), this.queryTimeoutMs);
      const answered = new Set([this.nodeId]);
      this.pending.set(id, { waiting: new Set(this.peers.keys()), answered, online: new Set(local), uids, timer, resolve });
      try {
        nc.publish(this.onlineSubject, encodeMsgpack({ pid, uids }), { reply: `${this.inbox}.${id}` });
      } catch (err) {
        this.onError(err, 'queryOnline');
        this.finishQuery(id);
      }
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const wasUp = this.nc ? this.linkUp(this.nc) : false;
    // Stopping while the queue waits for peers: those that are back get it, the others never would.
    if (wasUp && this.holding) this.sendQueue(this.nc!);
    this.closed = true;
    this.up = false;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    clearTimeout(this.holding);
    this.holding = undefined;
    this.awaited.clear();
    for (const id of [...this.pending.keys()]) this.finishQuery(id);
    const nc = this.nc;
    this.handler = undefined;
    this.responder = undefined;
    this.onReconnect = undefined;
    this.peers.clear();
    if (this.queue.length > 0 || this.droppedNow > 0) {
      const lost = this.queue.length + this.droppedNow;
      this.onError(new Error(`NatsBus: closed while NATS was unreachable: ${lost} events of this node never reached the others`), 'close');
    }
    this.queue = [];
    this.queuedBytes = 0;
    this.droppedNow = 0;
    if (!nc || nc.isClosed()) return;
    if (!wasUp) {
      // Reconnecting: nothing can be flushed, and a drain would leave the client's retry timer.
      await nc.close().catch(() => {});
      return;
    }
    this.announce('bye');
    // The drain flushes the bye and anything published before close. Over a NATS gone silent and
    // not noticed yet, nats.js's drain waits for ever and keeps reconnecting afterwards: a stop
    // would hang until the supervisor's kill. Bounded, then closed. Over a connection that drops
    // during the drain (NATS went away as close began), its flush fails at the next reconnect
    // attempt and the drain resolves without closing (nats.js swallows the failure): its reconnect
    // loop would go on for ever, and its timer keep the process alive. Closed too, whatever the
    // drain said.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const drained = await Promise.race([
      nc.drain().then(
        () => true,
        (err: unknown) => (this.onError(err, 'drain'), false),
      ),
      new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), DRAIN_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (drained === undefined)
      this.onError(new Error(`NATS did not confirm the drain within ${DRAIN_TIMEOUT_MS} ms (unreachable?): closing without it`), 'drain');
    if (drained === true && !nc.isClosed()) this.onError(new Error('NATS went away during the drain: closing without it'), 'drain');
    if (!nc.isClosed()) await nc.close().catch(() => {});
  }

  // --- inbound ---------------------------------------------------------------------------------

  private onEvent(msg: Msg): void {
    const handler = this.handler;
    if (!handler) return;
    let event: BusEvent;
    try {
      event = decodeEvent(msg.data);
    } catch (err) {
      this.onError(err, `undecodable event on ${msg.subject}`);
      return;
    }
    try {
      handler(event);
    } catch (err) {
      this.onError(err, `handler of ${event.type}`);
    }
  }

  private onQuery(msg: Msg): void {
    const responder = this.responder;
    if (!responder || !msg.reply) return;
    let online: bigint[] = [];
    try {
      const q = decodeMsgpack(msg.data) as { pid: unknown; uids: unknown };
      if (!Array.isArray(q.uids)) throw new TypeError('uids is not an array');
      online = responder(num(q.pid), q.uids.map(big));
    } catch (err) {
      this.onError(err, 'online query'); // still answer (empty) so the asker need not time out
    }
    try {
      msg.respond(encodeMsgpack({ node: this.nodeId, uids: online }));
    } catch (err) {
      this.onError(err, 'online answer');
    }
  }

  private onAnnouncement(msg: Msg): void {
    let a: NodeAnnouncement;
    try {
      a = decodeMsgpack(msg.data) as NodeAnnouncement;
      if (typeof a.node !== 'string') throw new TypeError('node is not a string');
    } catch (err) {
      this.onError(err, 'node announcement');
      return;
    }
    if (a.node === this.nodeId || this.closed) return;
    if (a.kind === 'bye') {
      this.forget(a.node);
      return this.unawait(a.node); // it stopped: it will not come back for the queue
    }
    if (a.kind === 'hello' && msg.reply) {
      try {
        msg.respond(encodeMsgpack({ node: this.nodeId, kind: 'hb' }));
      } catch (err) {
        this.onError(err, 'hello answer');
      }
    }
    this.heard(a.node);
  }

  private onInbox(msg: Msg): void {
    // A status from NATS, not a node's answer: "503 no responders" comes back, empty, for a
    // publish with a reply subject that no one else subscribes to — the hello of the first node
    // on a prefix (noEcho hides the subject from the node itself), or a query after every other
    // node went away. Nothing to decode: it only says that no node answered.
    if (msg.headers?.hasError) return;
    const token = msg.subject.slice(this.inbox.length + 1);
    let answer: { node: string; uids?: unknown };
    try {
      answer = decodeMsgpack(msg.data) as { node: string; uids?: unknown };
      if (typeof answer.node !== 'string') throw new TypeError('node is not a string');
    } catch (err) {
      this.onError(err, 'inbox message');
      return;
    }
    if (this.closed) return;
    this.heard(answer.node); // it answered: it is alive
    if (token === 'h') return;
    const q = this.pending.get(Number(token));
    if (!q) return; // late answer of a finished query
    if (Array.isArray(answer.uids)) for (const u of answer.uids) q.online.add(big(u));
    q.answered.add(answer.node);
    q.waiting.delete(answer.node);
    if (q.waiting.size === 0) this.finishQuery(Number(token));
  }

  // --- membership ------------------------------------------------------------------------------

  private tick(): void {
    this.announce('hb');
    const deadline = Date.now() - MISSED_HEARTBEATS * this.heartbeatMs;
    for (const [node, seen] of this.peers) if (seen < deadline) this.forget(node);
  }

  /**
   * A peer is heard. Whatever arrives after a loss of NATS came over the new connection (nats.js
   * reads the old one to its end before it reports the loss), so the peer is back on NATS.
   */
  private heard(node: string): void {
    this.peers.set(node, Date.now());
    this.unawait(node);
  }

  /** The queue need not wait for `node` any more; the last one awaited releases it. */
  private unawait(node: string): void {
    if (this.awaited.delete(node) && this.awaited.size === 0 && this.holding && this.nc) this.release(this.nc);
  }

  private forget(node: string): void {
    this.peers.delete(node);
    for (const [id, q] of this.pending) {
      q.waiting.delete(node);
      if (q.waiting.size === 0) this.finishQuery(id);
    }
  }

  private announce(kind: NodeAnnouncement['kind'], reply?: string): void {
    const nc = this.nc;
    if (!nc || nc.isClosed()) return;
    try {
      nc.publish(this.nodeSubject, encodeMsgpack({ node: this.nodeId, kind }), reply ? { reply } : undefined);
    } catch (err) {
      this.onError(err, `announce ${kind}`);
    }
  }

  private finishQuery(id: number): void {
    const q = this.pending.get(id);
    if (!q) return;
    this.pending.delete(id);
    clearTimeout(q.timer);
    q.resolve({ online: q.uids.filter((u) => q.online.has(u)), answered: q.answered });
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      // A disconnect's data is only the server's address: the log says what it means.
      if (s.type === 'disconnect')
        this.onError(
          new Error(
            `lost the connection to NATS at ${String(s.data)}; reconnecting. Meanwhile this node serves its own ` +
              `connections, and what it publishes for the other nodes is queued (up to ${this.maxQueueBytes} bytes)`,
          ),
          'nats disconnect',
        );
      else if (s.type === 'error') this.onError(s.data, 'nats error');
      // nats.js found the connection stale (pings unanswered), and closes it politely: it first
      // waits for its socket to take what is still unsent, which a partition never lets it do
      // once the kernel's buffers are full (any traffic fills them). The disconnect would never
      // come, and what is published would pile up in memory for ever. Dead: ended here.
      else if (s.type === 'staleConnection') dropSocket(nc);
      if (s.type === 'disconnect') this.lost();
      else if (s.type === 'reconnect') this.reconnected(nc);
    }
    this.up = false;
  }
}

/**
 * Bytes handed to nats.js that its socket has not written yet, at most: past this, NATS has not
 * read for a while (a partition that the pings have not told yet, 10 – 15 s), and the connection
 * is dropped as dead. What was in it is lost, as is what a partition swallows before it is
 * noticed (docs/cluster.md); what comes next waits in the outage queue, which is bounded too.
 */
export const MAX_UNSENT_BYTES = 16 * 1024 * 1024;

/** How long `close` waits for NATS to confirm a drain before it closes without one. */
const DRAIN_TIMEOUT_MS = 2000;

/** nats.js's socket (internal), for what its API does not say: how much it holds unsent, and ending it. */
function socketOf(nc: NatsConnection): { writableLength?: number; destroy?(): void } | undefined {
  return (nc as unknown as { protocol?: { transport?: { socket?: { writableLength?: number; destroy?(): void } } } }).protocol?.transport
    ?.socket;
}

/** Ends nats.js's socket at once: nats.js then reports the disconnect, and reconnects. */
function dropSocket(nc: NatsConnection): void {
  socketOf(nc)?.destroy?.();
}

/** nats.js's own flag (internal): its socket is down, though its `disconnect` status may not have come yet. */
function socketDown(nc: NatsConnection): boolean {
  return (nc as unknown as { protocol?: { connected?: unknown } }).protocol?.connected === false;
}

// --- payloads ----------------------------------------------------------------------------------

function pidOf(event: BusEvent): number {
  return event.type === 'message' ? event.message.pid : event.pid;
}

function big(v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  throw new TypeError(`expected an integer, got ${typeof v}`);
}

function num(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  throw new TypeError(`expected a number, got ${typeof v}`);
}

function str(v: unknown): string {
  if (typeof v === 'string') return v;
  throw new TypeError(`expected a string, got ${typeof v}`);
}

/** msgpack gives a Buffer for bin; hand out a plain Uint8Array like the rest of the server. */
function body(v: unknown): string | Uint8Array {
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array) return Buffer.isBuffer(v) ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : v;
  throw new TypeError(`expected a string or bytes, got ${typeof v}`);
}

/** Decodes and checks an event from the wire; integers get the types of `BusEvent` whatever their msgpack width. */
export function decodeEvent(bytes: Uint8Array): BusEvent {
  // A message's body sent as a str of bytes that are not UTF-8 stays those bytes (a StrBytes).
  const e = decodeMsgpackKeeping(bytes, ['message', 'msg']) as Record<string, unknown>;
  if (typeof e !== 'object' || e === null) throw new TypeError('event is not a map');
  switch (e.type) {
    case 'message': {
      const m = e.message as Record<string, unknown>;
      if (typeof m !== 'object' || m === null) throw new TypeError('message is not a map');
      const message: StoredMessage = {
        ...(m as unknown as StoredMessage),
        pid: num(m.pid),
        kind: num(m.kind) as StoredMessage['kind'],
        from: big(m.from),
        to: big(m.to),
        mid: big(m.mid),
        mtype: num(m.mtype),
        msg: body(m.msg),
        attrs: str(m.attrs),
        id: big(m.id),
        mtime: big(m.mtime),
      };
      const out: BusEvent = { type: 'message', message };
      if (e.recipients !== undefined && e.recipients !== null) {
        if (!Array.isArray(e.recipients)) throw new TypeError('recipients is not an array');
        out.recipients = e.recipients.map(big);
      }
      if (e.origin !== undefined && e.origin !== null) {
        const o = e.origin as Record<string, unknown>;
        out.origin = { node: str(o.node), conn: num(o.conn) };
      }
      return out;
    }
    case 'kickout': {
      const out: BusEvent = { type: 'kickout', pid: num(e.pid), uid: big(e.uid) };
      if (e.endpoint !== undefined && e.endpoint !== null) out.endpoint = str(e.endpoint);
      if (e.except !== undefined && e.except !== null) {
        const x = e.except as Record<string, unknown>;
        out.except = { node: str(x.node), conn: num(x.conn) };
      }
      if (e.loginAt !== undefined && e.loginAt !== null) out.loginAt = num(e.loginAt);
      return out;
    }
    case 'group':
      return { type: 'group', pid: num(e.pid), gid: big(e.gid) };
    case 'room':
      return { type: 'room', pid: num(e.pid), rid: big(e.rid), uid: big(e.uid), joined: e.joined === true, kick: e.kick === true };
    case 'presence':
      if (e.event !== 'login' && e.event !== 'logout') throw new TypeError(`bad presence event ${String(e.event)}`);
      return { type: 'presence', pid: num(e.pid), uid: big(e.uid), event: e.event, time: num(e.time), endpoint: str(e.endpoint) };
    default:
      throw new TypeError(`unknown event type ${String(e.type)}`);
  }
}
