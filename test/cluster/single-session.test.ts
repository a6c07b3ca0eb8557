/**
 * RTM_SINGLE_SESSION across nodes (README, docs/cluster.md): a login kicks out the user's sessions
 * that logged in before it, on every node; of logins at once on two nodes, exactly one session
 * stays, the newest login's (services/delivery.ts `loginBefore`). In-process nodes on one
 * PostgreSQL schema and one NATS subject prefix (both fresh per run), whose store can hold a
 * user's login at a given step so that the test decides the order.
 *
 * Needs PostgreSQL and NATS (RTM_TEST_POSTGRES_URL, RTM_TEST_NATS_URL); skipped with a message when
 * either is unreachable, except when CI=true (then it fails).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FaultyProxy, RawClient, startFaultyProxy, TEST_PID, until, whenAvailable } from '@rtm/testkit';
import { PostgresStore } from '../../packages/server/src/store/postgres.js';
import { withHeldLoginSteps } from '../../packages/server/test/helpers/held-login-steps.js';
import { clusterServicesUnavailable, NATS_URL } from './cluster.js';
import { nextId, startInProcessNodes } from './in-process-nodes.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const unavailable = await clusterServicesUnavailable();

/** A PostgreSQL store whose token check or room lookup (both steps of a login) of a user can be held. */
const HoldingStore = withHeldLoginSteps(PostgresStore);
type HoldingStore = InstanceType<typeof HoldingStore>;

const kickouts = (c: RawClient) => c.pushes.filter((p) => p.method === 'kickout').length;

whenAvailable(unavailable, 'single session across nodes', 'needs PostgreSQL and NATS', () => {
  describe('RTM_SINGLE_SESSION across nodes: the newest login stays', { timeout: 120_000 }, () => {
    let c: Awaited<ReturnType<typeof startInProcessNodes<HoldingStore>>>;
    before(async () => {
      c = await startInProcessNodes(2, {
        settings: { singleSession: true },
        makeStore: (url, schema) => new HoldingStore({ url, schema, poolSize: 4 }),
      });
    });
    after(async () => {
      await c?.close();
    });

    it('a login on node 1 kicks the session on node 0 and keeps its own', async () => {
      const U = nextId();
      const a = await c.login(0, U);
      const b = await c.login(1, U);
      assert.ok(await until(() => a.isClosed, 3000), 'node 0 session kicked');
      assert.equal(kickouts(a), 1);
      await sleep(300);
      assert.equal(b.isClosed, false);
      assert.equal(kickouts(b), 0);
      assert.deepEqual(await c.call(0, 'getonlineusers', { uids: [U] }), { uids: [U] });
    });

    it('logins on two nodes at once: exactly one session survives, never none', async () => {
      const survivors: number[] = [];
      for (let round = 0; round < 8; round++) {
        const U = nextId();
        const [t0, t1] = await Promise.all([c.call(0, 'gettoken', { uid: U }), c.call(1, 'gettoken', { uid: U })]);
        const [a, b] = await Promise.all([
          RawClient.websocket(c.nodes[0]!.server.clientEndpoint),
          RawClient.websocket(c.nodes[1]!.server.clientEndpoint),
        ]);
        c.clients.push(a, b);
        await Promise.all([
          a.quest('auth', { pid: TEST_PID, uid: U, token: t0['token'] }).catch(() => undefined),
          b.quest('auth', { pid: TEST_PID, uid: U, token: t1['token'] }).catch(() => undefined),
        ]);
        await c.settle(0, 1);
        await c.settle(1, 0);
        // Kicked: the kickout push (the socket itself closes RTM_KICKOUT_CLOSE_MS later).
        survivors.push([a, b].filter((x) => !x.isClosed && kickouts(x) === 0).length);
        a.close();
        b.close();
      }
      assert.deepEqual(
        survivors,
        survivors.map(() => 1),
      );
    });

    it('each login a session before the other’s kickout came: the newer one stays, the older one is kicked', async () => {
      const U = nextId();
      const [t0, t1] = [await c.token(0, U), await c.token(1, U)];
      // The older login (node 0) waits at its token check; the newer one (node 1) begins after it
      // and waits once it is a session (looking up the user's rooms), while the older one ends.
      const olderHeld = c.nodes[0]!.store.hold('getToken', U);
      const older = await c.auth(0, U, t0);
      await olderHeld.reached;
      await sleep(5);
      const newerHeld = c.nodes[1]!.store.hold('userRooms', U);
      const newer = await c.auth(1, U, t1);
      await newerHeld.reached;
      olderHeld.release();
      assert.deepEqual(await older.answer, { ok: true }, 'the older login: its kickout spares the newer session');
      await c.settle(0, 1); // node 1 handled the older login's kickout
      assert.equal(newer.client.isClosed, false, 'a kickout of an older login closed the newer session');
      assert.equal(kickouts(newer.client), 0, 'a kickout of an older login closed the newer session');
      newerHeld.release();
      assert.deepEqual(await newer.answer, { ok: true });
      assert.ok(await until(() => older.client.isClosed, 3000), 'the older session was kicked out');
      assert.equal(kickouts(older.client), 1);
      await sleep(200);
      assert.equal(newer.client.isClosed, false);
      assert.equal(kickouts(newer.client), 0);
      assert.equal(kickouts(newer.client), 0);
    });
  });

  describe('RTM_SINGLE_SESSION across a NATS outage: node 1 cut off while the user logs in on node 0', { timeout: 120_000 }, () => {
    let proxy: FaultyProxy;
    let c: Awaited<ReturnType<typeof startInProcessNodes>>;
    before(async () => {
      const nats = new URL(NATS_URL);
      proxy = await startFaultyProxy(nats.hostname, Number(nats.port || 4222));
      c = await startInProcessNodes(2, {
        settings: { singleSession: true },
        natsUrl: (i) => (i === 1 ? `nats://127.0.0.1:${proxy.port}` : NATS_URL),
      });
    });
    after(async () => {
      await c?.close(); // the buses first, so that their bye goes out through the proxy
      proxy?.close();
    });

    it('the older session on node 1 is kicked out once node 1 is back (the login’s kickout was recorded)', async () => {
      const U = nextId();
      const older = await c.login(1, U);
      proxy.refuse = true;
      proxy.cut();
      assert.ok(await until(() => !c.nodes[1]!.bus.connected, 5000), 'node 1 lost NATS');
      const newer = await c.login(0, U);
      await sleep(200);
      assert.equal(older.isClosed, false, 'cut off: the kickout did not reach node 1');
      assert.equal(kickouts(older), 0, 'cut off: the kickout did not reach node 1');
      proxy.refuse = false;
      assert.ok(await until(() => c.nodes[1]!.bus.connected, 10_000), 'node 1 got NATS back');
      assert.ok(await until(() => older.isClosed, 5000), 'the older session is still open on node 1');
      assert.equal(kickouts(older), 1);
      await sleep(300);
      assert.equal(newer.isClosed, false, 'the newest login stays');
      assert.equal(kickouts(newer), 0, 'the newest login stays');
    });
  });
});
