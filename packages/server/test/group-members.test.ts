import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LocalBus } from '../src/bus/local.js';
import type { BusEvent } from '../src/bus/bus.js';
import { GroupMembers } from '../src/services/group-members.js';
import { SqliteStore } from '../src/store/sqlite.js';

// services/group-members.ts: group members held in memory for sends, against a real store.

describe('GroupMembers', () => {
  let store: SqliteStore;
  let bus: LocalBus;
  const events: BusEvent[] = [];
  let reads = 0;

  before(async () => {
    store = new SqliteStore({ dataDir: ':memory:' });
    await store.init();
    const groupMembers = store.groupMembers.bind(store);
    store.groupMembers = async (pid, gid) => {
      reads++;
      return groupMembers(pid, gid);
    };
    bus = new LocalBus();
    await bus.start(
      (e) => events.push(e),
      () => [],
    );
  });
  after(() => store.close());

  it('reads a group once, and again after a change; tells the other nodes', async () => {
    const groups = new GroupMembers(store, bus);
    await store.addGroupMembers(1, 10n, [1n, 2n]);
    reads = 0;
    assert.deepEqual(await groups.members(1, 10n), [1n, 2n]);
    assert.deepEqual(await groups.members(1, 10n), [1n, 2n]);
    assert.equal(reads, 1);
    await store.addGroupMembers(1, 10n, [3n]);
    events.length = 0;
    groups.changed(1, 10n);
    assert.deepEqual(events, [{ type: 'group', pid: 1, gid: 10n }]);
    assert.deepEqual(await groups.members(1, 10n), [1n, 2n, 3n]);
    assert.equal(reads, 2);
    assert.deepEqual(await groups.members(2, 10n), [], 'per project; an unknown group is empty and not kept');
    assert.deepEqual(await groups.members(2, 10n), []);
    assert.equal(reads, 4);
  });

  it('concurrent reads share one load; a load a change overtakes is not kept', async () => {
    const groups = new GroupMembers(store, bus);
    await store.addGroupMembers(1, 20n, [1n]);
    reads = 0;
    const [a, b] = await Promise.all([groups.members(1, 20n), groups.members(1, 20n)]);
    assert.deepEqual([a, b], [[1n], [1n]]);
    assert.equal(reads, 1);

    groups.forget(1, 20n);
    const overtaken = groups.members(1, 20n); // loading the old members...
    await store.addGroupMembers(1, 20n, [2n]);
    groups.forget(1, 20n); // ...when the change comes
    const fresh = groups.members(1, 20n);
    await overtaken;
    assert.deepEqual(await fresh, [1n, 2n]);
    assert.deepEqual(await groups.members(1, 20n), [1n, 2n], 'the overtaken load did not replace the fresh one');
  });

  it('holds at most maxIds (member ids, plus 4 per group), dropping the groups used least recently', async () => {
    const groups = new GroupMembers(store, bus, 18);
    for (const gid of [31n, 32n, 33n]) await store.addGroupMembers(1, gid, [1n, 2n]); // 6 each
    await store.addGroupMembers(1, 35n, [1n]); // 5
    await store.addGroupMembers(
      1,
      34n,
      [...Array(15).keys()].map((i) => BigInt(i + 1)),
    ); // 19
    await groups.members(1, 31n);
    await groups.members(1, 32n);
    await groups.members(1, 31n); // 32 is now the least recently used
    await groups.members(1, 33n); // 18: all three fit
    await groups.members(1, 35n); // 23: 32 goes
    reads = 0;
    await groups.members(1, 31n);
    await groups.members(1, 33n);
    await groups.members(1, 35n);
    assert.equal(reads, 0, '31, 33 and 35 are held');
    await groups.members(1, 32n);
    assert.equal(reads, 1, '32 was dropped');
    assert.equal((await groups.members(1, 34n)).length, 15, 'larger than the bound: answered, never held');
    await groups.members(1, 34n);
    assert.equal(reads, 3);
  });

  it('counts what each group held costs, so many one-member groups are bounded as well as a few large ones', async () => {
    const groups = new GroupMembers(store, bus, 50);
    const gids = [...Array(20).keys()].map((i) => 100n + BigInt(i));
    for (const gid of gids) await store.addGroupMembers(1, gid, [7n]);
    for (const gid of gids) await groups.members(1, gid); // 5 each: the last 10 fit
    reads = 0;
    for (const gid of gids.slice(10)) await groups.members(1, gid);
    assert.equal(reads, 0, 'the 10 used last are held');
    await groups.members(1, gids[0]!);
    assert.equal(reads, 1, 'the first were dropped, though 20 ids are below the bound');
  });
});
