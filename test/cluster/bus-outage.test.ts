/**
 * A node cut off from NATS for a while (docs/cluster.md "What crosses NATS"): what it publishes
 * meanwhile reaches the others after the reconnect, and what it derives from the others' events
 * (group members, the room index of its users, blacklist and server-API kickouts) is read again
 * from the store.
 *
 * Two in-process nodes on one fresh PostgreSQL schema and one fresh NATS subject prefix; node 1
 * reaches NATS through a TCP proxy (@rtm/testkit `startFaultyProxy`) that cuts its connection and
 * refuses new ones for the outage, so only node 1 loses NATS.
 *
 * Skipped when PostgreSQL or NATS is unreachable, except when CI=true.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FaultyProxy, startFaultyProxy, until, whenAvailable } from '@rtm/testkit';
import { clusterServicesUnavailable, NATS_URL } from './cluster.js';
import { nextId, natsOutage, pushesOf, startInProcessNodes } from './in-process-nodes.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const unavailable = await clusterServicesUnavailable();

whenAvailable(unavailable, 'bus outage', 'needs PostgreSQL and NATS', () => {
  describe('bus outage: node 1 loses NATS for a moment', { timeout: 120_000 }, () => {
    let proxy: FaultyProxy;
    let c: Awaited<ReturnType<typeof startInProcessNodes>>;
    before(async () => {
      const nats = new URL(NATS_URL);
      proxy = await startFaultyProxy(nats.hostname, Number(nats.port || 4222));
      c = await startInProcessNodes(2, { natsUrl: (i) => (i === 1 ? `nats://127.0.0.1:${proxy.port}` : NATS_URL) });
    });
    after(async () => {
      await c?.close(); // the buses first, so that their bye goes out through the proxy
      proxy?.close();
    });

    it('sends through the cut-off node are answered and reach the other node after the reconnect (queued)', async () => {
      const U1 = nextId();
      const u1 = await c.login(0, U1);
      const mid = nextId();
      await natsOutage(proxy, c.nodes[1]!.bus, async () => {
        const answer = await c.call(1, 'sendmsg', { from: nextId(), to: U1, mid, mtype: 51, msg: 'during the outage', attrs: '' });
        assert.equal(typeof answer['mtime'], 'bigint');
        await sleep(300);
        assert.equal(pushesOf(u1, 'pushmsg', mid).length, 0, 'nothing crosses while cut off');
      });
      assert.ok(await until(() => pushesOf(u1, 'pushmsg', mid).length > 0, 5000), 'queued push delivered after reconnect');
      await sleep(200);
      assert.equal(pushesOf(u1, 'pushmsg', mid).length, 1);
      const metrics = await (await fetch(`http://127.0.0.1:${c.nodes[1]!.server.adminPort}/metrics`)).text();
      const resent = metrics.split('\n').find((l) => l.startsWith('rtm_bus_outage_events_total{outcome="resent"} '));
      assert.ok(resent && Number(resent.split(' ')[1]) >= 1, `metric of resent events: ${resent}`);
    });

    it('group members changed through node 0 while node 1 was cut off: later sends through node 1 use the new members', async () => {
      const GID = nextId();
      const [UA, UREMOVED, UADDED] = [nextId(), nextId(), nextId()];
      const removed = await c.login(1, UREMOVED);
      const added = await c.login(0, UADDED);
      await c.call(0, 'addgroupmembers', { gid: GID, uids: [UA, UREMOVED] });
      await c.settle(0, 1); // node 1 has heard of the add: what it loads now, it keeps
      const first = nextId();
      await c.call(1, 'sendgroupmsg', { from: UA, gid: GID, mid: first, mtype: 51, msg: 'before', attrs: '' }); // node 1 now holds the members
      assert.ok(await until(() => pushesOf(removed, 'pushgroupmsg', first).length > 0));
      await natsOutage(proxy, c.nodes[1]!.bus, async () => {
        await c.call(0, 'delgroupmembers', { gid: GID, uids: [UREMOVED] });
        await c.call(0, 'addgroupmembers', { gid: GID, uids: [UADDED] });
      });
      await c.settle(0, 1); // node 1 hears node 0 again
      const second = nextId();
      await c.call(1, 'sendgroupmsg', { from: UA, gid: GID, mid: second, mtype: 51, msg: 'after', attrs: '' });
      await until(() => pushesOf(added, 'pushgroupmsg', second).length > 0, 3000);
      await sleep(200);
      assert.deepEqual(
        { removedGotIt: pushesOf(removed, 'pushgroupmsg', second).length, addedGotIt: pushesOf(added, 'pushgroupmsg', second).length },
        { removedGotIt: 0, addedGotIt: 1 },
      );
      // A removed member may not send to the group (client gate: 200041).
      await assert.rejects(
        removed.quest('sendgroupmsg', { gid: GID, mid: nextId(), mtype: 51, msg: 'not a member', attrs: '' }),
        'the removed member is refused on node 1',
      );
    });

    it('a user on node 1 added to a room through node 0 while node 1 was cut off gets the room messages afterwards', async () => {
      const RID = nextId();
      const U = nextId();
      const u = await c.login(1, U);
      const SENDER = nextId();
      await c.call(0, 'addroommember', { rid: RID, uid: SENDER });
      await natsOutage(proxy, c.nodes[1]!.bus, async () => {
        await c.call(0, 'addroommember', { rid: RID, uid: U });
      });
      await c.settle(0, 1);
      const { uids } = await c.call(1, 'getroommembers', { rid: RID });
      assert.deepEqual([...(uids as bigint[])].sort(), [U, SENDER].sort(), 'the store says U is in the room');
      const mid = nextId();
      await c.call(0, 'sendroommsg', { from: SENDER, rid: RID, mid, mtype: 51, msg: 'room', attrs: '' });
      assert.ok(await until(() => pushesOf(u, 'pushroommsg', mid).length > 0, 3000), 'room message reached the member on node 1');
    });

    it('a user on node 1 removed from a room through node 0 while node 1 was cut off gets no room message afterwards', async () => {
      const RID = nextId();
      const [U, STAYS, SENDER] = [nextId(), nextId(), nextId()];
      const u = await c.login(1, U);
      const stays = await c.login(1, STAYS);
      for (const uid of [U, STAYS, SENDER]) await c.call(0, 'addroommember', { rid: RID, uid });
      await c.settle(0, 1);
      await natsOutage(proxy, c.nodes[1]!.bus, async () => {
        await c.call(0, 'delroommember', { rid: RID, uid: U });
      });
      await c.settle(0, 1);
      const mid = nextId();
      await c.call(0, 'sendroommsg', { from: SENDER, rid: RID, mid, mtype: 51, msg: 'room', attrs: '' });
      assert.ok(await until(() => pushesOf(stays, 'pushroommsg', mid).length > 0, 3000), 'the member who stays gets it');
      await sleep(200);
      assert.equal(pushesOf(u, 'pushroommsg', mid).length, 0, 'the removed member gets nothing');
    });

    it('a blacklist kickout through node 0 while node 1 was cut off closes the user’s session on node 1', async () => {
      const U = nextId();
      const u = await c.login(1, U);
      await natsOutage(proxy, c.nodes[1]!.bus, async () => {
        await c.call(0, 'addprojectblack', { uid: U, btime: 3600 });
      });
      await c.settle(0, 1);
      assert.ok(await until(() => u.isClosed, 3000), 'the kicked-out session is still open on node 1');
      assert.ok(
        u.pushes.some((p) => p.method === 'kickout'),
        'told why, as by a kickout',
      );
    });

    it('a server-API kickout through node 0 while node 1 was cut off closes there, once back, the sessions that began before it', async () => {
      const U = nextId();
      const older = await c.login(1, U);
      let newer: Awaited<ReturnType<typeof c.login>> | undefined;
      await natsOutage(proxy, c.nodes[1]!.bus, async () => {
        await c.call(0, 'kickout', { uid: U });
        await sleep(20);
        newer = await c.login(1, U); // on the cut-off node, after the kickout
      });
      await c.settle(0, 1);
      assert.ok(await until(() => older.isClosed, 3000), 'the session the kickout was for is still open on node 1');
      assert.ok(
        older.pushes.some((p) => p.method === 'kickout'),
        'told why',
      );
      await sleep(300);
      assert.equal(newer!.isClosed, false, 'the login after the kickout stays');
      assert.deepEqual(await newer!.quest('getuserinfo'), { oinfo: '', pinfo: '' });
    });
  });
});
