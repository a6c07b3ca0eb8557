import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RTMClient } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import { startFaultyProxy, startTestServer, TEST_PID, TEST_SECRET, until, type FaultyProxy, type TestServer } from '@rtm/testkit';
import { loginClient, untilAnswered, untilOffline } from './helpers/model-run.js';

// client-api.md §3.3 "Unread baseline" when a device's network dies without a word (a phone in a
// tunnel): no FIN, no reset; a proxy in front of the client gate drops every byte. The server
// learns it only when the connection has been silent for idleTimeoutMs; the messages pushed to it
// meanwhile went nowhere.
// - If the presence then ends (no reconnect within the grace period), those messages must still
//   count as unread: the logout is when the device stopped taking messages, not when the server
//   noticed.
// - If our SDK comes back within the grace period (its ping watchdog notices the silence, it
//   reconnects and logs in again by itself), the presence goes on: the baseline does not move,
//   the lost messages are in history and in the counts, later pushes arrive, none twice.

const GRACE_MS = 300;
const IDLE_MS = 1000; // the least RTM_IDLE_TIMEOUT_MS

let nextId = 3n << 56n; // ids above 2^53

/** A server with these settings, a backend connected to it, and a proxy in front of its client gate. */
async function behindProxy(
  settings: Parameters<typeof startTestServer>[0],
): Promise<{ server: TestServer; backend: RTMServerClient; proxy: FaultyProxy }> {
  const server = await startTestServer(settings);
  const backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
  await backend.connect();
  const [host, port] = server.clientEndpoint.split(':');
  return { server, backend, proxy: await startFaultyProxy(host!, Number(port)) };
}

async function closeAll(server: TestServer, backend: RTMServerClient, proxy: FaultyProxy): Promise<void> {
  proxy.close();
  await backend.close();
  await server.close();
}

describe('unread after a connection that died silently (idle timeout, then past the grace period)', () => {
  let server: TestServer;
  let backend: RTMServerClient;
  let proxy: FaultyProxy;

  before(async () => ({ server, backend, proxy } = await behindProxy({ logoutGraceMs: GRACE_MS, idleTimeoutMs: IDLE_MS })));
  after(() => closeAll(server, backend, proxy));

  it('messages pushed into the dead connection count as unread; those the device answered do not', { timeout: 20_000 }, async () => {
    const sender = ++nextId;
    const me = ++nextId;
    const gid = ++nextId;
    await backend.addGroupMembers(gid, [sender, me]);
    const got: bigint[] = [];
    const phone: RTMClient = await loginClient(`127.0.0.1:${proxy.port}`, backend, me, (c) => {
      c.on('message', (m) => got.push(m.mid));
      c.on('groupMessage', (m) => got.push(m.mid));
    });
    try {
      await phone.cleanUnreadMessage();
      // Seen: pushed and answered before the network died.
      const seen = await backend.sendMessage(30, sender, me, 'seen');
      const seenInGroup = await backend.sendGroupMessage(30, sender, gid, 'seen too');
      await until(() => got.length >= 2);
      assert.deepEqual(got, [seen.mid, seenInGroup.mid]);
      await untilAnswered(server, me); // the answers to those pushes reach the server

      proxy.holdRequests = true;
      proxy.holdAnswers = true;
      const lost = [await backend.sendMessage(30, sender, me, 'into the tunnel'), await backend.sendMessage(30, sender, me, 'and another')];
      const lostInGroup = await backend.sendGroupMessage(30, sender, gid, 'group, into the tunnel');
      await untilOffline(backend, me, IDLE_MS + 2000); // the server noticed
      // The grace period passed, the logout is written (on a loaded machine maybe late).
      const loggedOut = async () => (await server.services.store.getUnreadBaseline(TEST_PID, me)).logoutTime !== undefined;
      assert.ok(await until(loggedOut), 'a logout after the grace period');
      const after = await backend.sendMessage(30, sender, me, 'while logged out');
      assert.deepEqual(got, [seen.mid, seenInGroup.mid], 'nothing got through the dead network');
      phone.close();

      const back = await loginClient(server.clientEndpoint, backend, me);
      try {
        const p2p = await back.getP2PUnreadMessageNum([sender]);
        assert.deepEqual(p2p.p2p, new Map([[sender, lost.length + 1]]), 'the two lost in the tunnel and the one sent after');
        assert.equal(p2p.ltime.get(sender), after.mtime);
        const group = await back.getGroupUnreadMessageNum([gid]);
        assert.deepEqual(group.group, new Map([[gid, 1]]), 'the group message lost in the tunnel');
        assert.equal(group.ltime.get(gid), lostInGroup.mtime);
        assert.deepEqual(new Set((await back.getUnreadMessage()).p2p), new Set([sender]));
      } finally {
        back.close();
      }
    } finally {
      phone.close();
      proxy.holdRequests = false;
      proxy.holdAnswers = false;
    }
  });
});

describe('our client SDK through a silent network that comes back within the grace period', () => {
  let server: TestServer;
  let backend: RTMServerClient;
  let proxy: FaultyProxy;

  before(
    async () => ({ server, backend, proxy } = await behindProxy({ logoutGraceMs: 5000, idleTimeoutMs: IDLE_MS, pingIntervalMs: 200 })),
  );
  after(() => closeAll(server, backend, proxy));

  it('the watchdog notices, the SDK logs in again; unread, history and pushes stay right', { timeout: 20_000 }, async () => {
    const sender = ++nextId;
    const me = ++nextId;
    const got: bigint[] = [];
    const events: string[] = [];
    const phone = new RTMClient({
      endpoint: `127.0.0.1:${proxy.port}`,
      pid: TEST_PID,
      maxPingIntervalSeconds: 0.6,
      connectTimeoutMs: 1000,
    });
    phone.on('message', (m) => got.push(m.mid));
    phone.on('disconnected', () => events.push('disconnected'));
    phone.on('reloginCompleted', (e) => events.push(`relogin ${e.successful}`));
    try {
      assert.deepEqual(await phone.login(me, await backend.getToken(me)), { ok: true });
      await phone.cleanUnreadMessage();
      const before = await backend.sendMessage(30, sender, me, 'before');
      assert.ok(await until(() => got.length === 1), 'the first push');

      proxy.holdRequests = true;
      proxy.holdAnswers = true;
      const lost = [await backend.sendMessage(30, sender, me, 'lost 1'), await backend.sendMessage(30, sender, me, 'lost 2')];
      assert.ok(await until(() => events.includes('disconnected'), 3000), 'the watchdog did not notice the silence');
      // The network is back; connections opened through it meanwhile are reset.
      proxy.holdRequests = false;
      proxy.holdAnswers = false;
      proxy.cut();
      assert.ok(await until(() => events.includes('relogin true'), 8000), `no relogin: ${events.join(', ')}`);

      const afterwards = await backend.sendMessage(30, sender, me, 'after');
      assert.ok(await until(() => got.length === 2), 'the push after the relogin');
      assert.deepEqual(got, [before.mid, afterwards.mid], 'each push once; the lost ones are not replayed');
      assert.deepEqual(await backend.getOnlineUsers([me]), [me]);

      const unread = await phone.getP2PUnreadMessageNum([sender]);
      assert.deepEqual(unread.p2p, new Map([[sender, 4]]), 'every message since the clear: the blip moved no baseline');
      const history = await phone.getP2PMessage(sender, false, 10);
      assert.deepEqual(
        history.messages.map((m) => m.mid),
        [before, ...lost, afterwards].map((r) => r.mid),
      );
    } finally {
      phone.close();
      proxy.holdRequests = false;
      proxy.holdAnswers = false;
    }
  });
});
