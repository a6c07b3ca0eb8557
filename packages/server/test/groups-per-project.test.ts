import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Payload } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';
import { SqliteStore } from '../src/store/sqlite.js';

// Groups per project (errors-and-limits.md §3, RTM_MAX_GROUPS_PER_PROJECT; methods/membership.ts):
// a group is a gid with members; an add that would create one more than the limit is refused with
// 200034 and stores nothing. Real server, limit lowered to 3.

const BIG = 1n << 60n; // ids far above 2^53
const sorted = (v: unknown): bigint[] => (v as (bigint | number)[]).map((x) => BigInt(x)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

/** The embedded store, counting its group counts. */
class CountingStore extends SqliteStore {
  counts = 0;
  override countGroups(pid: number, upTo?: number): Promise<number> {
    this.counts++;
    return super.countGroups(pid, upTo);
  }
}

/** Rejected with `code`; answers the `ex` text. */
async function rejectsCode(p: Promise<unknown>, code: number): Promise<string> {
  let ex = '';
  await assert.rejects(p, (err: { code?: number; message?: string }) => {
    assert.equal(err.code, code, err.message);
    ex = err.message ?? '';
    return true;
  });
  return ex;
}

describe('groups per project (RTM_MAX_GROUPS_PER_PROJECT)', () => {
  const MAX = 3;
  let server: TestServer;
  let store: CountingStore;
  let backend: RawClient & { socket: import('node:net').Socket };
  const clients: RawClient[] = [];
  const call = (method: string, payload: Payload = {}) => backend.signed(method, payload, TEST_PID, TEST_SECRET);
  const [a, b, c, d] = [BIG + 1n, BIG + 2n, BIG + 3n, BIG + 4n];
  const g = (i: number) => BIG + 1000n + BigInt(i);
  /** The groups of the project among the gids this test uses, from the server's answers. */
  async function groupsHeld(): Promise<bigint[]> {
    const held: bigint[] = [];
    for (let i = 0; i < 20; i++) if (((await call('getgroupmembers', { gid: g(i) })).uids as unknown[]).length > 0) held.push(g(i));
    return held;
  }
  async function login(uid: bigint): Promise<RawClient> {
    const c = await RawClient.loggedIn(server.clientEndpoint, backend, uid);
    clients.push(c);
    return c;
  }

  before(async () => {
    server = await startTestServer(
      { limits: { maxGroupsPerProject: MAX } },
      { makeStore: (dataDir) => (store = new CountingStore({ dataDir })) },
    );
    backend = await RawClient.tcp(server.serverEndpoint);
  });
  after(async () => {
    for (const client of clients) client.close();
    backend.close();
    await server.close();
  });

  it('at the limit a new group is refused (200034, saying which setting raises it) and nothing is stored', async () => {
    await call('addgroupmembers', { gid: g(0), uids: [a] });
    await call('addgroupmembers', { gid: g(1), uids: [a, b] });
    await call('addgroupmembers', { gid: g(2), uids: [b, c, d] });
    assert.deepEqual(await groupsHeld(), [g(0), g(1), g(2)]);

    const ex = await rejectsCode(call('addgroupmembers', { gid: g(3), uids: [a, d] }), 200034);
    assert.match(ex, /project \d+ has reached its limit of 3 groups/);
    assert.match(ex, /RTM_MAX_GROUPS_PER_PROJECT/);
    assert.deepEqual(await call('getgroupmembers', { gid: g(3) }), { uids: [] });
    assert.deepEqual(await call('getgroupcount', { gid: g(3) }), { cn: 0 });
    assert.deepEqual(await call('isgroupmember', { gid: g(3), uid: a }), { ok: false });
    assert.deepEqual(sorted((await call('getusergroups', { uid: a })).gids), [g(0), g(1)]);
    assert.deepEqual(sorted((await call('getusergroups', { uid: d })).gids), [g(2)]);
    // Again: still refused (a refusal is not remembered as a group).
    await rejectsCode(call('addgroupmembers', { gid: g(3), uids: [a] }), 200034);
    assert.deepEqual(await groupsHeld(), [g(0), g(1), g(2)]);
  });

  it('at the limit adds to existing groups still work, through both gates, and count nothing', async () => {
    const counted = store.counts;
    await call('addgroupmembers', { gid: g(0), uids: [b, c] });
    await call('addgroupmembers', { gid: g(0), uids: [a] }); // nothing new: still fine
    assert.deepEqual(sorted((await call('getgroupmembers', { gid: g(0) })).uids), [a, b, c]);

    // The client gate adds only to groups the caller is in (200041), so it cannot create groups.
    const client = await login(d);
    assert.deepEqual(await client.quest('addgroupmembers', { gid: g(2), uids: [a] }), {});
    assert.deepEqual(sorted((await call('getgroupmembers', { gid: g(2) })).uids), [a, b, c, d]);
    await rejectsCode(client.quest('addgroupmembers', { gid: g(4), uids: [d] }), 200041);
    assert.equal(store.counts, counted, 'adds to groups with members do not count groups');
    assert.deepEqual(await groupsHeld(), [g(0), g(1), g(2)]);
  });

  it('group info on a gid without members is no group: setting it at the limit works and frees nothing', async () => {
    assert.deepEqual(await call('setgroupinfo', { gid: g(5), oinfo: 'o', pinfo: 'p' }), {});
    assert.deepEqual(await call('getgroupinfo', { gid: g(5) }), { oinfo: 'o', pinfo: 'p' });
    await rejectsCode(call('addgroupmembers', { gid: g(5), uids: [a] }), 200034);
    assert.deepEqual(await call('getgroupmembers', { gid: g(5) }), { uids: [] });
  });

  it('delgroup and removing the last member each free a place at once', async () => {
    assert.deepEqual(await call('delgroup', { gid: g(1) }), {});
    assert.deepEqual(await call('addgroupmembers', { gid: g(3), uids: [a, d] }), {});
    await rejectsCode(call('addgroupmembers', { gid: g(5), uids: [a] }), 200034);
    assert.deepEqual(await groupsHeld(), [g(0), g(2), g(3)]);

    // Removing members that leave some keeps the group; removing the last one ends it.
    await call('delgroupmembers', { gid: g(3), uids: [a] });
    await rejectsCode(call('addgroupmembers', { gid: g(5), uids: [a] }), 200034);
    await call('delgroupmembers', { gid: g(3), uids: [d] });
    assert.deepEqual(await call('addgroupmembers', { gid: g(5), uids: [a] }), {});
    assert.deepEqual(await call('getgroupinfo', { gid: g(5) }), { oinfo: 'o', pinfo: 'p' }, 'the info set before is its info');
    assert.deepEqual(await groupsHeld(), [g(0), g(2), g(5)]);
  });

  it('new groups arriving together cannot pass the limit together', async () => {
    await call('delgroup', { gid: g(0) });
    await call('delgroup', { gid: g(2) });
    // One TCP write: the server starts them all before the first has written.
    backend.socket.cork();
    const answers = [10, 11, 12, 13].map((i) =>
      call('addgroupmembers', { gid: g(i), uids: [a, b] }).then(
        () => 'ok',
        (err: { code: number }) => err.code,
      ),
    );
    backend.socket.uncork();
    assert.deepEqual((await Promise.all(answers)).sort(), [200034, 200034, 'ok', 'ok']);
    assert.equal((await groupsHeld()).length, MAX);
  });
});

describe('groups per project: 0 means no limit', () => {
  it('with RTM_MAX_GROUPS_PER_PROJECT=0 groups are created without counting', async () => {
    const server = await startTestServer(
      { limits: { maxGroupsPerProject: 0 } },
      {
        makeStore: (dataDir) => Object.assign(new CountingStore({ dataDir }), { countGroups: () => Promise.reject(new Error('counted')) }),
      },
    );
    const raw = await RawClient.tcp(server.serverEndpoint);
    try {
      for (let i = 0n; i < 5n; i++) await raw.signed('addgroupmembers', { gid: BIG + i, uids: [1n] }, TEST_PID, TEST_SECRET);
      assert.deepEqual(sorted((await raw.signed('getusergroups', { uid: 1n }, TEST_PID, TEST_SECRET)).gids), [
        BIG,
        BIG + 1n,
        BIG + 2n,
        BIG + 3n,
        BIG + 4n,
      ]);
    } finally {
      raw.close();
      await server.close();
    }
  });
});

describe('groups per project: the default', () => {
  it('a project holds 10,000 groups by default (errors-and-limits.md §3): the 10,001st is refused', async () => {
    const server = await startTestServer();
    const raw = await RawClient.tcp(server.serverEndpoint);
    const call = (method: string, payload: Payload) => raw.signed(method, payload, TEST_PID, TEST_SECRET);
    try {
      const base = BIG + 1_000_000n;
      for (let i = 0; i < 10_000; i += 500) {
        await Promise.all(Array.from({ length: 500 }, (_, j) => call('addgroupmembers', { gid: base + BigInt(i + j), uids: [1n] })));
      }
      await rejectsCode(call('addgroupmembers', { gid: base + 10_000n, uids: [1n, 2n] }), 200034);
      assert.deepEqual(await call('getgroupmembers', { gid: base + 10_000n }), { uids: [] });
      assert.equal(((await call('getusergroups', { uid: 1n })).gids as unknown[]).length, 10_000);
      assert.deepEqual(await call('getusergroups', { uid: 2n }), { gids: [] });
    } finally {
      raw.close();
      await server.close();
    }
  });
});
