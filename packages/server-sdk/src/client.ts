import { FpnnErrorCode, RtmError, RtmErrorCode, type IncomingQuest, type Payload } from '@rtm/fpnn';
import { ConnectionManager } from './connection.js';
import { TypedEmitter } from './emitter.js';
import { ListenState, resolveFlags, resolveLists } from './listen.js';
import {
  historyPage,
  PushDedup,
  pushEvent,
  pushGroupMessage,
  pushP2PMessage,
  pushRoomMessage,
  retrievedMessage,
  type HistoryKind,
} from './messages.js';
import { MAX_TIMEOUT_MS, resolveOptions, type ResolvedOptions, type RTMServerClientOptions } from './options.js';
import { IdGenerator, signQuest } from './signature.js';
import type { TcpConnection } from './tcp.js';
import {
  MessageType,
  type CallOptions,
  type ConnectionState,
  type HistoryOptions,
  type HistoryPage,
  type InfoPair,
  type ListenAll,
  type ListenLists,
  type MessageBody,
  type MessageNum,
  type RetrievedMessage,
  type SendOptions,
  type SendResult,
  type ServerClientEvents,
  type SetListenOptions,
} from './types.js';
import {
  has,
  readBool,
  readId,
  readIdKeyedMap,
  readIdList,
  readInt,
  readString,
  stringValue,
  toId,
  toIds,
  toInt,
  toInts,
  intValue,
  type Id,
} from './wire.js';

/**
 * RTM server SDK client: the backend side of the server gate (server-api.md). Every method sends
 * one signed msgpack twoway quest and resolves with the typed answer, or rejects with an
 * `RtmError` carrying the FPNN / RTM error code.
 *
 * Ids (uid, gid, rid, mid, …) and millisecond times are `bigint` in every result; parameters take
 * `bigint | number` (numbers must be safe integers, so nothing loses precision).
 *
 * Method names and parameter order follow highras/rtm-server-sdk-python in camelCase; the
 * Python keyword arguments (mid, begin, end, lastid, mtypes, timeout) are the last `opts` object.
 */
export class RTMServerClient extends TypedEmitter<ServerClientEvents> {
  /** The validated options (defaults filled in). */
  readonly options: ResolvedOptions;
  private readonly connection: ConnectionManager;
  private readonly ids = new IdGenerator();
  private readonly listen = new ListenState();
  private readonly dedup: PushDedup;

  constructor(options: RTMServerClientOptions) {
    const resolved = resolveOptions(options);
    super((err, event) => resolved.logger.error(`a '${String(event)}' listener threw`, err));
    this.options = resolved;
    this.dedup = new PushDedup(resolved.dedupWindowMs, resolved.dedupMaxEntries);
    this.connection = new ConnectionManager(resolved, {
      onQuest: (quest) => this.onServerQuest(quest),
      onOpen: (connection) => this.restoreListen(connection),
      connected: (info) => this.emit('connected', info),
      closed: (info) => this.emit('closed', info),
      error: (err) => this.emit('error', err),
    });
  }

  // ---------------------------------------------------------------- connection

  /** Opens the connection. Rejects with 20012 (unreachable) or 20003 (connect timeout); nothing is retried then. */
  connect(): Promise<void> {
    return this.connection.connect();
  }

  /** Closes the connection and stops reconnecting; pending and waiting calls fail. `connect()` may be called again. */
  close(): Promise<void> {
    return this.connection.close();
  }

  get state(): ConnectionState {
    return this.connection.state;
  }

  /** Local time (ms) of the last `ping` from the server on the current connection, undefined before the first. */
  get lastPingAt(): number | undefined {
    return this.connection.lastPingAt;
  }

  /** A fresh unique 64-bit id, as used for salts and generated mids. */
  generateId(): bigint {
    return this.ids.next();
  }

  // ---------------------------------------------------------------- tokens and users (server-api.md §4)

  /** A login token for `uid`. */
  async getToken(uid: Id, opts: CallOptions = {}): Promise<string> {
    const answer = await this.call('gettoken', { uid: toId(uid, 'uid') }, opts);
    return readString(answer, 'token', 'gettoken');
  }

  async removeToken(uid: Id, opts: CallOptions = {}): Promise<void> {
    await this.call('removetoken', { uid: toId(uid, 'uid') }, opts);
  }

  /** Disconnects the user's sessions (only the one at client gate `ce` when given). */
  async kickout(uid: Id, ce?: string, opts: CallOptions = {}): Promise<void> {
    await this.call('kickout', { uid: toId(uid, 'uid'), ce }, opts);
  }

  /** The subset of `uids` that is online. */
  async getOnlineUsers(uids: readonly Id[], opts: CallOptions = {}): Promise<bigint[]> {
    const answer = await this.call('getonlineusers', { uids: toIds(uids, 'uids') }, opts);
    return readIdList(answer, 'uids', 'getonlineusers');
  }

  /** Bans the user from the whole project for `btime` seconds. */
  async addProjectBlack(uid: Id, btime: number, opts: CallOptions = {}): Promise<void> {
    await this.call('addprojectblack', { uid: toId(uid, 'uid'), btime: toInt(btime, 'btime') }, opts);
  }

  async removeProjectBlack(uid: Id, opts: CallOptions = {}): Promise<void> {
    await this.call('removeprojectblack', { uid: toId(uid, 'uid') }, opts);
  }

  async isProjectBlack(uid: Id, opts: CallOptions = {}): Promise<boolean> {
    return this.ok('isprojectblack', { uid: toId(uid, 'uid') }, opts);
  }

  /** Sets public (`oinfo`) and/or private (`pinfo`) info; undefined leaves a value unchanged. */
  async setUserInfo(uid: Id, oinfo?: string, pinfo?: string, opts: CallOptions = {}): Promise<void> {
    await this.call('setuserinfo', { uid: toId(uid, 'uid'), oinfo, pinfo }, opts);
  }

  async getUserInfo(uid: Id, opts: CallOptions = {}): Promise<InfoPair> {
    return this.infoPair('getuserinfo', { uid: toId(uid, 'uid') }, opts);
  }

  /** Public info of each user, by uid (this server lists users without info with ""; others may leave them out). */
  async getUserOpenInfo(uids: readonly Id[], opts: CallOptions = {}): Promise<Map<bigint, string>> {
    const answer = await this.call('getuseropeninfo', { uids: toIds(uids, 'uids') }, opts);
    return readIdKeyedMap(answer, 'info', 'getuseropeninfo', (v, k) => stringValue(v, k, 'getuseropeninfo'));
  }

  // ---------------------------------------------------------------- sending (server-api.md §2)

  /** Sends a p2p message. `mid` absent or 0: a new unique mid is generated. */
  async sendMessage(mtype: number, fromUid: Id, toUid: Id, message: MessageBody, attrs = '', opts: SendOptions = {}): Promise<SendResult> {
    return this.send('sendmsg', mtype, fromUid, { to: toId(toUid, 'toUid') }, message, attrs, opts);
  }

  /** Sends one message (one mid) to several users. */
  async sendMessages(
    mtype: number,
    fromUid: Id,
    toUids: readonly Id[],
    message: MessageBody,
    attrs = '',
    opts: SendOptions = {},
  ): Promise<SendResult> {
    return this.send('sendmsgs', mtype, fromUid, { tos: toIds(toUids, 'toUids') }, message, attrs, opts);
  }

  async sendGroupMessage(
    mtype: number,
    fromUid: Id,
    gid: Id,
    message: MessageBody,
    attrs = '',
    opts: SendOptions = {},
  ): Promise<SendResult> {
    return this.send('sendgroupmsg', mtype, fromUid, { gid: toId(gid, 'gid') }, message, attrs, opts);
  }

  async sendRoomMessage(
    mtype: number,
    fromUid: Id,
    rid: Id,
    message: MessageBody,
    attrs = '',
    opts: SendOptions = {},
  ): Promise<SendResult> {
    return this.send('sendroommsg', mtype, fromUid, { rid: toId(rid, 'rid') }, message, attrs, opts);
  }

  /** Sends a message to every user of the project (`broadcastmsg`). */
  async sendBroadcastMessage(mtype: number, fromUid: Id, message: MessageBody, attrs = '', opts: SendOptions = {}): Promise<SendResult> {
    return this.send('broadcastmsg', mtype, fromUid, {}, message, attrs, opts);
  }

  /** Same as `sendBroadcastMessage` (the Python SDK's `broadcast_message`). */
  broadcastMessage(mtype: number, fromUid: Id, message: MessageBody, attrs = '', opts: SendOptions = {}): Promise<SendResult> {
    return this.sendBroadcastMessage(mtype, fromUid, message, attrs, opts);
  }

  // ---------------------------------------------------------------- history (server-api.md §3.1)

  /** One page of group history as read by `uid`. `desc`: newest first. `num`: page size (≤ 20). */
  async getGroupMessage(uid: Id, gid: Id, desc: boolean, num: number, opts: HistoryOptions = {}): Promise<HistoryPage> {
    const g = toId(gid, 'gid');
    return this.history('getgroupmsg', { uid: toId(uid, 'uid'), gid: g }, desc, num, opts, { kind: 'group', gid: g });
  }

  async getRoomMessage(uid: Id, rid: Id, desc: boolean, num: number, opts: HistoryOptions = {}): Promise<HistoryPage> {
    const r = toId(rid, 'rid');
    return this.history('getroommsg', { uid: toId(uid, 'uid'), rid: r }, desc, num, opts, { kind: 'room', rid: r });
  }

  async getBroadcastMessage(uid: Id, desc: boolean, num: number, opts: HistoryOptions = {}): Promise<HistoryPage> {
    return this.history('getbroadcastmsg', { uid: toId(uid, 'uid') }, desc, num, opts, { kind: 'broadcast' });
  }

  /** P2P history between `uid` and `ouid`; each entry's fromUid / toId is resolved from the row's direction. */
  async getP2PMessage(uid: Id, ouid: Id, desc: boolean, num: number, opts: HistoryOptions = {}): Promise<HistoryPage> {
    const u = toId(uid, 'uid');
    const o = toId(ouid, 'ouid');
    return this.history('getp2pmsg', { uid: u, ouid: o }, desc, num, opts, { kind: 'p2p', uid: u, ouid: o });
  }

  // ---------------------------------------------------------------- single messages (server-api.md §3.2–3.4)

  /**
   * One message by (mid, sender, xid, type); xid = receiver uid (p2p), gid, rid, or 0 (broadcast).
   * Rejects with 200070 when the message does not exist.
   */
  async getMessage(mid: Id, fromUid: Id, xid: Id, type: MessageType, opts: CallOptions = {}): Promise<RetrievedMessage> {
    const answer = await this.call('getmsg', this.messageKey(mid, fromUid, xid, type), opts);
    return retrievedMessage(answer, 'getmsg');
  }

  /** Same as `getMessage` (the Python SDK's `get_message_info`). */
  getMessageInfo(mid: Id, fromUid: Id, xid: Id, type: MessageType, opts: CallOptions = {}): Promise<RetrievedMessage> {
    return this.getMessage(mid, fromUid, xid, type, opts);
  }

  getP2PMessageInfo(mid: Id, fromUid: Id, toUid: Id, opts: CallOptions = {}): Promise<RetrievedMessage> {
    return this.getMessage(mid, fromUid, toUid, MessageType.P2P, opts);
  }

  getGroupMessageInfo(mid: Id, fromUid: Id, gid: Id, opts: CallOptions = {}): Promise<RetrievedMessage> {
    return this.getMessage(mid, fromUid, gid, MessageType.GROUP, opts);
  }

  getRoomMessageInfo(mid: Id, fromUid: Id, rid: Id, opts: CallOptions = {}): Promise<RetrievedMessage> {
    return this.getMessage(mid, fromUid, rid, MessageType.ROOM, opts);
  }

  getBroadcastMessageInfo(mid: Id, fromUid: Id, opts: CallOptions = {}): Promise<RetrievedMessage> {
    return this.getMessage(mid, fromUid, 0n, MessageType.BROADCAST, opts);
  }

  /** Deletes one message; keys as `getMessage`. */
  async deleteMessage(mid: Id, fromUid: Id, xid: Id, type: MessageType, opts: CallOptions = {}): Promise<void> {
    await this.call('delmsg', this.messageKey(mid, fromUid, xid, type), opts);
  }

  deleteP2PMessage(mid: Id, fromUid: Id, toUid: Id, opts: CallOptions = {}): Promise<void> {
    return this.deleteMessage(mid, fromUid, toUid, MessageType.P2P, opts);
  }

  deleteGroupMessage(mid: Id, fromUid: Id, gid: Id, opts: CallOptions = {}): Promise<void> {
    return this.deleteMessage(mid, fromUid, gid, MessageType.GROUP, opts);
  }

  deleteRoomMessage(mid: Id, fromUid: Id, rid: Id, opts: CallOptions = {}): Promise<void> {
    return this.deleteMessage(mid, fromUid, rid, MessageType.ROOM, opts);
  }

  deleteBroadcastMessage(mid: Id, fromUid: Id, opts: CallOptions = {}): Promise<void> {
    return this.deleteMessage(mid, fromUid, 0n, MessageType.BROADCAST, opts);
  }

  /** Number of messages and of distinct senders in a group (type 2) or room (type 3). */
  async getMessageNum(
    messageType: typeof MessageType.GROUP | typeof MessageType.ROOM,
    xid: Id,
    opts: { mtypes?: readonly number[]; begin?: Id; end?: Id } & CallOptions = {},
  ): Promise<MessageNum> {
    const answer = await this.call(
      'getmsgnum',
      {
        type: toInt(messageType, 'messageType'),
        xid: toId(xid, 'xid'),
        mtypes: toInts(opts.mtypes, 'mtypes'),
        begin: opts.begin === undefined ? undefined : toId(opts.begin, 'begin'),
        end: opts.end === undefined ? undefined : toId(opts.end, 'end'),
      },
      opts,
    );
    return { sender: readInt(answer, 'sender', 'getmsgnum'), num: readInt(answer, 'num', 'getmsgnum') };
  }

  // ---------------------------------------------------------------- groups

  async addGroupMembers(gid: Id, uids: readonly Id[], opts: CallOptions = {}): Promise<void> {
    await this.call('addgroupmembers', { gid: toId(gid, 'gid'), uids: toIds(uids, 'uids') }, opts);
  }

  async deleteGroupMembers(gid: Id, uids: readonly Id[], opts: CallOptions = {}): Promise<void> {
    await this.call('delgroupmembers', { gid: toId(gid, 'gid'), uids: toIds(uids, 'uids') }, opts);
  }

  async deleteGroup(gid: Id, opts: CallOptions = {}): Promise<void> {
    await this.call('delgroup', { gid: toId(gid, 'gid') }, opts);
  }

  async getGroupMembers(gid: Id, opts: CallOptions = {}): Promise<bigint[]> {
    const answer = await this.call('getgroupmembers', { gid: toId(gid, 'gid') }, opts);
    return readIdList(answer, 'uids', 'getgroupmembers');
  }

  /** Number of members of the group (Go SDK's `getgroupcount`). */
  async getGroupCount(gid: Id, opts: CallOptions = {}): Promise<number> {
    const answer = await this.call('getgroupcount', { gid: toId(gid, 'gid') }, opts);
    return readInt(answer, 'cn', 'getgroupcount');
  }

  async isGroupMember(gid: Id, uid: Id, opts: CallOptions = {}): Promise<boolean> {
    return this.ok('isgroupmember', { gid: toId(gid, 'gid'), uid: toId(uid, 'uid') }, opts);
  }

  async getUserGroups(uid: Id, opts: CallOptions = {}): Promise<bigint[]> {
    const answer = await this.call('getusergroups', { uid: toId(uid, 'uid') }, opts);
    return readIdList(answer, 'gids', 'getusergroups');
  }

  /** Mutes `uid` in group `gid` for `btime` seconds; `gid` null/undefined = in all groups. */
  async addGroupBan(gid: Id | null | undefined, uid: Id, btime: number, opts: CallOptions = {}): Promise<void> {
    await this.call('addgroupban', { gid: optionalId(gid, 'gid'), uid: toId(uid, 'uid'), btime: toInt(btime, 'btime') }, opts);
  }

  /** Lifts a group ban; `gid` null/undefined = the all-groups ban. */
  async removeGroupBan(gid: Id | null | undefined, uid: Id, opts: CallOptions = {}): Promise<void> {
    await this.call('removegroupban', { gid: optionalId(gid, 'gid'), uid: toId(uid, 'uid') }, opts);
  }

  async isBanOfGroup(gid: Id, uid: Id, opts: CallOptions = {}): Promise<boolean> {
    return this.ok('isbanofgroup', { gid: toId(gid, 'gid'), uid: toId(uid, 'uid') }, opts);
  }

  async setGroupInfo(gid: Id, oinfo?: string, pinfo?: string, opts: CallOptions = {}): Promise<void> {
    await this.call('setgroupinfo', { gid: toId(gid, 'gid'), oinfo, pinfo }, opts);
  }

  async getGroupInfo(gid: Id, opts: CallOptions = {}): Promise<InfoPair> {
    return this.infoPair('getgroupinfo', { gid: toId(gid, 'gid') }, opts);
  }

  // ---------------------------------------------------------------- rooms

  async addRoomMember(rid: Id, uid: Id, opts: CallOptions = {}): Promise<void> {
    await this.call('addroommember', { rid: toId(rid, 'rid'), uid: toId(uid, 'uid') }, opts);
  }

  async deleteRoomMember(rid: Id, uid: Id, opts: CallOptions = {}): Promise<void> {
    await this.call('delroommember', { rid: toId(rid, 'rid'), uid: toId(uid, 'uid') }, opts);
  }

  async getRoomMembers(rid: Id, opts: CallOptions = {}): Promise<bigint[]> {
    const answer = await this.call('getroommembers', { rid: toId(rid, 'rid') }, opts);
    return readIdList(answer, 'uids', 'getroommembers');
  }

  /** Member count of each room, by rid. */
  async getRoomCount(rids: readonly Id[], opts: CallOptions = {}): Promise<Map<bigint, number>> {
    const answer = await this.call('getroomcount', { rids: toIds(rids, 'rids') }, opts);
    return readIdKeyedMap(answer, 'cn', 'getroomcount', (v, k) => intValue(v, k, 'getroomcount'));
  }

  /** Mutes `uid` in room `rid` for `btime` seconds; `rid` null/undefined = in all rooms. */
  async addRoomBan(rid: Id | null | undefined, uid: Id, btime: number, opts: CallOptions = {}): Promise<void> {
    await this.call('addroomban', { rid: optionalId(rid, 'rid'), uid: toId(uid, 'uid'), btime: toInt(btime, 'btime') }, opts);
  }

  async removeRoomBan(rid: Id | null | undefined, uid: Id, opts: CallOptions = {}): Promise<void> {
    await this.call('removeroomban', { rid: optionalId(rid, 'rid'), uid: toId(uid, 'uid') }, opts);
  }

  async isBanOfRoom(rid: Id, uid: Id, opts: CallOptions = {}): Promise<boolean> {
    return this.ok('isbanofroom', { rid: toId(rid, 'rid'), uid: toId(uid, 'uid') }, opts);
  }

  async setRoomInfo(rid: Id, oinfo?: string, pinfo?: string, opts: CallOptions = {}): Promise<void> {
    await this.call('setroominfo', { rid: toId(rid, 'rid'), oinfo, pinfo }, opts);
  }

  async getRoomInfo(rid: Id, opts: CallOptions = {}): Promise<InfoPair> {
    return this.infoPair('getroominfo', { rid: toId(rid, 'rid') }, opts);
  }

  // ---------------------------------------------------------------- friends and blacklists

  async addFriends(uid: Id, friends: readonly Id[], opts: CallOptions = {}): Promise<void> {
    await this.call('addfriends', { uid: toId(uid, 'uid'), friends: toIds(friends, 'friends') }, opts);
  }

  async deleteFriends(uid: Id, friends: readonly Id[], opts: CallOptions = {}): Promise<void> {
    await this.call('delfriends', { uid: toId(uid, 'uid'), friends: toIds(friends, 'friends') }, opts);
  }

  async getFriends(uid: Id, opts: CallOptions = {}): Promise<bigint[]> {
    const answer = await this.call('getfriends', { uid: toId(uid, 'uid') }, opts);
    return readIdList(answer, 'uids', 'getfriends');
  }

  async isFriend(uid: Id, fuid: Id, opts: CallOptions = {}): Promise<boolean> {
    return this.ok('isfriend', { uid: toId(uid, 'uid'), fuid: toId(fuid, 'fuid') }, opts);
  }

  /** Those of `fuids` who are friends of `uid`. */
  async isFriends(uid: Id, fuids: readonly Id[], opts: CallOptions = {}): Promise<bigint[]> {
    const answer = await this.call('isfriends', { uid: toId(uid, 'uid'), fuids: toIds(fuids, 'fuids') }, opts);
    return readIdList(answer, 'fuids', 'isfriends');
  }

  /** `uid` blocks `blacks`: they can no longer send to `uid`. */
  async addBlacks(uid: Id, blacks: readonly Id[], opts: CallOptions = {}): Promise<void> {
    await this.call('addblacks', { uid: toId(uid, 'uid'), blacks: toIds(blacks, 'blacks') }, opts);
  }

  async deleteBlacks(uid: Id, blacks: readonly Id[], opts: CallOptions = {}): Promise<void> {
    await this.call('delblacks', { uid: toId(uid, 'uid'), blacks: toIds(blacks, 'blacks') }, opts);
  }

  /** Users blocked by `uid`. */
  async getBlacks(uid: Id, opts: CallOptions = {}): Promise<bigint[]> {
    const answer = await this.call('getblacks', { uid: toId(uid, 'uid') }, opts);
    return readIdList(answer, 'uids', 'getblacks');
  }

  /** true when `buid` has blocked `uid` (uid's messages would not reach buid). */
  async isBlack(uid: Id, buid: Id, opts: CallOptions = {}): Promise<boolean> {
    return this.ok('isblack', { uid: toId(uid, 'uid'), buid: toId(buid, 'buid') }, opts);
  }

  /** Those of `buids` who have blocked `uid`. */
  async isBlacks(uid: Id, buids: readonly Id[], opts: CallOptions = {}): Promise<bigint[]> {
    const answer = await this.call('isblacks', { uid: toId(uid, 'uid'), buids: toIds(buids, 'buids') }, opts);
    return readIdList(answer, 'buids', 'isblacks');
  }

  // ---------------------------------------------------------------- key-value data

  async dataSet(uid: Id, key: string, value: string, opts: CallOptions = {}): Promise<void> {
    await this.call('dataset', { uid: toId(uid, 'uid'), key, val: value }, opts);
  }

  /** The stored value, or undefined when the key does not exist. */
  async dataGet(uid: Id, key: string, opts: CallOptions = {}): Promise<string | undefined> {
    const answer = await this.call('dataget', { uid: toId(uid, 'uid'), key }, opts);
    return has(answer, 'val') ? readString(answer, 'val', 'dataget') : undefined;
  }

  async dataDelete(uid: Id, key: string, opts: CallOptions = {}): Promise<void> {
    await this.call('datadel', { uid: toId(uid, 'uid'), key }, opts);
  }

  // ---------------------------------------------------------------- listening (server-api.md §4, §6)

  /** Adds to what this connection listens to; kept locally and restored after reconnects. */
  async addListen(lists: ListenLists, opts: CallOptions = {}): Promise<void> {
    const resolved = resolveLists(lists);
    await this.call('addlisten', { ...resolved }, opts);
    this.listen.add(resolved);
  }

  async removeListen(lists: ListenLists, opts: CallOptions = {}): Promise<void> {
    const resolved = resolveLists(lists);
    await this.call('removelisten', { ...resolved }, opts);
    this.listen.remove(resolved);
  }

  /**
   * Replaces what this connection listens to: the list form `{ gids?, rids?, uids?, events?: string[] }`
   * replaces the four lists (absent = empty); the "all" form `{ p2p?, group?, room?, events?: boolean }`
   * replaces the four flags (absent = false).
   */
  async setListen(options: SetListenOptions, opts: CallOptions = {}): Promise<void> {
    const o = options as ListenLists & ListenAll;
    const allForm = o.p2p !== undefined || o.group !== undefined || o.room !== undefined || typeof o.events === 'boolean';
    const listForm = o.gids !== undefined || o.rids !== undefined || o.uids !== undefined || Array.isArray(o.events) || !allForm;
    const flags = allForm ? resolveFlags(o) : undefined;
    // Anything but the all form's boolean goes to resolveLists, which refuses a non-array (dropped
    // here, `events: 'login'` would have emptied every list).
    const events = typeof o.events === 'boolean' ? undefined : o.events;
    const lists = listForm ? resolveLists({ gids: o.gids, rids: o.rids, uids: o.uids, events }) : undefined;
    const payload: Payload = { ...flags };
    if (lists) Object.assign(payload, { gids: [], rids: [], uids: [], events: [], ...lists });
    await this.call('setlisten', payload, opts);
    if (flags) this.listen.replaceFlags(flags);
    if (lists) this.listen.replaceLists(lists);
  }

  /** The "all" form of `setListen` (the Python SDK's `set_all_listen`). */
  setAllListen(all: ListenAll, opts: CallOptions = {}): Promise<void> {
    return this.setListen({ p2p: all.p2p ?? false, group: all.group ?? false, room: all.room ?? false, events: all.events ?? false }, opts);
  }

  /** The listen state this client restores on reconnect. */
  get listenState(): ReturnType<ListenState['snapshot']> {
    return this.listen.snapshot();
  }

  // ---------------------------------------------------------------- internals

  /** Sends one signed quest; waits for a (re)connection within the same timeout. */
  private async call(method: string, params: Payload, opts: CallOptions): Promise<Payload> {
    const timeoutMs = opts.timeoutMs ?? this.options.questTimeoutMs;
    // Above 2^31-1 a timer fires after 1 ms: such a call would time out at once while waiting for a reconnection.
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMEOUT_MS)
      throw new RtmError(
        RtmErrorCode.INVALID_PARAMETER,
        `timeoutMs must be a positive integer of at most ${MAX_TIMEOUT_MS} ms (2^31-1), got ${String(timeoutMs)}`,
      );
    const started = Date.now();
    const connection = await this.connection.acquire(method, timeoutMs);
    const remaining = Math.max(1, timeoutMs - (Date.now() - started));
    return connection.peer.quest(method, this.signed(method, params), { timeoutMs: remaining });
  }

  /** Adds pid, salt, ts and sign (server-api.md §1) in front of the call's own keys. */
  private signed(method: string, params: Payload): Payload {
    const salt = this.ids.next();
    const ts = Math.floor(Date.now() / 1000);
    const pid = this.options.pid;
    return { pid, sign: signQuest(pid, this.options.secret, salt, method, ts), salt, ts, ...params };
  }

  private async send(
    method: string,
    mtype: number,
    fromUid: Id,
    target: Payload,
    message: MessageBody,
    attrs: string,
    opts: SendOptions,
  ): Promise<SendResult> {
    if (typeof message !== 'string' && !(message instanceof Uint8Array))
      throw new RtmError(RtmErrorCode.INVALID_PARAMETER, 'message must be a string or a Uint8Array');
    if (typeof attrs !== 'string') throw new RtmError(RtmErrorCode.INVALID_PARAMETER, 'attrs must be a string');
    const given = opts.mid === undefined ? 0n : toId(opts.mid, 'mid');
    const mid = given === 0n ? this.ids.next() : given;
    const payload = { mtype: toInt(mtype, 'mtype'), from: toId(fromUid, 'fromUid'), ...target, mid, msg: message, attrs };
    let answer: Payload;
    try {
      answer = await this.call(method, payload, opts);
    } catch (err) {
      // The caller resends with this mid, also one generated here (a new one would deliver it twice).
      // A new error: the one caught may be shared by other calls, and it is not ours to change.
      if (err instanceof RtmError) throw Object.assign(new RtmError(err.code, err.message, { cause: err }), { mid });
      throw err;
    }
    return { mid, mtime: readId(answer, 'mtime', method) };
  }

  private async history(
    method: string,
    keys: Payload,
    desc: boolean,
    num: number,
    opts: HistoryOptions,
    target: HistoryKind,
  ): Promise<HistoryPage> {
    // `desc === true` alone would read 1 or 'true' as false: oldest first, silently.
    if (typeof desc !== 'boolean') throw new RtmError(RtmErrorCode.INVALID_PARAMETER, `desc must be a boolean, got ${typeof desc}`);
    const payload: Payload = {
      ...keys,
      desc,
      num: toInt(num, 'num'),
      begin: opts.begin === undefined ? undefined : toId(opts.begin, 'begin'),
      end: opts.end === undefined ? undefined : toId(opts.end, 'end'),
      lastid: opts.lastid === undefined ? undefined : toId(opts.lastid, 'lastid'),
      mtypes: toInts(opts.mtypes, 'mtypes'),
    };
    return historyPage(await this.call(method, payload, opts), target, method);
  }

  private messageKey(mid: Id, fromUid: Id, xid: Id, type: MessageType): Payload {
    if (type !== 1 && type !== 2 && type !== 3 && type !== 4)
      throw new RtmError(RtmErrorCode.INVALID_PARAMETER, `type must be 1 (p2p), 2 (group), 3 (room) or 4 (broadcast), got ${String(type)}`);
    return { mid: toId(mid, 'mid'), from: toId(fromUid, 'fromUid'), xid: toId(xid, 'xid'), type };
  }

  private async ok(method: string, params: Payload, opts: CallOptions): Promise<boolean> {
    return readBool(await this.call(method, params, opts), 'ok', method);
  }

  private async infoPair(method: string, params: Payload, opts: CallOptions): Promise<InfoPair> {
    const answer = await this.call(method, params, opts);
    return {
      oinfo: has(answer, 'oinfo') ? readString(answer, 'oinfo', method) : '',
      pinfo: has(answer, 'pinfo') ? readString(answer, 'pinfo', method) : '',
    };
  }

  private async restoreListen(connection: TcpConnection): Promise<void> {
    const payload = this.listen.restorePayload();
    if (!payload) return;
    await connection.peer.quest('setlisten', this.signed('setlisten', payload), { timeoutMs: this.options.questTimeoutMs });
  }

  /**
   * Server quests (server-api.md §6). Each is answered `{}` at once (the return value); the event
   * is emitted in a microtask, i.e. after the answer is written. A push that cannot be read is
   * still answered `{}` and reported as an 'error' event.
   */
  private onServerQuest(quest: IncomingQuest): Payload {
    const p = quest.payload;
    switch (quest.method) {
      case 'ping': {
        this.connection.notePing();
        const at = this.connection.lastPingAt ?? Date.now();
        this.afterAnswer(() => this.emit('ping', { at }));
        return {};
      }
      case 'pushmsg':
        return this.deliver(quest.method, () => {
          const m = pushP2PMessage(p);
          if (this.dedup.firstTime(`p:${m.fromUid}:${m.toUid}:${m.mid}`)) this.emit('message', m);
        });
      case 'pushgroupmsg':
        return this.deliver(quest.method, () => {
          const m = pushGroupMessage(p);
          if (this.dedup.firstTime(`g:${m.fromUid}:${m.gid}:${m.mid}`)) this.emit('groupMessage', m);
        });
      case 'pushroommsg':
        return this.deliver(quest.method, () => {
          const m = pushRoomMessage(p);
          if (this.dedup.firstTime(`r:${m.fromUid}:${m.rid}:${m.mid}`)) this.emit('roomMessage', m);
        });
      case 'pushevent':
        return this.deliver(quest.method, () => this.emit('event', pushEvent(p)));
      default:
        this.options.logger.warn(`unexpected quest '${quest.method}' from the server`);
        throw new RtmError(FpnnErrorCode.CORE_UNKNOWN_METHOD, `unknown method '${quest.method}'`);
    }
  }

  private deliver(method: string, handle: () => void): Payload {
    this.afterAnswer(() => {
      try {
        handle();
      } catch (err) {
        this.options.logger.warn(`malformed '${method}' push`, err);
        this.emit('error', err as Error);
      }
    });
    return {};
  }

  /**
   * Runs `emit` once the answer is written (a microtask), unless close() or connect() came in
   * between: a listener of an earlier push in the same read may have closed the client, and no
   * event comes after close().
   */
  private afterAnswer(emit: () => void): void {
    const epoch = this.connection.currentEpoch;
    queueMicrotask(() => {
      if (epoch === this.connection.currentEpoch) emit();
    });
  }
}

function optionalId(value: Id | null | undefined, name: string): bigint | undefined {
  return value === undefined || value === null ? undefined : toId(value, name);
}
