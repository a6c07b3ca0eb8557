/**
 * The cluster mode across nodes (docs/cluster.md, DESIGN.md "Cluster"): in-process nodes on one
 * PostgreSQL schema and one NATS subject prefix (both fresh per describe); kickout by gate, send
 * order, rooms and presence queries across nodes, and PostgreSQL lost by one node (reached through
 * a testkit faulty proxy that cuts its connections and refuses new ones).
 *
 * Skipped when PostgreSQL or NATS is unreachable, except when CI=true.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FaultyProxy, startFaultyProxy, until, whenAvailable } from '@rtm/testkit';
import { clusterServicesUnavailable, POSTGRES_URL } from './cluster.js';
import { nextId, pushesOf, startInProcessNodes } from './in-process-nodes.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const unavailable = await clusterServicesUnavailable();

whenAvailable(unavailable, 'across nodes', 'needs PostgreSQL and NATS', () => {
  describe('across nodes: kickout ce, order, rooms, presence queries', { timeout: 120_000 }, () => {
    let c: Awaited<ReturnType<typeof startInProcessNodes>>;
    before(async () => {
      c = await startInProcessNodes(3);
    });
    after(async () => {
      await c?.close();
    });

    it('kickout with ce = node 1’s gate closes only the session on node 1', async () => {
      const U = nextId();
      const a = await c.login(0, U);
      const b = await c.login(1, U);
      await c.call(2, 'kickout', { uid: U, ce: c.nodes[1]!.server.clientEndpoint });
      assert.ok(await until(() => b.isClosed, 3000), 'node 1 session closed');
      await sleep(300);
      assert.equal(a.isClosed, false, 'node 0 session stays');
      const { uids } = await c.call(2, 'getonlineusers', { uids: [U] });
      assert.deepEqual(uids, [U]);
    });

    it('p2p from one user through alternating nodes reaches the receiver on a third node in send order', async () => {
      const R = nextId();
      const r = await c.login(2, R);
      const S = nextId();
      const mids: bigint[] = [];
      for (let i = 0; i < 40; i++) {
        const mid = nextId();
        mids.push(mid);
        await c.call(i % 2, 'sendmsg', { from: S, to: R, mid, mtype: 51, msg: `m${i}`, attrs: '' });
      }
      await until(() => r.pushes.filter((p) => p.method === 'pushmsg').length >= mids.length, 5000);
      await sleep(200);
      assert.deepEqual(
        r.pushes.filter((p) => p.method === 'pushmsg').map((p) => p.payload['mid']),
        mids,
      );
    });

    it('added to a room through node 0, a room message sent through node 2 right after reaches the member on node 1', async () => {
      const U = nextId();
      const u = await c.login(1, U);
      const missed: number[] = [];
      for (let i = 0; i < 9; i++) {
        const RID = nextId();
        const SENDER = nextId();
        await c.call(2, 'addroommember', { rid: RID, uid: SENDER });
        await c.call(0, 'addroommember', { rid: RID, uid: U });
        const mid = nextId();
        await c.call(2, 'sendroommsg', { from: SENDER, rid: RID, mid, mtype: 51, msg: 'room', attrs: '' });
        if (!(await until(() => pushesOf(u, 'pushroommsg', mid).length > 0, 1500))) missed.push(i);
      }
      assert.deepEqual(missed, []);
    });

    it('getroommembers / getroomcount / getonlineusers agree on every node', async () => {
      const RID = nextId();
      const [A, B] = [nextId(), nextId()];
      const a = await c.login(0, A);
      const b = await c.login(1, B);
      await a.quest('enterroom', { rid: RID });
      await b.quest('enterroom', { rid: RID });
      for (let i = 0; i < 3; i++) {
        const m = (await c.call(i, 'getroommembers', { rid: RID }))['uids'] as bigint[];
        assert.deepEqual([...m].sort(), [A, B].sort(), `members on node ${i}`);
        const cn = (await c.call(i, 'getroomcount', { rids: [RID] }))['cn'] as Record<string, number>;
        assert.equal(cn[String(RID)], 2, `count on node ${i}`);
        const on = (await c.call(i, 'getonlineusers', { uids: [A, B] }))['uids'] as bigint[];
        assert.deepEqual([...on].sort(), [A, B].sort(), `online on node ${i}`);
      }
      // kickoutroom across nodes
      await c.call(0, 'delroommember', { rid: RID, uid: B });
      assert.ok(await until(() => b.pushes.some((p) => p.method === 'kickoutroom'), 3000), 'kickoutroom reached node 1');
      const mid = nextId();
      await c.call(2, 'sendroommsg', { from: A, rid: RID, mid, mtype: 51, msg: 'after kick', attrs: '' });
      await sleep(500);
      assert.equal(pushesOf(b, 'pushroommsg', mid).length, 0);
    });
  });

  describe('PostgreSQL lost by one node (behind a gate)', { timeout: 120_000 }, () => {
    let gate: FaultyProxy;
    let c: Awaited<ReturnType<typeof startInProcessNodes>>;
    before(async () => {
      const pg = new URL(POSTGRES_URL);
      gate = await startFaultyProxy(pg.hostname, Number(pg.port || 5432));
      c = await startInProcessNodes(2, {
        pgUrl: (i) => {
          if (i !== 0) return POSTGRES_URL;
          const u = new URL(POSTGRES_URL);
          u.hostname = '127.0.0.1';
          u.port = String(gate.port);
          return u.toString();
        },
      });
    });
    after(async () => {
      await c?.close();
      gate?.close();
    });

    it('sends fail with an error while the database is gone, /healthz says so, and work again after', async () => {
      const R = nextId();
      const r = await c.login(1, R);
      const health = async () => {
        const res = await fetch(`http://127.0.0.1:${c.nodes[0]!.server.adminPort}/healthz`);
        return { code: res.status, status: ((await res.json()) as { status: string }).status };
      };
      assert.deepEqual(await health(), { code: 200, status: 'ok' });
      gate.refuse = true;
      gate.cut();
      const t0 = Date.now();
      const err = await c.call(0, 'sendmsg', { from: nextId(), to: R, mid: nextId(), mtype: 51, msg: 'db down', attrs: '' }).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err, 'the send during the outage is refused');
      assert.ok(Date.now() - t0 < 12_000, `answered within the connect timeout (${Date.now() - t0} ms)`);
      assert.equal((await health()).code, 503);
      gate.refuse = false;
      assert.ok(await until(async () => (await health()).code === 200, 10_000), 'healthy again');
      const mid = nextId();
      await c.call(0, 'sendmsg', { from: nextId(), to: R, mid, mtype: 51, msg: 'db back', attrs: '' });
      assert.ok(await until(() => pushesOf(r, 'pushmsg', mid).length > 0, 3000));
    });
  });
});
