import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Payload } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';
import { PostgresStore } from '../src/store/postgres.js';
import { dropSchema, freshSchema, PG_URL, postgresUnreachable } from './helpers/postgres.js';

// Management methods (server-api.md §4, client-api.md §4) sent together on one connection
// (pipelined: the SDKs do not wait for one answer before the next call). Two changes of the same
// thing must end as the later one says, on the embedded store and on PostgreSQL alike: a leave
// after an enter leaves the user out of the room, a delete after an add deletes.

const BIG = 1n << 60n; // ids far above 2^53
const unreachable = await postgresUnreachable();
const withPostgres = !unreachable || process.env['CI'] === 'true';

for (const storeKind of ['sqlite', 'postgres'] as const) {
  const skip = storeKind === 'postgres' && !withPostgres ? unreachable : false;
  describe(`management calls sent together keep their order (${storeKind})`, { skip }, () => {
    let server: TestServer;
    let backend: RawClient;
    const clients: RawClient[] = [];
    const schema = freshSchema('pipelined');
    const call = (method: string, payload: Payload = {}) => backend.signed(method, payload, TEST_PID, TEST_SECRET);
    async function login(uid: bigint): Promise<RawClient> {
      const c = await RawClient.loggedIn(server.clientEndpoint, backend, uid);
      clients.push(c);
      return c;
    }

    before(async () => {
      server = await startTestServer(
        { limits: { maxRoomsPerUser: 3 }, clientCallsPerSecond: 0 },
        storeKind === 'postgres' ? { store: new PostgresStore({ url: PG_URL, schema }) } : {},
      );
      backend = await RawClient.tcp(server.serverEndpoint);
    });
    after(async () => {
      for (const c of clients) c.close();
      backend?.close();
      await server?.close();
      if (storeKind === 'postgres') await dropSchema(schema);
    });

    it('client enterroom then leaveroom: the user is out of the room (and the rooms left do not count against 200047)', async () => {
      const u = BIG + 11n;
      const c = await login(u);
      for (let i = 1n; i <= 5n; i++) {
        const rid = BIG + 1000n + i;
        assert.deepEqual(await Promise.all([c.quest('enterroom', { rid }), c.quest('leaveroom', { rid })]), [{}, {}]);
        assert.deepEqual(await c.quest('getuserrooms'), { rooms: [] }, `room ${i}`);
        assert.deepEqual(await call('getroommembers', { rid }), { uids: [] });
      }
    });

    it('server addroommember then delroommember, adduserrooms then deleteuserrooms: out of the rooms', async () => {
      for (let i = 1n; i <= 5n; i++) {
        const u = BIG + 20n + i;
        const rid = BIG + 2000n + i;
        await Promise.all([call('addroommember', { rid, uid: u }), call('delroommember', { rid, uid: u })]);
        await Promise.all([call('adduserrooms', { rids: [rid + 100n], uid: u }), call('deleteuserrooms', { rids: [rid + 100n], uid: u })]);
        assert.deepEqual(await call('getroommembers', { rid }), { uids: [] });
        assert.deepEqual(await call('getroommembers', { rid: rid + 100n }), { uids: [] });
      }
    });

    it('addfriends then delfriends (both gates): no friendship is left', async () => {
      const u = BIG + 31n;
      const c = await login(u);
      for (let i = 1n; i <= 10n; i++) {
        await Promise.all([c.quest('addfriends', { friends: [u + i] }), c.quest('delfriends', { friends: [u + i] })]);
        const v = BIG + 100n * i;
        await Promise.all([call('addfriends', { uid: v, friends: [v + 1n] }), call('delfriends', { uid: v, friends: [v + 1n] })]);
        assert.deepEqual(await call('getfriends', { uid: v }), { uids: [] });
        assert.deepEqual(await call('getfriends', { uid: v + 1n }), { uids: [] });
      }
      assert.deepEqual(await c.quest('getfriends'), { uids: [] });
    });

    it('client addblacks then delblacks, dataset then datadel, setuserinfo twice: the later call wins', async () => {
      const u = BIG + 41n;
      const c = await login(u);
      const wrong: string[] = [];
      for (let i = 1n; i <= 10n; i++) {
        await Promise.all([c.quest('addblacks', { blacks: [u + i] }), c.quest('delblacks', { blacks: [u + i] })]);
        if (((await c.quest('getblacks')).uids as unknown[]).length > 0) wrong.push(`blacks ${i}`);
        await Promise.all([c.quest('dataset', { key: 'k', val: 'v' }), c.quest('datadel', { key: 'k' })]);
        if ((await c.quest('dataget', { key: 'k' })).val !== undefined) wrong.push(`data ${i}`);
        await Promise.all([c.quest('setuserinfo', { oinfo: `a${i}` }), c.quest('setuserinfo', { oinfo: `b${i}` })]);
        if ((await c.quest('getuserinfo')).oinfo !== `b${i}`) wrong.push(`info ${i}`);
      }
      assert.deepEqual(wrong, []);
    });

    it('server blacks, data, info, bans, project blacklist, tokens: the later call wins', async () => {
      const wrong: string[] = [];
      for (let i = 1n; i <= 10n; i++) {
        const u = BIG + 5000n + 10n * i;
        await Promise.all([call('addblacks', { uid: u, blacks: [u + 1n] }), call('delblacks', { uid: u, blacks: [u + 1n] })]);
        if (((await call('getblacks', { uid: u })).uids as unknown[]).length > 0) wrong.push(`blacks ${i}`);
        await Promise.all([call('dataset', { uid: u, key: 'k', val: 'v' }), call('datadel', { uid: u, key: 'k' })]);
        if ((await call('dataget', { uid: u, key: 'k' })).val !== undefined) wrong.push(`data ${i}`);
        await Promise.all([call('setgroupinfo', { gid: u, oinfo: 'a' }), call('setgroupinfo', { gid: u, oinfo: 'b' })]);
        if ((await call('getgroupinfo', { gid: u })).oinfo !== 'b') wrong.push(`info ${i}`);
        await Promise.all([call('addgroupban', { gid: u, uid: u, btime: 0 }), call('removegroupban', { gid: u, uid: u })]);
        if ((await call('isbanofgroup', { gid: u, uid: u })).ok) wrong.push(`group ban ${i}`);
        await Promise.all([call('addroomban', { uid: u, btime: 0 }), call('removeroomban', { uid: u })]);
        if ((await call('isbanofroom', { rid: u, uid: u })).ok) wrong.push(`room ban ${i}`);
        await Promise.all([call('addprojectblack', { uid: u, btime: 0 }), call('removeprojectblack', { uid: u })]);
        if ((await call('isprojectblack', { uid: u })).ok) wrong.push(`project black ${i}`);
        // A token issued and then removed no longer logs in.
        const [{ token }] = await Promise.all([call('gettoken', { uid: u }), call('removetoken', { uid: u })]);
        const c = await RawClient.websocket(server.clientEndpoint);
        clients.push(c);
        if ((await c.quest('auth', { pid: TEST_PID, uid: u, token })).ok !== false) wrong.push(`token ${i}`);
        c.close();
      }
      assert.deepEqual(wrong, []);
    });
  });
}
