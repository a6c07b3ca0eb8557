import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RTMClient } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import { startTestServer, TEST_PID, TEST_SECRET, until, type TestServer } from '@rtm/testkit';
import { SqliteStore } from '../src/store/sqlite.js';
import type { NodePresence } from '../src/store/store.js';
import { endSession, loginClient, sleep } from './helpers/model-run.js';

// A server records in the store the presences it holds (services/sessions.ts), so that the next
// process, or another node, can end them if it dies without a stop (crash.test.ts,
// presence-ends.test.ts). Here: the records follow the sessions, and a record that could not be
// written, or that another node took away, is put right at the next sweep.

const LEASE_MS = 900; // a sweep every 300 ms
const FAR = 1n << 62n; // as if every node were dead: takeOrphanedPresences returns all records
let nextId = 9n << 56n; // ids above 2^53

class FlakyStore extends SqliteStore {
  failing = false;
  override async recordPresences(node: string, changes: readonly NodePresence[], replace?: boolean): Promise<void> {
    if (this.failing) throw new Error('disk I/O error');
    return super.recordPresences(node, changes, replace);
  }
}

/** This node's records, as the ends another node would take (removes them: the last look of a test). */
async function records(server: TestServer): Promise<Map<bigint, bigint>> {
  const taken = await server.services.store.takeOrphanedPresences(FAR, 0n, 1000);
  return new Map(taken.map((e) => [e.uid, e.endedAt]));
}

/** Waits for a sweep or two: the next one puts the records right. */
const sweeps = (n: number): Promise<unknown> => sleep((n * LEASE_MS) / 3 + 100);

async function setUp(): Promise<{ server: TestServer; store: FlakyStore; backend: RTMServerClient; clients: RTMClient[] }> {
  let store!: FlakyStore;
  const server = await startTestServer(
    { logoutGraceMs: 60_000, nodeLeaseMs: LEASE_MS },
    { makeStore: (dataDir) => (store = new FlakyStore({ dataDir })) },
  );
  const backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
  await backend.connect();
  return { server, store, backend, clients: [] };
}

describe("a server's records of the presences it holds", () => {
  it('follow the sessions: a session held, a grace period with its start, nothing after a bye', { timeout: 20_000 }, async () => {
    const { server, backend, clients } = await setUp();
    try {
      const [online, dropped, left] = [++nextId, ++nextId, ++nextId];
      for (const uid of [online, online, dropped, left]) clients.push(await loginClient(server.clientEndpoint, backend, uid));
      await endSession(clients[1]!, 'drop', 1, backend, online, server); // online keeps a session
      await endSession(clients[2]!, 'drop', 0, backend, dropped, server);
      const droppedAt = server.services.store.unreadMark();
      await endSession(clients[3]!, 'bye', 0, backend, left, server);
      await sweeps(1); // the records are written after the turn; the node's row touched since
      const held = await records(server);
      assert.deepEqual([...held.keys()].sort(), [online, dropped].sort(), 'the user who said bye is not held');
      assert.ok(held.get(dropped)! <= droppedAt, 'the grace period from the end of the session');
      assert.ok(held.get(online)! > droppedAt, 'a session: the mark of the last touch');
    } finally {
      for (const c of clients) c.close();
      await backend.close();
      await server.close();
    }
  });

  it('a write that failed is put right at the next sweep: all of them, and only them', { timeout: 20_000 }, async () => {
    const { server, store, backend, clients } = await setUp();
    try {
      const [gone, came, stays] = [++nextId, ++nextId, ++nextId];
      clients.push(await loginClient(server.clientEndpoint, backend, gone));
      clients.push(await loginClient(server.clientEndpoint, backend, stays));
      await sweeps(1);
      store.failing = true;
      await endSession(clients[0]!, 'bye', 0, backend, gone, server); // its release fails
      clients.push(await loginClient(server.clientEndpoint, backend, came)); // its hold fails
      await sleep(50);
      store.failing = false;
      await sweeps(2);
      assert.deepEqual([...(await records(server)).keys()].sort(), [came, stays].sort());
    } finally {
      for (const c of clients) c.close();
      await backend.close();
      await server.close();
    }
  });

  it('taken for dead by another node (no touch within the lease), the server records them again', { timeout: 20_000 }, async () => {
    const { server, backend, clients } = await setUp();
    try {
      const [a, b] = [++nextId, ++nextId];
      for (const uid of [a, b]) clients.push(await loginClient(server.clientEndpoint, backend, uid));
      await sweeps(1);
      // What another node does once this one is unheard for the lease: takes its records (the
      // users are online here, so that node would have left them alone) and forgets it.
      assert.deepEqual([...(await records(server)).keys()].sort(), [a, b].sort());
      let again: bigint[] = [];
      await until(async () => (again = [...(await records(server)).keys()]).length > 0, 3000);
      assert.deepEqual(again.sort(), [a, b].sort(), 'recorded again at the next touch');
    } finally {
      for (const c of clients) c.close();
      await backend.close();
      await server.close();
    }
  });
});
