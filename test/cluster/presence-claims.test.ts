/**
 * Logins and logouts of one user on two nodes at the same moment (docs/cluster.md "Logins and
 * logouts on several nodes at the same moment"): a backend listening to login/logout events hears
 * exactly one login and one logout per presence, however the two nodes race. The claim of the
 * user's presence in the store (`joinPresence` / `endPresence`) orders them.
 *
 * Two in-process nodes on one fresh PostgreSQL schema and one fresh NATS subject prefix; the
 * listener is a backend on node 0. Many users, each logging in on both nodes at once, then saying
 * `bye` on both at once (with and without a grace period: a `bye` ends a session without one); a
 * `bye` on one node at the moment of a login on the other; and a grace period on one node while
 * the user says `bye` on the other (the later end ends the presence, once, and a return to the
 * first node begins the next one).
 *
 * Skipped when PostgreSQL or NATS is unreachable, except when CI=true.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type RawClient, TEST_PID, until, whenAvailable } from '@rtm/testkit';
import { clusterServicesUnavailable } from './cluster.js';
import { nextId, startListeningNodes } from './in-process-nodes.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const unavailable = await clusterServicesUnavailable();

/** Users raced per test: the races lost before the claim were about one in three. */
const ROUNDS = 30;

whenAvailable(unavailable, 'presence claims', 'needs PostgreSQL and NATS', () => {
  describe('a grace period on one node, a bye on the other', { timeout: 60_000 }, () => {
    const GRACE_MS = 1500;
    let c: Awaited<ReturnType<typeof startListeningNodes>>;
    before(async () => {
      c = await startListeningNodes(2, { settings: { logoutGraceMs: GRACE_MS } });
    });
    after(async () => {
      await c?.close();
    });
    const events = (uid: bigint) => c.events(uid);

    it('the bye logs the user out; the grace period running out later logs nobody out again', async () => {
      const uids = [nextId(), nextId(), nextId()];
      for (const [i, uid] of uids.entries()) {
        const dropped = await c.login(i % 2, uid);
        const left = await c.login((i + 1) % 2, uid);
        dropped.close(); // its grace period runs on that node
        assert.ok(await until(() => !c.nodes[i % 2]!.server.services.presence.isOnline(TEST_PID, uid), 5000), 'the drop seen');
        await left.quest('bye', {}); // the later end: the presence ends here, for both
        left.close();
      }
      assert.ok(await until(() => uids.every((u) => events(u).includes('logout')), 5000), 'logged out');
      await sleep(GRACE_MS + 1500); // the grace periods run out, and what they would say arrives
      assert.deepEqual(
        uids.map((u) => events(u).join()),
        uids.map(() => 'login,logout'),
      );
    });

    it('a return to the node whose grace period runs, after the other node ended the presence, begins the next one', async () => {
      const uid = nextId();
      const dropped = await c.login(0, uid);
      const left = await c.login(1, uid);
      dropped.close();
      assert.ok(await until(() => !c.nodes[0]!.server.services.presence.isOnline(TEST_PID, uid), 5000), 'the drop seen');
      await left.quest('bye', {});
      left.close();
      assert.ok(await until(() => events(uid).includes('logout'), 5000), 'logged out');
      const back = await c.login(0, uid); // within node 0's grace period
      assert.ok(await until(() => events(uid).length >= 3, 5000), 'heard to log in again');
      await sleep(GRACE_MS + 1500);
      assert.equal(events(uid).join(), 'login,logout,login', 'online again: no more');
      back.close();
      assert.ok(await until(() => events(uid).length >= 4, GRACE_MS + 5000), 'logged out when its grace period runs out');
      await sleep(500);
      assert.equal(events(uid).join(), 'login,logout,login,logout');
    });
  });
});

for (const logoutGraceMs of [0, 60_000]) {
  whenAvailable(unavailable, 'presence claims', 'needs PostgreSQL and NATS', () => {
    describe(`one user on two nodes at the same moment (grace ${logoutGraceMs} ms)`, { timeout: 180_000 }, () => {
      let c: Awaited<ReturnType<typeof startListeningNodes>>;
      before(async () => {
        c = await startListeningNodes(2, { settings: { logoutGraceMs } });
      });
      after(async () => {
        await c?.close();
      });
      const events = (uid: bigint) => c.events(uid);

      /** `uid` logged in on both nodes by auths sent at the same moment (tokens fetched first). */
      const loginOnBoth = async (uid: bigint): Promise<RawClient[]> => {
        const token = await c.token(0, uid);
        const clients = await Promise.all([0, 1].map((i) => c.auth(i, uid, token)));
        for (const { answer } of clients) assert.deepEqual(await answer, { ok: true });
        return clients.map(({ client }) => client);
      };

      it('logins on both nodes at once: one login per user', async () => {
        const users: bigint[] = [];
        const sessions: RawClient[] = [];
        for (let i = 0; i < ROUNDS; i++) {
          const uid = nextId();
          users.push(uid);
          sessions.push(...(await loginOnBoth(uid)));
        }
        assert.ok(await until(() => users.every((u) => events(u).length > 0), 10_000), 'every login heard');
        await sleep(500); // strays
        const wrong = users.map(events).filter((e) => e.join() !== 'login');
        assert.equal(wrong.length, 0, `${wrong.length} of ${ROUNDS} users heard as ${wrong.map((e) => e.join('+')).join(' ')}`);
        for (const s of sessions) s.close();
      });

      it('bye on both nodes at once: one logout per user, after one login', async () => {
        const users: bigint[] = [];
        for (let i = 0; i < ROUNDS; i++) {
          const uid = nextId();
          users.push(uid);
          const sessions = await loginOnBoth(uid);
          assert.ok(await until(() => events(uid).length > 0, 5000), 'login heard');
          await sleep(20); // both sessions counted on both nodes
          await Promise.all(sessions.map((s) => s.quest('bye', {})));
          for (const s of sessions) s.close();
        }
        assert.ok(await until(() => users.every((u) => events(u).includes('logout')), 10_000), 'every logout heard');
        await sleep(500); // strays
        const wrong = users.map(events).filter((e) => e.join() !== 'login,logout');
        assert.equal(wrong.length, 0, `${wrong.length} of ${ROUNDS} users heard as ${wrong.map((e) => e.join('+')).join(' ')}`);
      });

      it('a bye on one node and a login on the other at the same moment: the presence goes on, or ends and begins again', async () => {
        const users: bigint[] = [];
        for (let i = 0; i < ROUNDS; i++) {
          const uid = nextId();
          users.push(uid);
          const token = await c.token(0, uid);
          const first = await c.login(0, uid);
          assert.ok(await until(() => events(uid).length > 0, 5000), 'login heard');
          const [, second] = await Promise.all([first.quest('bye', {}), c.auth(1, uid, token)]);
          assert.deepEqual(await second.answer, { ok: true });
          first.close();
          await sleep(50); // the end on node 0 done, or given up
          await second.client.quest('bye', {});
          second.client.close();
        }
        assert.ok(await until(() => users.every((u) => events(u).at(-1) === 'logout'), 10_000), 'every last logout heard');
        await sleep(500); // strays
        const wrong = users.map(events).filter((e) => e.join() !== 'login,logout' && e.join() !== 'login,logout,login,logout');
        assert.equal(wrong.length, 0, `${wrong.length} of ${ROUNDS} users heard as ${wrong.map((e) => e.join('+')).join(' ')}`);
      });

      it('logins and byes racing on both nodes, round after round: the events alternate, one pair per presence', async () => {
        const uid = nextId();
        for (let i = 0; i < ROUNDS; i++) {
          const sessions = await loginOnBoth(uid);
          await Promise.all(sessions.map((s) => s.quest('bye', {})));
          for (const s of sessions) s.close();
          assert.ok(await until(() => events(uid).filter((e) => e === 'logout').length > i, 5000), `logout ${i + 1} heard`);
        }
        await sleep(500); // strays
        const heard = events(uid);
        assert.equal(heard.join(' '), Array.from({ length: ROUNDS }, () => 'login logout').join(' '));
      });
    });
  });
}
