import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { RTMClient } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import { startTestServer, TEST_PID, TEST_SECRET, until, type TestServer } from '@rtm/testkit';
import { loginClient, sleep } from './helpers/model-run.js';
import { clusterServicesUnavailable, startCluster, type Cluster } from '../../../test/cluster/cluster.js';

// How presences end (client-api.md §3.3: a logout is the end of the user's last session).
// A kickout (server API, project blacklist) ends it at once: the SDK does not log in again after
// one, so no grace period waits for it.
// A restart of the server (a deploy) is a blip for its users: every connection closes, and the
// SDKs log in again a moment later. A user back within the grace period (client-api.md §3.3)
// continues the same presence across the restart: rooms kept, no logout or login event, unread
// baseline unmoved. A user who does not come back ends their presence when the grace period
// runs out, in the new process, with the time their session ended in the old one. In a cluster
// the same holds for a node that stops while its users log in again on another node.

const GRACE_MS = 1500;
let nextId = 5n << 56n; // ids above 2^53

describe('a kickout ends the presence at once, without waiting for the grace period', () => {
  it('listeners hear the logout, the rooms are left, unread counts from the kickout', { timeout: 20_000 }, async () => {
    const [me, other, sender, rid] = [++nextId, ++nextId, ++nextId, ++nextId];
    const server = await startTestServer({ logoutGraceMs: 60_000 });
    const backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    const clients: RTMClient[] = [];
    try {
      await backend.connect();
      const events: string[] = [];
      backend.on('event', (e) => events.push(`${e.event} ${e.uid}`));
      await backend.setListen({ events: true });
      for (const uid of [me, me, other]) {
        const c = await loginClient(server.clientEndpoint, backend, uid);
        clients.push(c);
        await c.enterRoom(rid);
      }
      const before = await backend.sendMessage(30, sender, me, 'before the kickout');
      await sleep(100);
      events.length = 0;

      await backend.kickout(me);
      for (let i = 0; i < 200 && events.length === 0; i++) await sleep(10);
      assert.deepEqual(events, [`logout ${me}`], 'at once, not after 60 s');
      assert.deepEqual(await backend.getRoomMembers(rid), [other]);

      const after = await backend.sendMessage(30, sender, me, 'after the kickout');
      const back = await loginClient(server.clientEndpoint, backend, me);
      clients.push(back);
      const unread = await back.getP2PUnreadMessageNum([sender]);
      assert.deepEqual(unread.p2p, new Map([[sender, 1]]), 'only what came after the kickout');
      assert.equal(unread.ltime.get(sender), after.mtime);
      assert.ok(before.mtime <= after.mtime);
    } finally {
      for (const c of clients) c.close();
      await backend.close();
      await server.close();
    }
  });
});

describe('presence across a graceful restart on the same data directory', () => {
  it(
    'a user back within the grace period keeps rooms and baseline; one who is not ends at the old session end',
    { timeout: 30_000 },
    async () => {
      const [sender, back, gone, rid] = [++nextId, ++nextId, ++nextId, ++nextId];
      let server: TestServer | undefined = await startTestServer({ logoutGraceMs: GRACE_MS }, { keepData: true });
      const dataDir = server.dataDir;
      const backends: RTMServerClient[] = [];
      const clients: RTMClient[] = [];
      const connectBackend = async (s: TestServer) => {
        const b = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: s.serverEndpoint, autoReconnect: false });
        backends.push(b);
        await b.connect();
        return b;
      };
      try {
        let backend = await connectBackend(server);
        for (const uid of [back, gone]) {
          const c = await loginClient(server.clientEndpoint, backend, uid);
          clients.push(c);
          await c.cleanUnreadMessage();
          await c.enterRoom(rid);
        }
        const seenBack = await backend.sendMessage(30, sender, back, 'before the restart');
        const seenGone = await backend.sendMessage(30, sender, gone, 'before the restart');
        await sleep(100); // pushed and answered

        await server.close();
        server = await startTestServer({ logoutGraceMs: GRACE_MS }, { dataDir });
        backend = await connectBackend(server);
        const events: string[] = [];
        backend.on('event', (e) => events.push(`${e.event} ${e.uid}`));
        await backend.setListen({ events: true });

        // `back` logs in again at once, as an SDK does after a lost connection.
        const again = await loginClient(server.clientEndpoint, backend, back);
        clients.push(again);
        assert.deepEqual(await again.getUserRooms(), [rid], 'rooms kept across the restart');
        assert.deepEqual(
          (await again.getP2PUnreadMessageNum([sender])).p2p,
          new Map([[sender, 1]]),
          'the baseline is still the clear: the message from before the restart counts',
        );
        assert.deepEqual(new Set(await backend.getRoomMembers(rid)), new Set([back, gone]), '`gone` is in its grace period');

        const missed = await backend.sendMessage(30, sender, gone, 'while gone');
        await sleep(GRACE_MS + 1500);
        assert.deepEqual(await backend.getRoomMembers(rid), [back], '`gone` left its rooms when the grace period ran out');
        assert.deepEqual(events, [`logout ${gone}`], 'no event for `back`; a logout for `gone`');

        const late = await loginClient(server.clientEndpoint, backend, gone);
        clients.push(late);
        assert.deepEqual(await late.getUserRooms(), []);
        const unread = await late.getP2PUnreadMessageNum([sender]);
        assert.deepEqual(unread.p2p, new Map([[sender, 1]]), 'counted from the end of its session in the old process');
        assert.equal(unread.ltime.get(sender), missed.mtime);
        assert.ok(seenGone.mtime <= missed.mtime && seenBack.mtime > 0n);
      } finally {
        for (const c of clients) c.close();
        await Promise.all(backends.map((b) => b.close()));
        await server?.close();
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  );
});

describe('our client SDK across a restart of the server on the same port', () => {
  it('logs in again by itself, still in its rooms, and room pushes resume', { timeout: 30_000 }, async () => {
    const [me, rid] = [++nextId, ++nextId];
    let server: TestServer | undefined = await startTestServer({ logoutGraceMs: 10_000 }, { keepData: true });
    const { dataDir, clientPort } = server;
    const backends: RTMServerClient[] = [];
    const phone = new RTMClient({
      endpoint: server.clientEndpoint,
      pid: TEST_PID,
      // A restart takes a moment: try again quickly (the default waits up to 8 s between attempts).
      reconnectStrategy: { startConnectFailedCount: 20, maxIntervalSeconds: 0.2 },
    });
    const relogins: boolean[] = [];
    const rooms: bigint[] = [];
    phone.on('reloginCompleted', (e) => relogins.push(e.successful));
    phone.on('roomMessage', (m) => rooms.push(m.mid));
    try {
      let backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
      backends.push(backend);
      await backend.connect();
      assert.deepEqual(await phone.login(me, await backend.getToken(me)), { ok: true });
      await phone.enterRoom(rid);

      await server.close();
      server = await startTestServer({ logoutGraceMs: 10_000, clientPort }, { dataDir });
      for (let i = 0; i < 500 && !relogins.includes(true); i++) await sleep(10);
      assert.ok(relogins.includes(true), `relogins: ${relogins.join(', ')}`);
      assert.deepEqual(await phone.getUserRooms(), [rid]);

      backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
      backends.push(backend);
      await backend.connect();
      const sender = ++nextId;
      await backend.addRoomMember(rid, sender);
      const sent = await backend.sendRoomMessage(30, sender, rid, 'after the restart');
      for (let i = 0; i < 100 && rooms.length === 0; i++) await sleep(10);
      assert.deepEqual(rooms, [sent.mid]);
    } finally {
      phone.close();
      await Promise.all(backends.map((b) => b.close()));
      await server?.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

const CI = process.env['CI'] === 'true';
const unavailable = await clusterServicesUnavailable();
interface TwoUsersOnNode0 {
  cluster: Cluster;
  /** On node 1, listening to events. */
  backend: RTMServerClient;
  events: string[];
  /** Both logged in on node 0, in room `rid`. */
  back: bigint;
  gone: bigint;
  rid: bigint;
  /** Their clients on node 0: back's, gone's. */
  onNode0: RTMClient[];
  /** Logs a user in on node 1. */
  loginOnNode1(uid: bigint): Promise<RTMClient>;
}

/** A 2-node cluster with two users on node 0, for `body`; everything closed after it. */
async function withTwoUsersOnNode0(env: Record<string, string>, body: (t: TwoUsersOnNode0) => Promise<void>): Promise<void> {
  const cluster: Cluster = await startCluster({ nodes: 2, env: { RTM_LOGOUT_GRACE_MS: String(GRACE_MS), ...env } });
  const clients: RTMClient[] = [];
  const backend = new RTMServerClient({
    pid: cluster.pid,
    secret: cluster.secret,
    endpoint: cluster.serverEndpoint(1),
    autoReconnect: false,
  });
  const login = async (node: number, uid: bigint): Promise<RTMClient> => {
    const c = new RTMClient({ endpoint: cluster.clientEndpoint(node), pid: cluster.pid, autoReconnect: false });
    clients.push(c);
    assert.deepEqual(await c.login(uid, await backend.getToken(uid)), { ok: true });
    return c;
  };
  try {
    await backend.connect();
    const events: string[] = [];
    backend.on('event', (e) => events.push(`${e.event} ${e.uid}`));
    await backend.setListen({ events: true });
    const [back, gone, rid] = [++nextId, ++nextId, ++nextId];
    const onNode0 = [await login(0, back), await login(0, gone)];
    for (const c of onNode0) await c.enterRoom(rid);
    await body({ cluster, backend, events, back, gone, rid, onNode0, loginOnNode1: (uid) => login(1, uid) });
  } finally {
    for (const c of clients) c.close();
    await backend.close();
    await cluster.close();
  }
}

describe('presence across a node stop in a cluster (PostgreSQL + NATS)', () => {
  it(
    'users of the stopped node who log in on another within the grace period keep rooms, with no event',
    { skip: !CI && unavailable, timeout: 60_000 },
    async () => {
      if (unavailable) assert.fail(`${unavailable} (required when CI=true)`);
      await withTwoUsersOnNode0({}, async ({ cluster, backend, events, back, gone, rid, loginOnNode1 }) => {
        await sleep(200);
        events.length = 0; // the logins

        await cluster.kill(0); // SIGTERM: a graceful stop
        const again = await loginOnNode1(back);
        assert.deepEqual(await again.getUserRooms(), [rid], 'rooms kept');
        await sleep(GRACE_MS + 2000);
        assert.deepEqual(await backend.getRoomMembers(rid), [back]);
        assert.deepEqual(events, [`logout ${gone}`], 'only the user who did not come back logged out');
      });
    },
  );

  it(
    'the presences of a SIGKILLed node end on another: logout heard, rooms left; a user back on another node goes on',
    { skip: !CI && unavailable, timeout: 60_000 },
    async () => {
      if (unavailable) assert.fail(`${unavailable} (required when CI=true)`);
      await withTwoUsersOnNode0({ RTM_NODE_LEASE_MS: '600' }, async ({ cluster, backend, events, back, gone, rid, loginOnNode1 }) => {
        await sleep(500); // node 0 touches its row after the logins

        await cluster.kill(0, 'SIGKILL'); // no stop: nothing handed over
        const again = await loginOnNode1(back);
        await until(() => events.includes(`logout ${gone}`), 10_000);
        assert.ok(events.includes(`logout ${gone}`), `events: ${events.join(', ')}`);
        assert.ok(!events.includes(`logout ${back}`), `back went on on node 1: ${events.join(', ')}`);
        assert.deepEqual(await backend.getRoomMembers(rid), [back], 'the user who did not come back left the room');
        assert.deepEqual(await again.getUserRooms(), [rid]);
      });
    },
  );

  it(
    'a user back on another node before the dead one is found out goes on, and a bye there logs them out once, when it is found out',
    { skip: !CI && unavailable, timeout: 60_000 },
    async () => {
      if (unavailable) assert.fail(`${unavailable} (required when CI=true)`);
      await withTwoUsersOnNode0({ RTM_NODE_LEASE_MS: '4000' }, async ({ cluster, backend, events, back, gone, rid, loginOnNode1 }) => {
        await sleep(500); // node 0 touches its row after the logins
        events.length = 0; // the logins

        await cluster.kill(0, 'SIGKILL');
        const again = await loginOnNode1(back); // node 0 still holds the presence, as far as the store knows
        assert.deepEqual(await again.getUserRooms(), [rid], 'the same presence: rooms kept');
        await again.logout();
        await sleep(1000);
        // Until its lease runs out, node 0 may be a node cut off from NATS where the user is still
        // online (its record says so): the presence goes on.
        assert.equal(events.join(', '), '', 'no login, and no logout while node 0 may be alive');

        await until(() => events.includes(`logout ${back}`) && events.includes(`logout ${gone}`), 15_000); // found out
        await sleep(500); // strays
        assert.deepEqual(events.sort(), [`logout ${back}`, `logout ${gone}`].sort(), 'each once');
        assert.deepEqual(await backend.getRoomMembers(rid), []);
      });
    },
  );

  it(
    'a user who drops on one node and logs in on another within the grace period goes on: no event until their last session ends',
    { skip: !CI && unavailable, timeout: 60_000 },
    async () => {
      if (unavailable) assert.fail(`${unavailable} (required when CI=true)`);
      await withTwoUsersOnNode0({}, async ({ backend, events, back, gone, rid, onNode0, loginOnNode1 }) => {
        await sleep(200);
        events.length = 0; // the logins

        onNode0[0]!.close(); // no bye: a blip; the SDK comes back on another node
        await until(async () => (await backend.getOnlineUsers([back])).length === 0);
        const again = await loginOnNode1(back);
        await sleep(GRACE_MS + 1000); // node 0's grace period runs out meanwhile
        assert.deepEqual(events, [], 'the same presence: no login, no logout');
        assert.deepEqual((await backend.getRoomMembers(rid)).sort(), [back, gone].sort(), 'still in the room');
        assert.deepEqual(await again.getUserRooms(), [rid], 'rooms kept');

        await again.logout(); // the last session ends: one logout
        await until(() => events.length > 0);
        await sleep(300); // strays
        assert.deepEqual(events, [`logout ${back}`]);
      });
    },
  );

  it(
    'a user whose sessions on two nodes drop together is heard to log out once, when the later grace period runs out',
    { skip: !CI && unavailable, timeout: 60_000 },
    async () => {
      if (unavailable) assert.fail(`${unavailable} (required when CI=true)`);
      await withTwoUsersOnNode0({}, async ({ backend, events, back, gone, rid, onNode0, loginOnNode1 }) => {
        const second = await loginOnNode1(back); // a second device, on node 1
        await sleep(200);
        events.length = 0; // the logins

        onNode0[0]!.close(); // both drop, no bye: two grace periods, one a node
        second.close();
        await until(async () => (await backend.getOnlineUsers([back])).length === 0);
        await sleep(GRACE_MS + 2000); // both run out, within moments of each other
        assert.deepEqual(events, [`logout ${back}`], 'one logout, not one per node');
        assert.deepEqual(await backend.getRoomMembers(rid), [gone]);
      });
    },
  );
});
