import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeMsgpack, RtmError, type Payload } from '@rtm/fpnn';
import { RTMClient } from '../src/index.js';
import { FakeRtmServer, withTimeout } from './helpers/fake-server.js';
import { sameFrameIgnoringSeq, webClientAccepted, webClientFrame, withSeq } from './helpers/vectors.js';

const BIG = 0x0123456789abcdefn; // 81985529216486895 > 2^53
const BIG2 = 2n ** 62n + 7n;

interface Case {
  name: string;
  call: (c: RTMClient) => Promise<unknown>;
  method: string;
  /** Expected payload (key order included). */
  payload: Payload;
  answer?: Payload;
  result?: unknown;
}

const row = (id: bigint, from: bigint | number, mid: bigint, msg: unknown = 'hi', deleted = false) => [
  id,
  from,
  30,
  mid,
  deleted,
  msg,
  '{"a":1}',
  1700000000000n,
];

const cases: Case[] = [
  {
    name: 'sendMessage generates a mid when none is given',
    call: (c) => c.sendMessage(1002n, 30, 'hello', '{"k":"v"}'),
    method: 'sendmsg',
    payload: { to: 1002n, mid: 'generated', mtype: 30, msg: 'hello', attrs: '{"k":"v"}' } as Payload,
    answer: { mtime: 1700000000001n },
  },
  {
    name: 'sendMessage with an explicit mid > 2^53 and a number target',
    call: (c) => c.sendMessage(1002, 31, new Uint8Array([1, 2, 255]), '', BIG),
    method: 'sendmsg',
    payload: { to: 1002n, mid: BIG, mtype: 31, msg: new Uint8Array([1, 2, 255]), attrs: '' },
    answer: { mtime: BIG2 },
    result: { mid: BIG, mtime: BIG2 },
  },
  {
    name: 'sendGroupMessage',
    call: (c) => c.sendGroupMessage(BIG2, 30, 'g', 'a', 5n),
    method: 'sendgroupmsg',
    payload: { gid: BIG2, mid: 5n, mtype: 30, msg: 'g', attrs: 'a' },
    answer: { mtime: 9 },
    result: { mid: 5n, mtime: 9n },
  },
  {
    name: 'sendRoomMessage',
    call: (c) => c.sendRoomMessage(3001n, 40, 'r', '', 6n),
    method: 'sendroommsg',
    payload: { rid: 3001n, mid: 6n, mtype: 40, msg: 'r', attrs: '' },
    answer: { mtime: 10n },
    result: { mid: 6n, mtime: 10n },
  },
  {
    name: 'getGroupMessage sends only the given options',
    call: (c) => c.getGroupMessage(2001n, false, 10, undefined, undefined, 1000n),
    method: 'getgroupmsg',
    payload: { gid: 2001n, desc: false, num: 10, lastid: 1000n },
    answer: { num: 1, lastid: 7n, begin: 0, end: 0, msgs: [row(7n, BIG2, BIG)] },
    result: {
      num: 1,
      lastid: 7n,
      begin: 0n,
      end: 0n,
      messages: [{ id: 7n, fromUid: BIG2, mtype: 30, mid: BIG, deleted: false, message: 'hi', attrs: '{"a":1}', mtime: 1700000000000n }],
    },
  },
  {
    name: 'getGroupMessage takes null options as absent (JavaScript written for the official SDK)',
    call: (c) => c.getGroupMessage(2001n, true, 10, null as never, null as never, null as never, null as never),
    method: 'getgroupmsg',
    payload: { gid: 2001n, desc: true, num: 10 },
    answer: { num: 0, lastid: 0, begin: 0, end: 0, msgs: [] },
    result: { num: 0, lastid: 0n, begin: 0n, end: 0n, messages: [] },
  },
  {
    name: 'getRoomMessage with every option',
    call: (c) => c.getRoomMessage(3001n, true, 20, 1n, 2n, 3n, [30, 31]),
    method: 'getroommsg',
    payload: { rid: 3001n, desc: true, num: 20, begin: 1n, end: 2n, lastid: 3n, mtypes: [30, 31] },
    answer: { num: 0, lastid: 0, begin: 1, end: 2, msgs: [] },
    result: { num: 0, lastid: 0n, begin: 1n, end: 2n, messages: [] },
  },
  {
    name: 'getBroadcastMessage',
    call: (c) => c.getBroadcastMessage(true, 5),
    method: 'getbroadcastmsg',
    payload: { desc: true, num: 5 },
    answer: { num: 1, lastid: 1, begin: 0, end: 0, msgs: [row(1n, 9, 2n, new Uint8Array([0xff]), true)] },
    result: {
      num: 1,
      lastid: 1n,
      begin: 0n,
      end: 0n,
      messages: [
        {
          id: 1n,
          fromUid: 9n,
          mtype: 30,
          mid: 2n,
          deleted: true,
          message: new Uint8Array([0xff]),
          attrs: '{"a":1}',
          mtime: 1700000000000n,
        },
      ],
    },
  },
  {
    name: 'getP2PMessage maps direction to fromUid',
    call: (c) => c.getP2PMessage(1002n, true, 10, 100, 200, 0n, [30]),
    method: 'getp2pmsg',
    payload: { ouid: 1002n, desc: true, num: 10, begin: 100n, end: 200n, lastid: 0n, mtypes: [30] },
    answer: { num: 2, lastid: 3, begin: 100, end: 200, msgs: [row(4n, 1, 11n), row(3n, 2, 10n)] },
    result: {
      num: 2,
      lastid: 3n,
      begin: 100n,
      end: 200n,
      messages: [
        {
          id: 4n,
          fromUid: 1001n,
          direction: 1,
          mtype: 30,
          mid: 11n,
          deleted: false,
          message: 'hi',
          attrs: '{"a":1}',
          mtime: 1700000000000n,
        },
        {
          id: 3n,
          fromUid: 1002n,
          direction: 2,
          mtype: 30,
          mid: 10n,
          deleted: false,
          message: 'hi',
          attrs: '{"a":1}',
          mtime: 1700000000000n,
        },
      ],
    },
  },
  {
    name: 'getUnreadMessage',
    call: (c) => c.getUnreadMessage(true),
    method: 'getunread',
    payload: { clear: true },
    answer: { p2p: [1002, BIG], group: [2001n] },
    result: { p2p: [1002n, BIG], group: [2001n] },
  },
  {
    name: 'getUnreadMessage without clear',
    call: (c) => c.getUnreadMessage(),
    method: 'getunread',
    payload: {},
    answer: {},
    result: { p2p: [], group: [] },
  },
  { name: 'cleanUnreadMessage', call: (c) => c.cleanUnreadMessage(), method: 'cleanunread', payload: {}, answer: {}, result: undefined },
  {
    name: 'getP2PUnreadMessageNum',
    call: (c) => c.getP2PUnreadMessageNum([1002n, BIG], 1700000000000, [30]),
    method: 'getp2punread',
    payload: { uids: [1002n, BIG], mtime: 1700000000000n, mtypes: [30] },
    answer: { p2p: { '1002': 2, [BIG.toString()]: 1 }, ltime: { '1002': 1700000000000n } },
    result: {
      p2p: new Map([
        [1002n, 2],
        [BIG, 1],
      ]),
      ltime: new Map([[1002n, 1700000000000n]]),
    },
  },
  {
    name: 'getGroupUnreadMessageNum',
    call: (c) => c.getGroupUnreadMessageNum([2001n]),
    method: 'getgroupunread',
    payload: { gids: [2001n] },
    answer: { group: { '2001': 3 }, ltime: { '2001': 5 } },
    result: { group: new Map([[2001n, 3]]), ltime: new Map([[2001n, 5n]]) },
  },
  {
    name: 'getSession',
    call: (c) => c.getSession(),
    method: 'getsession',
    payload: {},
    answer: { p2p: [1002], group: [] },
    result: { p2p: [1002n], group: [] },
  },
  {
    name: 'removeSession',
    call: (c) => c.removeSession(1002),
    method: 'removesession',
    payload: { to: 1002n },
    answer: {},
    result: undefined,
  },
  {
    name: 'getP2PConversationList',
    call: (c) => c.getP2PConversationList(5n, [30]),
    method: 'getp2pconversationlist',
    payload: { mtime: 5n, mtypes: [30] },
    answer: { conversations: [1002], unreads: [2], msgs: [row(8n, 2, 12n)] },
    result: [
      {
        id: 1002n,
        unread: 2,
        lastMessage: {
          id: 8n,
          fromUid: 1002n,
          direction: 2,
          mtype: 30,
          mid: 12n,
          deleted: false,
          message: 'hi',
          attrs: '{"a":1}',
          mtime: 1700000000000n,
        },
      },
    ],
  },
  {
    name: 'getP2PUnreadConversationList',
    call: (c) => c.getP2PUnreadConversationList(),
    method: 'getp2punreadconversationlist',
    payload: {},
    answer: { conversations: [], unreads: [], msgs: [] },
    result: [],
  },
  {
    name: 'getGroupConversationList',
    call: (c) => c.getGroupConversationList(undefined, [30]),
    method: 'getgroupconversationlist',
    payload: { mtypes: [30] },
    answer: { conversations: [2001], unreads: [0], msgs: [row(9n, 1003, 13n)] },
    result: [
      {
        id: 2001n,
        unread: 0,
        lastMessage: {
          id: 9n,
          fromUid: 1003n,
          mtype: 30,
          mid: 13n,
          deleted: false,
          message: 'hi',
          attrs: '{"a":1}',
          mtime: 1700000000000n,
        },
      },
    ],
  },
  {
    name: 'getGroupUnreadConversationList',
    call: (c) => c.getGroupUnreadConversationList(1n),
    method: 'getgroupunreadconversationlist',
    payload: { mtime: 1n },
    answer: { conversations: [], unreads: [], msgs: [] },
    result: [],
  },
  {
    name: 'getUnreadConversationList',
    call: (c) => c.getUnreadConversationList(false),
    method: 'getunreadconversationlist',
    payload: { clear: false },
    answer: {
      groupConversations: [2001],
      groupUnreads: [1],
      groupMsgs: [row(1n, 1003, 2n)],
      p2pConversations: [1002],
      p2pUnreads: [4],
      p2pMsgs: [row(3n, 1, 4n)],
    },
    result: {
      group: [
        {
          id: 2001n,
          unread: 1,
          lastMessage: {
            id: 1n,
            fromUid: 1003n,
            mtype: 30,
            mid: 2n,
            deleted: false,
            message: 'hi',
            attrs: '{"a":1}',
            mtime: 1700000000000n,
          },
        },
      ],
      p2p: [
        {
          id: 1002n,
          unread: 4,
          lastMessage: {
            id: 3n,
            fromUid: 1001n,
            direction: 1,
            mtype: 30,
            mid: 4n,
            deleted: false,
            message: 'hi',
            attrs: '{"a":1}',
            mtime: 1700000000000n,
          },
        },
      ],
    },
  },
  {
    name: 'getMessage',
    call: (c) => c.getMessage(1001n, BIG, 1002n, 1),
    method: 'getmsg',
    payload: { from: 1001n, mid: BIG, xid: 1002n, type: 1 },
    answer: { id: 5, mtype: 30, msg: 'text', attrs: new Uint8Array([0x7b, 0x7d]), mtime: 8 },
    result: { id: 5n, mtype: 30, message: 'text', attrs: '{}', mtime: 8n },
  },
  {
    name: 'deleteMessage',
    call: (c) => c.deleteMessage(1001n, 5n, 2001n, 2),
    method: 'delmsg',
    payload: { from: 1001n, mid: 5n, xid: 2001n, type: 2 },
    answer: {},
    result: undefined,
  },
  { name: 'enterRoom', call: (c) => c.enterRoom(3001n), method: 'enterroom', payload: { rid: 3001n }, answer: {}, result: undefined },
  { name: 'leaveRoom', call: (c) => c.leaveRoom(3001), method: 'leaveroom', payload: { rid: 3001n }, answer: {}, result: undefined },
  {
    name: 'getUserRooms',
    call: (c) => c.getUserRooms(),
    method: 'getuserrooms',
    payload: {},
    answer: { rooms: [3001, BIG] },
    result: [3001n, BIG],
  },
  {
    name: 'getRoomMembers',
    call: (c) => c.getRoomMembers(3001n),
    method: 'getroommembers',
    payload: { rid: 3001n },
    answer: { uids: [1] },
    result: [1n],
  },
  {
    name: 'getRoomCount',
    call: (c) => c.getRoomCount([3001n]),
    method: 'getroomcount',
    payload: { rids: [3001n] },
    answer: { cn: { '3001': 4 } },
    result: new Map([[3001n, 4]]),
  },
  {
    name: 'getUserGroups',
    call: (c) => c.getUserGroups(),
    method: 'getusergroups',
    payload: {},
    answer: { gids: [2001] },
    result: [2001n],
  },
  {
    name: 'getGroupMembers with online',
    call: (c) => c.getGroupMembers(2001n, true),
    method: 'getgroupmembers',
    payload: { gid: 2001n, online: true },
    answer: { uids: [1, 2], onlines: [2] },
    result: { uids: [1n, 2n], onlines: [2n] },
  },
  {
    name: 'getGroupMembers',
    call: (c) => c.getGroupMembers(2001n),
    method: 'getgroupmembers',
    payload: { gid: 2001n },
    answer: { uids: [1] },
    result: { uids: [1n] },
  },
  {
    name: 'getGroupCount',
    call: (c) => c.getGroupCount(2001n, true),
    method: 'getgroupcount',
    payload: { gid: 2001n, online: true },
    answer: { cn: 10, online: 3 },
    result: { count: 10, online: 3 },
  },
  {
    name: 'addGroupMembers',
    call: (c) => c.addGroupMembers(2001n, [1, 2n]),
    method: 'addgroupmembers',
    payload: { gid: 2001n, uids: [1n, 2n] },
    answer: {},
    result: undefined,
  },
  {
    name: 'deleteGroupMembers',
    call: (c) => c.deleteGroupMembers(2001n, [1]),
    method: 'delgroupmembers',
    payload: { gid: 2001n, uids: [1n] },
    answer: {},
    result: undefined,
  },
  {
    name: 'getOnlineUsers',
    call: (c) => c.getOnlineUsers([1, 2]),
    method: 'getonlineusers',
    payload: { uids: [1n, 2n] },
    answer: { uids: [2] },
    result: [2n],
  },
  {
    name: 'addFriends',
    call: (c) => c.addFriends([BIG]),
    method: 'addfriends',
    payload: { friends: [BIG] },
    answer: {},
    result: undefined,
  },
  {
    name: 'deleteFriends',
    call: (c) => c.deleteFriends([1]),
    method: 'delfriends',
    payload: { friends: [1n] },
    answer: {},
    result: undefined,
  },
  { name: 'getFriends', call: (c) => c.getFriends(), method: 'getfriends', payload: {}, answer: { uids: [BIG] }, result: [BIG] },
  { name: 'addBlacks', call: (c) => c.addBlacks([1]), method: 'addblacks', payload: { blacks: [1n] }, answer: {}, result: undefined },
  { name: 'deleteBlacks', call: (c) => c.deleteBlacks([1]), method: 'delblacks', payload: { blacks: [1n] }, answer: {}, result: undefined },
  { name: 'getBlacks', call: (c) => c.getBlacks(), method: 'getblacks', payload: {}, answer: { uids: [3] }, result: [3n] },
  {
    name: 'setUserInfo',
    call: (c) => c.setUserInfo('open', 'private'),
    method: 'setuserinfo',
    payload: { oinfo: 'open', pinfo: 'private' },
    answer: {},
    result: undefined,
  },
  {
    name: 'setUserInfo with pinfo only',
    call: (c) => c.setUserInfo(undefined, 'p'),
    method: 'setuserinfo',
    payload: { pinfo: 'p' },
    answer: {},
    result: undefined,
  },
  {
    name: 'getUserInfo',
    call: (c) => c.getUserInfo(),
    method: 'getuserinfo',
    payload: {},
    answer: { oinfo: 'o', pinfo: 'p' },
    result: { oinfo: 'o', pinfo: 'p' },
  },
  {
    name: 'getUserOpenInfo',
    call: (c) => c.getUserOpenInfo([1002n]),
    method: 'getuseropeninfo',
    payload: { uids: [1002n] },
    answer: { info: { '1002': 'x' } },
    result: new Map([[1002n, 'x']]),
  },
  {
    name: 'setGroupInfo',
    call: (c) => c.setGroupInfo(2001n, 'o'),
    method: 'setgroupinfo',
    payload: { gid: 2001n, oinfo: 'o' },
    answer: {},
    result: undefined,
  },
  {
    name: 'getGroupInfo',
    call: (c) => c.getGroupInfo(2001n),
    method: 'getgroupinfo',
    payload: { gid: 2001n },
    answer: { oinfo: 'o', pinfo: 'p' },
    result: { oinfo: 'o', pinfo: 'p' },
  },
  {
    name: 'getGroupOpenInfo',
    call: (c) => c.getGroupOpenInfo(2001n),
    method: 'getgroupopeninfo',
    payload: { gid: 2001n },
    answer: { oinfo: 'o' },
    result: 'o',
  },
  {
    name: 'getGroupsOpenInfo',
    call: (c) => c.getGroupsOpenInfo([2001n]),
    method: 'getgroupsopeninfo',
    payload: { gids: [2001n] },
    answer: { info: { '2001': 'o' } },
    result: new Map([[2001n, 'o']]),
  },
  {
    name: 'setRoomInfo',
    call: (c) => c.setRoomInfo(3001n, 'o', 'p'),
    method: 'setroominfo',
    payload: { rid: 3001n, oinfo: 'o', pinfo: 'p' },
    answer: {},
    result: undefined,
  },
  {
    name: 'getRoomInfo',
    call: (c) => c.getRoomInfo(3001n),
    method: 'getroominfo',
    payload: { rid: 3001n },
    answer: { oinfo: 'o', pinfo: 'p' },
    result: { oinfo: 'o', pinfo: 'p' },
  },
  {
    name: 'getRoomOpenInfo',
    call: (c) => c.getRoomOpenInfo(3001n),
    method: 'getroomopeninfo',
    payload: { rid: 3001n },
    answer: { oinfo: 'o' },
    result: 'o',
  },
  {
    name: 'getRoomsOpenInfo',
    call: (c) => c.getRoomsOpenInfo([3001n]),
    method: 'getroomsopeninfo',
    payload: { rids: [3001n] },
    answer: { info: { '3001': 'o' } },
    result: new Map([[3001n, 'o']]),
  },
  { name: 'dataSet', call: (c) => c.dataSet('k', 'v'), method: 'dataset', payload: { key: 'k', val: 'v' }, answer: {}, result: undefined },
  { name: 'dataGet', call: (c) => c.dataGet('k'), method: 'dataget', payload: { key: 'k' }, answer: { val: 'v' }, result: 'v' },
  {
    name: 'dataGet of a missing key',
    call: (c) => c.dataGet('none'),
    method: 'dataget',
    payload: { key: 'none' },
    answer: {},
    result: undefined,
  },
  { name: 'dataDelete', call: (c) => c.dataDelete('k'), method: 'datadel', payload: { key: 'k' }, answer: {}, result: undefined },
  {
    name: 'addAttrs',
    call: (c) => c.addAttrs({ a: 'b' }),
    method: 'addattrs',
    payload: { attrs: { a: 'b' } },
    answer: {},
    result: undefined,
  },
  { name: 'getAttrs', call: (c) => c.getAttrs(), method: 'getattrs', payload: {}, answer: { attrs: { a: 'b' } }, result: { a: 'b' } },
  {
    name: 'addDebugLog',
    call: (c) => c.addDebugLog('m', 'a'),
    method: 'adddebuglog',
    payload: { msg: 'm', attrs: 'a' },
    answer: {},
    result: undefined,
  },
  {
    name: 'addDevice',
    call: (c) => c.addDevice('fcm', 't'),
    method: 'adddevice',
    payload: { apptype: 'fcm', devicetoken: 't' },
    answer: {},
    result: undefined,
  },
  {
    name: 'removeDevice',
    call: (c) => c.removeDevice('t'),
    method: 'removedevice',
    payload: { devicetoken: 't' },
    answer: {},
    result: undefined,
  },
  {
    name: 'setTranslationLanguage',
    call: (c) => c.setTranslationLanguage('en'),
    method: 'setlang',
    payload: { lang: 'en' },
    answer: {},
    result: undefined,
  },
  {
    name: 'sendQuest',
    call: (c) => c.sendQuest('getservertime'),
    method: 'getservertime',
    payload: {},
    answer: { mts: BIG },
    result: { mts: BIG },
  },
];

describe('client methods against the fake server', () => {
  let server: FakeRtmServer;
  let client: RTMClient;

  before(async () => {
    server = await FakeRtmServer.start();
    client = new RTMClient({ endpoint: server.endpoint, pid: 11000001 });
    assert.deepEqual(await client.login(1001n, 'token-1001'), { ok: true });
  });

  after(async () => {
    client.close();
    await server.close();
  });

  for (const c of cases) {
    test(`${c.name} → ${c.method}`, async () => {
      server.handlers[c.method] = () => c.answer ?? {};
      const before = server.received(c.method).length;
      const result = await c.call(client);
      const quest = await server.waitForQuest(c.method, before + 1);
      const expected = { ...c.payload };
      if (expected.mid === 'generated') {
        assert.equal(typeof quest.payload.mid, 'bigint');
        const mid = quest.payload.mid as bigint;
        assert.ok(mid > BigInt(Date.now() - 60_000) * 1000n && mid < BigInt(Date.now() + 1000) * 1000n, `mid ${mid} is ms·1000 + n`);
        expected.mid = mid;
        assert.deepEqual(result, { mid, mtime: c.answer!.mtime });
      } else if ('result' in c) {
        assert.deepEqual(result, c.result);
      }
      assert.deepEqual(Object.keys(quest.payload), Object.keys(expected), 'key order');
      assert.deepEqual(quest.payload, expected);
    });
  }

  test('every int64 id goes out as msgpack int64 (0xd3), as the browser SDK writes it', async () => {
    server.handlers.getfriends = () => ({ uids: [] });
    await client.addFriends([1, 2n ** 63n - 1n]);
    const raw = server.received('addfriends').at(-1)!.raw;
    const hex = Buffer.from(raw).toString('hex');
    assert.ok(hex.includes('92d30000000000000001d37fffffffffffffff'), hex);
  });

  test('an error answer rejects with RtmError and its code', async () => {
    server.handlers.enterroom = () => {
      throw new RtmError(200047, 'too many rooms');
    };
    await assert.rejects(
      client.enterRoom(1n),
      (err: unknown) => err instanceof RtmError && err.code === 200047 && err.message === 'too many rooms',
    );
  });

  test('a bad id rejects with 200034 and sends nothing', async () => {
    const count = server.quests.length;
    await assert.rejects(client.enterRoom(1.5), (err: unknown) => err instanceof RtmError && err.code === 200034);
    await assert.rejects(
      client.getOnlineUsers(['x' as unknown as number]),
      (err: unknown) => err instanceof RtmError && err.code === 200034,
    );
    assert.equal(server.quests.length, count);
  });

  test('number ids that are not safe integers reject with 200034 instead of being rounded', async () => {
    const count = server.quests.length;
    const bad = (err: unknown) => err instanceof RtmError && err.code === 200034 && /safe integer/.test(err.message);
    // 2**53 + 1 is already 2**53 as a number: sending it would address another message.
    await assert.rejects(client.getMessage(1001, 2 ** 53 + 1, 1002, 1), bad);
    await assert.rejects(client.sendMessage(Number(1234567890123456789n), 30, 'x'), bad);
    await assert.rejects(client.sendMessage(1002n, 30, 'x', '', 2 ** 60), bad);
    await assert.rejects(client.getOnlineUsers([1, Number.MAX_SAFE_INTEGER + 2]), bad);
    await assert.rejects(client.getGroupMessage(2001n, true, 10, 0, 2 ** 62), bad);
    await assert.rejects(client.addFriends([2n ** 64n]), (err: unknown) => err instanceof RtmError && err.code === 200034);
    // Ids are int64 (the server answers 10010 above it): a uint64 is refused here, nothing sent.
    await assert.rejects(client.sendMessage(2n ** 63n, 30, 'x'), (err: unknown) => err instanceof RtmError && err.code === 200034);
    assert.equal(server.quests.length, count);
    // The largest safe integer still goes out exactly.
    server.handlers.enterroom = () => ({});
    await client.enterRoom(Number.MAX_SAFE_INTEGER);
    assert.equal(server.received('enterroom').at(-1)!.payload.rid, 2n ** 53n - 1n);
  });

  test('bad input rejects the returned promise, never throws synchronously', async () => {
    const count = server.quests.length;
    const calls: [string, () => Promise<unknown>][] = [
      ['getGroupMessage', () => client.getGroupMessage(1.5, true, 10)],
      ['getRoomMessage', () => client.getRoomMessage('x' as unknown as number, true, 10)],
      ['getP2PMessage', () => client.getP2PMessage(2 ** 60, true, 10)],
      ['sendQuest', () => client.sendQuest('getfriends', { id: 2n ** 70n })], // msgpack cannot write it
    ];
    for (const [name, call] of calls) {
      let result: Promise<unknown> | undefined;
      assert.doesNotThrow(() => {
        result = call();
      }, name);
      await assert.rejects(result!, (err: unknown) => err instanceof RtmError, name);
    }
    await assert.rejects(
      client.sendQuest('getfriends', { id: 2n ** 70n }),
      (err: unknown) => err instanceof RtmError && err.code === 20005,
    );
    assert.equal(server.quests.length, count);
    assert.equal(client.state, 'online');
  });

  test('generated mids are unique and increasing', async () => {
    server.handlers.sendmsg = () => ({ mtime: 1 });
    const results = await Promise.all(Array.from({ length: 50 }, () => client.sendMessage(1002n, 30, 'x')));
    const mids = results.map((r) => r.mid);
    assert.equal(new Set(mids).size, 50);
    for (let i = 1; i < mids.length; i++) assert.ok(mids[i]! > mids[i - 1]!);
  });
});

describe('browser SDK golden frames', () => {
  let server: FakeRtmServer;
  let client: RTMClient;

  before(async () => {
    server = await FakeRtmServer.start();
    client = new RTMClient({ endpoint: server.endpoint, pid: 11000001 });
    await client.login(1001n, 'token-1001');
  });

  after(async () => {
    client.close();
    await server.close();
  });

  /** The captured mid of a frame, so that the call can reproduce it. */
  const capturedPayload = (method: string): Payload => {
    const frame = webClientFrame(method);
    return decodeMsgpack(frame.subarray(16 + method.length)) as Payload;
  };

  const exact: [string, (c: RTMClient) => Promise<unknown>][] = [
    ['sendmsg', (c) => c.sendMessage(1002n, 30, 'golden p2p', '{"k":"v"}', capturedPayload('sendmsg').mid as bigint)],
    ['sendgroupmsg', (c) => c.sendGroupMessage(2001n, 30, 'golden group', '{"k":"v"}', capturedPayload('sendgroupmsg').mid as bigint)],
    ['sendroommsg', (c) => c.sendRoomMessage(3001n, 30, 'golden room', '{"k":"v"}', capturedPayload('sendroommsg').mid as bigint)],
    ['enterroom', (c) => c.enterRoom(3001n)],
    ['getgroupmsg', (c) => c.getGroupMessage(2001n, false, 10, undefined, undefined, 1000n)],
    ['getmsg', (c) => c.getMessage(1001n, capturedPayload('getmsg').mid as bigint, 1002n, 1)],
    ['delmsg', (c) => c.deleteMessage(1001n, capturedPayload('delmsg').mid as bigint, 1002n, 1)],
    ['getunread', (c) => c.getUnreadMessage(false)],
    ['getp2punread', (c) => c.getP2PUnreadMessageNum([1001n], undefined, [30])],
    ['cleanunread', (c) => c.cleanUnreadMessage()],
  ];

  for (const [method, call] of exact) {
    test(`${method} frame is byte-identical (except seq)`, async () => {
      server.handlers[method] = () => ({ mtime: 1, num: 0, lastid: 0, begin: 0, end: 0, msgs: [] });
      const n = server.received(method).length;
      await call(client);
      const quest = await server.waitForQuest(method, n + 1);
      const expected = webClientFrame(method);
      assert.ok(
        sameFrameIgnoringSeq(quest.raw, expected),
        `\n ours: ${Buffer.from(quest.raw).toString('hex')}\n sdk:  ${Buffer.from(expected).toString('hex')}`,
      );
    });
  }

  test('getp2pmsg carries the same fields and values (begin/end as int64 instead of float64)', async () => {
    const captured = capturedPayload('getp2pmsg');
    server.handlers.getp2pmsg = () => ({ num: 0, lastid: 0, begin: 0, end: 0, msgs: [] });
    await client.getP2PMessage(1002n, true, 10, Number(captured.begin), Number(captured.end), 0n, [30]);
    const quest = server.received('getp2pmsg').at(-1)!;
    assert.deepEqual(Object.keys(quest.payload), Object.keys(captured));
    const norm = (p: Payload) => JSON.stringify(p, (_k, v: unknown) => (typeof v === 'bigint' || typeof v === 'number' ? String(v) : v));
    assert.equal(norm(quest.payload), norm(captured));
  });

  // Server frames the browser SDK accepted, replayed byte for byte (with the seq of our quest).
  const replay = async <T>(method: string, call: (c: RTMClient) => Promise<T>): Promise<T> => {
    const frame = webClientAccepted(method);
    const n = server.received(method).length;
    server.handlers[method] = () => new Promise<Payload>(() => {}); // we answer by hand below
    const pending = call(client);
    const quest = await server.waitForQuest(method, n + 1);
    quest.connection.sendRaw(withSeq(frame, quest.seq));
    return withTimeout(pending, 2000, `answer to ${method}`);
  };

  test('accepted getgroupmsg answer', async () => {
    const page = await replay('getgroupmsg', (c) => c.getGroupMessage(2001n, false, 10));
    assert.deepEqual(page, {
      num: 1,
      lastid: 1002n,
      begin: 0n,
      end: 0n,
      messages: [
        {
          id: 1002n,
          fromUid: 1001n,
          mtype: 30,
          mid: 1795315946827002n,
          deleted: false,
          message: 'golden group',
          attrs: '{"k":"v"}',
          mtime: 1795315946829n,
        },
      ],
    });
  });

  test('accepted getmsg answer', async () => {
    assert.deepEqual(await replay('getmsg', (c) => c.getMessage(1001n, 1n, 1002n, 1)), {
      id: 1001n,
      mtype: 30,
      message: 'golden p2p',
      attrs: '{"k":"v"}',
      mtime: 1795315946498n,
    });
  });

  test('accepted getunread answer', async () => {
    assert.deepEqual(await replay('getunread', (c) => c.getUnreadMessage(false)), { p2p: [1001n], group: [2001n] });
  });

  test('accepted getp2punread answer (string map keys)', async () => {
    assert.deepEqual(await replay('getp2punread', (c) => c.getP2PUnreadMessageNum([1001n])), {
      p2p: new Map([[1001n, 2]]),
      ltime: new Map([[1001n, 1795315948574n]]),
    });
  });
});
