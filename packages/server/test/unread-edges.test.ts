import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Payload } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, until, type TestServer } from '@rtm/testkit';

// Unread counts and presence at their edges (client-api.md §2, §3.3; server-api.md §4, §6; README
// "Behaviour worth knowing"): kickouts in the grace period, one event per presence, the same
// millisecond, group joins, deletions, lists against counts, notes to oneself. Real server, raw frames.

const GRACE_MS = 1500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let nextUid = 7n << 56n;
const newUid = (): bigint => ++nextUid;
let nextMid = 3n << 60n;

describe('unread and presence at the edges', () => {
  let server: TestServer;
  let backend: RawClient;
  let listener: RawClient;
  const clients: RawClient[] = [];

  const signed = (method: string, payload: Payload) => backend.signed(method, payload, TEST_PID, TEST_SECRET);

  async function login(uid: bigint): Promise<RawClient> {
    const c = await RawClient.loggedIn(server.clientEndpoint, backend, uid);
    clients.push(c);
    return c;
  }
  async function p2p(from: bigint, to: bigint, mtype = 30): Promise<{ mtime: bigint; mid: bigint }> {
    const mid = ++nextMid;
    const { mtime } = await signed('sendmsg', { from, to, mid, mtype, msg: 'x', attrs: '' });
    return { mtime: mtime as bigint, mid };
  }
  async function group(from: bigint, gid: bigint, mtype = 30): Promise<bigint> {
    const { mtime } = await signed('sendgroupmsg', { from, gid, mid: ++nextMid, mtype, msg: 'g', attrs: '' });
    return mtime as bigint;
  }
  const p2pCount = async (c: RawClient, peers: bigint[], extra: Payload = {}) =>
    ((await c.quest('getp2punread', { uids: peers, ...extra })) as { p2p: Record<string, number> }).p2p;
  const groupCount = async (c: RawClient, gids: bigint[], extra: Payload = {}) =>
    ((await c.quest('getgroupunread', { gids, ...extra })) as { group: Record<string, number> }).group;
  const events = (uid: bigint) =>
    listener.pushes.filter((p) => p.method === 'pushevent' && p.payload['uid'] === uid).map((p) => p.payload['event'] as string);
  const offline = (uid: bigint) => until(() => !server.services.presence.isOnline(TEST_PID, uid));

  before(async () => {
    server = await startTestServer({ logoutGraceMs: GRACE_MS });
    backend = await RawClient.tcp(server.serverEndpoint);
    listener = await RawClient.tcp(server.serverEndpoint);
    await listener.signed('setlisten', { ev: true }, TEST_PID, TEST_SECRET);
  });
  after(async () => {
    for (const c of clients) c.close();
    backend.close();
    listener.close();
    await server.close();
  });

  // README: "a kickout ends it [the presence] at once". A kickout while the user's only device is
  // in its grace period (network blip) must end the presence then, not GRACE_MS later.
  it('kickout during the grace period ends the presence at once (logout event, rooms left)', async () => {
    const me = newUid();
    const rid = newUid();
    const c = await login(me);
    await c.quest('enterroom', { rid });
    await c.drop();
    assert.ok(await offline(me));
    await sleep(50);
    await signed('kickout', { uid: me });
    const t0 = Date.now();
    const heard = await until(() => events(me).includes('logout'), 700);
    const members = ((await signed('getroommembers', { rid })) as { uids: bigint[] }).uids;
    assert.ok(
      heard,
      `no logout event within 700 ms of the kickout (grace ${GRACE_MS} ms); events ${events(me)} after ${Date.now() - t0} ms; room members ${members}`,
    );
    assert.deepEqual(members, [], 'rooms left at the kickout (as presence-ends.test.ts expects for an online user)');
  });

  // After a kickout during grace, the SDK that lost its network does not know it was kicked: it logs
  // in again. The README says a kickout ends the presence at once, so that login is a new presence
  // (login event) — not a silent continuation of the kicked one.
  it('kickout during the grace period: a later login is a new presence (login event), not a continuation', async () => {
    const me = newUid();
    const c = await login(me);
    await c.drop();
    assert.ok(await offline(me));
    await signed('kickout', { uid: me });
    await sleep(100);
    const before = events(me).filter((e) => e === 'login').length;
    await login(me);
    await sleep(200);
    const afterLogins = events(me).filter((e) => e === 'login').length;
    assert.equal(afterLogins, before + 1, `events ${events(me)}`);
  });

  it('pushevent: exactly one login and one logout per presence across devices and blips', async () => {
    const me = newUid();
    const a = await login(me);
    const b = await login(me);
    await a.drop();
    await sleep(50);
    await b.drop(); // grace starts
    assert.ok(await offline(me));
    const a2 = await login(me); // within grace
    const b2 = await login(me);
    await b2.bye();
    await a2.bye(); // last session: at once
    assert.ok(await until(() => events(me).includes('logout'), 1000));
    await sleep(GRACE_MS + 500);
    assert.deepEqual(events(me), ['login', 'logout']);
  });

  it("pushevent: a device logging in during another one's grace, then saying bye: one login, one logout", async () => {
    const me = newUid();
    const peer = newUid();
    const a = await login(me);
    await a.drop();
    assert.ok(await offline(me));
    const missed = await p2p(peer, me);
    const b = await login(me);
    await b.bye();
    assert.ok(await until(() => events(me).includes('logout'), 1000));
    await sleep(GRACE_MS + 500);
    assert.deepEqual(events(me), ['login', 'logout']);
    const again = await login(me);
    // the blip never hides: the message came while no device was online, but the presence went on
    // (b logged in within the grace) and b's bye ended it after: by the project's rule it is read.
    assert.deepEqual(await p2pCount(again, [peer]), {}, `missed ${missed.mtime}`);
  });

  // README: "A clear or a logout is cut from the store's own clock, so a message stored after it
  // counts, even within the same millisecond".
  it('a message right after a clear / a bye counts, also in the same millisecond', async () => {
    const me = newUid();
    const peer = newUid();
    const c = await login(me);
    for (let i = 0; i < 20; i++) {
      await c.quest('cleanunread');
      await p2p(peer, me);
      assert.deepEqual(await p2pCount(c, [peer]), { [String(peer)]: 1 }, `round ${i}`);
    }
    const [, m] = await Promise.all([c.quest('getunread', { clear: true }), p2p(peer, me)]);
    assert.ok(m.mtime > 0n);
    // getunread's clear is cut before it reads: the concurrent message is either listed or still unread
    const n = await p2pCount(c, [peer]);
    assert.ok(n[String(peer)] === 1 || n[String(peer)] === undefined);

    await c.bye();
    await p2p(peer, me);
    const back = await login(me);
    assert.deepEqual(await p2pCount(back, [peer]), { [String(peer)]: 1 });
  });

  // README: "A group's messages count for a member only from when they joined it (a member added
  // again keeps the first join; one who left and was added back counts from the new one)."
  it('group: counts from the join; added again keeps the first join; removed and re-added counts from the new join', async () => {
    const me = newUid();
    const peer = newUid();
    const gid = newUid();
    await signed('addgroupmembers', { gid, uids: [peer] });
    await group(peer, gid); // before my join
    await signed('addgroupmembers', { gid, uids: [me] });
    await group(peer, gid); // 1
    await signed('addgroupmembers', { gid, uids: [me] }); // keeps the first join
    await group(peer, gid); // 2
    const c = await login(me);
    await c.quest('cleanunread');
    await c.bye();
    // nothing after the clear/logout yet
    await group(peer, gid); // 1 after the logout
    let again = await login(me);
    assert.deepEqual(await groupCount(again, [gid]), { [String(gid)]: 1 });
    await again.bye();
    await group(peer, gid); // 1
    await signed('delgroupmembers', { gid, uids: [me] });
    await group(peer, gid); // while not a member
    await signed('addgroupmembers', { gid, uids: [me] });
    await group(peer, gid); // after the re-add
    again = await login(me);
    assert.deepEqual(await groupCount(again, [gid]), { [String(gid)]: 1 }, 'only from the new join');
    const ov = await again.quest('getunread', {});
    assert.deepEqual(ov['group'], [gid]);
  });

  it('delmsg: a deleted message no longer counts (and ltime follows)', async () => {
    const me = newUid();
    const peer = newUid();
    const c = await login(me);
    await c.quest('cleanunread');
    const first = await p2p(peer, me);
    const second = await p2p(peer, me);
    await signed('delmsg', { from: peer, xid: me, mid: second.mid, type: 1 });
    const r = (await c.quest('getp2punread', { uids: [peer] })) as { p2p: Record<string, number>; ltime: Record<string, bigint> };
    assert.deepEqual(r.p2p, { [String(peer)]: 1 });
    assert.deepEqual(r.ltime, { [String(peer)]: first.mtime });
  });

  it('sendmsgs: every receiver counts one', async () => {
    const [a, b, sender] = [newUid(), newUid(), newUid()];
    await signed('sendmsgs', { from: sender, tos: [a, b], mid: ++nextMid, mtype: 30, msg: 'm', attrs: '' });
    const ca = await login(a);
    const cb = await login(b);
    assert.deepEqual(await p2pCount(ca, [sender]), { [String(sender)]: 1 });
    assert.deepEqual(await p2pCount(cb, [sender]), { [String(sender)]: 1 });
  });

  // Conversation lists: unread numbers equal getp2punread / getgroupunread with the same keys.
  it('conversation lists: unreads equal getp2punread / getgroupunread (default, mtypes, mtime)', async () => {
    const me = newUid();
    const [p1, p2] = [newUid(), newUid()];
    const [g1, g2] = [newUid(), newUid()];
    await signed('addgroupmembers', { gid: g1, uids: [me, p1] });
    await signed('addgroupmembers', { gid: g2, uids: [me, p2] });
    const c0 = await login(me);
    await c0.quest('cleanunread');
    await c0.bye();
    const t = (await p2p(p1, me, 30)).mtime;
    await sleep(3);
    await p2p(p1, me, 60);
    await p2p(p2, me, 41);
    await group(p1, g1, 30);
    await group(p2, g2, 60);
    await group(p2, g2, 31);
    const c = await login(me);
    const extras: [string, Payload][] = [
      ['default', {}],
      ['mtypes 60', { mtypes: [60] }],
      ['mtypes 30,60', { mtypes: [30, 60] }],
      ['mtime', { mtime: t }],
    ];
    for (const [name, extra] of extras) {
      const pl = (await c.quest('getp2pconversationlist', extra)) as { conversations: bigint[]; unreads: number[] };
      const pu = await p2pCount(c, pl.conversations, extra);
      pl.conversations.forEach((id, i) => assert.equal(pl.unreads[i], pu[String(id)] ?? 0, `p2p ${name} peer ${id}`));
      const gl = (await c.quest('getgroupconversationlist', extra)) as { conversations: bigint[]; unreads: number[] };
      const gu = await groupCount(c, gl.conversations, extra);
      gl.conversations.forEach((id, i) => assert.equal(gl.unreads[i], gu[String(id)] ?? 0, `group ${name} gid ${id}`));
    }
  });

  // The group list is ordered by the last message it shows (newest first); the p2p list should be
  // too: otherwise msgs[] is not in time order.
  it('p2p conversation list: ordered newest first by the last message it shows (like the group list)', async () => {
    const me = newUid();
    const [p1, p2] = [newUid(), newUid()];
    await p2p(p1, me, 30);
    await sleep(3);
    await p2p(p2, me, 30);
    await sleep(3);
    await p2p(p1, me, 60); // not a counted type: the list shows p1's older chat message
    const c = await login(me);
    const l = (await c.quest('getp2pconversationlist', {})) as { conversations: bigint[]; msgs: unknown[][] };
    const times = l.msgs.map((m) => m[7] as bigint);
    assert.deepEqual(l.conversations, [p2, p1], `times ${times}`);
  });

  it('p2p conversation list: a deleted newest message does not make the conversation the newest', async () => {
    const me = newUid();
    const [p1, p2] = [newUid(), newUid()];
    await p2p(p1, me, 30);
    await sleep(3);
    await p2p(p2, me, 30);
    await sleep(3);
    const gone = await p2p(p1, me, 30);
    await signed('delmsg', { from: p1, xid: me, mid: gone.mid, type: 1 });
    const c = await login(me);
    const l = (await c.quest('getp2pconversationlist', {})) as { conversations: bigint[]; msgs: unknown[][] };
    assert.deepEqual(l.conversations, [p2, p1], `times ${l.msgs.map((m) => m[7])}`);
  });

  // One's own messages never count; a backend's note from a user to that same user is one.
  it('a backend note from a user to themselves (from == to) is not unread for them', async () => {
    const me = newUid();
    await p2p(me, me);
    const c = await login(me);
    assert.deepEqual((await c.quest('getunread', {}))['p2p'], []);
    assert.deepEqual(await p2pCount(c, [me]), {});
    assert.deepEqual(((await c.quest('getp2pconversationlist', {})) as { unreads: number[] }).unreads, [0], 'listed, nothing unread');
  });

  it('room and broadcast messages are not in getunread', async () => {
    const me = newUid();
    const rid = newUid();
    const c0 = await login(me);
    await c0.quest('cleanunread');
    const roomSender = newUid();
    await signed('addroommember', { rid, uid: me });
    await signed('addroommember', { rid, uid: roomSender });
    await signed('sendroommsg', { from: roomSender, rid, mid: ++nextMid, mtype: 30, msg: 'r', attrs: '' });
    await signed('broadcastmsg', { from: newUid(), mid: ++nextMid, mtype: 30, msg: 'b', attrs: '' }).catch((e: unknown) =>
      console.log('broadcast', String(e)),
    );
    assert.deepEqual(await c0.quest('getunread', {}), { p2p: [], group: [] });
  });
  // Consistency: getunread / getp2punread and the unread conversation list should agree on which
  // peers have unread messages (the list is the UI of those counts).
});
