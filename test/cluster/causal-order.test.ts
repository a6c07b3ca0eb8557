/**
 * Causal order across nodes (bus.ts contract, docs/cluster.md "Order across nodes"): a caller who
 * waits for the answer of one call before making the next, to another node, has the events of the
 * two calls in that order on every node.
 *
 * Three in-process nodes; node 0 reaches NATS through a proxy that makes its publications 40 ms
 * late (a slow link), so that without the order an event published through node 1 after node 0's
 * answer would always overtake node 0's event.
 *
 * Skipped when PostgreSQL or NATS is unreachable, except when CI=true.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FaultyProxy, signFields, startFaultyProxy, TEST_PID, TEST_SECRET, uniqueSalt, until, whenAvailable } from '@rtm/testkit';
import { clusterServicesUnavailable, NATS_URL } from './cluster.js';
import { nextId, pushesOf, startInProcessNodes } from './in-process-nodes.js';

const unavailable = await clusterServicesUnavailable();
const SLOW_MS = 40;

whenAvailable(unavailable, 'causal order across nodes', 'needs PostgreSQL and NATS', () => {
  describe('causal order across nodes: node 0’s link to NATS is slow', { timeout: 120_000 }, () => {
    let proxy: FaultyProxy;
    let c: Awaited<ReturnType<typeof startInProcessNodes>>;
    before(async () => {
      const nats = new URL(NATS_URL);
      proxy = await startFaultyProxy(nats.hostname, Number(nats.port || 4222));
      c = await startInProcessNodes(3, { natsUrl: (i) => (i === 0 ? `nats://127.0.0.1:${proxy.port}` : NATS_URL) });
      proxy.requestDelayMs = SLOW_MS;
    });
    after(async () => {
      await c?.close(); // the buses first, so that their bye goes out through the proxy
      proxy?.close();
    });

    it('backend sends through nodes 0 and 1 in turn reach a user on node 2 in send order', async () => {
      const R = nextId();
      const r = await c.login(2, R);
      const S = nextId();
      const mids: bigint[] = [];
      for (let i = 0; i < 12; i++) {
        const mid = nextId();
        mids.push(mid);
        await c.call(i % 2, 'sendmsg', { from: S, to: R, mid, mtype: 51, msg: `m${i}`, attrs: '' });
      }
      assert.ok(await until(() => r.pushes.filter((p) => p.method === 'pushmsg').length >= mids.length, 5000));
      assert.deepEqual(
        r.pushes.filter((p) => p.method === 'pushmsg').map((p) => p.payload['mid']),
        mids,
      );
    });

    it('a user’s sends from devices on nodes 0 and 1 in turn reach the peer on node 2 in send order', async () => {
      const [A, B] = [nextId(), nextId()];
      const devices = [await c.login(0, A), await c.login(1, A)];
      const b = await c.login(2, B);
      const mids: bigint[] = [];
      for (let i = 0; i < 8; i++) {
        const mid = nextId();
        mids.push(mid);
        await devices[i % 2]!.quest('sendmsg', { to: B, mid, mtype: 51, msg: `d${i}`, attrs: '' });
      }
      assert.ok(await until(() => b.pushes.filter((p) => p.method === 'pushmsg').length >= mids.length, 5000));
      assert.deepEqual(
        b.pushes.filter((p) => p.method === 'pushmsg').map((p) => p.payload['mid']),
        mids,
      );
    });

    it('added to a room through node 0, then a room message through node 1: the member on node 2 gets it', async () => {
      const U = nextId();
      const u = await c.login(2, U);
      const missed: number[] = [];
      for (let i = 0; i < 4; i++) {
        const [RID, SENDER, mid] = [nextId(), nextId(), nextId()];
        await c.call(1, 'addroommember', { rid: RID, uid: SENDER });
        await c.call(0, 'addroommember', { rid: RID, uid: U });
        await c.call(1, 'sendroommsg', { from: SENDER, rid: RID, mid, mtype: 51, msg: 'room', attrs: '' });
        if (!(await until(() => pushesOf(u, 'pushroommsg', mid).length > 0, SLOW_MS * 10))) missed.push(i);
      }
      assert.deepEqual(missed, []);
    });

    it('over the HTTP bridge too: a send through node 0, then one through node 1, arrive in that order', async () => {
      const R = nextId();
      const r = await c.login(2, R);
      const S = nextId();
      const mids = [nextId(), nextId()];
      const http = async (i: number, mid: bigint) => {
        const f = signFields('sendmsg', TEST_PID, TEST_SECRET, uniqueSalt());
        const body = { ...f, from: S, to: R, mid, mtype: 51, msg: 'over http', attrs: '' };
        const res = await fetch(`http://${c.nodes[i]!.server.serverEndpoint}/service/sendmsg`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? `<${v}>` : v)).replace(/"<(\d+)>"/g, '$1'),
        });
        assert.equal(res.status, 200, await res.text());
      };
      await http(0, mids[0]!);
      await http(1, mids[1]!);
      assert.ok(await until(() => r.pushes.filter((p) => p.method === 'pushmsg').length >= 2, 5000));
      assert.deepEqual(
        r.pushes.filter((p) => p.method === 'pushmsg').map((p) => p.payload['mid']),
        mids,
      );
    });

    it('a listening backend on node 0 gets its own message after the answer of its send', async () => {
      const backend = c.nodes[0]!.backend;
      await backend.signed('setlisten', { p2p: true }, TEST_PID, TEST_SECRET);
      const mid = nextId();
      const arrivals: string[] = (backend.arrivals = []);
      await c.call(0, 'sendmsg', { from: nextId(), to: nextId(), mid, mtype: 51, msg: 'heard', attrs: '' });
      assert.ok(await until(() => pushesOf(backend, 'pushmsg', mid).length > 0, 5000));
      backend.arrivals = undefined;
      const answer = arrivals.findIndex((a) => a.startsWith('answer'));
      const push = arrivals.indexOf(`quest pushmsg ${mid}`);
      assert.ok(answer >= 0 && answer < push, `answer before push: ${arrivals.join(', ')}`);
      await backend.signed('setlisten', { p2p: false }, TEST_PID, TEST_SECRET);
    });
  });
});
