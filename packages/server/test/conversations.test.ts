import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Payload } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';

// client-api.md §3.3: getsession, removesession and the conversation lists, end to end.

let nextUid = 1n << 56n;
const newUid = (): bigint => ++nextUid;
let nextMid = 1n << 61n;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Entry = [bigint, unknown, number, bigint, boolean, unknown, string, bigint];

describe('sessions and conversation lists', () => {
  let server: TestServer;
  let backend: RawClient;
  const clients: RawClient[] = [];
  const signed = (method: string, payload: Payload) => backend.signed(method, payload, TEST_PID, TEST_SECRET);

  async function login(uid: bigint): Promise<RawClient> {
    const c = await RawClient.loggedIn(server.clientEndpoint, backend, uid);
    clients.push(c);
    return c;
  }

  async function p2p(from: bigint, to: bigint, msg: string, mtype = 30): Promise<{ mid: bigint; mtime: bigint }> {
    const mid = ++nextMid;
    const { mtime } = await signed('sendmsg', { from, to, mid, mtype, msg, attrs: 'a' });
    return { mid, mtime: mtime as bigint };
  }

  async function group(from: bigint, gid: bigint, msg: string, mtype = 30): Promise<{ mid: bigint; mtime: bigint }> {
    const mid = ++nextMid;
    const { mtime } = await signed('sendgroupmsg', { from, gid, mid, mtype, msg, attrs: '' });
    return { mid, mtime: mtime as bigint };
  }

  before(async () => {
    server = await startTestServer();
    backend = await RawClient.tcp(server.serverEndpoint);
  });
  after(async () => {
    for (const c of clients) c.close();
    backend.close();
    await server.close();
  });

  describe('one user with p2p peers and groups', () => {
    const me = newUid();
    const b = newUid();
    const c = newUid();
    const d = newUid();
    const g = newUid();
    const quiet = newUid();
    const g2 = newUid();
    let client: RawClient;
    let b2: { mid: bigint; mtime: bigint };
    let a1: { mid: bigint; mtime: bigint };
    let gLast: { mid: bigint; mtime: bigint };

    before(async () => {
      await server.services.store.addGroupMembers(TEST_PID, g, [me, b]);
      await server.services.store.addGroupMembers(TEST_PID, quiet, [me, b]);
      await server.services.store.addGroupMembers(TEST_PID, g2, [me, c]);
      await p2p(b, me, 'b1');
      b2 = await p2p(b, me, 'b2');
      await p2p(d, me, 'custom only', 51); // a conversation of non-default mtypes only
      a1 = await p2p(me, c, 'a1');
      await group(b, g, 'from b');
      await group(c, g2, 'from c');
      gLast = await group(me, g, 'from me');
      client = await login(me);
    });

    it('getsession: every p2p peer (newest first) and my groups with messages', async () => {
      const s = await client.quest('getsession');
      assert.deepEqual(s.p2p, [c, d, b]);
      assert.deepEqual(new Set(s.group as bigint[]), new Set([g, g2]));
    });

    it('getp2pconversationlist: parallel arrays, last message with direction, default mtypes', async () => {
      const list = await client.quest('getp2pconversationlist', {});
      assert.deepEqual(list.conversations, [c, b], 'd has no message of mtypes 30..50');
      assert.deepEqual(list.unreads, [0, 2]);
      const msgs = list.msgs as Entry[];
      assert.equal(msgs.length, 2);
      for (const e of msgs) assert.equal(e.length, 8);
      assert.deepEqual(msgs[0]!.slice(1), [1, 30, a1.mid, false, 'a1', 'a', a1.mtime], 'sent by me');
      assert.deepEqual(msgs[1]!.slice(1), [2, 30, b2.mid, false, 'b2', 'a', b2.mtime], 'sent by the peer');

      const custom = await client.quest('getp2pconversationlist', { mtypes: [51] });
      assert.deepEqual(custom.conversations, [d]);
      assert.deepEqual(custom.unreads, [1]);
      assert.equal((custom.msgs as Entry[])[0]![5], 'custom only');
    });

    it('getp2punreadconversationlist: only conversations with unread; mtime moves the start', async () => {
      const list = await client.quest('getp2punreadconversationlist', {});
      assert.deepEqual(list.conversations, [b]);
      assert.deepEqual(list.unreads, [2]);
      assert.equal((list.msgs as Entry[])[0]![3], b2.mid);
      const later = await client.quest('getp2punreadconversationlist', { mtime: b2.mtime });
      assert.deepEqual(later, { conversations: [], unreads: [], msgs: [] });
    });

    it('getgroupconversationlist / getgroupunreadconversationlist: sender uid at index 1, own messages not unread', async () => {
      const list = await client.quest('getgroupconversationlist', {});
      assert.deepEqual(list.conversations, [g, g2], 'newest activity first; the quiet group is omitted');
      assert.deepEqual(list.unreads, [1, 1]);
      const first = (list.msgs as Entry[])[0]!;
      assert.deepEqual(first.slice(1), [me, 30, gLast.mid, false, 'from me', '', gLast.mtime]);
      const unread = await client.quest('getgroupunreadconversationlist', { mtypes: [30] });
      assert.deepEqual(unread.conversations, [g, g2]);
      assert.deepEqual(unread.unreads, [1, 1]);
    });

    it('getunreadconversationlist: both lists; clear false keeps them, the default clears after answering', async () => {
      const keep = await client.quest('getunreadconversationlist', { clear: false });
      assert.deepEqual(keep.groupConversations, [g, g2]);
      assert.deepEqual(keep.groupUnreads, [1, 1]);
      assert.equal((keep.groupMsgs as Entry[]).length, 2);
      assert.deepEqual(keep.p2pConversations, [b]);
      assert.deepEqual(keep.p2pUnreads, [2]);
      assert.equal((keep.p2pMsgs as Entry[])[0]![3], b2.mid);

      assert.deepEqual(await client.quest('getunreadconversationlist', {}), keep);
      const empty = { groupConversations: [], groupUnreads: [], groupMsgs: [], p2pConversations: [], p2pUnreads: [], p2pMsgs: [] };
      assert.deepEqual(await client.quest('getunreadconversationlist', {}), empty);
      // the full lists remain, with zero unread
      assert.deepEqual((await client.quest('getp2pconversationlist', {})).unreads, [0, 0]);
      await sleep(3);
      await p2p(b, me, 'b3');
      assert.deepEqual((await client.quest('getunreadconversationlist', { clear: false })).p2pUnreads, [1]);
    });

    it('removesession: oneway drops only my side, two-way both; a new message brings it back', async () => {
      const peerC = await login(c);
      const peerB = await login(b);
      assert.deepEqual(await client.quest('removesession', { to: c, oneway: true }), {});
      assert.ok(!((await client.quest('getsession')).p2p as bigint[]).includes(c));
      assert.ok(((await peerC.quest('getsession')).p2p as bigint[]).includes(me));
      assert.ok(!((await client.quest('getp2pconversationlist', {})).conversations as bigint[]).includes(c));

      assert.deepEqual(await client.quest('removesession', { to: b }), {});
      assert.ok(!((await client.quest('getsession')).p2p as bigint[]).includes(b));
      assert.ok(!((await peerB.quest('getsession')).p2p as bigint[]).includes(me));

      await peerB.quest('sendmsg', { to: me, mid: ++nextMid, mtype: 30, msg: 'back', attrs: '' });
      assert.equal(((await client.quest('getsession')).p2p as bigint[])[0], b);
      assert.ok(((await peerB.quest('getsession')).p2p as bigint[]).includes(me));
    });

    it("removesession takes the Android SDK's 'toid' for 'to'; with neither key it is 10009", async () => {
      const peerB = await login(b);
      await peerB.quest('sendmsg', { to: me, mid: ++nextMid, mtype: 30, msg: 'again', attrs: '' });
      assert.ok(((await client.quest('getsession')).p2p as bigint[]).includes(b));
      assert.deepEqual(await client.quest('removesession', { toid: b, oneway: true }), {});
      assert.ok(!((await client.quest('getsession')).p2p as bigint[]).includes(b));
      assert.ok(((await peerB.quest('getsession')).p2p as bigint[]).includes(me), 'oneway: the peer keeps me');
      await assert.rejects(client.quest('removesession', { oneway: true }), (e: { code?: number }) => e.code === 10009);
    });
  });

  it('a new user has empty sessions and lists', async () => {
    const c = await login(newUid());
    assert.deepEqual(await c.quest('getsession'), { p2p: [], group: [] });
    assert.deepEqual(await c.quest('getp2pconversationlist', {}), { conversations: [], unreads: [], msgs: [] });
    assert.deepEqual(await c.quest('getgroupunreadconversationlist', {}), { conversations: [], unreads: [], msgs: [] });
  });

  it('a deleted last message is not shown; the one before it is', async () => {
    const me = newUid();
    const peer = newUid();
    const first = await p2p(peer, me, 'first');
    const second = await p2p(peer, me, 'second');
    assert.ok(await server.services.store.deleteMessage({ pid: TEST_PID, kind: 1, from: peer, to: me, mid: second.mid }));
    const c = await login(me);
    const list = await c.quest('getp2pconversationlist', {});
    assert.deepEqual(list.conversations, [peer]);
    assert.deepEqual(list.unreads, [1]);
    assert.equal((list.msgs as Entry[])[0]![3], first.mid);
  });
});
