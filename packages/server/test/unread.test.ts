import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RtmError, type Payload } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, until, type TestServer } from '@rtm/testkit';
import { SqliteStore } from '../src/store/sqlite.js';
import { Deployment, loginClient } from './helpers/model-run.js';

// client-api.md §3.3 "Unread baseline", end to end: real server, real sockets, RawClient.
// The unread baseline is the later of the user's last logout (end of the last session on any
// device, after the reconnect grace) and last clear.

const GRACE_MS = 150;
/** Long enough for the server to see a close and for the grace timer to fire. */
const PAST_GRACE_MS = GRACE_MS + 250;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let nextUid = 1n << 55n; // ids above 2^53
const newUid = (): bigint => ++nextUid;
let nextMid = 1n << 60n;

async function rejectsWith(promise: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof RtmError, `expected RtmError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('unread across logouts, clears, blips and devices (logoutGraceMs 150)', () => {
  let server: TestServer;
  let backend: RawClient;
  const clients: RawClient[] = [];

  const signed = (method: string, payload: Payload) => backend.signed(method, payload, TEST_PID, TEST_SECRET);

  async function login(uid: bigint): Promise<RawClient> {
    const c = await RawClient.loggedIn(server.clientEndpoint, backend, uid);
    clients.push(c);
    return c;
  }

  /** p2p through the server gate; returns the stored mtime. */
  async function serverP2P(from: bigint, to: bigint, mtype = 30, msg = 'hi'): Promise<bigint> {
    const { mtime } = await signed('sendmsg', { from, to, mid: ++nextMid, mtype, msg, attrs: '' });
    return mtime as bigint;
  }

  async function serverGroup(from: bigint, gid: bigint, mtype = 30, msg = 'hello group'): Promise<bigint> {
    const { mtime } = await signed('sendgroupmsg', { from, gid, mid: ++nextMid, mtype, msg, attrs: '' });
    return mtime as bigint;
  }

  /** Whether the store has a logout of `uid`: its presence ended (a grace period ran out, on a loaded machine maybe late). */
  const loggedOut = (uid: bigint) => async () => (await server.services.store.getUnreadBaseline(TEST_PID, uid)).logoutTime !== undefined;

  async function p2pUnread(
    c: RawClient,
    uids: bigint[],
    extra: Payload = {},
  ): Promise<{ p2p: Record<string, number>; ltime: Record<string, bigint> }> {
    return (await c.quest('getp2punread', { uids, ...extra })) as never;
  }

  before(async () => {
    server = await startTestServer({ logoutGraceMs: GRACE_MS });
    backend = await RawClient.tcp(server.serverEndpoint);
  });
  after(async () => {
    for (const c of clients) c.close();
    backend.close();
    await server.close();
  });

  it('an offline user finds p2p (server gate and client) and group messages in getunread / getp2punread / getgroupunread', async () => {
    const me = newUid();
    const peer = newUid();
    const other = newUid();
    const gid = newUid();
    const quietGid = newUid();
    await server.services.store.addGroupMembers(TEST_PID, gid, [me, peer, other]);
    await server.services.store.addGroupMembers(TEST_PID, quietGid, [me, peer]);

    // me logs in once and leaves for good: that logout is the baseline
    await (await login(me)).bye();
    await sleep(5);

    await serverP2P(peer, me);
    const peerLast = await serverP2P(peer, me);
    const sender = await login(other);
    const { mtime: otherLast } = (await sender.quest('sendmsg', {
      to: me,
      mid: ++nextMid,
      mtype: 30,
      msg: 'from a client',
      attrs: '',
    })) as { mtime: bigint };
    await serverGroup(peer, gid);
    const groupLast = await serverGroup(other, gid);
    await serverP2P(peer, other); // not for me

    const c = await login(me);
    const overview = await c.quest('getunread', { clear: false });
    assert.deepEqual(new Set(overview.p2p as bigint[]), new Set([peer, other]));
    assert.deepEqual(overview.group, [gid]);
    assert.equal(overview.logouttime, undefined, 'logouttime only when gettime is set');

    const p = await p2pUnread(c, [peer, other, newUid()]);
    assert.deepEqual(p.p2p, { [String(peer)]: 2, [String(other)]: 1 });
    assert.deepEqual(p.ltime, { [String(peer)]: peerLast, [String(other)]: otherLast });

    const g = await c.quest('getgroupunread', { gids: [gid, quietGid] });
    assert.deepEqual(g, { group: { [String(gid)]: 2 }, ltime: { [String(gid)]: groupLast } });
  });

  it('own messages never count, and only my groups count', async () => {
    const me = newUid();
    const peer = newUid();
    const gid = newUid();
    const notMine = newUid();
    await server.services.store.addGroupMembers(TEST_PID, gid, [me, peer]);
    await server.services.store.addGroupMembers(TEST_PID, notMine, [peer]);
    const c = await login(me);
    await c.quest('sendmsg', { to: peer, mid: ++nextMid, mtype: 30, msg: 'mine', attrs: '' });
    await c.quest('sendgroupmsg', { gid, mid: ++nextMid, mtype: 30, msg: 'mine', attrs: '' });
    await serverP2P(me, peer);
    await serverGroup(peer, notMine);

    assert.deepEqual(await c.quest('getunread', {}), { p2p: [], group: [] });
    assert.deepEqual(await p2pUnread(c, [peer]), { p2p: {}, ltime: {} });
    assert.deepEqual(await c.quest('getgroupunread', { gids: [gid, notMine] }), { group: {}, ltime: {} });

    // the peer sees mine as unread
    const other = await login(peer);
    assert.deepEqual((await p2pUnread(other, [me])).p2p, { [String(me)]: 2 });
    assert.deepEqual((await other.quest('getgroupunread', { gids: [gid] })).group, { [String(gid)]: 1 });
  });

  it('mtypes: default 30..50, an explicit filter, getunread counts every type; mtime overrides the baseline', async () => {
    const me = newUid();
    const peer = newUid();
    const gid = newUid();
    await server.services.store.addGroupMembers(TEST_PID, gid, [me, peer]);
    const first = await serverP2P(peer, me, 30);
    await sleep(2); // mtime has ms resolution: "after first" must not include a same-ms message
    await serverP2P(peer, me, 40);
    await serverP2P(peer, me, 50);
    await serverP2P(peer, me, 51);
    const lastAny = await serverP2P(peer, me, 29);
    await serverGroup(peer, gid, 51);
    const c = await login(me);

    const byDefault = await p2pUnread(c, [peer]);
    assert.deepEqual(byDefault.p2p, { [String(peer)]: 3 });
    assert.deepEqual((await p2pUnread(c, [peer], { mtypes: [51, 29] })).p2p, { [String(peer)]: 2 });
    assert.deepEqual((await p2pUnread(c, [peer], { mtypes: [51, 29] })).ltime, { [String(peer)]: lastAny });
    assert.deepEqual((await p2pUnread(c, [peer], { mtypes: [] })).p2p, { [String(peer)]: 3 }, 'empty = default');
    assert.deepEqual((await p2pUnread(c, [peer], { mtime: first })).p2p, { [String(peer)]: 2 }, 'after mtime, exclusive');
    assert.deepEqual((await p2pUnread(c, [peer], { mtime: 0 })).p2p, { [String(peer)]: 3 }, 'mtime 0 = baseline');

    assert.deepEqual(await c.quest('getgroupunread', { gids: [gid] }), { group: {}, ltime: {} });
    assert.deepEqual((await c.quest('getgroupunread', { gids: [gid], mtypes: [51] })).group, { [String(gid)]: 1 });

    // getunread has no mtypes: anything new counts
    assert.deepEqual(await c.quest('getunread', {}), { p2p: [peer], group: [gid] });
  });

  it('cleanunread and getunread {clear: true} zero the counts; later messages count again', async () => {
    const me = newUid();
    const peer = newUid();
    const gid = newUid();
    await server.services.store.addGroupMembers(TEST_PID, gid, [me, peer]);
    await serverP2P(peer, me);
    await serverGroup(peer, gid);
    const c = await login(me);

    assert.deepEqual(await c.quest('cleanunread'), {});
    assert.deepEqual(await c.quest('getunread', {}), { p2p: [], group: [] });
    assert.deepEqual((await p2pUnread(c, [peer])).p2p, {});
    await sleep(3); // the clear time has ms resolution
    await serverP2P(peer, me);
    await serverGroup(peer, gid);
    assert.deepEqual((await p2pUnread(c, [peer])).p2p, { [String(peer)]: 1 });
    assert.deepEqual((await c.quest('getgroupunread', { gids: [gid] })).group, { [String(gid)]: 1 });

    // getunread answers what it found, then clears
    assert.deepEqual(await c.quest('getunread', { clear: true }), { p2p: [peer], group: [gid] });
    assert.deepEqual(await c.quest('getunread', {}), { p2p: [], group: [] });
    assert.deepEqual((await p2pUnread(c, [peer])).p2p, {});
    await sleep(3);
    await serverP2P(peer, me);
    assert.deepEqual(await c.quest('getunread', {}), { p2p: [peer], group: [] });
  });

  it('messages received while online stay unread until cleared; the next logout becomes the baseline', async () => {
    const me = newUid();
    const peer = newUid();
    const c = await login(me);
    await serverP2P(peer, me);
    await c.waitForPushes('pushmsg', 1);
    // pushed to an online session, yet unread: the server cannot know the app showed it
    assert.deepEqual((await p2pUnread(c, [peer])).p2p, { [String(peer)]: 1 });
    await c.bye();
    await sleep(5);
    await serverP2P(peer, me);
    const again = await login(me);
    assert.deepEqual((await p2pUnread(again, [peer])).p2p, { [String(peer)]: 1 }, 'only the message after the logout');
  });

  it('a blip (drop + reconnect within the grace) does not move the baseline', async () => {
    const me = newUid();
    const peer = newUid();
    const c = await login(me);
    await serverP2P(peer, me); // arrives while online, after any logout: unread
    await c.drop();
    const back = await login(me); // within 150 ms
    await sleep(PAST_GRACE_MS); // an (erroneous) grace timer would have fired by now
    assert.deepEqual((await p2pUnread(back, [peer])).p2p, { [String(peer)]: 1 });
    assert.deepEqual(await back.quest('getunread', { gettime: true }), { p2p: [peer], group: [], logouttime: 0n });
  });

  it('a drop longer than the grace is a logout at the time of the drop', async () => {
    const me = newUid();
    const peer = newUid();
    const c = await login(me);
    await serverP2P(peer, me); // seen while online
    const beforeDrop = BigInt(Date.now());
    await c.drop();
    // The server sees the close a moment after the client (on a loaded machine, a while after).
    assert.ok(await until(() => !server.services.presence.isOnline(TEST_PID, me)), 'the server saw the drop');
    const missed = await serverP2P(peer, me); // during the grace: still after the logout time
    assert.ok(await until(loggedOut(me)), 'the grace period ran out: a logout');
    const missed2 = await serverP2P(peer, me);
    const back = await login(me);
    const p = await p2pUnread(back, [peer]);
    assert.deepEqual(p.p2p, { [String(peer)]: 2 });
    assert.deepEqual(p.ltime, { [String(peer)]: missed2 });
    const { logouttime } = (await back.quest('getunread', { gettime: true })) as { logouttime: bigint };
    assert.ok(logouttime >= beforeDrop && logouttime < missed, `logouttime ${logouttime} is the drop, not the end of the grace`);
  });

  it('two devices: one leaving while the other stays does not move the baseline; the last one leaving does', async () => {
    const me = newUid();
    const peer = newUid();
    const phone = await login(me);
    const laptop = await login(me);
    await serverP2P(peer, me);
    await phone.waitForPushes('pushmsg', 1);
    await laptop.waitForPushes('pushmsg', 1);

    await phone.bye(); // an explicit bye of one device of two is not a logout
    await (await login(me)).drop(); // nor is a third device dropping
    await sleep(PAST_GRACE_MS);
    assert.deepEqual((await p2pUnread(laptop, [peer])).p2p, { [String(peer)]: 1 });

    await laptop.drop();
    assert.ok(await until(loggedOut(me)), 'the grace period ran out: a logout');
    await serverP2P(peer, me);
    const back = await login(me);
    assert.deepEqual((await p2pUnread(back, [peer])).p2p, { [String(peer)]: 1 });
  });

  it('an explicit bye of the last session ends the presence at once (no grace)', async () => {
    const me = newUid();
    const peer = newUid();
    const c = await login(me);
    await serverP2P(peer, me);
    await c.bye();
    await sleep(5);
    await serverP2P(peer, me);
    const back = await login(me); // well within the grace
    assert.deepEqual((await p2pUnread(back, [peer])).p2p, { [String(peer)]: 1 });
    const { logouttime } = (await back.quest('getunread', { gettime: true })) as { logouttime: bigint };
    assert.ok(logouttime > 0n);
  });

  it('a clear later than the last logout wins, and a logout later than a clear wins', async () => {
    const me = newUid();
    const peer = newUid();
    await serverP2P(peer, me);
    const c = await login(me);
    await c.quest('cleanunread');
    await sleep(3);
    await serverP2P(peer, me);
    await c.bye();
    await sleep(3);
    await serverP2P(peer, me);
    const back = await login(me);
    assert.deepEqual((await p2pUnread(back, [peer])).p2p, { [String(peer)]: 1 }, 'logout after the clear');
    await back.quest('cleanunread');
    assert.deepEqual((await p2pUnread(back, [peer])).p2p, {}, 'clear after the logout');
  });

  it('limits and types: 1,000 ids per call (200032; a user may have 300 friends), bad keys (10010)', async () => {
    const c = await login(newUid());
    const ids = Array.from({ length: 1001 }, (_, i) => BigInt(i + 1));
    await rejectsWith(c.quest('getp2punread', { uids: ids }), 200032);
    await rejectsWith(c.quest('getgroupunread', { gids: ids }), 200032);
    assert.deepEqual(await c.quest('getp2punread', { uids: ids.slice(0, 1000) }), { p2p: {}, ltime: {} });
    assert.deepEqual(await c.quest('getgroupunread', { gids: ids.slice(0, 1000) }), { group: {}, ltime: {} });
    assert.deepEqual(await c.quest('getp2punread', { uids: [] }), { p2p: {}, ltime: {} });
    await rejectsWith(c.quest('getp2punread', { uids: 'x' }), 10010);
    await rejectsWith(c.quest('getgroupunread', {}), 10009);
  });
});

describe('unread marks across a restart whose clock runs behind the last process (stopped clock)', () => {
  it('a message after the restart counts after a clear before it; a clear after the restart covers what came before', async () => {
    const stopped = Date.now();
    const makeStore = (dataDir: string) => new SqliteStore({ dataDir, writerThread: true, now: () => stopped });
    const deployment = await Deployment.of({ logoutGraceMs: 0 }, { makeStore });
    const [me, peer] = [newUid(), newUid()];
    try {
      const first = await loginClient(deployment.server.clientEndpoint, deployment.backend, me);
      await deployment.backend.sendMessage(30, peer, me, 'before the clear'); // mtime: the stopped ms
      await first.cleanUnreadMessage(); // a mark after it: later clocks go past the stopped ms
      await deployment.backend.sendMessage(30, peer, me, 'after the clear');
      await first.cleanUnreadMessage();
      first.close();
      await deployment.restart(); // the same stopped clock: behind the marks of the last process
      const after = await deployment.backend.sendMessage(30, peer, me, 'after the restart');
      const again = await loginClient(deployment.server.clientEndpoint, deployment.backend, me);
      assert.deepEqual((await again.getP2PUnreadMessageNum([peer])).p2p, new Map([[peer, 1]]), 'only the message after the restart');
      assert.equal((await again.getP2PUnreadMessageNum([peer])).ltime.get(peer), after.mtime);
      await again.cleanUnreadMessage();
      assert.deepEqual((await again.getP2PUnreadMessageNum([peer])).p2p, new Map(), 'a clear covers it');
      again.close();
    } finally {
      await deployment.close();
    }
  });
});
