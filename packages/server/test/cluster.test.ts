/**
 * A real three-node cluster: three `rtm serve` processes sharing PostgreSQL (a database created for
 * the run) and NATS (a subject prefix for the run), clients and backends on different nodes.
 * DESIGN.md "Cluster": every push reaches every online recipient on every node exactly once,
 * presence is answered across nodes, a node that dies loses only its connections.
 *
 * Needs PostgreSQL and NATS (RTM_TEST_POSTGRES_URL, RTM_TEST_NATS_URL); skipped with a message when
 * either is unreachable, except when CI=true (then it fails).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RawClient, until, whenAvailable } from '@rtm/testkit';
import { clusterServicesUnavailable, startCluster, type Cluster } from '../../../test/cluster/cluster.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const BIG = 2n ** 53n;
const U1 = BIG + 1n; // on node 0 (WebSocket)
const U2 = BIG + 2n; // on node 1 (WebSocket)
const U3 = BIG + 3n; // on node 2 (TCP)
const GID = BIG + 100n;
const RID = BIG + 200n;
let midSeq = BIG * 4n;
const nextMid = (): bigint => ++midSeq;

const unavailable = await clusterServicesUnavailable();

whenAvailable(unavailable, 'cluster', 'runs three nodes on PostgreSQL and NATS', () => {
  describe('cluster: three nodes, one PostgreSQL, one NATS', { timeout: 60_000 }, () => {
    let cluster: Cluster;
    const clients: RawClient[] = [];
    const backends: RawClient[] = [];
    let u1: RawClient, u2: RawClient, u3: RawClient;

    const backend = async (node: number): Promise<RawClient> => {
      const b = await RawClient.tcp(cluster.serverEndpoint(node));
      clients.push(b);
      return b;
    };
    const call = (b: RawClient, method: string, payload: Record<string, unknown>) => b.signed(method, payload, cluster.pid, cluster.secret);
    const login = async (node: number, uid: bigint, transport: 'ws' | 'tcp' = 'ws'): Promise<RawClient> => {
      const { token } = await call(backends[node]!, 'gettoken', { uid });
      const c =
        transport === 'ws' ? await RawClient.websocket(cluster.clientEndpoint(node)) : await RawClient.tcp(cluster.clientEndpoint(node));
      clients.push(c);
      assert.deepEqual(await c.quest('auth', { pid: cluster.pid, uid, token }), { ok: true });
      return c;
    };
    const pushesOf = (c: RawClient, method: string, mid: bigint) => c.pushes.filter((p) => p.method === method && p.payload['mid'] === mid);
    /** Waits until every (client, method) has the push of `mid`, then a little longer for strays. */
    const settle = async (mid: bigint, expect: [RawClient, string][]): Promise<void> => {
      for (let i = 0; i < 150 && !expect.every(([c, m]) => pushesOf(c, m, mid).length > 0); i++) await sleep(20);
      await sleep(150);
    };

    before(async () => {
      cluster = await startCluster({ nodes: 3 });
      for (let i = 0; i < 3; i++) backends.push(await backend(i));
      u1 = await login(0, U1);
      u2 = await login(1, U2);
      u3 = await login(2, U3, 'tcp');
    });

    after(async () => {
      for (const c of clients) c.close();
      await cluster?.close();
    });

    it('p2p from a client on node 0 reaches its peer on node 1 exactly once', async () => {
      const mid = nextMid();
      const { mtime } = await u1.quest('sendmsg', { to: U2, mid, mtype: 51, msg: 'hello from node 0', attrs: '' });
      assert.equal(typeof mtime, 'bigint');
      await settle(mid, [[u2, 'pushmsg']]);
      assert.equal(pushesOf(u2, 'pushmsg', mid).length, 1);
      assert.equal(pushesOf(u2, 'pushmsg', mid)[0]!.payload['msg'], 'hello from node 0');
      assert.equal(pushesOf(u2, 'pushmsg', mid)[0]!.payload['from'], U1);
      assert.equal(pushesOf(u1, 'pushmsg', mid).length + pushesOf(u3, 'pushmsg', mid).length, 0);
    });

    it('p2p from a backend on node 2 (sendmsgs to users on all nodes) reaches each once', async () => {
      const mid = nextMid();
      await call(backends[2]!, 'sendmsgs', { from: 7n, tos: [U1, U2, U3], mid, mtype: 51, msg: 'to all', attrs: '' });
      await settle(mid, [
        [u1, 'pushmsg'],
        [u2, 'pushmsg'],
        [u3, 'pushmsg'],
      ]);
      for (const c of [u1, u2, u3]) assert.equal(pushesOf(c, 'pushmsg', mid).length, 1);
    });

    it('group message: every member on the other nodes once, not the sender', async () => {
      await call(backends[0]!, 'addgroupmembers', { gid: GID, uids: [U1, U2, U3] });
      const mid = nextMid();
      await u2.quest('sendgroupmsg', { gid: GID, mid, mtype: 51, msg: 'group hi', attrs: '' });
      await settle(mid, [
        [u1, 'pushgroupmsg'],
        [u3, 'pushgroupmsg'],
      ]);
      assert.equal(pushesOf(u1, 'pushgroupmsg', mid).length, 1);
      assert.equal(pushesOf(u3, 'pushgroupmsg', mid).length, 1);
      assert.equal(pushesOf(u2, 'pushgroupmsg', mid).length, 0, 'not back to the sending session');
    });

    it('group members changed through node 0 are what a send through node 1 reaches, once the bus told it', async () => {
      const gid = GID + 1n;
      await call(backends[0]!, 'addgroupmembers', { gid, uids: [U1, U2] });
      const first = nextMid();
      await call(backends[1]!, 'sendgroupmsg', { from: U1, gid, mid: first, mtype: 51, msg: 'before', attrs: '' }); // node 1 holds [U1, U2]
      await settle(first, [[u2, 'pushgroupmsg']]);
      await call(backends[0]!, 'addgroupmembers', { gid, uids: [U3] });
      await call(backends[0]!, 'delgroupmembers', { gid, uids: [U2] });
      // Node 1 learns of the changes by the bus, a while later (on a loaded machine, a long while).
      // The bus keeps each node's order: once a message node 0 published after them has reached
      // U2 through node 1, node 1 has handled them too.
      const marker = nextMid();
      await call(backends[0]!, 'sendmsg', { from: U1, to: U2, mid: marker, mtype: 51, msg: 'marker', attrs: '' });
      await settle(marker, [[u2, 'pushmsg']]);
      assert.equal(pushesOf(u2, 'pushmsg', marker).length, 1, 'the marker through node 1');
      const second = nextMid();
      await call(backends[1]!, 'sendgroupmsg', { from: U1, gid, mid: second, mtype: 51, msg: 'after', attrs: '' });
      await settle(second, [[u3, 'pushgroupmsg']]);
      assert.equal(pushesOf(u3, 'pushgroupmsg', second).length, 1, 'the member added through node 0');
      assert.equal(pushesOf(u2, 'pushgroupmsg', second).length, 0, 'the member removed through node 0');
    });

    it('room message: members who entered on other nodes get it once', async () => {
      for (const c of [u1, u2, u3]) assert.deepEqual(await c.quest('enterroom', { rid: RID }), {});
      const mid = nextMid();
      await u3.quest('sendroommsg', { rid: RID, mid, mtype: 51, msg: 'room hi', attrs: '' });
      await settle(mid, [
        [u1, 'pushroommsg'],
        [u2, 'pushroommsg'],
      ]);
      assert.equal(pushesOf(u1, 'pushroommsg', mid).length, 1);
      assert.equal(pushesOf(u2, 'pushroommsg', mid).length, 1);
      assert.equal(pushesOf(u3, 'pushroommsg', mid).length, 0);
      // A member who left on node 1 gets nothing more.
      assert.deepEqual(await u2.quest('leaveroom', { rid: RID }), {});
      const mid2 = nextMid();
      await u3.quest('sendroommsg', { rid: RID, mid: mid2, mtype: 51, msg: 'after leave', attrs: '' });
      await settle(mid2, [[u1, 'pushroommsg']]);
      assert.equal(pushesOf(u1, 'pushroommsg', mid2).length, 1);
      assert.equal(pushesOf(u2, 'pushroommsg', mid2).length, 0);
    });

    it('broadcast from a backend on node 1 reaches every user on every node once', async () => {
      const mid = nextMid();
      await call(backends[1]!, 'broadcastmsg', { from: 7n, mid, mtype: 51, msg: 'to everyone', attrs: '' });
      await settle(mid, [
        [u1, 'pushbroadcastmsg'],
        [u2, 'pushbroadcastmsg'],
        [u3, 'pushbroadcastmsg'],
      ]);
      for (const c of [u1, u2, u3]) assert.equal(pushesOf(c, 'pushbroadcastmsg', mid).length, 1);
    });

    it('getonlineusers on any node answers for users on every node', async () => {
      for (let i = 0; i < 3; i++) {
        const { uids } = await call(backends[i]!, 'getonlineusers', { uids: [U1, U2, U3, BIG + 999n] });
        assert.deepEqual([...(uids as bigint[])].sort(), [U1, U2, U3].sort(), `asked node ${i}`);
      }
    });

    it('a backend listening on node 2 gets messages sent on node 0 and login/logout on node 1, once', async () => {
      const listener = await backend(2);
      assert.deepEqual(await call(listener, 'setlisten', { p2p: true, ev: true }), {});
      const mid = nextMid();
      await u1.quest('sendmsg', { to: U2, mid, mtype: 51, msg: 'listened', attrs: '' });
      const U4 = BIG + 4n;
      const u4 = await login(1, U4);
      await listener.waitForPushes('pushevent', 1, 5000);
      u4.close();
      await listener.waitForPushes('pushevent', 2, 5000);
      await until(() => pushesOf(listener, 'pushmsg', mid).length > 0); // from node 0: no order with node 1's events
      await sleep(150); // strays
      assert.equal(pushesOf(listener, 'pushmsg', mid).length, 1);
      const events = listener.pushes.filter((p) => p.method === 'pushevent').map((p) => [p.payload['event'], p.payload['uid']]);
      assert.deepEqual(events, [
        ['login', U4],
        ['logout', U4],
      ]);
    });

    it('kickout from a backend on node 0 closes the user’s session on node 1', async () => {
      const U5 = BIG + 5n;
      const u5 = await login(1, U5);
      await call(backends[0]!, 'kickout', { uid: U5 });
      await Promise.race([u5.closed, sleep(3000).then(() => assert.fail('not closed'))]);
      assert.ok(u5.pushes.some((p) => p.method === 'kickout' && p.oneway));
      const { uids } = await call(backends[2]!, 'getonlineusers', { uids: [U5] });
      assert.deepEqual(uids, []);
    });

    it('SIGKILL of node 2 loses no acknowledged message; nodes 0 and 1 keep serving; node 2 rejoins', async () => {
      // A stream of sends on node 2; kill it once some have been answered.
      const acked: bigint[] = [];
      const doomed = await backend(2);
      const sends = Array.from({ length: 300 }, () => {
        const mid = nextMid();
        return call(doomed, 'sendmsg', { from: U3, to: U1, mid, mtype: 51, msg: `m${mid}`, attrs: '' }).then(
          () => void acked.push(mid),
          () => undefined, // unanswered when the node died: may or may not be stored
        );
      });
      await until(() => acked.length >= 50, 10_000); // a loaded machine may take seconds
      await cluster.kill(2, 'SIGKILL');
      await Promise.all(sends);
      assert.ok(acked.length >= 50, `${acked.length} acknowledged before the kill`);

      // Every acknowledged message is in the history, read through node 0.
      const stored = new Set<bigint>();
      let lastid = 0n;
      for (let page = 0; page < 100; page++) {
        const r = await call(backends[0]!, 'getp2pmsg', { uid: U1, ouid: U3, desc: false, num: 20, begin: 0n, end: 0n, lastid });
        const msgs = r['msgs'] as unknown[][];
        for (const m of msgs) stored.add(m[3] as bigint);
        if (msgs.length < 20) break;
        lastid = r['lastid'] as bigint;
      }
      const lost = acked.filter((m) => !stored.has(m));
      assert.deepEqual(lost, [], `${lost.length} of ${acked.length} acknowledged messages lost`);

      // Nodes 0 and 1 still serve each other, and presence no longer counts node 2's user.
      const mid = nextMid();
      await u2.quest('sendmsg', { to: U1, mid, mtype: 51, msg: 'still here', attrs: '' });
      await settle(mid, [[u1, 'pushmsg']]);
      assert.equal(pushesOf(u1, 'pushmsg', mid).length, 1);
      const t0 = Date.now();
      const { uids } = await call(backends[0]!, 'getonlineusers', { uids: [U1, U2, U3] });
      assert.deepEqual([...(uids as bigint[])].sort(), [U1, U2].sort());
      assert.ok(Date.now() - t0 < 2000, 'a dead node costs at most the query timeout');

      // Restart node 2: its users reconnect there and exchange messages with the others.
      await cluster.start(2);
      backends[2] = await backend(2);
      const u3b = await login(2, U3);
      const mid2 = nextMid();
      await u1.quest('sendmsg', { to: U3, mid: mid2, mtype: 51, msg: 'welcome back', attrs: '' });
      await settle(mid2, [[u3b, 'pushmsg']]);
      assert.equal(pushesOf(u3b, 'pushmsg', mid2).length, 1);
      const again = await call(backends[2]!, 'getonlineusers', { uids: [U1, U2, U3] });
      assert.deepEqual([...(again['uids'] as bigint[])].sort(), [U1, U2, U3].sort());
    });
  });
});
