/**
 * The durable state of the server, behind one interface (DESIGN.md "Storage").
 *
 * Implementations: SQLite (`sqlite.ts`, the embedded default) and PostgreSQL (`postgres.ts`).
 * Every implementation passes the same conformance suite (`@rtm/testkit` storeConformance).
 *
 * Contract, for every implementation:
 * - ids (uid, gid, rid, mid, message id, mtime) are `bigint`; `pid` is a number.
 * - Every method may be called concurrently; results reflect all writes whose promise resolved.
 * - `append` is durable when its promise resolves (the server answers the sender only then).
 *   Implementations group-commit: appends issued in the same event-loop turn share one transaction.
 * - Message `id`s increase strictly in commit order across the whole store; `mtime` is the store's
 *   clock in ms at persistence, never lower than the mtime of an earlier message.
 * - History reads are index range scans (no OFFSET, no table scan), equally fast at any depth.
 * - "Now" for expiring bans/blacklists is passed in by the caller (testable time).
 */

/**
 * The store answers, and refuses this server: its data is not this server's to use (a schema that
 * a newer server migrated further). A start that fails with it must say so, not that the store is
 * unreachable: the operator's fix is another server version, not the network.
 */
export class StoreRefusal extends Error {
  override readonly name = 'StoreRefusal';
}

/** Message kinds, as on the wire (`type` of getmsg/delmsg): 1 p2p, 2 group, 3 room, 4 broadcast. */
export const MessageKind = { P2P: 1, GROUP: 2, ROOM: 3, BROADCAST: 4 } as const;
export type MessageKind = (typeof MessageKind)[keyof typeof MessageKind];

/** A message to persist. `to` is the receiver uid (p2p), gid, rid, or 0n (broadcast). */
export interface NewMessage {
  pid: number;
  kind: MessageKind;
  from: bigint;
  to: bigint;
  mid: bigint;
  mtype: number;
  /** Body as received: a string (msgpack str) or bytes (msgpack bin); kept as that kind. */
  msg: string | Uint8Array;
  attrs: string;
}

export interface StoredMessage extends NewMessage {
  /** Store-wide cursor, strictly increasing in commit order. */
  id: bigint;
  /** ms at persistence. */
  mtime: bigint;
}

/**
 * `stored`: new message. `duplicate`: the same (pid, kind, from, to, mid) with the same mtype, msg
 * (same kind and bytes) and attrs was stored before — nothing new stored, `message` is the original.
 * `collision`: the same key with different content — nothing stored (answer 200053 DUPLCATED_MID).
 */
/**
 * What became of one message of a batch. A batch is all or nothing: when one of its messages
 * collides (its key names another message), none of it is stored, and the messages that would
 * have been are `withheld`.
 */
export type AppendResult =
  | { status: 'stored'; message: StoredMessage }
  | { status: 'duplicate'; message: StoredMessage }
  | { status: 'collision' }
  | { status: 'withheld' };

/**
 * A conversation: p2p between `uid` and `peer` (either direction), or the group/room/broadcast
 * stream `to` (gid / rid / 0n).
 */
export type ConversationRef =
  | { pid: number; kind: typeof MessageKind.P2P; uid: bigint; peer: bigint }
  | { pid: number; kind: typeof MessageKind.GROUP | typeof MessageKind.ROOM | typeof MessageKind.BROADCAST; to: bigint };

export interface HistoryQuery {
  conversation: ConversationRef;
  /** true: newest first (ids below `lastid`); false: oldest first (ids above `lastid`). */
  desc: boolean;
  /** Page size, already clamped by the caller (≥ 1). */
  num: number;
  /** Inclusive mtime bounds in ms; undefined = unbounded. */
  begin?: bigint;
  end?: bigint;
  /** Cursor: id of the last message of the previous page; undefined or 0n = first page. */
  lastid?: bigint;
  /** Only these mtypes; undefined or empty = all. */
  mtypes?: readonly number[];
}

export interface HistoryWindow {
  messages: StoredMessage[];
  /** Set when the page stopped at `maxScan` rows with fewer than `num` messages: the id of the last row read. */
  scannedTo?: bigint;
}

export interface MessageKey {
  pid: number;
  kind: MessageKind;
  from: bigint;
  to: bigint;
  mid: bigint;
}

export interface CountQuery {
  pid: number;
  kind: typeof MessageKind.GROUP | typeof MessageKind.ROOM;
  to: bigint;
  mtypes?: readonly number[];
  begin?: bigint;
  end?: bigint;
}

export interface UnreadCount {
  /** Number of unread messages. */
  count: number;
  /** mtime (ms) of the latest unread message. */
  ltime: bigint;
}

export interface UnreadQuery {
  pid: number;
  uid: bigint;
  /** Only messages with mtime > since (ms). */
  since: bigint;
  /** Only these mtypes; undefined or empty = all. */
  mtypes?: readonly number[];
}

export type InfoKind = 'user' | 'group' | 'room';
export type BanScope = 'group' | 'room';

/** A server-API kickout as the store keeps it: `at` ms (the kicking node's clock); `endpoint`: its `ce`. */
export interface KickoutRecord {
  pid: number;
  uid: bigint;
  at: bigint;
  endpoint?: string;
}

/** A `kickouts` row (pid, uid, at, endpoint; int64 columns read as bigint) as a record. */
export function kickoutOf(row: Record<string, unknown>): KickoutRecord {
  const endpoint = row['endpoint'];
  return {
    pid: Number(row['pid']),
    uid: row['uid'] as bigint,
    at: row['at'] as bigint,
    ...(typeof endpoint === 'string' ? { endpoint } : {}),
  };
}

export interface Info {
  oinfo: string;
  pinfo: string;
}

export interface UnreadBaseline {
  /** ms of the user's last logout (end of their last session), if any. */
  logoutTime?: bigint;
  /** ms of the user's last unread clear, if any. */
  clearTime?: bigint;
}

/**
 * A presence whose grace period was running when its node stopped (services/sessions.ts): the
 * user's last session ended at `endedAt` (an unread mark); unless they log in again first, the
 * presence ends at `deadline` (ms, wall clock), on whichever node finds it then.
 */
export interface PendingPresenceEnd {
  pid: number;
  uid: bigint;
  endedAt: bigint;
  deadline: bigint;
}

/**
 * A node's record of a user's presence (services/sessions.ts). `held`: the user has a session
 * there, or had until `endedAt` (an unread mark; their grace period runs there). Not held: the
 * node no longer holds it (it ended, or goes on on another node), and the record goes.
 */
export interface NodePresence {
  pid: number;
  uid: bigint;
  held: boolean;
  endedAt?: bigint;
}

/**
 * The claim of a user's presence across the nodes (services/sessions.ts), which orders its
 * transitions: `version` counts them (a node joining the presence, its end), `live` is true while
 * a presence goes on. A user who never logged in reads as version 0, not live.
 */
export interface PresenceClaim {
  version: bigint;
  live: boolean;
}

/** A node joined the user's presence (`joinPresence`): `began` when none went on, so this login begins one. */
export interface PresenceJoin {
  version: bigint;
  began: boolean;
}

/** A node that holds a user's presence (`presenceHolders`): `endedAt` set while their grace period runs there. */
export interface PresenceHolder {
  node: string;
  endedAt?: bigint;
  /** The node's last touch (`touchNode`, ms); absent when it has none (taken for dead, or dropped). */
  seenAt?: bigint;
}

export interface RetentionPolicy {
  /** Delete messages older than this many ms. */
  maxAgeMs?: number;
  /** Keep at most this many messages per conversation (oldest go first). */
  maxPerConversation?: number;
}

/**
 * A value, or a promise of it. The checks every send makes use it: the embedded store answers them
 * at once from memory, and a send that needs no promise for them costs fewer allocations and
 * microtask turns; a store behind a network answers with a promise.
 */
export type MaybePromise<T> = T | Promise<T>;

/** What `Store.backup` copied. */
export interface BackupStats {
  /** Size of the copy, in bytes. */
  bytes: number;
  /** Database pages copied. */
  pages: number;
  /** Schema version of the copy. */
  schemaVersion: number;
  /** How long the copy took, ms. */
  ms: number;
}

export interface BackupOptions {
  /**
   * Pages copied per step (SQLite: one call of the backup's thread each, between which it hears
   * an abort): fewer make an abort sooner and the backup longer. @default the store's
   */
  pagesPerStep?: number;
  /** Aborts the copy between two steps (the client went away, the server stops). */
  signal?: AbortSignal;
}

export interface Store {
  /** Creates or migrates the schema (idempotent; safe when several nodes start at once). */
  init(): Promise<void>;
  close(): Promise<void>;
  /**
   * Which store and the settings in effect once `init()` has run, for the operator's startup log
   * (`store` names the kind; never a secret).
   */
  describe(): Record<string, string | number | boolean>;
  /** Resolves when the store answers a trivial query, rejects when it cannot (the admin /healthz). */
  ping(): Promise<void>;
  /**
   * Why the store cannot store messages now although it answers `ping` (a full disk, a read-only
   * file or server…), or undefined (the admin /healthz). Optional: a store without it is healthy
   * whenever it answers `ping`.
   */
  writeProblem?(): Promise<string | undefined>;
  /**
   * No other server can use the store while this one has it open (SQLite opened exclusively): a
   * node in it that is not this process is one that is gone, without waiting for its lease.
   */
  readonly soleServer: boolean;
  /**
   * Copies the whole store, consistently, into `destination` (a new file) while the server runs
   * and commits (the admin port's `GET /backup`). Optional: a store without it is backed up with
   * its own tools (PostgreSQL: pg_dump).
   */
  backup?(destination: string, options?: BackupOptions): Promise<BackupStats>;

  // --- messages -------------------------------------------------------------------------------
  /** Persists a batch atomically (sendmsgs stores one message per recipient). Results in input order. */
  append(batch: readonly NewMessage[]): Promise<AppendResult[]>;
  /** A page of non-deleted messages of one conversation, in page order. */
  history(query: HistoryQuery): Promise<StoredMessage[]>;
  /**
   * `history`, but a page filtered by `mtypes` reads at most `maxScan` of the conversation's rows
   * (deleted ones and those of other types included) instead of reading on until it has `num`
   * (history-window.ts). Such a page may hold fewer than `num` messages, and then says where it
   * stopped: the next page goes on after `scannedTo`. Without `mtypes` it is `history`.
   */
  historyWithin(query: HistoryQuery, maxScan: number): Promise<HistoryWindow>;
  /** A non-deleted message by its key, or undefined. */
  getMessage(key: MessageKey): Promise<StoredMessage | undefined>;
  /** Marks a message deleted (hidden from history, getMessage, counts and unread). false if not found. */
  deleteMessage(key: MessageKey): Promise<boolean>;
  /** Distinct senders and number of non-deleted messages in a group or room, with filters. */
  countMessages(query: CountQuery): Promise<{ sender: number; num: number }>;

  // --- unread and conversations ----------------------------------------------------------------
  /** Per peer: p2p messages sent *to* `uid` by that peer after `since`. Peers without any are absent. `peers` undefined = all peers. */
  unreadP2P(query: UnreadQuery & { peers?: readonly bigint[] }): Promise<Map<bigint, UnreadCount>>;
  /**
   * Per group of `gids` that `uid` is in: group messages sent by others than `uid` after `since`
   * and after `uid` joined (a message from before was not for them). Groups without any are absent.
   */
  unreadGroups(query: UnreadQuery & { gids: readonly bigint[] }): Promise<Map<bigint, UnreadCount>>;
  /** Peers `uid` has a p2p conversation with (sent or received, not removed), newest activity first. */
  p2pPeers(pid: number, uid: bigint): Promise<bigint[]>;
  /** Removes `peer` from `uid`'s p2p conversation list until a new message between them is stored. */
  removeP2PSession(pid: number, uid: bigint, peer: bigint): Promise<void>;
  getUnreadBaseline(pid: number, uid: bigint): Promise<UnreadBaseline>;
  /**
   * The user's last clear (ms, the store's clock): it only moves forward, so of two writes that
   * race (two devices, two nodes) the later time stays whatever order they land in. Their last
   * logout is written by `endPresence`, forward only too.
   */
  setClearTime(pid: number, uid: bigint, ms: bigint): Promise<void>;
  /** Keeps the grace periods a stopping node hands over (one per user: a later one replaces it). */
  savePresenceEnds(ends: readonly PendingPresenceEnd[]): Promise<void>;
  /** Removes and returns the saved end of (pid, uid), if any: the user is back. */
  takePresenceEnd(pid: number, uid: bigint): Promise<PendingPresenceEnd | undefined>;
  /** Removes and returns up to `limit` of the saved ends whose deadline is at or before `now` (ms), earliest first: those presences end. */
  takeExpiredPresenceEnds(now: bigint, limit: number): Promise<PendingPresenceEnd[]>;

  // --- presences held by nodes (found again if a node dies without a stop) -----------------------
  /**
   * Changes `node`'s records of the presences it holds, each user at most once, in as few writes
   * as the store can: a burst of logins costs one commit, not one each. `replace`: the changes are
   * all the node holds, its other records go (recorded again after a failed write).
   */
  recordPresences(node: string, changes: readonly NodePresence[], replace?: boolean): Promise<void>;
  /** The nodes that hold (pid, uid)'s presence, each with the end of the user's last session there if it ended (a grace period runs). */
  presenceHolders(pid: number, uid: bigint): Promise<PresenceHolder[]>;
  /**
   * A node's first session of the user (or their return to a grace period running there) joins
   * their presence: the claim's version goes up, and the presence goes on (`live`). `began`: none
   * went on, so this login begins one, and of two nodes joining at once exactly one hears so.
   * In the same write `node` is recorded as a holder with a session (as `recordPresences` does):
   * a node that dies right after joining leaves a claim that its orphans' sweep ends, never one
   * that nobody holds.
   */
  joinPresence(pid: number, uid: bigint, node: string): Promise<PresenceJoin>;
  /** The claim of (pid, uid)'s presence as it is now. */
  presenceClaim(pid: number, uid: bigint): Promise<PresenceClaim>;
  /**
   * Ends (pid, uid)'s presence if it goes on at `version` still: no node joined it, and no other
   * node ended it, since that version was read. In the same transaction, the logout time moves to
   * `endedAt` (forward only: an earlier time leaves a later one) and the user leaves every room
   * joined (or re-joined: `addRoomMember` again) at or before `roomsThrough`, a `roomsCut` taken
   * when the presence was found ended; a room joined after it (a backend adding the user
   * meanwhile, a new login on another node) stays. Answers the rooms left, or undefined when
   * another transition came first (then nothing is written). Of two nodes ending one presence at
   * once, exactly one does.
   */
  endPresence(pid: number, uid: bigint, version: bigint, endedAt: bigint, roomsThrough: bigint): Promise<bigint[] | undefined>;
  /**
   * `node` is alive at `now` (ms, wall clock); `mark` is an unread mark taken now. False if the
   * node was not known: it is new, or another node found it unheard for too long and took the
   * presences it held (`takeOrphanedPresences`).
   */
  touchNode(node: string, now: bigint, mark: bigint): Promise<boolean>;
  /**
   * The nodes touched at or after `since` (ms), by id: those alive in the store. A node compares
   * them with the nodes its bus hears (services/bus-watch.ts): one alive here and unheard there is
   * on another bus.
   */
  liveNodes(since: bigint): Promise<string[]>;
  /** Forgets `node` and every presence it holds (a graceful stop, once its grace periods are handed over). */
  dropNode(node: string): Promise<void>;
  /**
   * Removes and returns up to `limit` of the presences held by nodes unheard since before
   * `deadBefore` (ms): nodes that died without a stop. Each comes back as the end it would have
   * handed over: `endedAt` its grace period's start, or the node's last mark if the user still had
   * a session there; `deadline` the node's last touch + `graceMs`. A dead node holding none is
   * forgotten.
   */
  takeOrphanedPresences(deadBefore: bigint, graceMs: bigint, limit: number): Promise<PendingPresenceEnd[]>;
  /**
   * A time (ms, the store's clock) to record as a logout or clear: every message stored after this
   * call, or still being stored during it, gets a higher mtime (message-clock.ts).
   */
  unreadMark(): bigint;
  /**
   * A time (ms, the store's clock) to clear a user's rooms through (`endPresence`): every room
   * joined before this call is at or before it, every one joined after is after it. Unlike an
   * `unreadMark`, message commits in flight do not lower it: a room is not a message.
   */
  roomsCut(): bigint;

  // --- tokens ----------------------------------------------------------------------------------
  getToken(pid: number, uid: bigint): Promise<string | undefined>;
  /**
   * Stores `candidate` as the user's token unless one exists, and answers the stored token: two
   * `gettoken` calls at the same time for a new user both get the one that works.
   */
  issueToken(pid: number, uid: bigint, candidate: string): Promise<string>;
  deleteToken(pid: number, uid: bigint): Promise<void>;

  // --- groups (persistent membership) ----------------------------------------------------------
  /** Adds members, joined now (an unread mark); a member already in keeps its join time. */
  addGroupMembers(pid: number, gid: bigint, uids: readonly bigint[]): Promise<void>;
  removeGroupMembers(pid: number, gid: bigint, uids: readonly bigint[]): Promise<void>;
  /** Removes every member (and the group's info). */
  deleteGroup(pid: number, gid: bigint): Promise<void>;
  groupMembers(pid: number, gid: bigint): Promise<bigint[]>;
  groupMemberCount(pid: number, gid: bigint): Promise<number>;
  isGroupMember(pid: number, gid: bigint, uid: bigint): Promise<boolean>;
  userGroups(pid: number, uid: bigint): Promise<bigint[]>;
  /**
   * How many groups the project holds, a group being a gid with at least one member (info set on
   * a gid without members is no group; removing the last member or `deleteGroup` ends one).
   * Counting stops at `upTo` (the answer is then `upTo`), so a limit check costs at most that
   * many steps. One index seek per group counted, from group to next group: never a read of the
   * members, however large the groups.
   */
  countGroups(pid: number, upTo?: number): Promise<number>;

  // --- rooms (live membership, shared by the nodes of a cluster) --------------------------------
  addRoomMember(pid: number, rid: bigint, uid: bigint): Promise<void>;
  removeRoomMember(pid: number, rid: bigint, uid: bigint): Promise<void>;
  roomMembers(pid: number, rid: bigint): Promise<bigint[]>;
  roomCounts(pid: number, rids: readonly bigint[]): Promise<Map<bigint, number>>;
  userRooms(pid: number, uid: bigint): Promise<bigint[]>;

  // --- bans and project blacklist --------------------------------------------------------------
  /** Bans `uid` in group/room `target` (0n = all groups/rooms) until `until` ms (undefined = forever). */
  addBan(pid: number, scope: BanScope, target: bigint, uid: bigint, until?: bigint): Promise<void>;
  removeBan(pid: number, scope: BanScope, target: bigint, uid: bigint): Promise<void>;
  /** true if banned in `target` or in all of that scope, at time `now` (ms). */
  isBanned(pid: number, scope: BanScope, target: bigint, uid: bigint, now: bigint): Promise<boolean>;
  addProjectBlack(pid: number, uid: bigint, until?: bigint): Promise<void>;
  removeProjectBlack(pid: number, uid: bigint): Promise<void>;
  /** Answered at once by the embedded store (see `MaybePromise`). */
  isProjectBlack(pid: number, uid: bigint, now: bigint): MaybePromise<boolean>;

  // --- kickouts (for the nodes of a cluster cut off from the bus when one was published) ---------
  /**
   * Records a server-API kickout (services/resync.ts reads it after a bus outage) and forgets the
   * records older than `forgetBefore` (ms): kickouts are rare, a day of them is a small table.
   */
  recordKickout(kickout: KickoutRecord, forgetBefore: bigint): Promise<void>;
  /** Kickouts recorded with `at` ≥ `since` (ms), oldest first, at most `limit`. */
  kickoutsSince(since: bigint, limit: number): Promise<KickoutRecord[]>;

  // --- friends and blacklists ------------------------------------------------------------------
  /** Symmetric: adding B to A's friends makes A a friend of B. */
  addFriends(pid: number, uid: bigint, friends: readonly bigint[]): Promise<void>;
  removeFriends(pid: number, uid: bigint, friends: readonly bigint[]): Promise<void>;
  friends(pid: number, uid: bigint): Promise<bigint[]>;
  /** Those of `candidates` who are friends of `uid`. */
  filterFriends(pid: number, uid: bigint, candidates: readonly bigint[]): Promise<bigint[]>;
  /** `uid` blocks `blacks`: they can no longer send to `uid`. */
  addBlacks(pid: number, uid: bigint, blacks: readonly bigint[]): Promise<void>;
  removeBlacks(pid: number, uid: bigint, blacks: readonly bigint[]): Promise<void>;
  /** Users blocked by `uid`. */
  blacks(pid: number, uid: bigint): Promise<bigint[]>;
  /** Those of `candidates` who have blocked `uid`. Answered at once by the embedded store. */
  blockedBy(pid: number, uid: bigint, candidates: readonly bigint[]): MaybePromise<bigint[]>;

  // --- info and key-value data -----------------------------------------------------------------
  /** Sets the given parts; an undefined part stays unchanged. */
  setInfo(pid: number, kind: InfoKind, id: bigint, info: Partial<Info>): Promise<void>;
  /** Both parts, "" when unset. */
  getInfo(pid: number, kind: InfoKind, id: bigint): Promise<Info>;
  /** Public info (oinfo) of those of `ids` that have one. */
  getOpenInfos(pid: number, kind: InfoKind, ids: readonly bigint[]): Promise<Map<bigint, string>>;
  dataSet(pid: number, uid: bigint, key: string, val: string): Promise<void>;
  dataGet(pid: number, uid: bigint, key: string): Promise<string | undefined>;
  dataDelete(pid: number, uid: bigint, key: string): Promise<void>;

  // --- retention -------------------------------------------------------------------------------
  /** Deletes messages outside the policy (rows removed for good); returns how many were removed. */
  sweepRetention(policy: RetentionPolicy, now: bigint): Promise<number>;
}

/**
 * A start's schema upgrade from version `from` (0: a new database) to `to` in `migrations` steps,
 * starting (`ms` absent) or applied (`ms`: how long all took).
 */
export interface UpgradeEvent {
  from: number;
  to: number;
  migrations: number;
  ms?: number;
}
