import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Payload } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';

// Friends, blacklists, project blacklist, info and key-value data through both gates
// (server-api.md §4, client-api.md §4–§5), real sockets.

const BIG = 1n << 60n;
const sorted = (v: unknown): bigint[] => (v as (bigint | number)[]).map((x) => BigInt(x)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

async function rejectsCode(p: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(p, (err: { code?: number; message?: string }) => {
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('friends, blacklists, info and data (server and client gates)', () => {
  let server: TestServer;
  let backend: RawClient;
  const clients: RawClient[] = [];
  let mid = 1n;
  const call = (method: string, payload: Payload = {}) => backend.signed(method, payload, TEST_PID, TEST_SECRET);
  async function connectAs(uid: bigint): Promise<{ client: RawClient; answer: Promise<Payload> }> {
    const { token } = await call('gettoken', { uid });
    const client = await RawClient.websocket(server.clientEndpoint);
    clients.push(client);
    return { client, answer: client.quest('auth', { pid: TEST_PID, uid, token }) };
  }
  async function login(uid: bigint): Promise<RawClient> {
    const { client, answer } = await connectAs(uid);
    assert.deepEqual(await answer, { ok: true });
    return client;
  }

  before(async () => {
    server = await startTestServer({
      limits: { maxFriends: 3, maxItemsPerCall: 4, maxQueryItems: 4, maxInfoBytes: 64, maxDataKeyBytes: 8, maxDataValBytes: 16 },
    });
    backend = await RawClient.tcp(server.serverEndpoint);
  });
  after(async () => {
    for (const c of clients) c.close();
    backend.close();
    await server.close();
  });

  it('server friends: symmetric add, get, isfriend(s), del, limits', async () => {
    const [a, b, c, d, e] = [BIG + 1n, BIG + 2n, BIG + 3n, BIG + 4n, BIG + 5n];
    assert.deepEqual(await call('addfriends', { uid: a, friends: [b, c] }), {});
    assert.deepEqual(sorted((await call('getfriends', { uid: a })).uids), [b, c]);
    assert.deepEqual(await call('getfriends', { uid: b }), { uids: [a] }, 'symmetric');
    assert.deepEqual(await call('isfriend', { uid: b, fuid: a }), { ok: true });
    assert.deepEqual(await call('isfriend', { uid: b, fuid: c }), { ok: false });
    assert.deepEqual(sorted((await call('isfriends', { uid: a, fuids: [b, c, d] })).fuids), [b, c]);
    assert.deepEqual(await call('isfriends', { uid: a, fuids: [] }), { fuids: [] });
    await call('addfriends', { uid: a, friends: [d] }); // 3 = the limit
    await rejectsCode(call('addfriends', { uid: a, friends: [e] }), 200048);
    await call('addfriends', { uid: a, friends: [b] }); // already a friend: no change
    assert.deepEqual(await call('delfriends', { uid: b, friends: [a] }), {});
    assert.deepEqual(sorted((await call('getfriends', { uid: a })).uids), [c, d]);
    await rejectsCode(call('addfriends', { uid: a, friends: [] }), 200033);
    await rejectsCode(call('delfriends', { uid: a, friends: [] }), 200033);
    await rejectsCode(call('addfriends', { uid: a, friends: [1n, 2n, 3n, 4n, 5n] }), 200032);
    await rejectsCode(call('isfriends', { uid: a, fuids: [1n, 2n, 3n, 4n, 5n] }), 200032);
    await rejectsCode(call('addfriends', { uid: a, friends: ['x'] }), 10010);
    await rejectsCode(call('isfriend', { uid: a }), 10009);
  });

  it('server blacks: add, get, isblack(s) direction, del; blocks p2p sends (200049)', async () => {
    const [a, b, c] = [BIG + 11n, BIG + 12n, BIG + 13n];
    assert.deepEqual(await call('addblacks', { uid: a, blacks: [b, c] }), {});
    assert.deepEqual(sorted((await call('getblacks', { uid: a })).uids), [b, c]);
    assert.deepEqual(await call('getblacks', { uid: b }), { uids: [] });
    // isblack(uid, buid): true when buid has blocked uid
    assert.deepEqual(await call('isblack', { uid: b, buid: a }), { ok: true });
    assert.deepEqual(await call('isblack', { uid: a, buid: b }), { ok: false });
    assert.deepEqual(await call('isblacks', { uid: b, buids: [a, c] }), { buids: [a] });
    assert.deepEqual(await call('isblacks', { uid: a, buids: [b, c] }), { buids: [] });
    await rejectsCode(call('sendmsg', { from: b, to: a, mid: mid++, mtype: 51, msg: 'x', attrs: '' }), 200049);
    await call('sendmsg', { from: a, to: b, mid: mid++, mtype: 51, msg: 'a may still send', attrs: '' });
    assert.deepEqual(await call('delblacks', { uid: a, blacks: [b] }), {});
    await call('sendmsg', { from: b, to: a, mid: mid++, mtype: 51, msg: 'unblocked', attrs: '' });
    assert.deepEqual(await call('getblacks', { uid: a }), { uids: [c] });
    await rejectsCode(call('addblacks', { uid: a, blacks: [] }), 200033);
    await rejectsCode(call('isblacks', { uid: a, buids: [1n, 2n, 3n, 4n, 5n] }), 200032);
    await rejectsCode(call('isblack', { uid: a, buid: 'b' }), 10010);
  });

  it('client friends and blacks act as the logged-in uid; blacks block client p2p sends', async () => {
    const [a, b, c] = [BIG + 21n, BIG + 22n, BIG + 23n];
    const ca = await login(a);
    const cb = await login(b);
    assert.deepEqual(await ca.quest('addfriends', { friends: [b, c] }), {});
    assert.deepEqual(sorted((await ca.quest('getfriends')).uids), [b, c]);
    assert.deepEqual(await cb.quest('getfriends'), { uids: [a] });
    assert.deepEqual(await ca.quest('delfriends', { friends: [c] }), {});
    assert.deepEqual(await ca.quest('getfriends'), { uids: [b] });
    await rejectsCode(ca.quest('addfriends', { friends: [] }), 200033);
    await rejectsCode(ca.quest('addfriends', { friends: [1n, 2n, 3n, 4n, 5n] }), 200032);

    assert.deepEqual(await ca.quest('addblacks', { blacks: [b] }), {});
    assert.deepEqual(await ca.quest('getblacks'), { uids: [b] });
    assert.deepEqual(await call('isblack', { uid: b, buid: a }), { ok: true });
    await rejectsCode(cb.quest('sendmsg', { to: a, mid: mid++, mtype: 51, msg: 'x', attrs: '' }), 200049);
    assert.deepEqual(await ca.quest('delblacks', { blacks: [b] }), {});
    assert.deepEqual(await ca.quest('getblacks'), { uids: [] });
    await cb.quest('sendmsg', { to: a, mid: mid++, mtype: 51, msg: 'ok now', attrs: '' });
    const [push] = await ca.waitForPushes('pushmsg');
    assert.equal(push!.msg, 'ok now');
    await rejectsCode(ca.quest('delblacks', {}), 10009);
  });

  it('project blacklist: kicks the online user, refuses login (200024), aliases, expiry by removal', async () => {
    const u = BIG + 31n;
    const cu = await login(u);
    assert.deepEqual(await call('addprojectblack', { uid: u, btime: 0 }), {});
    await cu.closed;
    const kick = cu.pushes.find((p) => p.method === 'kickout');
    assert.ok(kick, 'kickout pushed before the close');
    assert.equal(kick.oneway, true);
    assert.deepEqual(await call('isprojectblack', { uid: u }), { ok: true });
    assert.deepEqual(await call('isprojectban', { uid: u }), { ok: true }, 'Go alias');
    await rejectsCode((await connectAs(u)).answer, 200024);
    await rejectsCode(call('sendmsg', { from: u, to: u + 1n, mid: mid++, mtype: 51, msg: 'x', attrs: '' }), 200024);
    assert.deepEqual(await call('removeprojectblack', { uid: u }), {});
    assert.deepEqual(await call('isprojectblack', { uid: u }), { ok: false });
    await login(u);
    // Go's addprojectban / removeprojectban are the same list; btime in seconds
    await call('addprojectban', { uid: u + 1n, btime: 3600 });
    assert.deepEqual(await call('isprojectblack', { uid: u + 1n }), { ok: true });
    await call('removeprojectban', { uid: u + 1n });
    assert.deepEqual(await call('isprojectblack', { uid: u + 1n }), { ok: false });
    await rejectsCode(call('addprojectblack', { uid: u }), 10009);
  });

  it('server info: user/group/room info, open infos keyed by decimal id, sizes', async () => {
    const [a, b] = [BIG + 41n, BIG + 42n];
    assert.deepEqual(await call('getuserinfo', { uid: a }), { oinfo: '', pinfo: '' });
    assert.deepEqual(await call('setuserinfo', { uid: a, oinfo: 'public a' }), {});
    assert.deepEqual(await call('getuserinfo', { uid: a }), { oinfo: 'public a', pinfo: '' });
    await call('setuserinfo', { uid: a, pinfo: 'private a' });
    assert.deepEqual(await call('getuserinfo', { uid: a }), { oinfo: 'public a', pinfo: 'private a' }, 'absent part unchanged');
    await call('setuserinfo', { uid: b, oinfo: 'public b', pinfo: 'p' });
    assert.deepEqual(await call('getuseropeninfo', { uids: [a, b, b + 1n, a] }), {
      info: { [a.toString()]: 'public a', [b.toString()]: 'public b', [(b + 1n).toString()]: '' },
    });
    // Users without info are listed with "": an answer for ids that all lack info is never an empty
    // map (the PHP SDK decodes one to a stdClass that its callers cannot index).
    assert.deepEqual(await call('getuseropeninfo', { uids: [b + 1n, b + 2n] }), {
      info: { [(b + 1n).toString()]: '', [(b + 2n).toString()]: '' },
    });
    await rejectsCode(call('getuseropeninfo', { uids: [1n, 2n, 3n, 4n, 5n] }), 200032);
    await rejectsCode(call('setuserinfo', { uid: a }), 10009);
    await rejectsCode(call('setuserinfo', { uid: a, oinfo: 'x'.repeat(65) }), 200030);
    await rejectsCode(call('setuserinfo', { uid: a, oinfo: 5 }), 10010);

    const gid = BIG + 400n;
    const rid = BIG + 500n;
    assert.deepEqual(await call('getgroupinfo', { gid }), { oinfo: '', pinfo: '' });
    assert.deepEqual(await call('setgroupinfo', { gid, oinfo: 'go', pinfo: 'gp' }), {});
    assert.deepEqual(await call('getgroupinfo', { gid }), { oinfo: 'go', pinfo: 'gp' });
    assert.deepEqual(await call('setroominfo', { rid, pinfo: 'rp' }), {});
    assert.deepEqual(await call('getroominfo', { rid }), { oinfo: '', pinfo: 'rp' });
    await rejectsCode(call('setroominfo', { rid, pinfo: 'é'.repeat(33) }), 200030); // 66 bytes
  });

  it('server data: dataset, dataget ({} when absent), datadel, sizes (200035)', async () => {
    const u = BIG + 51n;
    assert.deepEqual(await call('dataget', { uid: u, key: 'k' }), {});
    assert.deepEqual(await call('dataset', { uid: u, key: 'k', val: 'v1' }), {});
    assert.deepEqual(await call('dataget', { uid: u, key: 'k' }), { val: 'v1' });
    await call('dataset', { uid: u, key: 'k', val: '' });
    assert.deepEqual(await call('dataget', { uid: u, key: 'k' }), { val: '' });
    assert.deepEqual(await call('dataget', { uid: u + 1n, key: 'k' }), {}, 'per user');
    assert.deepEqual(await call('datadel', { uid: u, key: 'k' }), {});
    assert.deepEqual(await call('dataget', { uid: u, key: 'k' }), {});
    await rejectsCode(call('dataset', { uid: u, key: 'k'.repeat(9), val: 'v' }), 200035);
    await rejectsCode(call('dataset', { uid: u, key: 'k', val: 'v'.repeat(17) }), 200035);
    await rejectsCode(call('dataset', { uid: u, key: 'k' }), 10009);
    await rejectsCode(call('dataset', { uid: u, key: 'k', val: [1] }), 10010);
  });

  it('client info and data: own info, group/room info rights (200041 / 200040), open infos, shared data store', async () => {
    const [a, b] = [BIG + 61n, BIG + 62n];
    const gid = BIG + 600n;
    const rid = BIG + 700n;
    await call('addgroupmembers', { gid, uids: [a] });
    const ca = await login(a);
    const cb = await login(b);

    assert.deepEqual(await ca.quest('getuserinfo'), { oinfo: '', pinfo: '' });
    assert.deepEqual(await ca.quest('setuserinfo', { oinfo: 'me', pinfo: 'secret' }), {});
    assert.deepEqual(await ca.quest('getuserinfo'), { oinfo: 'me', pinfo: 'secret' });
    assert.deepEqual(await call('getuserinfo', { uid: a }), { oinfo: 'me', pinfo: 'secret' });
    assert.deepEqual(await cb.quest('getuseropeninfo', { uids: [a, b] }), { info: { [a.toString()]: 'me', [b.toString()]: '' } });
    // Both keys are optional on the client gate (client-api.md §4): none changes nothing.
    assert.deepEqual(await ca.quest('setuserinfo', {}), {});
    assert.deepEqual(await ca.quest('getuserinfo'), { oinfo: 'me', pinfo: 'secret' });
    await rejectsCode(ca.quest('setuserinfo', { pinfo: 'x'.repeat(65) }), 200030);

    assert.deepEqual(await ca.quest('setgroupinfo', { gid, oinfo: 'g open', pinfo: 'g private' }), {});
    assert.deepEqual(await ca.quest('getgroupinfo', { gid }), { oinfo: 'g open', pinfo: 'g private' });
    await rejectsCode(cb.quest('setgroupinfo', { gid, oinfo: 'hijack' }), 200041);
    await rejectsCode(cb.quest('setgroupinfo', { gid }), 200041);
    await rejectsCode(cb.quest('getgroupinfo', { gid }), 200041);
    assert.deepEqual(await cb.quest('getgroupopeninfo', { gid }), { oinfo: 'g open' });
    assert.deepEqual(await cb.quest('getgroupsopeninfo', { gids: [gid, gid + 1n] }), {
      info: { [gid.toString()]: 'g open', [(gid + 1n).toString()]: '' },
    });

    await rejectsCode(ca.quest('setroominfo', { rid, oinfo: 'r' }), 200040);
    await rejectsCode(ca.quest('getroominfo', { rid }), 200040);
    await ca.quest('enterroom', { rid });
    assert.deepEqual(await ca.quest('setroominfo', { rid, oinfo: 'r open', pinfo: 'r private' }), {});
    assert.deepEqual(await ca.quest('getroominfo', { rid }), { oinfo: 'r open', pinfo: 'r private' });
    assert.deepEqual(await cb.quest('getroomopeninfo', { rid }), { oinfo: 'r open' });
    assert.deepEqual(await cb.quest('getroomopeninfo', { rid: rid + 1n }), { oinfo: '' });
    assert.deepEqual(await cb.quest('getroomsopeninfo', { rids: [rid] }), { info: { [rid.toString()]: 'r open' } });
    await rejectsCode(cb.quest('getroomsopeninfo', { rids: [1n, 2n, 3n, 4n, 5n] }), 200032);

    assert.deepEqual(await ca.quest('dataget', { key: 'k' }), {});
    assert.deepEqual(await ca.quest('dataset', { key: 'k', val: 'from client' }), {});
    assert.deepEqual(await ca.quest('dataget', { key: 'k' }), { val: 'from client' });
    assert.deepEqual(await call('dataget', { uid: a, key: 'k' }), { val: 'from client' }, 'same store as the server gate');
    await call('dataset', { uid: a, key: 'k2', val: 'from server' });
    assert.deepEqual(await ca.quest('dataget', { key: 'k2' }), { val: 'from server' });
    assert.deepEqual(await cb.quest('dataget', { key: 'k' }), {});
    assert.deepEqual(await ca.quest('datadel', { key: 'k' }), {});
    assert.deepEqual(await ca.quest('dataget', { key: 'k' }), {});
    await rejectsCode(ca.quest('dataset', { key: 'k', val: 'v'.repeat(17) }), 200035);
    await rejectsCode(ca.quest('dataset', { key: 'k' }), 10009);
    await rejectsCode(ca.quest('dataget', { key: 1 }), 10010);
  });
});
