import { FpnnErrorCode, RtmError, type IncomingQuest, type Payload, type QuestHandler } from '@rtm/fpnn';
import {
  optionalId,
  readBody,
  readConversations,
  readHistoryPage,
  readHistoryRow,
  readId,
  readIdMap,
  readIds,
  readInt,
  readP2PHistoryRow,
  readString,
  wireId,
  wireIds,
} from './convert.js';
import { TypedEmitter } from './emitter.js';
import { MidGenerator } from './mid.js';
import { resolveOptions, type ResolvedOptions, type RTMClientOptions } from './options.js';
import { DuplicateFilter, excludesUid, messagePushRoutes } from './pushes.js';
import { Session, type SessionState } from './session.js';
import type {
  Conversation,
  GroupCount,
  GroupMembers,
  GroupUnreadCounts,
  HistoryMessage,
  HistoryPage,
  Id,
  Info,
  MessageBody,
  P2PHistoryMessage,
  P2PUnreadCounts,
  RTMClientEvents,
  SendResult,
  Sessions,
  SingleMessage,
  UnreadConversations,
  UnreadMessages,
} from './types.js';

/**
 * RTM client for browsers and Node, wire-compatible with the official RTM WebSocket SDK
 * (highras/rtm-client-sdk-websocket): same methods and parameter order, as Promises, with `bigint`
 * ids in every result (`bigint | number` accepted as input). Failures reject with `RtmError`.
 */
export class RTMClient extends TypedEmitter<RTMClientEvents> {
  readonly options: ResolvedOptions;
  private readonly session: Session;
  private readonly duplicates: DuplicateFilter;
  private readonly mids = new MidGenerator();
  /**
   * Pushes from the server, one handler each (client-api.md §6). They run in a microtask after the
   * answer `{}` was written, as the browser SDK answers before looking at a push; `kickout` and
   * `kickoutroom` are oneway and never answered.
   */
  private readonly pushHandlers: Readonly<Record<string, (quest: IncomingQuest) => void>> = {
    ping: () => this.session.notePing(),
    kickout: () => this.onKickout(),
    kickoutroom: (quest) => this.emit('kickoutRoom', { rid: readId(quest.payload.rid) }),
    pushmsg: (quest) => this.onMessagePush(quest),
    pushgroupmsg: (quest) => this.onMessagePush(quest),
    pushroommsg: (quest) => this.onMessagePush(quest),
    pushbroadcastmsg: (quest) => this.onMessagePush(quest),
  };

  constructor(options: RTMClientOptions) {
    super((err, event) => this.reportListenerError(err, event));
    this.options = resolveOptions(options);
    this.duplicates = new DuplicateFilter(this.options.duplicateFilterMs);
    const onQuest: QuestHandler = (quest) => this.serveQuest(quest);
    this.session = new Session(this.options, {
      onQuest,
      connected: (e) => this.emit('connected', e),
      reloginCompleted: (e) => this.emit('reloginCompleted', e),
      disconnected: (e) => this.emit('disconnected', e),
      closed: (e) => this.emit('closed', e),
    });
  }

  /** `idle` → `connecting` → `online` ⇄ `reconnecting` → `closed`. */
  get state(): SessionState {
    return this.session.currentState;
  }

  /** The uid of the last `login`. */
  get uid(): bigint {
    return this.session.currentUid;
  }

  // ---------------------------------------------------------------- session (§2)

  /**
   * Connects and authenticates (`auth {pid, uid, token, version}`). Resolves `{ok: false}` when
   * the server refused the token (no retry follows); rejects with `RtmError` when the server
   * could not be reached or answered with an error.
   */
  async login(uid: Id, token: string): Promise<{ ok: boolean }> {
    const id = wireId(uid, 'uid');
    this.duplicates.clear();
    return this.session.login(id, token);
  }

  /** Sends `bye`, then closes. Emits `closed` {reason: 'logout'}. */
  logout(): Promise<void> {
    return this.session.logout();
  }

  /** Closes the connection at once, without `bye`; stops relogin. Emits `closed` {reason: 'close'}. */
  close(): void {
    this.session.close();
  }

  /** Sends any client-gate method (for methods this SDK does not wrap) and resolves with the raw answer. */
  sendQuest(method: string, payload: Payload = {}, timeoutMs?: number): Promise<Payload> {
    return this.session.quest(method, payload, timeoutMs);
  }

  // ---------------------------------------------------------------- send (§3.1)

  /**
   * `sendmsg`. A `mid` of 0 or none is generated (ms·1000 + counter, as the browser SDK). A failure
   * rejects with a `SendError`, whose `mid` is the one to resend with.
   */
  sendMessage(to: Id, mtype: number, message: MessageBody, attrs = '', mid?: Id): Promise<SendResult> {
    return this.send('sendmsg', 'to', to, mtype, message, attrs, mid);
  }

  sendGroupMessage(gid: Id, mtype: number, message: MessageBody, attrs = '', mid?: Id): Promise<SendResult> {
    return this.send('sendgroupmsg', 'gid', gid, mtype, message, attrs, mid);
  }

  sendRoomMessage(rid: Id, mtype: number, message: MessageBody, attrs = '', mid?: Id): Promise<SendResult> {
    return this.send('sendroommsg', 'rid', rid, mtype, message, attrs, mid);
  }

  private async send(
    method: string,
    key: string,
    target: Id,
    mtype: number,
    message: MessageBody,
    attrs: string,
    mid: Id | undefined,
  ): Promise<SendResult> {
    const given = optionalId(mid, 'mid');
    const messageId = given === undefined || given === 0n ? this.mids.next() : given;
    const payload = { [key]: wireId(target, key), mid: messageId, mtype, msg: message, attrs };
    let answer: Payload;
    try {
      answer = await this.session.quest(method, payload);
    } catch (err) {
      // The app resends with this mid, also one generated here (a new one would deliver it twice).
      // A new error: the one caught may be shared or frozen, and it is not ours to change.
      if (err instanceof RtmError) throw Object.assign(new RtmError(err.code, err.message, { cause: err }), { mid: messageId });
      throw err;
    }
    return { mid: messageId, mtime: readId(answer.mtime) };
  }

  // ---------------------------------------------------------------- history (§3.2)

  // async like every method here: a bad id rejects the returned promise instead of throwing.
  async getGroupMessage(gid: Id, desc: boolean, num: number, begin?: Id, end?: Id, lastid?: Id, mtypes?: number[]): Promise<HistoryPage> {
    return this.history('getgroupmsg', { gid: wireId(gid, 'gid') }, desc, num, begin, end, lastid, mtypes, readHistoryRow);
  }

  async getRoomMessage(rid: Id, desc: boolean, num: number, begin?: Id, end?: Id, lastid?: Id, mtypes?: number[]): Promise<HistoryPage> {
    return this.history('getroommsg', { rid: wireId(rid, 'rid') }, desc, num, begin, end, lastid, mtypes, readHistoryRow);
  }

  getBroadcastMessage(desc: boolean, num: number, begin?: Id, end?: Id, lastid?: Id, mtypes?: number[]): Promise<HistoryPage> {
    return this.history('getbroadcastmsg', {}, desc, num, begin, end, lastid, mtypes, readHistoryRow);
  }

  /** p2p history with `ouid`; each entry has `direction` (1 sent by me, 2 by the peer) and the derived `fromUid`. */
  async getP2PMessage(
    ouid: Id,
    desc: boolean,
    num: number,
    begin?: Id,
    end?: Id,
    lastid?: Id,
    mtypes?: number[],
  ): Promise<HistoryPage<P2PHistoryMessage>> {
    const peer = wireId(ouid, 'ouid');
    const me = this.uid;
    return this.history('getp2pmsg', { ouid: peer }, desc, num, begin, end, lastid, mtypes, (row) => readP2PHistoryRow(row, me, peer));
  }

  private async history<M extends HistoryMessage>(
    method: string,
    target: Payload,
    desc: boolean,
    num: number,
    begin: Id | undefined,
    end: Id | undefined,
    lastid: Id | undefined,
    mtypes: number[] | undefined,
    readRow: (row: unknown) => M,
  ): Promise<HistoryPage<M>> {
    // Key order as the browser SDK writes it; absent options (undefined, or null as apps written for
    // the official SDKs pass them) are left out.
    const payload: Payload = { ...target, desc, num };
    if (begin != null) payload.begin = wireId(begin, 'begin');
    if (end != null) payload.end = wireId(end, 'end');
    if (lastid != null) payload.lastid = wireId(lastid, 'lastid');
    if (mtypes != null) payload.mtypes = mtypes;
    return readHistoryPage(await this.session.quest(method, payload), readRow);
  }

  // ---------------------------------------------------------------- unread, sessions (§3.3)

  /** `getunread`: peers and groups with messages since my last logout; `clear` resets that state. */
  async getUnreadMessage(clear?: boolean): Promise<UnreadMessages> {
    const answer = await this.session.quest('getunread', { clear });
    return { p2p: readIds(answer.p2p), group: readIds(answer.group) };
  }

  async cleanUnreadMessage(): Promise<void> {
    await this.session.quest('cleanunread', {});
  }

  /** Unread count and latest unread time per peer; `mtime` (ms) = count from, `mtypes` = which types. */
  async getP2PUnreadMessageNum(uids: Id[], mtime?: Id, mtypes?: number[]): Promise<P2PUnreadCounts> {
    const answer = await this.session.quest('getp2punread', this.unreadQuery('uids', uids, mtime, mtypes));
    return { p2p: readIdMap(answer.p2p, readInt), ltime: readIdMap(answer.ltime, readId) };
  }

  async getGroupUnreadMessageNum(gids: Id[], mtime?: Id, mtypes?: number[]): Promise<GroupUnreadCounts> {
    const answer = await this.session.quest('getgroupunread', this.unreadQuery('gids', gids, mtime, mtypes));
    return { group: readIdMap(answer.group, readInt), ltime: readIdMap(answer.ltime, readId) };
  }

  private unreadQuery(key: string, ids: Id[], mtime: Id | undefined, mtypes: number[] | undefined): Payload {
    const payload: Payload = { [key]: wireIds(ids, key) };
    if (mtime != null) payload.mtime = wireId(mtime, 'mtime');
    if (mtypes != null) payload.mtypes = mtypes;
    return payload;
  }

  /** `getsession`: all p2p peers and groups I have a conversation with. */
  async getSession(): Promise<Sessions> {
    const answer = await this.session.quest('getsession', {});
    return { p2p: readIds(answer.p2p), group: readIds(answer.group) };
  }

  /** Removes the p2p conversation with `to` from my session list. */
  async removeSession(to: Id): Promise<void> {
    await this.session.quest('removesession', { to: wireId(to, 'to') });
  }

  getP2PConversationList(mtime?: Id, mtypes?: number[]): Promise<Conversation<P2PHistoryMessage>[]> {
    return this.conversations('getp2pconversationlist', mtime, mtypes, 'p2p');
  }

  getP2PUnreadConversationList(mtime?: Id, mtypes?: number[]): Promise<Conversation<P2PHistoryMessage>[]> {
    return this.conversations('getp2punreadconversationlist', mtime, mtypes, 'p2p');
  }

  getGroupConversationList(mtime?: Id, mtypes?: number[]): Promise<Conversation[]> {
    return this.conversations('getgroupconversationlist', mtime, mtypes, 'group');
  }

  getGroupUnreadConversationList(mtime?: Id, mtypes?: number[]): Promise<Conversation[]> {
    return this.conversations('getgroupunreadconversationlist', mtime, mtypes, 'group');
  }

  /** Unread group and p2p conversations in one call. */
  async getUnreadConversationList(clear?: boolean, mtime?: Id, mtypes?: number[]): Promise<UnreadConversations> {
    const payload: Payload = {};
    if (clear != null) payload.clear = clear;
    Object.assign(payload, this.timeQuery(mtime, mtypes));
    const a = await this.session.quest('getunreadconversationlist', payload);
    const me = this.uid;
    return {
      group: readConversations(a.groupConversations, a.groupUnreads, a.groupMsgs, (row) => readHistoryRow(row)),
      p2p: readConversations(a.p2pConversations, a.p2pUnreads, a.p2pMsgs, (row, peer) => readP2PHistoryRow(row, me, peer)),
    };
  }

  private timeQuery(mtime: Id | undefined, mtypes: number[] | undefined): Payload {
    const payload: Payload = {};
    if (mtime != null) payload.mtime = wireId(mtime, 'mtime');
    if (mtypes != null) payload.mtypes = mtypes;
    return payload;
  }

  private async conversations(
    method: string,
    mtime: Id | undefined,
    mtypes: number[] | undefined,
    kind: 'p2p',
  ): Promise<Conversation<P2PHistoryMessage>[]>;
  private async conversations(method: string, mtime: Id | undefined, mtypes: number[] | undefined, kind: 'group'): Promise<Conversation[]>;
  private async conversations(
    method: string,
    mtime: Id | undefined,
    mtypes: number[] | undefined,
    kind: 'p2p' | 'group',
  ): Promise<Conversation[]> {
    const a = await this.session.quest(method, this.timeQuery(mtime, mtypes));
    const me = this.uid;
    return kind === 'p2p'
      ? readConversations(a.conversations, a.unreads, a.msgs, (row, peer) => readP2PHistoryRow(row, me, peer))
      : readConversations(a.conversations, a.unreads, a.msgs, (row) => readHistoryRow(row));
  }

  // ---------------------------------------------------------------- single message (§3.4)

  /** `getmsg`: `xid` = peer uid (p2p), gid or rid; `type` 1 p2p, 2 group, 3 room, 4 broadcast. */
  async getMessage(fromUid: Id, mid: Id, xid: Id, type: number): Promise<SingleMessage> {
    const a = await this.session.quest('getmsg', this.messageRef(fromUid, mid, xid, type));
    const body = readBody(a.msg);
    return { id: readId(a.id), mtype: readInt(a.mtype), message: body.message, attrs: readString(a.attrs), mtime: readId(a.mtime) };
  }

  async deleteMessage(fromUid: Id, mid: Id, xid: Id, type: number): Promise<void> {
    await this.session.quest('delmsg', this.messageRef(fromUid, mid, xid, type));
  }

  private messageRef(fromUid: Id, mid: Id, xid: Id, type: number): Payload {
    return { from: wireId(fromUid, 'fromUid'), mid: wireId(mid, 'mid'), xid: wireId(xid, 'xid'), type };
  }

  // ---------------------------------------------------------------- rooms (§4)

  async enterRoom(rid: Id): Promise<void> {
    await this.session.quest('enterroom', { rid: wireId(rid, 'rid') });
  }

  async leaveRoom(rid: Id): Promise<void> {
    await this.session.quest('leaveroom', { rid: wireId(rid, 'rid') });
  }

  async getUserRooms(): Promise<bigint[]> {
    return readIds((await this.session.quest('getuserrooms', {})).rooms);
  }

  async getRoomMembers(rid: Id): Promise<bigint[]> {
    return readIds((await this.session.quest('getroommembers', { rid: wireId(rid, 'rid') })).uids);
  }

  /** Members per room (wire `cn`). */
  async getRoomCount(rids: Id[]): Promise<Map<bigint, number>> {
    return readIdMap((await this.session.quest('getroomcount', { rids: wireIds(rids, 'rids') })).cn, readInt);
  }

  // ---------------------------------------------------------------- groups (§4)

  async getUserGroups(): Promise<bigint[]> {
    return readIds((await this.session.quest('getusergroups', {})).gids);
  }

  async getGroupMembers(gid: Id, online?: boolean): Promise<GroupMembers> {
    const payload: Payload = { gid: wireId(gid, 'gid') };
    if (online != null) payload.online = online;
    const a = await this.session.quest('getgroupmembers', payload);
    const result: GroupMembers = { uids: readIds(a.uids) };
    if (a.onlines !== undefined && a.onlines !== null) result.onlines = readIds(a.onlines);
    return result;
  }

  async getGroupCount(gid: Id, online?: boolean): Promise<GroupCount> {
    const payload: Payload = { gid: wireId(gid, 'gid') };
    if (online != null) payload.online = online;
    const a = await this.session.quest('getgroupcount', payload);
    const result: GroupCount = { count: readInt(a.cn) };
    if (a.online !== undefined && a.online !== null) result.online = readInt(a.online);
    return result;
  }

  async addGroupMembers(gid: Id, uids: Id[]): Promise<void> {
    await this.session.quest('addgroupmembers', { gid: wireId(gid, 'gid'), uids: wireIds(uids, 'uids') });
  }

  async deleteGroupMembers(gid: Id, uids: Id[]): Promise<void> {
    await this.session.quest('delgroupmembers', { gid: wireId(gid, 'gid'), uids: wireIds(uids, 'uids') });
  }

  /** The online users among `uids`. */
  async getOnlineUsers(uids: Id[]): Promise<bigint[]> {
    return readIds((await this.session.quest('getonlineusers', { uids: wireIds(uids, 'uids') })).uids);
  }

  // ---------------------------------------------------------------- friends, blacklist (§4)

  async addFriends(friends: Id[]): Promise<void> {
    await this.session.quest('addfriends', { friends: wireIds(friends, 'friends') });
  }

  async deleteFriends(friends: Id[]): Promise<void> {
    await this.session.quest('delfriends', { friends: wireIds(friends, 'friends') });
  }

  async getFriends(): Promise<bigint[]> {
    return readIds((await this.session.quest('getfriends', {})).uids);
  }

  async addBlacks(blacks: Id[]): Promise<void> {
    await this.session.quest('addblacks', { blacks: wireIds(blacks, 'blacks') });
  }

  async deleteBlacks(blacks: Id[]): Promise<void> {
    await this.session.quest('delblacks', { blacks: wireIds(blacks, 'blacks') });
  }

  /** Users I blocked. */
  async getBlacks(): Promise<bigint[]> {
    return readIds((await this.session.quest('getblacks', {})).uids);
  }

  // ---------------------------------------------------------------- info (§4)

  async setUserInfo(oinfo?: string, pinfo?: string): Promise<void> {
    await this.session.quest('setuserinfo', infoPayload({}, oinfo, pinfo));
  }

  async getUserInfo(): Promise<Info> {
    return readInfo(await this.session.quest('getuserinfo', {}));
  }

  /** Public info per uid. */
  async getUserOpenInfo(uids: Id[]): Promise<Map<bigint, string>> {
    return readIdMap((await this.session.quest('getuseropeninfo', { uids: wireIds(uids, 'uids') })).info, readString);
  }

  async setGroupInfo(gid: Id, oinfo?: string, pinfo?: string): Promise<void> {
    await this.session.quest('setgroupinfo', infoPayload({ gid: wireId(gid, 'gid') }, oinfo, pinfo));
  }

  async getGroupInfo(gid: Id): Promise<Info> {
    return readInfo(await this.session.quest('getgroupinfo', { gid: wireId(gid, 'gid') }));
  }

  /** The group's public info. */
  async getGroupOpenInfo(gid: Id): Promise<string> {
    return readString((await this.session.quest('getgroupopeninfo', { gid: wireId(gid, 'gid') })).oinfo);
  }

  async getGroupsOpenInfo(gids: Id[]): Promise<Map<bigint, string>> {
    return readIdMap((await this.session.quest('getgroupsopeninfo', { gids: wireIds(gids, 'gids') })).info, readString);
  }

  async setRoomInfo(rid: Id, oinfo?: string, pinfo?: string): Promise<void> {
    await this.session.quest('setroominfo', infoPayload({ rid: wireId(rid, 'rid') }, oinfo, pinfo));
  }

  async getRoomInfo(rid: Id): Promise<Info> {
    return readInfo(await this.session.quest('getroominfo', { rid: wireId(rid, 'rid') }));
  }

  /** The room's public info. */
  async getRoomOpenInfo(rid: Id): Promise<string> {
    return readString((await this.session.quest('getroomopeninfo', { rid: wireId(rid, 'rid') })).oinfo);
  }

  async getRoomsOpenInfo(rids: Id[]): Promise<Map<bigint, string>> {
    return readIdMap((await this.session.quest('getroomsopeninfo', { rids: wireIds(rids, 'rids') })).info, readString);
  }

  // ---------------------------------------------------------------- key-value data (§4)

  async dataSet(key: string, value: string): Promise<void> {
    await this.session.quest('dataset', { key, val: value });
  }

  /** The value, or `undefined` when the key is not set. */
  async dataGet(key: string): Promise<string | undefined> {
    const a = await this.session.quest('dataget', { key });
    return a.val === undefined || a.val === null ? undefined : readString(a.val);
  }

  async dataDelete(key: string): Promise<void> {
    await this.session.quest('datadel', { key });
  }

  // ---------------------------------------------------------------- system (§4)

  /** Merges `attrs` into this connection's attributes. */
  async addAttrs(attrs: Record<string, string>): Promise<void> {
    await this.session.quest('addattrs', { attrs });
  }

  /** This session's attributes (passed through as the server sends them). */
  async getAttrs(): Promise<Record<string, string>> {
    const attrs = (await this.session.quest('getattrs', {})).attrs;
    return attrs && typeof attrs === 'object' ? (attrs as Record<string, string>) : {};
  }

  async addDebugLog(message: string, attrs = ''): Promise<void> {
    await this.session.quest('adddebuglog', { msg: message, attrs });
  }

  async addDevice(apptype: string, devicetoken: string): Promise<void> {
    await this.session.quest('adddevice', { apptype, devicetoken });
  }

  async removeDevice(devicetoken: string): Promise<void> {
    await this.session.quest('removedevice', { devicetoken });
  }

  async setTranslationLanguage(targetLanguage: string): Promise<void> {
    await this.session.quest('setlang', { lang: targetLanguage });
  }

  // ---------------------------------------------------------------- pushes (§6)

  private serveQuest(quest: IncomingQuest): Payload | undefined {
    const handler = this.pushHandlers[quest.method];
    if (!handler) {
      this.reportError(new RtmError(FpnnErrorCode.CORE_UNKNOWN_METHOD, `the server sent an unknown method '${quest.method}'`));
      throw new RtmError(FpnnErrorCode.CORE_UNKNOWN_METHOD, `unknown method '${quest.method}'`);
    }
    // Answer first (the peer writes it when this returns), look at the push afterwards, unless the
    // session has ended or been replaced meanwhile (a listener of an earlier push called close(),
    // logout() or login(), or that push was a kickout): after close() no event may come.
    const generation = this.session.currentGeneration;
    queueMicrotask(() => {
      if (generation !== this.session.currentGeneration) return;
      try {
        handler(quest);
      } catch (err) {
        this.reportError(err);
      }
    });
    return quest.oneway ? undefined : {};
  }

  private onMessagePush(quest: IncomingQuest): void {
    const route = messagePushRoutes[quest.method]!;
    const message = route.read(quest.payload);
    if (this.duplicates.isDuplicate(route.key(message))) return;
    if (excludesUid(message.attrs, this.uid)) return;
    this.emit(route.event, message as never);
  }

  private onKickout(): void {
    this.session.kickedOut(() => this.emit('kickout', {}));
  }

  private reportListenerError(err: unknown, event: keyof RTMClientEvents): void {
    if (event === 'error') {
      this.options.logger.error?.('an error listener threw', err);
      return;
    }
    this.reportError(err);
  }

  private reportError(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    this.options.logger.error?.(error.message, error);
    this.emit('error', error);
  }
}

function infoPayload(payload: Payload, oinfo: string | undefined, pinfo: string | undefined): Payload {
  if (oinfo != null) payload.oinfo = oinfo;
  if (pinfo != null) payload.pinfo = pinfo;
  return payload;
}

function readInfo(answer: Payload): Info {
  return { oinfo: readString(answer.oinfo), pinfo: readString(answer.pinfo) };
}
