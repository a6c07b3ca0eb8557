import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { RTMServerClient } from '@rtm/server-sdk';
import { spawnServer, startTestServer, TEST_PID, TEST_SECRET, until, type SpawnedServer } from '@rtm/testkit';
import { loginClient, sleep } from './helpers/model-run.js';

describe('crash safety', () => {
  const children: SpawnedServer[] = [];
  const dataDirs: string[] = [];
  after(async () => {
    for (const c of children) await c.kill('SIGKILL');
    for (const dir of dataDirs) await rm(dir, { recursive: true, force: true });
  });

  it('every acknowledged send survives a SIGKILL right after its answer', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'rtm-crash-'));
    dataDirs.push(dataDir);
    const env = { RTM_DATA_DIR: dataDir, RTM_PROJECT_ID: String(TEST_PID), RTM_PROJECT_SECRET: TEST_SECRET };
    const first = await spawnServer(env);
    children.push(first);
    const sdk = new RTMServerClient({
      pid: TEST_PID,
      secret: TEST_SECRET,
      endpoint: `127.0.0.1:${first.serverPort}`,
      autoReconnect: false,
    });
    await sdk.connect();
    const acked: bigint[] = [];
    // Pipelined sends, then SIGKILL the moment the 500th answer arrives; later ones may or may not land.
    let killed = false;
    await Promise.allSettled(
      Array.from({ length: 800 }, (_, i) =>
        sdk.sendMessage(51, 1n, 2n, `crash ${i}`, '').then(({ mid }) => {
          if (killed) return;
          acked.push(mid);
          if (acked.length === 500) {
            killed = true;
            first.child.kill('SIGKILL');
          }
        }),
      ),
    );
    await first.exited;
    await sdk.close();
    assert.ok(acked.length >= 500, `only ${acked.length} sends were acknowledged`);

    const second = await spawnServer(env);
    children.push(second);
    const reader = new RTMServerClient({
      pid: TEST_PID,
      secret: TEST_SECRET,
      endpoint: `127.0.0.1:${second.serverPort}`,
      autoReconnect: false,
    });
    await reader.connect();
    const stored = new Set<bigint>();
    let lastid: bigint | undefined;
    for (;;) {
      const page = await reader.getP2PMessage(1n, 2n, false, 20, { lastid });
      if (page.num === 0) break;
      for (const m of page.messages) stored.add(m.mid);
      lastid = page.lastid;
    }
    await reader.close();
    const lost = acked.filter((mid) => !stored.has(mid));
    assert.deepEqual(lost, [], `${lost.length} acknowledged messages were lost`);
    await second.kill('SIGTERM');
    assert.equal((await second.exited).code, 0, 'SIGTERM stops the server cleanly');
  });

  // A node that dies without a stop hands nothing over, but it recorded the presences it held and
  // touched its row in the store. The next process on the same data takes them over at its start
  // (in a cluster, another node once it is unheard for RTM_NODE_LEASE_MS) and ends them as the
  // grace period would have.
  it(
    'the presences of a SIGKILLed server end in the next process: logout heard, rooms left, unread from the crash',
    { timeout: 60_000 },
    async () => {
      const GRACE_MS = 5000;
      const dataDir = await mkdtemp(join(tmpdir(), 'rtm-crash-'));
      dataDirs.push(dataDir);
      const [stay, dropped, back, sender, rid] = [(1n << 60n) + 1n, (1n << 60n) + 2n, (1n << 60n) + 3n, (1n << 60n) + 4n, (1n << 60n) + 5n];
      const env = {
        RTM_DATA_DIR: dataDir,
        RTM_PROJECT_ID: String(TEST_PID),
        RTM_PROJECT_SECRET: TEST_SECRET,
        RTM_LOGOUT_GRACE_MS: String(GRACE_MS),
        RTM_NODE_LEASE_MS: '600', // a touch every 200 ms
      };
      const first = await spawnServer(env);
      children.push(first);
      const backend = new RTMServerClient({
        pid: TEST_PID,
        secret: TEST_SECRET,
        endpoint: `127.0.0.1:${first.serverPort}`,
        autoReconnect: false,
      });
      await backend.connect();
      const clients = [];
      for (const uid of [stay, dropped, back]) {
        const c = await loginClient(`127.0.0.1:${first.clientPort}`, backend, uid);
        await c.enterRoom(rid);
        clients.push(c);
      }
      const seen = await backend.sendMessage(30, sender, stay, 'pushed to stay before the crash');
      clients[1]!.close(); // no bye: dropped's grace period runs when the server dies
      for (let i = 0; i < 100 && (await backend.getOnlineUsers([dropped])).length > 0; i++) await sleep(10);
      const missed = await backend.sendMessage(30, sender, dropped, 'sent while dropped was away');
      await sleep(800); // the server touches its row (every 200 ms) after both sends
      first.child.kill('SIGKILL');
      await first.exited;
      await backend.close();
      for (const c of clients) c.close();

      // The default lease (15 s), longer than the grace period: the next process does not wait for it.
      const second = await startTestServer({ logoutGraceMs: GRACE_MS }, { dataDir });
      const listener = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: second.serverEndpoint, autoReconnect: false });
      const later = [];
      try {
        await listener.connect();
        const events: string[] = [];
        listener.on('event', (e) => events.push(`${e.event} ${e.uid}`));
        await listener.setListen({ events: true });
        later.push(await loginClient(second.clientEndpoint, listener, back)); // back within the grace period
        const afterCrash = await listener.sendMessage(30, sender, stay, 'sent after the crash');
        const ended = (): boolean => events.includes(`logout ${stay}`) && events.includes(`logout ${dropped}`);
        await until(ended, 10_000);
        assert.ok(ended(), `logouts heard: ${events.join(', ')}`);
        // The next process took the dead one's presences over at its start (no other server can
        // use the data): back goes on, as after a graceful restart.
        assert.deepEqual(
          events.filter((e) => e.endsWith(` ${back}`)),
          [],
          `back came back within the grace period: ${events.join(', ')}`,
        );
        assert.deepEqual(await listener.getRoomMembers(rid), [back], 'those who did not come back left the room');

        const stayAgain = await loginClient(second.clientEndpoint, listener, stay);
        later.push(stayAgain);
        const stayUnread = await stayAgain.getP2PUnreadMessageNum([sender]);
        assert.deepEqual(stayUnread.p2p, new Map([[sender, 1]]), 'what was pushed before the crash is read; what came after is not');
        assert.equal(stayUnread.ltime.get(sender), afterCrash.mtime);
        const droppedAgain = await loginClient(second.clientEndpoint, listener, dropped);
        later.push(droppedAgain);
        const droppedUnread = await droppedAgain.getP2PUnreadMessageNum([sender]);
        assert.deepEqual(droppedUnread.p2p, new Map([[sender, 1]]), 'counted from the end of its session, not from the crash');
        assert.equal(droppedUnread.ltime.get(sender), missed.mtime);
        assert.ok(seen.mtime < missed.mtime);

        await later[0]!.logout(); // back's presence is this process's alone now: a bye ends it at once
        await until(() => events.includes(`logout ${back}`), 2000);
        assert.deepEqual(
          events.filter((e) => e.endsWith(` ${back}`)),
          [`logout ${back}`],
        );
        // What an operator sees: two presences the crashed process left, ended here; one bye.
        const metrics = await second.services.metrics.registry.metrics();
        assert.match(metrics, /^rtm_presence_ends_total\{by="other_node"\} 2$/m);
        assert.match(metrics, /^rtm_presence_ends_total\{by="bye"\} 1$/m);
      } finally {
        for (const c of later) c.close();
        await listener.close();
        await second.close();
      }
    },
  );
});
