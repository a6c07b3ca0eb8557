import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Payload } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';

// Groups, rooms and bans through both gates (server-api.md §4, client-api.md §4–§5), real sockets.

const BIG = 1n << 60n; // ids far above 2^53
const sorted = (v: unknown): bigint[] => (v as (bigint | number)[]).map((x) => BigInt(x)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rejectsCode(p: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(p, (err: { code?: number; message?: string }) => {
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('groups and rooms (server and client gates)', () => {
  let server: TestServer;
  let backend: RawClient;
  const clients: RawClient[] = [];
  let mid = 1n;
  const call = (method: string, payload: Payload = {}) => backend.signed(method, payload, TEST_PID, TEST_SECRET);
  async function login(uid: bigint): Promise<RawClient> {
    const c = await RawClient.loggedIn(server.clientEndpoint, backend, uid);
    clients.push(c);
    return c;
  }

  before(async () => {
    server = await startTestServer({ limits: { maxGroupMembers: 5, maxRoomsPerUser: 2, maxItemsPerCall: 4, maxQueryItems: 6 } });
    backend = await RawClient.tcp(server.serverEndpoint);
  });
  after(async () => {
    for (const c of clients) c.close();
    backend.close();
    await server.close();
  });

  it('server groups: add, members, count, isgroupmember, usergroups, del, delgroup', async () => {
    const gid = BIG + 100n;
    const [a, b, c] = [BIG + 1n, BIG + 2n, BIG + 3n];
    assert.deepEqual(await call('addgroupmembers', { gid, uids: [a, b, c, a] }), {});
    assert.deepEqual(sorted((await call('getgroupmembers', { gid })).uids), [a, b, c]);
    assert.deepEqual(await call('getgroupcount', { gid }), { cn: 3 });
    assert.deepEqual(await call('isgroupmember', { gid, uid: b }), { ok: true });
    assert.deepEqual(await call('isgroupmember', { gid, uid: BIG + 9n }), { ok: false });
    await call('addgroupmembers', { gid: gid + 1n, uids: [a] });
    assert.deepEqual(sorted((await call('getusergroups', { uid: a })).gids), [gid, gid + 1n]);
    assert.deepEqual(await call('delgroupmembers', { gid, uids: [b] }), {});
    assert.deepEqual(sorted((await call('getgroupmembers', { gid })).uids), [a, c]);
    assert.deepEqual(await call('delgroup', { gid }), {});
    assert.deepEqual(await call('getgroupmembers', { gid }), { uids: [] });
    assert.deepEqual(await call('getgroupcount', { gid }), { cn: 0 });
    assert.deepEqual(sorted((await call('getusergroups', { uid: a })).gids), [gid + 1n]);
  });

  it('server groups: limits and bad input', async () => {
    const gid = BIG + 200n;
    await rejectsCode(call('addgroupmembers', { gid, uids: [] }), 200033);
    await rejectsCode(call('addgroupmembers', { gid, uids: [1n, 2n, 3n, 4n, 5n] }), 200032);
    await rejectsCode(call('delgroupmembers', { gid, uids: [] }), 200033);
    await call('addgroupmembers', { gid, uids: [1n, 2n, 3n, 4n] });
    await call('addgroupmembers', { gid, uids: [1n, 5n] }); // exactly full (5)
    await rejectsCode(call('addgroupmembers', { gid, uids: [6n] }), 200042);
    assert.equal((await call('getgroupcount', { gid })).cn, 5);
    await rejectsCode(call('addgroupmembers', { gid: 'x', uids: [1n] }), 10010);
    await rejectsCode(call('addgroupmembers', { gid, uids: 7 }), 10010);
    await rejectsCode(call('addgroupmembers', { gid }), 10009);
    await rejectsCode(call('isgroupmember', { gid }), 10009);
  });

  it('group bans block group sends (200044), per group and for all groups, and expire', async () => {
    const gid = BIG + 300n;
    const u = BIG + 30n;
    await call('addgroupmembers', { gid, uids: [u, u + 1n] });
    const send = () => call('sendgroupmsg', { from: u, gid, mid: mid++, mtype: 51, msg: 'x', attrs: '' });
    await send();
    assert.deepEqual(await call('addgroupban', { gid, uid: u, btime: 0 }), {});
    assert.deepEqual(await call('isbanofgroup', { gid, uid: u }), { ok: true });
    assert.deepEqual(await call('isbanofgroup', { gid: gid + 1n, uid: u }), { ok: false });
    await rejectsCode(send(), 200044);
    assert.deepEqual(await call('removegroupban', { gid, uid: u }), {});
    await send();
    // no gid = every group
    await call('addgroupban', { uid: u, btime: 100 });
    assert.deepEqual(await call('isbanofgroup', { gid: gid + 7n, uid: u }), { ok: true });
    await rejectsCode(send(), 200044);
    await call('removegroupban', { uid: u });
    assert.deepEqual(await call('isbanofgroup', { gid, uid: u }), { ok: false });
    // gid ≤ 0 (Go) = every group too; btime in seconds
    await call('addgroupban', { gid: 0n, uid: u, btime: 1 });
    assert.deepEqual(await call('isbanofgroup', { gid, uid: u }), { ok: true });
    await sleep(1100);
    assert.deepEqual(await call('isbanofgroup', { gid, uid: u }), { ok: false });
    await send();
  });

  it('room bans block room sends (200045)', async () => {
    const rid = BIG + 400n;
    const u = BIG + 40n;
    await call('addroommember', { rid, uid: u });
    const send = () => call('sendroommsg', { from: u, rid, mid: mid++, mtype: 51, msg: 'x', attrs: '' });
    await send();
    await call('addroomban', { rid, uid: u, btime: 60 });
    assert.deepEqual(await call('isbanofroom', { rid, uid: u }), { ok: true });
    await rejectsCode(send(), 200045);
    await call('removeroomban', { rid, uid: u });
    await send();
    await call('addroomban', { rid: -1n, uid: u, btime: -5 }); // all rooms, permanent
    assert.deepEqual(await call('isbanofroom', { rid: rid + 3n, uid: u }), { ok: true });
    await rejectsCode(send(), 200045);
    await call('removeroomban', { uid: u });
    assert.deepEqual(await call('isbanofroom', { rid, uid: u }), { ok: false });
    await call('delroommember', { rid, uid: u });
  });

  it('server rooms: add, members, counts keyed by decimal rid, Go extras, room limit 200047', async () => {
    const rid = BIG + 500n;
    const [a, b, c] = [BIG + 51n, BIG + 52n, BIG + 53n];
    assert.deepEqual(await call('addroommember', { rid, uid: a }), {});
    assert.deepEqual(await call('addroommembers', { rid, uids: [b, c] }), {});
    assert.deepEqual(sorted((await call('getroommembers', { rid })).uids), [a, b, c]);
    assert.deepEqual(await call('getroomcount', { rids: [rid, rid + 1n] }), { cn: { [rid.toString()]: 3, [(rid + 1n).toString()]: 0 } });
    assert.deepEqual(await call('delroommembers', { rid, uids: [b, c] }), {});
    assert.deepEqual(await call('getroommembers', { rid }), { uids: [a] });
    assert.deepEqual(await call('adduserrooms', { rids: [rid + 1n], uid: a }), {});
    await rejectsCode(call('adduserrooms', { rids: [rid + 2n], uid: a }), 200047); // limit 2
    await rejectsCode(call('addroommember', { rid: rid + 2n, uid: a }), 200047);
    await call('addroommember', { rid, uid: a }); // already in: not a new room
    await rejectsCode(call('addroommembers', { rid: rid + 2n, uids: [b, a] }), 200047);
    assert.deepEqual(await call('getroommembers', { rid: rid + 2n }), { uids: [] }, 'all or nothing');
    assert.deepEqual(await call('deleteuserrooms', { rids: [rid, rid + 1n], uid: a }), {});
    assert.deepEqual(await call('getroomcount', { rids: [rid, rid + 1n] }), { cn: { [rid.toString()]: 0, [(rid + 1n).toString()]: 0 } });
    await rejectsCode(call('adduserrooms', { rids: [], uid: a }), 200033);
    // A read the spec sets no limit for has the larger query limit (6 here), not the write one (4).
    assert.equal(Object.keys((await call('getroomcount', { rids: [1n, 2n, 3n, 4n, 5n, 6n] })).cn as object).length, 6);
    await rejectsCode(call('getroomcount', { rids: [1n, 2n, 3n, 4n, 5n, 6n, 7n] }), 200032);
    await rejectsCode(call('addroommember', { rid: 'r', uid: a }), 10010);
    await rejectsCode(call('addroommember', { rid }), 10009);
  });

  it('client rooms: enterroom, pushes to the other members only, leaveroom, getuserrooms, counts', async () => {
    const rid = BIG + 600n;
    const [a, b] = [BIG + 61n, BIG + 62n];
    const ca = await login(a);
    const cb = await login(b);
    assert.deepEqual(await ca.quest('enterroom', { rid }), {});
    assert.deepEqual(await cb.quest('enterroom', { rid }), {});
    assert.deepEqual(await ca.quest('getuserrooms'), { rooms: [rid] });
    assert.deepEqual(sorted((await ca.quest('getroommembers', { rid })).uids), [a, b]);
    assert.deepEqual(await cb.quest('getroomcount', { rids: [rid] }), { cn: { [rid.toString()]: 2 } });

    const m = mid++;
    await ca.quest('sendroommsg', { rid, mid: m, mtype: 51, msg: 'hello room', attrs: '' });
    const [push] = await cb.waitForPushes('pushroommsg');
    assert.equal(push!.rid, rid);
    assert.equal(push!.from, a);
    assert.equal(push!.mid, m);
    assert.equal(push!.msg, 'hello room');
    // a server send as b reaches the room but not b's sessions; a's own message never came back to a
    await call('sendroommsg', { from: b, rid, mid: mid++, mtype: 51, msg: 'from backend', attrs: '' });
    const [pa] = await ca.waitForPushes('pushroommsg');
    assert.equal(pa!.msg, 'from backend');
    assert.equal(ca.pushes.filter((p) => p.method === 'pushroommsg').length, 1);
    const cc = await login(BIG + 63n);
    await cc.quest('enterroom', { rid });

    assert.deepEqual(await cb.quest('leaveroom', { rid }), {});
    assert.deepEqual(await cb.quest('getuserrooms'), { rooms: [] });
    await rejectsCode(cb.quest('sendroommsg', { rid, mid: mid++, mtype: 51, msg: 'x', attrs: '' }), 200040);
    await ca.quest('sendroommsg', { rid, mid: mid++, mtype: 51, msg: 'after leave', attrs: '' });
    await call('sendroommsg', { from: BIG + 63n, rid, mid: mid++, mtype: 51, msg: 'marker', attrs: '' });
    await ca.waitForPushes('pushroommsg', 2);
    await cc.waitForPushes('pushroommsg', 1); // no order with ca's pushes: it may come later
    await sleep(50);
    assert.deepEqual(
      cb.pushes.filter((p) => p.method === 'pushroommsg').map((p) => p.payload.msg),
      ['hello room'],
      'b left: no more room pushes',
    );
    assert.deepEqual(
      cc.pushes.filter((p) => p.method === 'pushroommsg').map((p) => p.payload.msg),
      ['after leave'],
    );

    // enterrooms (Unity), the per-user limit (2) on the client gate
    assert.deepEqual(await cb.quest('enterrooms', { rids: [rid + 1n, rid + 2n] }), {});
    assert.deepEqual(sorted((await cb.quest('getuserrooms')).rooms), [rid + 1n, rid + 2n]);
    await rejectsCode(cb.quest('enterroom', { rid }), 200047);
    await rejectsCode(cb.quest('enterrooms', { rids: [] }), 200033);
    await rejectsCode(cb.quest('enterroom', {}), 10009);
    await rejectsCode(cb.quest('enterroom', { rid: 'x' }), 10010);
  });

  it('delroommember sends kickoutroom and stops room pushes to that user', async () => {
    const rid = BIG + 700n;
    const [a, b, c] = [BIG + 71n, BIG + 72n, BIG + 73n];
    const ca = await login(a);
    const cb = await login(b);
    await ca.quest('enterroom', { rid });
    await (await login(c)).quest('enterroom', { rid }); // c sends; its own pushes never come back
    await call('addroommember', { rid, uid: b }); // server join: b's session is indexed via the bus
    await call('sendroommsg', { from: c, rid, mid: mid++, mtype: 51, msg: 'one', attrs: '' });
    await cb.waitForPushes('pushroommsg');
    assert.deepEqual(await call('delroommember', { rid, uid: b }), {});
    const kick = cb.pushes.find((p) => p.method === 'kickoutroom');
    assert.ok(kick, 'kickoutroom pushed');
    assert.equal(kick.oneway, true);
    assert.deepEqual(kick.payload, { rid });
    await call('sendroommsg', { from: c, rid, mid: mid++, mtype: 51, msg: 'two', attrs: '' });
    await ca.waitForPushes('pushroommsg', 2);
    await sleep(50);
    assert.equal(cb.pushes.filter((p) => p.method === 'pushroommsg').length, 1);
    await rejectsCode(cb.quest('getroommsg', { rid, desc: true, num: 10 }), 200040);
    // removing a user from a room they are not in sends nothing
    assert.deepEqual(await call('delroommember', { rid: rid + 5n, uid: b }), {});
    await cb.quest('getuserrooms');
    assert.equal(cb.pushes.filter((p) => p.method === 'kickoutroom').length, 1);
  });

  it('client groups: usergroups, members with onlines, count with online, member-only add/del', async () => {
    const gid = BIG + 800n;
    const [a, b, c] = [BIG + 81n, BIG + 82n, BIG + 83n];
    await call('addgroupmembers', { gid, uids: [a, b] });
    const ca = await login(a);
    const cc = await login(c);
    assert.deepEqual(await ca.quest('getusergroups'), { gids: [gid] });
    assert.deepEqual(sorted((await ca.quest('getgroupmembers', { gid })).uids), [a, b]);
    assert.equal((await ca.quest('getgroupmembers', { gid })).onlines, undefined);
    const withOnline = await ca.quest('getgroupmembers', { gid, online: true });
    assert.deepEqual(sorted(withOnline.uids), [a, b]);
    assert.deepEqual(sorted(withOnline.onlines), [a]);
    assert.deepEqual(await ca.quest('getgroupcount', { gid }), { cn: 2 });
    assert.deepEqual(await ca.quest('getgroupcount', { gid, online: true }), { cn: 2, online: 1 });

    await rejectsCode(cc.quest('getgroupmembers', { gid }), 200041);
    await rejectsCode(cc.quest('getgroupcount', { gid }), 200041);
    await rejectsCode(cc.quest('addgroupmembers', { gid, uids: [c] }), 200041);
    await rejectsCode(cc.quest('delgroupmembers', { gid, uids: [a] }), 200041);
    assert.deepEqual(await ca.quest('addgroupmembers', { gid, uids: [c] }), {});
    assert.deepEqual(await cc.quest('getusergroups'), { gids: [gid] });
    assert.deepEqual(await cc.quest('delgroupmembers', { gid, uids: [b] }), {});
    assert.deepEqual(sorted((await ca.quest('getgroupmembers', { gid })).uids), [a, c]);
    await rejectsCode(ca.quest('addgroupmembers', { gid, uids: [] }), 200033);
    await rejectsCode(ca.quest('addgroupmembers', { gid, uids: [1n, 2n, 3n, 4n, 5n] }), 200032);
    await rejectsCode(ca.quest('addgroupmembers', { gid, uids: [1n, 2n, 3n, 4n] }), 200042); // 2 + 4 > 5
    await rejectsCode(ca.quest('getgroupmembers', { gid: 'g' }), 10010);
    await rejectsCode(ca.quest('getgroupmembers', {}), 10009);
  });
});
