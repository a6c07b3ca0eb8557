/**
 * /healthz on the admin port: what a load balancer's health check sees. 200 only while the node can
 * serve; 503 naming the failing part while the store does not answer, the bus is down, or the node
 * is stopping.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RTMServerClient } from '@rtm/server-sdk';
import { startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';
import { SqliteStore } from '../src/store/sqlite.js';

async function healthz(server: TestServer): Promise<{ code: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${server.adminPort}/healthz`);
  return { code: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** A store whose ping fails (or never answers) while `down` says so, and whose getToken waits for `held`. */
class FlakyStore extends SqliteStore {
  down: 'no' | 'rejects' | 'hangs' = 'no';
  held: Promise<void> | undefined;
  override async ping(): Promise<void> {
    if (this.down === 'rejects') throw new Error('disk I/O error');
    if (this.down === 'hangs') return new Promise(() => {});
    return super.ping();
  }
  override async getToken(pid: number, uid: bigint): Promise<string | undefined> {
    await this.held;
    return super.getToken(pid, uid);
  }
}

describe('admin /healthz', () => {
  it('200 ok with node, connections and sessions while the node serves', async () => {
    const server = await startTestServer();
    try {
      const { code, body } = await healthz(server);
      assert.equal(code, 200);
      assert.equal(body.status, 'ok');
      assert.equal(typeof body.node, 'string');
      assert.deepEqual(body.connections, { server: 0, client: 0 });
      assert.equal(body.sessions, 0);
      // A probe's own query is no other path.
      const probed = await fetch(`http://127.0.0.1:${server.adminPort}/healthz?probe=lb`);
      assert.equal(probed.status, 200);
      assert.equal(((await probed.json()) as { status: string }).status, 'ok');
      assert.equal((await fetch(`http://127.0.0.1:${server.adminPort}/healthzz`)).status, 404);
    } finally {
      await server.close();
    }
  });

  it('503 "store unreachable" while the store fails its ping or does not answer within 2 s; 200 again after', async () => {
    let store: FlakyStore | undefined;
    const server = await startTestServer({}, { makeStore: (dataDir) => (store = new FlakyStore({ dataDir })) });
    try {
      store!.down = 'rejects';
      let r = await healthz(server);
      assert.equal(r.code, 503);
      assert.equal(r.body.status, 'store unreachable');
      assert.equal(r.body.reason, 'disk I/O error', "the store's reason");
      assert.deepEqual(r.body.connections, { server: 0, client: 0 }, 'the other fields are still there');

      store!.down = 'hangs';
      const started = Date.now();
      r = await healthz(server);
      assert.equal(r.code, 503);
      assert.equal(r.body.status, 'store unreachable');
      assert.ok(Date.now() - started < 4000, 'answered after the ping timeout, not when the store answers');

      store!.down = 'no';
      r = await healthz(server);
      assert.equal(r.code, 200);
      assert.equal(r.body.status, 'ok');
      assert.equal(r.body.reason, undefined);
    } finally {
      await server.close();
    }
  });

  it('503 "stopping" during a graceful stop', async () => {
    let store: FlakyStore | undefined;
    const server = await startTestServer({}, { makeStore: (dataDir) => (store = new FlakyStore({ dataDir })) });
    let release = (): void => {};
    store!.held = new Promise<void>((resolve) => (release = resolve));
    const sdk = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    await sdk.connect();
    // A quest in flight holds the stop in its first step, with the admin port still open.
    const token = sdk.getToken(1n).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 50));
    const stopped = server.close();
    try {
      const { code, body } = await healthz(server);
      assert.equal(code, 503);
      assert.equal(body.status, 'stopping');
    } finally {
      release();
      await token;
      await stopped;
      await sdk.close();
    }
  });
});
