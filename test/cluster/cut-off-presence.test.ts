/**
 * A user online on a node cut off from NATS (docs/cluster.md "Presence across nodes"): the other
 * nodes cannot see that session over the bus, but the node's presence record in PostgreSQL shows
 * it, and its lease is fresh. The end of the user's session on another node must not log them out
 * (rooms left, logout heard) while they are still online there; the end of their last session
 * does, once.
 *
 * Two in-process nodes on one fresh PostgreSQL schema and one fresh NATS subject prefix; node 1
 * reaches NATS through a TCP proxy (@rtm/testkit `startFaultyProxy`) that cuts it off. A backend
 * on node 0 listens to login/logout events. No grace period: a session's end is the presence's.
 *
 * Skipped when PostgreSQL or NATS is unreachable, except when CI=true.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FaultyProxy, type RawClient, startFaultyProxy, until, whenAvailable } from '@rtm/testkit';
import { clusterServicesUnavailable, NATS_URL } from './cluster.js';
import { natsOutage, nextId, startListeningNodes } from './in-process-nodes.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const unavailable = await clusterServicesUnavailable();

whenAvailable(unavailable, 'cut-off presence', 'needs PostgreSQL and NATS', () => {
  describe('a session on a node cut off from NATS', { timeout: 120_000 }, () => {
    let proxy: FaultyProxy;
    let c: Awaited<ReturnType<typeof startListeningNodes>>;
    before(async () => {
      const nats = new URL(NATS_URL);
      proxy = await startFaultyProxy(nats.hostname, Number(nats.port || 4222));
      c = await startListeningNodes(2, { natsUrl: (i) => (i === 1 ? `nats://127.0.0.1:${proxy.port}` : NATS_URL) });
    });
    after(async () => {
      await c?.close(); // the buses first, so that their bye goes out through the proxy
      proxy?.close();
    });

    /** The logout events heard on node 0 for `uid`. */
    const logouts = (uid: bigint) => c.events(uid).filter((e) => e === 'logout');
    const roomMembers = async (rid: bigint) => (await c.call(0, 'getroommembers', { rid }))['uids'] as bigint[];
    /** `uid` online on both nodes, in room `rid`, and node 1's record of it written. */
    const onBothNodes = async (uid: bigint, rid: bigint): Promise<RawClient[]> => {
      const sessions = [await c.login(0, uid), await c.login(1, uid)];
      await sessions[0]!.quest('enterroom', { rid });
      await sleep(300); // node 1's presence record is written after the login's turn
      return sessions;
    };

    it('the end of the session on the other node does not log the user out; the end of the one on the cut-off node does, once', async () => {
      const [U, RID] = [nextId(), nextId()];
      const [onNode0, onNode1] = await onBothNodes(U, RID);
      await natsOutage(proxy, c.nodes[1]!.bus, async () => {
        await onNode0!.quest('bye', {});
        onNode0!.close();
        await sleep(1500); // node 0's question to node 1 waits 500 ms at most
        assert.equal(logouts(U).length, 0, 'online on node 1: no logout');
        assert.deepEqual(await roomMembers(RID), [U], 'still in the room');

        await onNode1!.quest('bye', {}); // the last session ends while node 1 is cut off
        onNode1!.close();
        await sleep(500);
      });
      assert.ok(await until(() => logouts(U).length > 0, 10_000), 'logout heard once node 1 is back');
      await sleep(1000); // strays, and node 0's own look again
      assert.equal(logouts(U).length, 1, 'one logout');
      assert.deepEqual(await roomMembers(RID), [], 'left the room');
    });

    it('both sessions ending at once, each node unheard by the other: one logout', async () => {
      const [U, RID] = [nextId(), nextId()];
      const sessions = await onBothNodes(U, RID);
      await natsOutage(proxy, c.nodes[1]!.bus, async () => {
        await Promise.all(sessions.map((s) => s.quest('bye', {})));
        for (const s of sessions) s.close();
        await sleep(2000); // each node looks again a sweep later, and one of them ends it
      });
      assert.ok(await until(() => logouts(U).length > 0, 10_000), 'logout heard');
      await sleep(1000); // strays
      assert.equal(logouts(U).length, 1, 'one logout');
      assert.deepEqual(await roomMembers(RID), [], 'left the room');
    });

    it('a node cut off from NATS sees the session of its user on the other node: its bye logs nobody out', async () => {
      const [U, RID] = [nextId(), nextId()];
      const [onNode0, onNode1] = await onBothNodes(U, RID);
      await natsOutage(proxy, c.nodes[1]!.bus, async () => {
        await onNode1!.quest('bye', {});
        onNode1!.close();
        await sleep(1000);
      });
      await sleep(1500); // what node 1 queued, and its look again
      assert.equal(logouts(U).length, 0, 'online on node 0: no logout');
      assert.deepEqual(await roomMembers(RID), [U], 'still in the room');
      await onNode0!.quest('bye', {});
      assert.ok(await until(() => logouts(U).length > 0, 10_000), 'logout heard');
      await sleep(1000);
      assert.equal(logouts(U).length, 1, 'one logout');
    });
  });
});
