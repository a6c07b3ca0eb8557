/**
 * Nodes that share the store but not the bus (docs/cluster.md "Nodes on different buses"): a node
 * started with another subject prefix (a misspelt RTM_BUS_PREFIX) hears no one and no one hears
 * it, though every node sees it alive in the store. Each node warns once of every node it does
 * not hear, and says when it hears it again; nodes that do hear each other say nothing.
 *
 * Three in-process nodes on one fresh PostgreSQL schema: nodes 0 and 1 on one NATS subject
 * prefix, node 2 on another.
 *
 * Skipped when PostgreSQL or NATS is unreachable, except when CI=true.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connect } from 'nats';
import { encodeMsgpack } from '@rtm/fpnn';
import { until, whenAvailable } from '@rtm/testkit';
import { UNHEARD_MS } from '../../packages/server/src/services/bus-watch.js';
import { clusterServicesUnavailable, NATS_URL } from './cluster.js';
import { startInProcessNodes } from './in-process-nodes.js';

const unavailable = await clusterServicesUnavailable();
const WARNING = 'a node alive in the store is not heard on the bus';
const HEARD_AGAIN = 'a node alive in the store is heard on the bus again';

whenAvailable(unavailable, 'bus mismatch', 'needs PostgreSQL and NATS', () => {
  describe('nodes on one store and two subject prefixes', { timeout: 120_000 }, () => {
    const logs: string[][] = [[], [], []];
    let c: Awaited<ReturnType<typeof startInProcessNodes>>;
    const warnings = (i: number) =>
      logs[i]!.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => String(e['msg']).startsWith(WARNING));
    const infos = (i: number) =>
      logs[i]!.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => String(e['msg']).startsWith(HEARD_AGAIN));
    const metrics = (i: number) => fetch(`http://127.0.0.1:${c.nodes[i]!.server.adminPort}/metrics`).then((r) => r.text());
    before(async () => {
      c = await startInProcessNodes(3, {
        subjectPrefix: (i, shared) => (i === 2 ? `${shared}_misspelt` : shared),
        logLines: (i) => logs[i]!,
      });
    });
    after(async () => {
      await c?.close();
    });

    it('each node warns once of the node it does not hear, naming it, after a while; none of those it hears', async () => {
      const [n0, n1, n2] = c.nodes.map((n) => n.bus.nodeId);
      const t0 = Date.now();
      assert.ok(await until(() => warnings(0).length > 0 && warnings(2).length >= 2, UNHEARD_MS + 15_000), 'warnings came');
      assert.ok(Date.now() - t0 >= UNHEARD_MS - 2000, `not right after start (${Date.now() - t0} ms)`);
      await new Promise<void>((resolve) => setTimeout(resolve, 1500)); // a few more sweeps: still once
      assert.deepEqual(
        warnings(0).map((w) => [w['node'], w['level']]),
        [[n2, 40]],
        'node 0 warns of node 2 only',
      );
      assert.deepEqual(
        warnings(1).map((w) => w['node']),
        [n2],
      );
      assert.deepEqual(
        warnings(2)
          .map((w) => w['node'])
          .sort(),
        [n0, n1].sort(),
        'node 2 warns of both others',
      );
      assert.match(String(warnings(0)[0]!['msg']), /RTM_BUS_PREFIX.*partition/);
      assert.match(await metrics(0), /^rtm_bus_unheard_nodes 1$/m);
      assert.match(await metrics(2), /^rtm_bus_unheard_nodes 2$/m);
    });

    it('a node heard again is said so once, and no longer counted', async () => {
      const n2 = c.nodes[2]!.bus.nodeId;
      // Node 2's heartbeat on the prefix of nodes 0 and 1, as once its prefix is set right.
      const nc = await connect({ servers: NATS_URL });
      try {
        const beat = () => nc.publish(`${c.nodes[0]!.bus.subjectPrefix}.node`, encodeMsgpack({ node: n2, kind: 'hb' }));
        beat();
        const timer = setInterval(beat, 500);
        try {
          assert.ok(await until(() => infos(0).length > 0, 10_000), 'an info line');
          assert.deepEqual(
            infos(0).map((e) => [e['node'], e['level']]),
            [[n2, 30]],
          );
          assert.ok(await until(async () => /^rtm_bus_unheard_nodes 0$/m.test(await metrics(0)), 5000));
        } finally {
          clearInterval(timer);
        }
      } finally {
        await nc.close();
      }
      assert.equal(warnings(0).length, 1, 'no new warning meanwhile');
    });
  });
});
