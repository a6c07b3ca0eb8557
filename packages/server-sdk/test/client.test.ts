import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import {
  FpnnErrorCode,
  MAX_TIMEOUT_MS,
  RTMError,
  RtmError,
  RtmErrorCode,
  RTMServerClient,
  type RTMServerClientOptions,
} from '../src/index.js';
import { TcpConnection } from '../src/tcp.js';
import { FakeRtmServer } from './fake-server.js';

const BIG = 0x0123456789abcdefn; // 81985529216486895 > 2^53
const BIGGER = 2n ** 63n - 2n;

async function setup(
  t: TestContext,
  options: Partial<RTMServerClientOptions> = {},
): Promise<{ server: FakeRtmServer; client: RTMServerClient }> {
  const server = await FakeRtmServer.start();
  const client = new RTMServerClient({
    pid: server.pid,
    secret: server.secret,
    endpoint: server.endpoint,
    questTimeoutMs: 2000,
    ...options,
  });
  t.after(async () => {
    await client.close();
    await server.close();
  });
  await client.connect();
  return { server, client };
}

async function rejectsWithCode(promise: Promise<unknown>, code: number): Promise<RtmError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof RtmError, `expected RtmError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected a rejection with code ${code}`);
}

test('every quest carries pid, a fresh int64 salt, ts in seconds and a valid upper-case sign', async (t) => {
  const { server, client } = await setup(t);
  server.on('gettoken', () => ({ token: 'C975E8521DD213BB0E5DC351C5C05ED2' }));
  assert.equal(await client.getToken(1001), 'C975E8521DD213BB0E5DC351C5C05ED2');
  await client.removeToken(1001n);
  await client.kickout(1001, '10.0.0.1:13321');
  const quests = server.quests;
  assert.deepEqual(
    quests.map((q) => q.method),
    ['gettoken', 'removetoken', 'kickout'],
  );
  const salts = new Set<bigint>();
  for (const q of quests) {
    assert.ok(q.signOk, `${q.method} signature`);
    assert.equal(q.payload.pid, 11000001);
    assert.equal(typeof q.payload.salt, 'bigint');
    assert.ok((q.payload.salt as bigint) > 2n ** 53n);
    salts.add(q.payload.salt as bigint);
    assert.match(q.payload.sign as string, /^[0-9A-F]{32}$/);
    assert.ok(Math.abs((q.payload.ts as number) - Date.now() / 1000) < 5, 'ts is in seconds');
    assert.equal(q.payload.uid, 1001n);
  }
  assert.equal(salts.size, 3, 'salts are unique');
  assert.equal(quests[2]!.payload.ce, '10.0.0.1:13321');
  assert.equal('ce' in quests[1]!.payload, false);
});

test('a wrong secret is answered 200002 and rejects with RtmError carrying the code', async (t) => {
  const { server } = await setup(t);
  const other = new RTMServerClient({ pid: server.pid, secret: 'wrong-secret', endpoint: server.endpoint });
  t.after(() => other.close());
  await other.connect();
  const err = await rejectsWithCode(other.getToken(1001), RtmErrorCode.INVALID_PROJECT_ID_OR_SIGN);
  assert.equal(err.message, 'invalid pid or sign');
});

test('error answers become RtmError with code and message', async (t) => {
  const { server, client } = await setup(t);
  server.on('sendgroupmsg', () => {
    throw new RtmError(RtmErrorCode.BANNED_IN_GROUP, 'banned in group');
  });
  const err = await rejectsWithCode(client.sendGroupMessage(30, 1001, 2001, 'hi'), 200044);
  assert.equal(err.message, 'banned in group');
  server.on('getmsg', () => {
    throw new RtmError(RtmErrorCode.MESSAGE_NOT_FOUND, 'no such message');
  });
  await rejectsWithCode(client.getMessage(1n, 2n, 3n, 1), 200070);
});

test('sendMessage: ids above 2^53 travel exactly both ways; mid generated when absent or 0, kept when given', async (t) => {
  const { server, client } = await setup(t);
  server.on('sendmsg', () => ({ mtime: BIGGER }));
  const sent = await client.sendMessage(30, BIG, BIGGER, 'golden p2p', '{"k":"v"}', { mid: BIG });
  assert.deepEqual(sent, { mid: BIG, mtime: BIGGER });
  const q = server.questsOf('sendmsg')[0]!.payload;
  assert.equal(q.from, BIG);
  assert.equal(q.to, BIGGER);
  assert.equal(q.mid, BIG);
  assert.equal(q.mtype, 30);
  assert.equal(q.msg, 'golden p2p');
  assert.equal(q.attrs, '{"k":"v"}');

  const a = await client.sendMessage(30, 1, 2, 'x', '', { mid: 0 });
  const b = await client.sendMessage(30, 1, 2, 'x');
  assert.notEqual(a.mid, 0n);
  assert.notEqual(a.mid, b.mid);
  assert.ok(a.mid > 2n ** 53n);
  assert.equal(server.questsOf('sendmsg')[1]!.payload.mid, a.mid);
});

test('binary bodies are sent as bin and come back as Uint8Array', async (t) => {
  const { server, client } = await setup(t);
  server.on('sendroommsg', () => ({ mtime: 1 }));
  server.on('getmsg', () => ({ id: 7, mtype: 51, msg: new Uint8Array([1, 2, 3]), attrs: '', mtime: 5 }));
  await client.sendRoomMessage(51, 1, 3001, new Uint8Array([1, 2, 3]));
  assert.ok(server.questsOf('sendroommsg')[0]!.payload.msg instanceof Uint8Array);
  const m = await client.getRoomMessageInfo(9n, 1n, 3001n);
  assert.deepEqual(m, { id: 7n, mtype: 51, message: new Uint8Array([1, 2, 3]), attrs: '', mtime: 5n });
  assert.equal(server.questsOf('getmsg')[0]!.payload.type, 3);
});

test('the other send methods use their wire keys', async (t) => {
  const { server, client } = await setup(t);
  for (const m of ['sendmsgs', 'sendgroupmsg', 'broadcastmsg']) server.on(m, () => ({ mtime: 1 }));
  await client.sendMessages(30, 1, [2, BIG], 'm');
  await client.sendGroupMessage(30, 1, 2001, 'g');
  await client.broadcastMessage(30, 1, 'b', 'a');
  assert.deepEqual(server.questsOf('sendmsgs')[0]!.payload.tos, [2n, BIG]);
  assert.equal(server.questsOf('sendgroupmsg')[0]!.payload.gid, 2001n);
  const b = server.questsOf('broadcastmsg')[0]!.payload;
  assert.equal(b.attrs, 'a');
  assert.equal('to' in b || 'gid' in b || 'rid' in b, false);
});

test('sendBroadcastMessage sends broadcastmsg; broadcastMessage is the same call', async (t) => {
  const { server, client } = await setup(t);
  server.on('broadcastmsg', () => ({ mtime: 7 }));
  assert.deepEqual(await client.sendBroadcastMessage(30, 1, 'b', 'a', { mid: 5 }), { mid: 5n, mtime: 7n });
  await client.broadcastMessage(30, 1, 'b', 'a', { mid: 5 });
  const [viaSend, viaBroadcast] = server.questsOf('broadcastmsg').map((q) => {
    const { pid: _p, sign: _s, salt: _l, ts: _t, ...rest } = q.payload;
    return rest;
  });
  assert.deepEqual(viaSend, { mtype: 30, from: 1n, mid: 5n, msg: 'b', attrs: 'a' });
  assert.deepEqual(viaBroadcast, viaSend);
});

test('RTMError is RtmError under the name of the RTM SDK docs', async () => {
  assert.equal(RTMError, RtmError);
  assert.ok(new RTMError(1, 'x') instanceof RtmError);
  const client = new RTMServerClient({ pid: 1, secret: 's', endpoint: '127.0.0.1:1' });
  await assert.rejects(client.getToken(1), (e: unknown) => e instanceof RTMError && e.code === FpnnErrorCode.CORE_INVALID_CONNECTION);
});

test('a success answer without mtime is an error (20009), as in the Python SDK', async (t) => {
  const { client } = await setup(t);
  await rejectsWithCode(client.sendMessage(30, 1, 2, 'x'), FpnnErrorCode.CORE_INVALID_PACKAGE);
});

test('p2p history: direction 1 = sent by uid, 2 = sent by ouid; rows of other lengths are skipped', async (t) => {
  const { server, client } = await setup(t);
  server.on('getp2pmsg', () => ({
    num: 3,
    lastid: 1003,
    begin: 1795315914302n,
    end: 1795316034302n,
    msgs: [
      [1001, 1, 30, 29414456923664384n, false, 'from uid', '{"k":"v"}', 1795315974345n],
      [1002, 2, 30, BIG, false, 'from ouid', '', 1795315974362n],
      [1003, 1, 30, 5],
    ],
  }));
  const page = await client.getP2PMessage(1001, 1002, false, 10, { begin: 1795315914302n, end: 1795316034302, lastid: 1000, mtypes: [30] });
  assert.equal(page.num, 2);
  assert.equal(page.lastid, 1003n);
  assert.equal(page.begin, 1795315914302n);
  assert.equal(page.end, 1795316034302n);
  assert.deepEqual(page.messages, [
    {
      id: 1001n,
      fromUid: 1001n,
      toId: 1002n,
      mtype: 30,
      mid: 29414456923664384n,
      deleted: false,
      message: 'from uid',
      attrs: '{"k":"v"}',
      mtime: 1795315974345n,
    },
    { id: 1002n, fromUid: 1002n, toId: 1001n, mtype: 30, mid: BIG, deleted: false, message: 'from ouid', attrs: '', mtime: 1795315974362n },
  ]);
  const q = server.questsOf('getp2pmsg')[0]!.payload;
  assert.equal(q.uid, 1001n);
  assert.equal(q.ouid, 1002n);
  assert.equal(q.desc, false);
  assert.equal(q.num, 10);
  assert.equal(q.begin, 1795315914302n);
  assert.equal(q.end, 1795316034302n, 'a number end is sent as int64, never as a float');
  assert.equal(q.lastid, 1000n);
  assert.deepEqual(q.mtypes, [30]);
});

test('group / room / broadcast history: from is the sender, toId the gid / rid / 0; optional keys sent only when given', async (t) => {
  const { server, client } = await setup(t);
  const row = [BIG + 1n, BIG, 51, 77, true, 'hello', 'a', 9];
  for (const m of ['getgroupmsg', 'getroommsg', 'getbroadcastmsg'])
    server.on(m, () => ({ num: 1, lastid: BIG + 1n, begin: 0, end: 9, msgs: [row] }));
  const g = await client.getGroupMessage(1, 2001, true, 10);
  assert.deepEqual(g.messages[0], {
    id: BIG + 1n,
    fromUid: BIG,
    toId: 2001n,
    mtype: 51,
    mid: 77n,
    deleted: true,
    message: 'hello',
    attrs: 'a',
    mtime: 9n,
  });
  assert.equal(g.lastid, BIG + 1n);
  const r = await client.getRoomMessage(1, 3001, true, 10);
  assert.equal(r.messages[0]!.toId, 3001n);
  const b = await client.getBroadcastMessage(1, false, 5);
  assert.equal(b.messages[0]!.toId, 0n);
  const q = server.questsOf('getgroupmsg')[0]!.payload;
  for (const key of ['begin', 'end', 'lastid', 'mtypes']) assert.equal(key in q, false, key);
});

test('history paging loop: the cursor of one page is the next request', async (t) => {
  const { server, client } = await setup(t);
  const ids = [5n, 4n, 3n, 2n, 1n];
  server.on('getgroupmsg', (p) => {
    const lastid = (p.lastid as bigint | undefined) ?? 0n;
    const rows = ids.filter((id) => lastid === 0n || id < lastid).slice(0, p.num as number);
    const last = rows[rows.length - 1] ?? lastid;
    return { num: rows.length, lastid: last, begin: 0, end: 100, msgs: rows.map((id) => [id, 7, 30, id, false, `m${id}`, '', id * 10n]) };
  });
  const seen: bigint[] = [];
  let cursor: { lastid?: bigint; begin?: bigint; end?: bigint } = {};
  for (;;) {
    const page = await client.getGroupMessage(7, 2001, true, 2, cursor);
    if (page.num === 0) break;
    seen.push(...page.messages.map((m) => m.id));
    cursor = { lastid: page.lastid, begin: page.begin, end: page.end };
  }
  assert.deepEqual(seen, ids);
});

test('getMessage family and deleteMessage family send mid, from, xid, type (1 p2p, 2 group, 3 room, 4 broadcast)', async (t) => {
  const { server, client } = await setup(t);
  server.on('getmsg', () => ({ id: 1002, mtype: 30, msg: 'golden p2p big mid', attrs: '{"k":"v"}', mtime: 1795315974362n }));
  const m = await client.getMessage(BIG, 1001, 1002, 1);
  assert.deepEqual(m, { id: 1002n, mtype: 30, message: 'golden p2p big mid', attrs: '{"k":"v"}', mtime: 1795315974362n });
  await client.getMessageInfo(1, 2, 3, 2);
  await client.getP2PMessageInfo(1, 2, 3);
  await client.getGroupMessageInfo(1, 2, 3);
  await client.getRoomMessageInfo(1, 2, 3);
  await client.getBroadcastMessageInfo(1, 2);
  assert.deepEqual(
    server.questsOf('getmsg').map((q) => [q.payload.xid, q.payload.type]),
    [
      [1002n, 1],
      [3n, 2],
      [3n, 1],
      [3n, 2],
      [3n, 3],
      [0n, 4],
    ],
  );
  assert.deepEqual(
    { ...server.questsOf('getmsg')[0]!.payload, pid: 0, sign: '', salt: 0n, ts: 0 },
    { pid: 0, sign: '', salt: 0n, ts: 0, mid: BIG, from: 1001n, xid: 1002n, type: 1 },
  );

  await client.deleteMessage(BIG, 1001, 1002, 1);
  await client.deleteP2PMessage(1, 2, 3);
  await client.deleteGroupMessage(1, 2, 3);
  await client.deleteRoomMessage(1, 2, 3);
  await client.deleteBroadcastMessage(1, 2);
  assert.deepEqual(
    server.questsOf('delmsg').map((q) => [q.payload.mid, q.payload.from, q.payload.xid, q.payload.type]),
    [
      [BIG, 1001n, 1002n, 1],
      [1n, 2n, 3n, 1],
      [1n, 2n, 3n, 2],
      [1n, 2n, 3n, 3],
      [1n, 2n, 0n, 4],
    ],
  );
  await rejectsWithCode(client.deleteMessage(1, 2, 3, 5 as never), RtmErrorCode.INVALID_PARAMETER);
});

test('getmsg answered without id means "not found" (200070)', async (t) => {
  const { server, client } = await setup(t);
  server.on('getmsg', () => ({}));
  await rejectsWithCode(client.getMessage(1, 2, 3, 1), RtmErrorCode.MESSAGE_NOT_FOUND);
});

test('getMessageNum', async (t) => {
  const { server, client } = await setup(t);
  server.on('getmsgnum', () => ({ sender: 2, num: 5 }));
  assert.deepEqual(await client.getMessageNum(2, 2001, { mtypes: [30], begin: 1 }), { sender: 2, num: 5 });
  const q = server.questsOf('getmsgnum')[0]!.payload;
  assert.equal(q.type, 2);
  assert.equal(q.xid, 2001n);
  assert.deepEqual(q.mtypes, [30]);
  assert.equal(q.begin, 1n);
  assert.equal('end' in q, false);
});

test('supporting methods: wire keys and typed answers', async (t) => {
  const { server, client } = await setup(t);
  server
    .on('getonlineusers', () => ({ uids: [1, BIG] }))
    .on('getgroupmembers', () => ({ uids: [BIG] }))
    .on('getgroupcount', () => ({ cn: 3 }))
    .on('isgroupmember', () => ({ ok: true }))
    .on('getusergroups', () => ({ gids: [2001] }))
    .on('getroommembers', () => ({ uids: [] }))
    .on('getroomcount', () => ({ cn: { '3001': 2, [String(BIG)]: 7 } }))
    .on('isbanofgroup', () => ({ ok: false }))
    .on('isbanofroom', () => ({ ok: true }))
    .on('isprojectblack', () => ({ ok: false }))
    .on('getfriends', () => ({ uids: [2] }))
    .on('isfriend', () => ({ ok: true }))
    .on('isfriends', () => ({ fuids: [2] }))
    .on('getblacks', () => ({ uids: [3] }))
    .on('isblack', () => ({ ok: false }))
    .on('isblacks', () => ({ buids: [4] }))
    .on('getuserinfo', () => ({ oinfo: 'o', pinfo: 'p' }))
    .on('getuseropeninfo', () => ({ info: { '1': 'one', [String(BIG)]: 'big' } }))
    .on('getgroupinfo', () => ({ oinfo: 'go', pinfo: '' }))
    .on('getroominfo', () => ({ oinfo: '', pinfo: 'rp' }))
    .on('dataget', (p) => (p.key === 'k' ? { val: 'v' } : {}));

  assert.deepEqual(await client.getOnlineUsers([1, BIG]), [1n, BIG]);
  await client.addGroupMembers(2001, [1, 2]);
  await client.deleteGroupMembers(2001, [2]);
  await client.deleteGroup(2001);
  assert.deepEqual(await client.getGroupMembers(2001), [BIG]);
  assert.equal(await client.getGroupCount(2001), 3);
  assert.equal(await client.isGroupMember(2001, 1), true);
  assert.deepEqual(await client.getUserGroups(1), [2001n]);
  await client.addRoomMember(3001, 1);
  await client.deleteRoomMember(3001, 1);
  assert.deepEqual(await client.getRoomMembers(3001), []);
  assert.deepEqual(
    await client.getRoomCount([3001, BIG]),
    new Map([
      [3001n, 2],
      [BIG, 7],
    ]),
  );
  await client.addGroupBan(2001, 1, 60);
  await client.addGroupBan(null, 1, 60);
  await client.removeGroupBan(undefined, 1);
  assert.equal(await client.isBanOfGroup(2001, 1), false);
  await client.addRoomBan(3001, 1, 60);
  await client.removeRoomBan(3001, 1);
  assert.equal(await client.isBanOfRoom(3001, 1), true);
  await client.addProjectBlack(1, 120);
  await client.removeProjectBlack(1);
  assert.equal(await client.isProjectBlack(1), false);
  await client.addFriends(1, [2]);
  await client.deleteFriends(1, [2]);
  assert.deepEqual(await client.getFriends(1), [2n]);
  assert.equal(await client.isFriend(1, 2), true);
  assert.deepEqual(await client.isFriends(1, [2, 3]), [2n]);
  await client.addBlacks(1, [3]);
  await client.deleteBlacks(1, [3]);
  assert.deepEqual(await client.getBlacks(1), [3n]);
  assert.equal(await client.isBlack(1, 3), false);
  assert.deepEqual(await client.isBlacks(1, [4]), [4n]);
  await client.setUserInfo(1, 'o');
  assert.deepEqual(await client.getUserInfo(1), { oinfo: 'o', pinfo: 'p' });
  assert.deepEqual(
    await client.getUserOpenInfo([1, BIG]),
    new Map([
      [1n, 'one'],
      [BIG, 'big'],
    ]),
  );
  await client.setGroupInfo(2001, undefined, 'gp');
  assert.deepEqual(await client.getGroupInfo(2001), { oinfo: 'go', pinfo: '' });
  await client.setRoomInfo(3001, 'ro', 'rp');
  assert.deepEqual(await client.getRoomInfo(3001), { oinfo: '', pinfo: 'rp' });
  await client.dataSet(1, 'k', 'v');
  assert.equal(await client.dataGet(1, 'k'), 'v');
  assert.equal(await client.dataGet(1, 'missing'), undefined);
  await client.dataDelete(1, 'k');

  const keys = (method: string, i = 0): Record<string, unknown> => {
    const { pid: _p, sign: _s, salt: _l, ts: _t, ...rest } = server.questsOf(method)[i]!.payload;
    return rest;
  };
  assert.deepEqual(keys('addgroupmembers'), { gid: 2001n, uids: [1n, 2n] });
  assert.deepEqual(keys('delgroupmembers'), { gid: 2001n, uids: [2n] });
  assert.deepEqual(keys('delgroup'), { gid: 2001n });
  assert.deepEqual(keys('addroommember'), { rid: 3001n, uid: 1n });
  assert.deepEqual(keys('delroommember'), { rid: 3001n, uid: 1n });
  assert.deepEqual(keys('getroomcount'), { rids: [3001n, BIG] });
  assert.deepEqual(keys('addgroupban'), { gid: 2001n, uid: 1n, btime: 60 });
  assert.deepEqual(keys('addgroupban', 1), { uid: 1n, btime: 60 }, 'no gid = all groups');
  assert.deepEqual(keys('removegroupban'), { uid: 1n });
  assert.deepEqual(keys('addroomban'), { rid: 3001n, uid: 1n, btime: 60 });
  assert.deepEqual(keys('addprojectblack'), { uid: 1n, btime: 120 });
  assert.deepEqual(keys('addfriends'), { uid: 1n, friends: [2n] });
  assert.deepEqual(keys('delfriends'), { uid: 1n, friends: [2n] });
  assert.deepEqual(keys('isfriend'), { uid: 1n, fuid: 2n });
  assert.deepEqual(keys('isfriends'), { uid: 1n, fuids: [2n, 3n] });
  assert.deepEqual(keys('addblacks'), { uid: 1n, blacks: [3n] });
  assert.deepEqual(keys('delblacks'), { uid: 1n, blacks: [3n] });
  assert.deepEqual(keys('isblack'), { uid: 1n, buid: 3n });
  assert.deepEqual(keys('isblacks'), { uid: 1n, buids: [4n] });
  assert.deepEqual(keys('setuserinfo'), { uid: 1n, oinfo: 'o' }, 'absent pinfo is not sent');
  assert.deepEqual(keys('setgroupinfo'), { gid: 2001n, pinfo: 'gp' });
  assert.deepEqual(keys('setroominfo'), { rid: 3001n, oinfo: 'ro', pinfo: 'rp' });
  assert.deepEqual(keys('getuseropeninfo'), { uids: [1n, BIG] });
  assert.deepEqual(keys('dataset'), { uid: 1n, key: 'k', val: 'v' });
  assert.deepEqual(keys('datadel'), { uid: 1n, key: 'k' });
  assert.ok(server.quests.every((q) => q.signOk));
});

test('parameters that would lose precision are rejected before anything is sent', async (t) => {
  const { server, client } = await setup(t);
  await rejectsWithCode(client.getToken(2 ** 53 + 2), RtmErrorCode.INVALID_PARAMETER);
  await rejectsWithCode(client.getToken(1.5), RtmErrorCode.INVALID_PARAMETER);
  await rejectsWithCode(client.getOnlineUsers([1, Number.MAX_VALUE]), RtmErrorCode.INVALID_PARAMETER);
  await rejectsWithCode(client.sendMessage(30, 1, 2, 'x', '', { mid: 2n ** 64n }), RtmErrorCode.INVALID_PARAMETER);
  // Ids are int64 (the server answers 10010 above it).
  await rejectsWithCode(client.sendMessage(30, 1, 2n ** 63n, 'x'), RtmErrorCode.INVALID_PARAMETER);
  assert.equal(server.quests.length, 0);
});

test('listen lists that are not arrays of ids / names and a history desc that is not a boolean are rejected before anything is sent', async (t) => {
  const { server, client } = await setup(t);
  const untyped = client as unknown as {
    addListen(lists: unknown): Promise<void>;
    setListen(lists: unknown): Promise<void>;
    getGroupMessage(uid: number, gid: number, desc: unknown, num: number): Promise<unknown>;
  };
  await rejectsWithCode(untyped.addListen({ gids: 2001 }), RtmErrorCode.INVALID_PARAMETER);
  await rejectsWithCode(untyped.addListen({ events: [1] }), RtmErrorCode.INVALID_PARAMETER); // not an event named "1"
  await rejectsWithCode(untyped.setListen({ events: 'login' }), RtmErrorCode.INVALID_PARAMETER);
  await rejectsWithCode(untyped.getGroupMessage(1, 2001, 1, 10), RtmErrorCode.INVALID_PARAMETER); // not oldest first
  assert.deepEqual(server.quests, []);
  assert.deepEqual(client.listenState, { gids: [], rids: [], uids: [], events: [] });
});

test('a quest without answer rejects with 20003 after its timeout', async (t) => {
  const { server, client } = await setup(t, { questTimeoutMs: 150 });
  server.on('gettoken', () => new Promise(() => {}));
  const started = Date.now();
  await rejectsWithCode(client.getToken(1), FpnnErrorCode.CORE_TIMEOUT);
  const took = Date.now() - started;
  assert.ok(took >= 140 && took < 1500, `took ${took} ms`);
  await rejectsWithCode(client.getToken(1, { timeoutMs: 100 }), FpnnErrorCode.CORE_TIMEOUT);
});

test('calls before connect() and after close() fail with 20012; pending calls fail when the client closes', async (t) => {
  const server = await FakeRtmServer.start();
  t.after(() => server.close());
  const client = new RTMServerClient({ pid: server.pid, secret: server.secret, endpoint: server.endpoint });
  await rejectsWithCode(client.getToken(1), FpnnErrorCode.CORE_INVALID_CONNECTION);
  await client.connect();
  server.on('gettoken', () => new Promise(() => {}));
  const pending = client.getToken(1);
  const failed = rejectsWithCode(pending, FpnnErrorCode.CORE_CONNECTION_CLOSED);
  await server.waitForQuests('gettoken');
  await client.close();
  await failed;
  await rejectsWithCode(client.getToken(1), FpnnErrorCode.CORE_INVALID_CONNECTION);
  assert.equal(client.state, 'closed');
  // connect() again after close() works
  server.on('gettoken', () => ({ token: 't' }));
  await client.connect();
  assert.equal(await client.getToken(1), 't');
  await client.close();
});

test('connect() to a closed port rejects with 20012', async () => {
  const server = await FakeRtmServer.start();
  const endpoint = server.endpoint;
  await server.close();
  const client = new RTMServerClient({ pid: 1, secret: 's', endpoint });
  await rejectsWithCode(client.connect(), FpnnErrorCode.CORE_INVALID_CONNECTION);
  assert.equal(client.state, 'idle');
  await client.close();
});

test('bad options fail at construction and name the option', () => {
  const base = { pid: 1, secret: 's', endpoint: '127.0.0.1:13315' };
  assert.throws(() => new RTMServerClient({ ...base, endpoint: 'localhost' }), /'endpoint'/);
  assert.throws(() => new RTMServerClient({ ...base, pid: 0 }), /'pid'/);
  assert.throws(() => new RTMServerClient({ ...base, secret: '' }), /'secret'/);
  assert.throws(() => new RTMServerClient({ ...base, questTimeoutMs: -1 }), /'questTimeoutMs'/);
  assert.throws(() => new RTMServerClient({ ...base, reconnect: { steps: 0 } }), /'reconnect.steps'/);
  assert.throws(
    () => new RTMServerClient({ ...base, encryption: { serverPublicKey: 'pem', bits: 192 as 128 } }),
    /'encryption.bits' must be 128 or 256/,
  );
  assert.throws(
    () => new RTMServerClient({ ...base, encryption: { serverPublicKey: 42 as unknown as string } }),
    /'encryption.serverPublicKey'/,
  );
  const ok = new RTMServerClient({ ...base, endpoint: '[::1]:13315' });
  assert.equal(ok.options.host, '::1');
  assert.equal(ok.options.port, 13315);
  assert.equal(ok.options.questTimeoutMs, 20_000);
  assert.equal(ok.options.autoReconnect, true);
  assert.ok(Object.isFrozen(ok.options));
});

test('timeouts and delays above 2^31-1 ms (the longest a timer waits) fail at construction and name the option', () => {
  // Node fires a longer setTimeout after 1 ms: pingTimeoutMs 2^31 would drop the connection after every server ping.
  const base = { pid: 1, secret: 's', endpoint: '127.0.0.1:13315' };
  const tooLong: [string, Partial<RTMServerClientOptions>][] = [
    ['questTimeoutMs', { questTimeoutMs: 2 ** 31 }],
    ['connectTimeoutMs', { connectTimeoutMs: 2 ** 31 }],
    ['pingTimeoutMs', { pingTimeoutMs: 2 ** 31 }],
    ['keepAliveMs', { keepAliveMs: 2 ** 31 }],
    ['reconnect.minDelayMs', { reconnect: { minDelayMs: 2 ** 31 } }],
    ['reconnect.maxDelayMs', { reconnect: { maxDelayMs: 2 ** 31 } }],
    ['reconnect.stableAfterMs', { reconnect: { stableAfterMs: 2 ** 31 } }],
  ];
  for (const [name, options] of tooLong) {
    assert.throws(
      () => new RTMServerClient({ ...base, ...options }),
      (e: unknown) => e instanceof TypeError && e.message.includes(`'${name}' must be at most 2147483647 ms`),
      name,
    );
  }
  const max = MAX_TIMEOUT_MS;
  const ok = new RTMServerClient({
    ...base,
    questTimeoutMs: max,
    connectTimeoutMs: max,
    pingTimeoutMs: max,
    keepAliveMs: max,
    reconnect: { minDelayMs: max, maxDelayMs: max, stableAfterMs: max },
  });
  assert.equal(ok.options.pingTimeoutMs, 2 ** 31 - 1);
  assert.equal(ok.options.keepAliveMs, 2 ** 31 - 1);
});

test('a call with timeoutMs above 2^31-1 ms (or not a positive integer) fails with 200034 before anything is sent', async (t) => {
  const { server, client } = await setup(t);
  for (const timeoutMs of [2 ** 31, 0, 1.5]) {
    const err = await rejectsWithCode(client.getToken(1, { timeoutMs }), RtmErrorCode.INVALID_PARAMETER);
    assert.match(err.message, /timeoutMs must be a positive integer of at most 2147483647 ms/);
  }
  assert.equal(server.quests.length, 0);
  server.on('gettoken', () => ({ token: 't' }));
  assert.equal(await client.getToken(1, { timeoutMs: MAX_TIMEOUT_MS }), 't');
});

test('an unusable encryption.serverPublicKey fails at construction with a TypeError naming it', () => {
  const base = { pid: 1, secret: 's', endpoint: '127.0.0.1:13315' };
  const pem = (namedCurve: string): string =>
    generateKeyPairSync('ec', { namedCurve }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const k1 = pem('secp256k1');
  for (const serverPublicKey of [
    'not a key',
    'abcd', // hex, but no key length
    '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----',
    new Uint8Array(64).fill(1), // raw X‖Y that is not a point of the curve
    new Uint8Array(10),
    pem('prime256v1'), // a key of another curve than the configured secp256k1
  ]) {
    assert.throws(
      () => new RTMServerClient({ ...base, encryption: { serverPublicKey } }),
      (e: unknown) => e instanceof TypeError && /'encryption.serverPublicKey'/.test(e.message),
      String(serverPublicKey),
    );
  }
  assert.equal(new RTMServerClient({ ...base, encryption: { serverPublicKey: k1 } }).options.encryption?.serverPublicKey, k1);
  new RTMServerClient({ ...base, encryption: { serverPublicKey: pem('prime256v1'), curve: 'secp256r1', bits: 256 } });
});

test('a key exchange that fails at connect time rejects the attempt with 20012 instead of crashing the process', async (t) => {
  const server = await FakeRtmServer.start();
  t.after(() => server.close());
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown): number => uncaught.push(err);
  process.on('uncaughtException', onUncaught);
  t.after(() => process.off('uncaughtException', onUncaught));
  // The options check rejects such a key; this is the connection's own guard behind it.
  const opening = TcpConnection.open({
    host: '127.0.0.1',
    port: server.port,
    connectTimeoutMs: 1000,
    questTimeoutMs: 1000,
    encryption: { serverPublicKey: 'not a key' },
    onQuest: () => ({}),
    onClose: () => {},
    onInternalError: () => {},
  });
  await rejectsWithCode(opening, FpnnErrorCode.CORE_INVALID_CONNECTION);
  await assert.rejects(opening, /encryption with 127\.0\.0\.1:\d+ cannot start: server public key/);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(uncaught, []);
});
