/**
 * NATS restarts under every node at once (docs/cluster.md "What crosses NATS"): the first node
 * back holds what it queued until the other is back on NATS, so its pushes still reach the
 * other's users, once and in order, instead of going out while no one listens.
 *
 * Two in-process nodes on one fresh PostgreSQL schema and one fresh NATS subject prefix, each
 * reaching NATS through its own TCP proxy (@rtm/testkit `startFaultyProxy`): cutting both and
 * refusing new connections is NATS down for everyone; letting node 1 through a second before
 * node 0 is node 1 winning the race back.
 *
 * Skipped when PostgreSQL or NATS is unreachable, except when CI=true.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect } from 'nats';
import { decodeMsgpack } from '@rtm/fpnn';
import { type FaultyProxy, startFaultyProxy, until, whenAvailable } from '@rtm/testkit';
import { clusterServicesUnavailable, NATS_URL } from './cluster.js';
import { nextId, startInProcessNodes } from './in-process-nodes.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const unavailable = await clusterServicesUnavailable();

whenAvailable(unavailable, 'NATS restart', 'needs PostgreSQL and NATS', () => {
  describe('NATS restarts under both nodes', { timeout: 120_000 }, () => {
    let proxies: FaultyProxy[] = [];
    let c: Awaited<ReturnType<typeof startInProcessNodes>>;
    before(async () => {
      const nats = new URL(NATS_URL);
      proxies = await Promise.all([0, 1].map(() => startFaultyProxy(nats.hostname, Number(nats.port || 4222))));
      c = await startInProcessNodes(2, { natsUrl: (i) => `nats://127.0.0.1:${proxies[i]!.port}` });
    });
    after(async () => {
      await c?.close(); // the buses first, so that their bye goes out through the proxy
      for (const p of proxies) p.close();
    });

    it('messages sent through node 1 while it was back before node 0 reach their receiver on node 0, once, in order', async () => {
      const [bus0, bus1] = [c.nodes[0]!.bus, c.nodes[1]!.bus];
      assert.ok(await until(() => bus1.liveNodes.includes(bus0.nodeId)), 'node 1 knows node 0');
      const U = nextId();
      const u = await c.login(0, U);
      // Node 1's hello on NATS itself says when it is back.
      const spy = await connect({ servers: NATS_URL });
      let node1Back = false;
      spy.subscribe(`${bus1.subjectPrefix}.node`, {
        callback: (_e, m) => {
          const a = decodeMsgpack(m.data) as { node: string; kind: string };
          if (a.node === bus1.nodeId && a.kind === 'hello') node1Back = true;
        },
      });
      await spy.flush();
      const mids: bigint[] = [];
      const send = async (msg: string): Promise<void> => {
        const mid = nextId();
        mids.push(mid);
        await c.call(1, 'sendmsg', { from: nextId(), to: U, mid, mtype: 51, msg, attrs: '' });
      };
      try {
        for (const p of proxies) {
          p.refuse = true;
          p.cut();
        }
        assert.ok(await until(() => !bus0.connected && !bus1.connected, 5000), 'both nodes lost NATS');
        await send('while NATS is down');
        await send('while NATS is still down');
        proxies[1]!.refuse = false;
        assert.ok(await until(() => node1Back, 5000), 'node 1 is back on NATS');
        await send('node 1 back, node 0 not yet');
        await sleep(1000);
        const health = await fetch(`http://127.0.0.1:${c.nodes[1]!.server.adminPort}/healthz`);
        assert.equal(health.status, 503, 'node 1 counts as cut off while it holds its queue');
        assert.equal(((await health.json()) as { status: string }).status, 'bus disconnected');
        proxies[0]!.refuse = false;
        assert.ok(await until(() => bus0.connected && bus1.connected, 10_000), 'both back');
        await send('both back');
        const pushed = () => u.pushes.filter((p) => p.method === 'pushmsg').map((p) => p.payload['mid'] as bigint);
        assert.ok(await until(() => pushed().length >= mids.length, 5000), `pushed ${pushed().length} of ${mids.length}`);
        await sleep(300); // any duplicate would arrive by now
        assert.deepEqual(pushed(), mids, 'every message pushed once, in the order sent');
      } finally {
        await spy.close();
        for (const p of proxies) p.refuse = false;
      }
    });
  });
});
