import type { Bus } from '../bus/bus.js';
import type { ServerConfig } from '../config.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { RepeatFilter } from '../observability/repeats.js';
import type { PendingPresenceEnd, PresenceHolder, Store } from '../store/store.js';
import { BusWatch } from './bus-watch.js';
import { PresenceRecords } from './presence-records.js';
import type { ClientConnection, LocalPresence } from './presence.js';

const key = (pid: number, uid: bigint): string => `${pid}:${uid}`;

/**
 * The close reason of a session the server kicked out (server API `kickout`, the project
 * blacklist, a newer login with RTM_SINGLE_SESSION): it ends like a `bye`, without a grace period,
 * for no SDK logs in again after a `kickout`.
 */
export const KICKED_OUT = 'kicked out';

/**
 * What ended a presence: the last session's `bye` (or a kickout, or a drop with no grace period),
 * its grace period here, or another node: one that stopped and handed its grace period over, or
 * one that died holding the presence.
 */
type EndedBy = 'bye' | 'grace' | 'other_node';

/** Handed-over presences ended per store read (and at once) by the sweep. */
const SWEEP_BATCH = 500;
/** A time after every touch of a node: all the nodes a sole server finds at start are dead. */
const FOREVER = 1n << 62n;

/**
 * A user's presence across devices and blips (client-api.md §3.3, issue "Unread"): a logout is
 * the end of the user's last session on any device. A session that drops (no `bye`) starts a grace
 * period; a reconnect within it continues the same presence, so the unread baseline does not move
 * and no logout/login events are emitted. An explicit `bye` of the last session ends it at once.
 *
 * The store holds a claim per user (`joinPresence`, `endPresence`) that orders the transitions of
 * their presence across the nodes: a node's first session of the user joins it (of nodes joining
 * at once, exactly one begins the presence and announces the login), and a node that finds the
 * presence over ends it only if no node joined it since it looked (of nodes ending it at once,
 * exactly one does, and announces the logout). A login of a user already online on the node, and
 * a send, never reach the claim.
 *
 * The presences a node holds are recorded in the store (services/presence-records.ts), and the
 * node touches its row there at every sweep. A node that stops hands its grace periods over
 * (`flush`); one that dies (a crash, a kill -9, a lost machine) is found unheard after
 * `nodeLeaseMs` by the sweep of another node, or at once by the next process on data no other
 * server can use (SQLite), which ends what it held.
 */
export class Sessions {
  /**
   * Running grace periods by user: each one's timer and the presence end it hands over at a stop.
   * Also the ends that wait for a node cut off from the bus (`waitForUnheard`): held here the same
   * way, and looked at again when their timer fires.
   */
  private readonly grace = new Map<string, { timer: NodeJS.Timeout; end: PendingPresenceEnd }>();
  /** Bumped by every login: an ending presence that sees another epoch was continued, and stops. */
  private readonly epochs = new Map<string, number>();
  /** Presences being ended now (their store writes under way): a stop waits for them. */
  private readonly ending = new Set<Promise<void>>();
  /** Presence ends whose store writes failed, by user: the sweep tries them again (`retryFailedEnds`). */
  private readonly failedEnds = new Map<string, { pid: number; uid: bigint; endedAt: bigint; by: EndedBy; again: boolean }>();
  /** Logins of users with a presence handed over, under way: a second device's waits for the first's answer. */
  private readonly resuming = new Map<string, Promise<void>>();
  /**
   * Logins here joining the user's presence in the store (`join`), until their login event, if
   * any, is published: an end here waits for them, so that it reads the claim they moved.
   */
  private readonly joining = new Map<string, Promise<void>>();
  /**
   * Presences whose end this node is claiming, until their logout event is published: a login
   * here that begins the next presence publishes its login after it.
   */
  private readonly closing = new Map<string, Promise<void>>();
  /** The sweep (`start`), and whether the store failed it last time. */
  private sweeper: NodeJS.Timeout | undefined;
  private sweepFailing = false;
  private sweeping = false;
  /** This node's records of the presences it holds, in the store. */
  private readonly records: PresenceRecords;
  /** This node's row is in the store: a later touch that finds none means another node took it for dead. */
  private known = false;
  /** `takeOver` is done. */
  private tookOver = false;
  /** `beginStop` was called: the grace periods that begin now are handed over by `flush`, not recorded one by one. */
  private stopping = false;
  /** How often an end that waits for a node cut off from the bus looks again (ms): the sweep's period. */
  private recheckMs = 5000;
  /** Keeps the line about ends that wait for a cut-off node to one a minute. */
  private readonly waits = new RepeatFilter(60_000);
  /** Nodes alive in the store and unheard on the bus, looked for at every sweep (`start`). */
  private busWatch: BusWatch | undefined;

  constructor(
    private readonly config: ServerConfig,
    private readonly store: Store,
    private readonly bus: Bus,
    private readonly presence: LocalPresence,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly endpoint: () => string,
  ) {
    this.records = new PresenceRecords(store, bus.nodeId, log);
  }

  private get node(): string {
    return this.bus.nodeId;
  }

  /**
   * Once the bus runs: the sweep touches this node's row, and ends the presences of dead nodes and
   * the grace periods stopped nodes handed over (`flush`) that have run out, on whichever node
   * finds them. Often enough that a touch is never late by a third of the lease. Resolves once a
   * server that starts on data no other server can use has taken over the presences of the process
   * before it, if that one crashed: before its first login.
   */
  async start(): Promise<void> {
    if (this.sweeper) return;
    const every = Math.min(
      5000,
      Math.max(250, Math.floor(this.config.logoutGraceMs / 4)),
      Math.max(100, Math.floor(this.config.nodeLeaseMs / 3)),
    );
    this.recheckMs = every;
    this.busWatch = new BusWatch(this.store, this.bus, this.log, this.metrics, this.config.nodeLeaseMs, every);
    this.sweeper = setInterval(() => void this.sweep(), every);
    this.sweeper.unref();
    this.sweeping = true;
    try {
      await this.takeOver();
    } catch {
      // The sweep tries again, and says why.
    } finally {
      this.sweeping = false;
    }
    void this.sweep();
  }

  /**
   * With a store no other server can use (SQLite), every node in it before this one's first touch
   * is a process that died (a crash before this start): its presences are taken over at once, not
   * a lease later, and its users, coming back now, go on.
   */
  private async takeOver(): Promise<void> {
    if (this.known || this.tookOver || !this.store.soleServer) return;
    await this.endOrphaned(FOREVER);
    this.tookOver = true;
  }

  private async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      await this.takeOver();
      await this.touch();
      await this.retryFailedEnds();
      await this.endOrphaned(BigInt(Date.now() - this.config.nodeLeaseMs));
      await this.endHandedOver();
      await this.busWatch?.check(Date.now());
      if (this.sweepFailing) this.log.info('presences of stopped and dead nodes are swept again');
      this.sweepFailing = false;
    } catch (err) {
      // Once per outage, not at every sweep (the store's own health is on /healthz).
      if (!this.sweepFailing) this.log.warn({ err }, 'could not sweep the presences of stopped and dead nodes; will retry');
      this.sweepFailing = true;
    } finally {
      this.sweeping = false;
    }
  }

  /**
   * Tells the store this node is alive. If its row was gone, other nodes took it for dead (its
   * writes failed for longer than the lease) and ended the presences it held, as far as they could
   * tell (a user they found online through the bus was left alone): those still here are recorded
   * again, so that a later crash does not lose them.
   */
  private async touch(): Promise<void> {
    const known = await this.store.touchNode(this.node, BigInt(Date.now()), this.store.unreadMark());
    if (!known && this.known) {
      this.log.warn({ node: this.node }, 'this node was taken for dead (no touch within RTM_NODE_LEASE_MS): recording its presences again');
      this.records.replaceAll(this.held());
    } else if (this.records.lost) {
      this.log.info({ node: this.node }, 'recording the presences of this node again after a failed write');
      this.records.replaceAll(this.held());
    }
    this.known = true;
  }

  /** Every presence this node holds: the sessions here, and the grace periods running. */
  private *held(): Iterable<{ pid: number; uid: bigint; endedAt?: bigint }> {
    for (const [pid, uid] of this.presence.users()) yield { pid, uid };
    for (const { end } of this.grace.values()) yield end;
  }

  /**
   * Ends the presences held by dead nodes, SWEEP_BATCH at a time. One whose grace period has not
   * run out yet is handed over like a stopped node's (the user may still come back), unless the
   * user is online on a node now: then it went on there.
   */
  private async endOrphaned(deadBefore: bigint): Promise<void> {
    const now = Date.now();
    for (let batch = SWEEP_BATCH; batch === SWEEP_BATCH && this.sweeper;) {
      const orphans = await this.store.takeOrphanedPresences(deadBefore, BigInt(this.config.logoutGraceMs), SWEEP_BATCH);
      batch = orphans.length;
      if (batch > 0) this.log.info({ presences: batch }, 'ending the presences of a node that died without a stop');
      const due = orphans.filter((e) => e.deadline <= BigInt(now));
      const running = orphans.filter((e) => e.deadline > BigInt(now));
      await Promise.all([
        ...due.map((e) => this.endTracked(e.pid, e.uid, e.endedAt, 'other_node')),
        this.offline(running).then((ends) => this.store.savePresenceEnds(ends)),
      ]);
    }
  }

  /** The ends whose users are online on no node. */
  private async offline(ends: PendingPresenceEnd[]): Promise<PendingPresenceEnd[]> {
    if (ends.length === 0) return ends;
    const online = new Set<string>();
    for (const pid of new Set(ends.map((e) => e.pid))) {
      const uids = ends.filter((e) => e.pid === pid).map((e) => e.uid);
      for (const uid of await this.bus.queryOnline(pid, uids)) online.add(key(pid, uid));
    }
    return ends.filter((e) => !online.has(key(e.pid, e.uid)));
  }

  /**
   * Ends the handed-over presences whose grace period has run out, SWEEP_BATCH at a time: a node
   * that stopped with many users in their grace period hands over many that run out together.
   */
  private async endHandedOver(): Promise<void> {
    for (let batch = SWEEP_BATCH; batch === SWEEP_BATCH && this.sweeper;) {
      const due = await this.store.takeExpiredPresenceEnds(BigInt(Date.now()), SWEEP_BATCH);
      batch = due.length;
      await Promise.all(due.map((e) => this.endTracked(e.pid, e.uid, e.endedAt, 'other_node')));
    }
  }

  /**
   * Registers an authenticated session. The user's first session here (or their return within a
   * grace period running here) joins their presence in the store, which says whether it began one
   * (then the login is announced); a second session here reaches neither the store nor the bus.
   */
  async login(conn: ClientConnection): Promise<void> {
    const { pid, uid } = conn.session!;
    const k = key(pid, uid);
    const pending = this.stopGrace(k);
    this.epochs.set(k, (this.epochs.get(k) ?? 0) + 1);
    if (!pending && !this.presence.isOnline(pid, uid)) await this.resume(pid, uid);
    // The session counts here (the bus's question hears of it) before the claim is joined: an end
    // on another node that reads the claim after this join hears of this session and ends nothing,
    // and one that read it before finds the version moved, and ends nothing either.
    const first = this.presence.add(conn);
    if (conn.closed) {
      // Closed while we awaited: its close found nothing to remove, so end it here.
      this.logout(conn, false);
      return;
    }
    if (first) {
      // The join records this node as a holder too, in its own write: this one, batched, keeps
      // the record in order with a release of the presence before it still being written.
      this.records.held(pid, uid);
      await this.join(pid, uid);
    }
  }

  /**
   * Joins the user's presence in the store and reads their rooms; announces the login if the
   * presence began here, after the logout of the one before if this node is ending that one now.
   */
  private join(pid: number, uid: bigint): Promise<void> {
    const k = key(pid, uid);
    const joined = (async () => {
      const [claim, rooms] = await Promise.all([this.store.joinPresence(pid, uid, this.node), this.store.userRooms(pid, uid)]);
      if (this.presence.isOnline(pid, uid)) for (const rid of rooms) this.presence.joinRoom(pid, rid, uid);
      if (!claim.began) return;
      await this.closing.get(k);
      this.bus.publish({ type: 'presence', pid, uid, event: 'login', time: Math.floor(Date.now() / 1000), endpoint: this.endpoint() });
    })().finally(() => {
      if (this.joining.get(k) === joined) this.joining.delete(k);
    });
    this.joining.set(k, joined);
    return joined;
  }

  /**
   * The user logs in here with no session or grace period here: a presence a stopped node handed
   * over (`flush`) is taken (the user is back; the claim, joined next, says whether it goes on).
   * One whose grace period has run out, held by no other node, ends now, before this login begins
   * the next presence.
   */
  private resume(pid: number, uid: bigint): Promise<void> {
    const k = key(pid, uid);
    let resumed = this.resuming.get(k);
    if (!resumed) {
      resumed = (async () => {
        try {
          const saved = await this.store.takePresenceEnd(pid, uid);
          if (!saved || saved.deadline > BigInt(Date.now())) return;
          const holders = await this.store.presenceHolders(pid, uid);
          if (holders.some((h) => h.node !== this.node)) return;
          await this.end(pid, uid, saved.endedAt, 'other_node');
        } catch (err) {
          this.log.warn({ err, pid, uid: String(uid) }, 'could not read whether a presence of the user goes on');
        }
      })().finally(() => this.resuming.delete(k));
      this.resuming.set(k, resumed);
    }
    return resumed;
  }

  /**
   * A kickout reached this node: a presence whose grace period runs here ends now, as a kickout
   * ends an online one (README: "a kickout ends it at once"). Its SDK, cut off when the kickout
   * came, never heard it, and its next login must be a new presence, not this one going on.
   */
  kickedOut(pid: number, uid: bigint): void {
    const pending = this.stopGrace(key(pid, uid));
    if (pending) void this.endTracked(pid, uid, pending.end.endedAt, 'bye');
  }

  /** Stops the user's grace period running here, if any, and returns it. */
  private stopGrace(k: string): { timer: NodeJS.Timeout; end: PendingPresenceEnd } | undefined {
    const pending = this.grace.get(k);
    if (!pending) return undefined;
    clearTimeout(pending.timer);
    this.grace.delete(k);
    return pending;
  }

  /** A session ended; `explicit` = the user said `bye`. */
  logout(conn: ClientConnection, explicit: boolean): void {
    const session = conn.session;
    if (!session || !this.presence.remove(conn)) return;
    const { pid, uid } = session;
    if (this.presence.isOnline(pid, uid)) return;
    this.presence.forgetRooms(pid, uid);
    // The store's mark, not the wall clock: a message whose commit is under way now, pushed to
    // nobody, must count as unread if this turns out to be the logout. And no later than the
    // oldest message pushed to this session and never answered: a connection that died without
    // a word is noticed only after the idle timeout, and what it was sent meanwhile went nowhere.
    const mark = this.store.unreadMark();
    const unanswered = conn.oldestUnanswered;
    const endedAt = unanswered !== undefined && unanswered - 1n < mark ? unanswered - 1n : mark;
    const k = key(pid, uid);
    if (explicit || this.config.logoutGraceMs === 0) {
      void this.endTracked(pid, uid, endedAt, 'bye');
      return;
    }
    if (!this.stopping) this.records.held(pid, uid, endedAt);
    const timer = setTimeout(() => {
      this.grace.delete(k);
      void this.endTracked(pid, uid, endedAt, 'grace');
    }, this.config.logoutGraceMs);
    timer.unref();
    this.grace.set(k, { timer, end: { pid, uid, endedAt, deadline: BigInt(Date.now() + this.config.logoutGraceMs) } });
  }

  /** `end`, remembered until done so that `flush` (a stop) waits for its store writes. */
  private endTracked(pid: number, uid: bigint, endedAt: bigint, by: EndedBy, again = false): Promise<void> {
    const ending = this.end(pid, uid, endedAt, by, again);
    this.ending.add(ending);
    void ending.finally(() => this.ending.delete(ending));
    return ending;
  }

  /**
   * The presence ended for good unless another node still has a session. Ended `by` a bye or a
   * grace period here: this node held it, and releases its record once it no longer does. `again`:
   * an end that waited for a node cut off from the bus (`waitForUnheard`), looked at once more.
   */
  private async end(pid: number, uid: bigint, endedAt: bigint, by: EndedBy, again = false): Promise<void> {
    const held = by === 'bye' || by === 'grace';
    // The rooms to leave are those joined before now (the grace period, if any, is over): one a
    // backend adds the user to while this runs, or a new login on another node enters, stays.
    // A rooms cut, not an unread mark: that one is lowered below the message commits in flight,
    // and a room entered during one would never be left.
    const roomsThrough = this.store.roomsCut();
    const k = key(pid, uid);
    const epoch = this.epochs.get(k);
    const continued = (): boolean => this.presence.isOnline(pid, uid) || this.epochs.get(k) !== epoch;
    // Done with the presence here, unless a login continued it meanwhile: the epoch goes (the map
    // would otherwise keep one per user seen), and the record of one this node held.
    const letGo = (): void => {
      if (continued()) return;
      this.epochs.delete(k);
      if (held) this.records.released(pid, uid);
    };
    // A presence handed over, or a dead node's, of a user whose grace period runs here: theirs
    // ended here later, and ends when that period runs out.
    if (!held && this.grace.has(k)) return;
    try {
      // A login here still joining the presence (its session closed at once): its join first.
      await this.joining.get(k)?.catch(() => undefined);
      if (continued()) return;
      // The claim is read before the bus is asked: a session the bus does not show yet (a login
      // under way on another node) joins the claim after this read, and the end below is lost.
      const [claim, holders, baseline] = await Promise.all([
        this.store.presenceClaim(pid, uid),
        this.store.presenceHolders(pid, uid),
        held && !again ? undefined : this.store.getUnreadBaseline(pid, uid),
      ]);
      // Over already: another node ended it (the user came back elsewhere, and left; or both ends
      // ran at once), or one that waited for a cut-off node ended it: nothing more to end.
      if (!claim.live || (baseline?.logoutTime !== undefined && baseline.logoutTime >= endedAt)) {
        if (held) letGo();
        return;
      }
      const asked = await this.bus.askOnline(pid, [uid]);
      if (asked.online.length > 0 || holders.some((h) => this.goesOnAt(h, held ? endedAt : undefined))) {
        // Online on another node, or its grace period runs there: that node ends the presence.
        letGo();
        return;
      }
      const now = BigInt(Date.now());
      const unheard = holders.filter((h) => this.unheardSession(h, asked.answered, now)).map((h) => h.node);
      if (unheard.length > 0) {
        // A session there, by its record, on a node alive (its lease is fresh) that did not answer
        // on the bus: it is cut off from NATS, and the user is online there. That node ends the
        // presence when the session does; in case it never can (its record was stale), this end
        // is looked at again a sweep later.
        await this.waitForUnheard(pid, uid, endedAt, by, held, unheard);
        return;
      }
      if (held && (await this.handedOverGoesOn(pid, uid, endedAt))) {
        letGo();
        return;
      }
      if (continued()) return;
      // The claim: ends the presence (logout time, rooms) only if no node joined it, and none ended
      // it, since it was read. A login here meanwhile begins the next one, announced after this.
      let closed!: () => void;
      const mine = new Promise<void>((resolve) => (closed = resolve));
      const before = this.closing.get(k);
      const closing = before ? Promise.all([before, mine]).then(() => undefined) : mine;
      this.closing.set(k, closing);
      let rooms: bigint[] | undefined;
      try {
        rooms = await this.store.endPresence(pid, uid, claim.version, endedAt, roomsThrough);
        // Only now: a login meanwhile must still read as a new epoch, and its record's change
        // comes after the release.
        letGo();
        if (!rooms) return; // another node ended it first, or a login joined it since: its end is that node's
        this.metrics.presenceEnds.inc({ by });
        for (const rid of rooms) this.bus.publish({ type: 'room', pid, rid, uid, joined: false, kick: false });
        this.bus.publish({
          type: 'presence',
          pid,
          uid,
          event: 'logout',
          time: Math.floor(Number(endedAt) / 1000),
          endpoint: this.endpoint(),
        });
      } finally {
        if (this.closing.get(k) === closing) this.closing.delete(k);
        closed();
      }
    } catch (err) {
      // The store failed (unreachable?): the sweep tries again once it answers, or the presence
      // would never end (no logout heard, its rooms kept, unread counted from an older logout).
      // Logged once per outage, not once per user. A node that is stopping sweeps no more: its
      // records stay in the store, and another node ends them once this one's lease runs out.
      if (this.failedEnds.size === 0)
        this.log.error(
          { err, pid, uid: String(uid) },
          this.stopping
            ? 'could not record logout; another node ends the presence once this one is found gone (RTM_NODE_LEASE_MS)'
            : 'could not record logout; the sweep will try again',
        );
      this.failedEnds.set(k, { pid, uid, endedAt, by, again });
    }
  }

  /**
   * The presence goes on, as far as the store tells, at `nodes`, which are alive but do not answer
   * on the bus. This node keeps what it held as a grace period that looks again every sweep (so a
   * user logging in here goes on, a stop hands it over, and the other node, ending its session,
   * finds a presence that ended here earlier and ends it for both); one it did not hold (handed
   * over, or a dead node's) goes back to the store, due a sweep later, for whichever node then.
   */
  private async waitForUnheard(pid: number, uid: bigint, endedAt: bigint, by: EndedBy, held: boolean, nodes: string[]): Promise<void> {
    const k = key(pid, uid);
    const deadline = BigInt(Date.now() + this.recheckMs);
    const logged = this.waits.admit('waiting');
    if (logged.log)
      this.log.info(
        { pid, uid: String(uid), nodes, others: logged.repeats },
        'a presence ended here goes on on a node that does not answer on the bus (cut off from NATS?): it ends when the session there does',
      );
    if (!held) {
      await this.store.savePresenceEnds([{ pid, uid, endedAt, deadline }]);
      return;
    }
    if (this.presence.isOnline(pid, uid) || this.grace.has(k) || this.stopping) return; // went on here, or the stop hands over
    this.records.held(pid, uid, endedAt);
    const timer = setTimeout(() => {
      this.grace.delete(k);
      void this.endTracked(pid, uid, endedAt, by, true);
    }, this.recheckMs);
    timer.unref();
    this.grace.set(k, { timer, end: { pid, uid, endedAt, deadline } });
  }

  /**
   * Whether the store says the user has a session on `holder`, another node that did not answer
   * the bus's question (`answered`) though it touched its row within the lease: alive, but cut off
   * from NATS (or slower than the question's wait). Without the store, that session is invisible.
   */
  private unheardSession(holder: PresenceHolder, answered: ReadonlySet<string>, now: bigint): boolean {
    return (
      holder.node !== this.node &&
      holder.endedAt === undefined &&
      !answered.has(holder.node) &&
      holder.seenAt !== undefined &&
      holder.seenAt > now - BigInt(this.config.nodeLeaseMs)
    );
  }

  /** The ends whose store writes failed, tried again (the store answered the sweep's touch). */
  private async retryFailedEnds(): Promise<void> {
    if (this.failedEnds.size === 0) return;
    const ends = [...this.failedEnds.values()];
    this.failedEnds.clear();
    await Promise.all(ends.map((e) => this.endTracked(e.pid, e.uid, e.endedAt, e.by, e.again)));
    this.log.info({ ends: ends.length, failedAgain: this.failedEnds.size }, 'presence ends that the store failed were tried again');
  }

  /**
   * The presence this node held ends (the user's last session here ended at `mine`): a grace
   * period of the user that a stopped node handed over (`flush`) is either of this same presence
   * — the SDK came back here before that node's hand-over was written, so no login took it — and
   * must go with it, or a later login within its deadline would go on with a presence that ended
   * (no login event); or of a session on that node that ended after `mine`: then the presence goes
   * on until that period runs out (`endHandedOver` ends it, once), as with a grace period running
   * on another node.
   */
  private async handedOverGoesOn(pid: number, uid: bigint, mine: bigint): Promise<boolean> {
    const saved = await this.store.takePresenceEnd(pid, uid);
    if (!saved || saved.deadline <= BigInt(Date.now()) || saved.endedAt <= mine) return false;
    await this.store.savePresenceEnds([saved]);
    return true;
  }

  /**
   * Whether the presence goes on at `holder`, another node, where the user's grace period runs,
   * rather than ending here. (Where they have a session, the bus says they are online; a node
   * whose record says so but that does not answer so is dead or cut off, and does not count.) A
   * presence this node held (the user's last session here ended at `mine`) goes on where theirs
   * ended later (on a tie, at the greater node id): so of two nodes whose grace periods run out
   * together, exactly one ends it. One this node did not hold (handed over, a dead node's) goes on
   * wherever a grace period runs.
   */
  private goesOnAt(holder: PresenceHolder, mine: bigint | undefined): boolean {
    if (holder.node === this.node || holder.endedAt === undefined) return false;
    if (mine === undefined) return true;
    return holder.endedAt > mine || (holder.endedAt === mine && holder.node > this.node);
  }

  /** The stop begins: the sessions about to close are handed over by `flush`. */
  beginStop(): void {
    this.stopping = true;
  }

  /**
   * At a stop: hands every running grace period over to the store, so a user whose SDK logs in
   * again after the restart (or on another node) continues the same presence, and one who does not
   * ends theirs when the period runs out (`endHandedOver`, on whichever node runs then). Also waits
   * for the presences already ending (a `bye`, a grace period just over), so their logout times
   * are written before the store closes. If the store cannot keep them, they end now. Then this
   * node's records go: it holds no presence any more.
   */
  async flush(): Promise<void> {
    this.stopping = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    const pending = [...this.grace.values()].map(({ timer, end }) => {
      clearTimeout(timer);
      return end;
    });
    this.grace.clear();
    let endNow: typeof pending = [];
    try {
      await this.store.savePresenceEnds(pending);
      if (pending.length > 0) this.log.info({ presences: pending.length }, 'grace periods handed over to the store');
    } catch (err) {
      this.log.error({ err, presences: pending.length }, 'could not hand the grace periods over: ending those presences now');
      endNow = pending;
    }
    await Promise.all([...endNow.map((e) => this.end(e.pid, e.uid, e.endedAt, 'grace')), ...this.ending]);
    await this.records.close();
    try {
      await this.store.dropNode(this.node);
    } catch (err) {
      this.log.warn(
        { err, node: this.node },
        'could not remove the presences of this node from the store: they end RTM_NODE_LEASE_MS after its last touch (on another node, or at the next start)',
      );
    }
  }
}
