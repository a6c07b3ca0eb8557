/**
 * The session's lifecycle when the application acts from inside its own event listeners (a
 * close(), logout() or login() from `disconnected`, `reloginCompleted` or `kickout`), when a login
 * is cut short before its WebSocket opens, and when close() meets a dead network: the real server
 * (startTestServer), a faulty TCP proxy between them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RTMServerClient } from '@rtm/server-sdk';
import { startFaultyProxy, startTestServer, TEST_PID, TEST_SECRET, until, type FaultyProxy, type TestServer } from '@rtm/testkit';
import { WebSocket } from 'ws';
import { RTMClient, type RTMClientOptions, type WebSocketLike } from '../src/index.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FAST = { startConnectFailedCount: 3, maxIntervalSeconds: 0.2, linearRegressiveCount: 2, stableAfterMs: 0 };

describe('the session when the application acts from its listeners (real server)', () => {
  let server: TestServer;
  let backend: RTMServerClient;
  const cleanups: (() => unknown)[] = [];

  before(async () => {
    server = await startTestServer({ logoutGraceMs: 5_000 });
    backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    await backend.connect();
  });
  after(async () => {
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
    await backend.close();
    await server.close();
  });

  /** A client through its own faulty proxy; every WebSocket it creates is recorded. */
  async function viaProxy(options: Partial<RTMClientOptions> = {}) {
    const [, port] = server.clientEndpoint.split(':');
    const proxy: FaultyProxy = await startFaultyProxy('127.0.0.1', Number(port));
    const sockets: WebSocket[] = [];
    const client = new RTMClient({
      endpoint: `127.0.0.1:${proxy.port}`,
      pid: TEST_PID,
      reconnectStrategy: FAST,
      webSocketFactory: (url) => {
        const ws = new WebSocket(url);
        sockets.push(ws);
        return ws as unknown as WebSocketLike;
      },
      ...options,
    });
    cleanups.push(
      () => proxy.close(),
      () => client.close(),
    );
    return { proxy, client, sockets, open: () => sockets.filter((s) => s.readyState === WebSocket.OPEN).length };
  }

  test('close() called from a disconnected listener stops the relogin', async () => {
    const uid = 5001n;
    const { proxy, client, sockets } = await viaProxy();
    assert.deepEqual(await client.login(uid, await backend.getToken(uid)), { ok: true });
    const events: string[] = [];
    client.on('connected', (e) => events.push(`connected:${e.relogin}`));
    client.on('closed', (e) => events.push(`closed:${e.reason}`));
    client.on('disconnected', () => {
      events.push('disconnected');
      client.close(); // the app gives up on the first loss
    });
    proxy.cut();
    await until(() => events.includes('disconnected'));
    await sleep(500); // relogin attempts are immediate with this strategy
    assert.deepEqual(events, ['disconnected', 'closed:close']);
    assert.equal(client.state, 'closed');
    assert.equal(sockets.length, 1, `sockets opened after close(): ${sockets.length - 1}`);
  });

  test('logout() called from a disconnected listener stops the relogin', async () => {
    const uid = 5002n;
    const { proxy, client, sockets } = await viaProxy();
    assert.deepEqual(await client.login(uid, await backend.getToken(uid)), { ok: true });
    let disconnected = false;
    client.on('disconnected', () => {
      disconnected = true;
      void client.logout();
    });
    proxy.cut();
    await until(() => disconnected);
    await sleep(500);
    assert.equal(client.state, 'closed');
    assert.equal(sockets.length, 1, 'no new connection after logout()');
    assert.deepEqual(await backend.getOnlineUsers([uid]), [], 'the user is not back online');
  });

  test('login() called from a disconnected listener leaves exactly one live connection', async () => {
    const uid = 5003n;
    const token = await backend.getToken(uid);
    const { proxy, client, open } = await viaProxy();
    assert.deepEqual(await client.login(uid, token), { ok: true });
    const connected: boolean[] = [];
    client.on('connected', (e) => connected.push(e.relogin));
    let relogin: Promise<unknown> | undefined;
    client.once('disconnected', () => {
      relogin = client.login(uid, token); // the app logs in again itself
    });
    proxy.cut();
    await until(() => relogin !== undefined);
    await relogin;
    await sleep(500);
    assert.equal(client.state, 'online');
    assert.equal(open(), 1, `live WebSockets: ${open()} (one is leaked: not the session's, never closed)`);
    assert.equal(connected.length, 1, `connected events: ${JSON.stringify(connected)}`);
  });

  test('close() during a network partition leaves no socket or timer behind (ws closing handshake)', async () => {
    const uid = 5004n;
    const { proxy, client, sockets } = await viaProxy({ maxPingIntervalSeconds: 0 });
    assert.deepEqual(await client.login(uid, await backend.getToken(uid)), { ok: true });
    proxy.holdRequests = proxy.holdAnswers = true; // a partition: nothing passes, nothing resets
    client.close();
    // With the `ws` package, close() starts a closing handshake and keeps the socket and a 30 s
    // (non-unref'd) timer until the peer answers: a Node process cannot exit for 30 s.
    const gone = await until(() => sockets[0]!.readyState === WebSocket.CLOSED, 2000);
    assert.ok(gone, `socket readyState ${sockets[0]!.readyState} 2 s after close() (2 = CLOSING)`);
  });

  test('close() in a reloginCompleted listener: no connected event after closed', async () => {
    const uid = 5005n;
    const { proxy, client, open } = await viaProxy();
    assert.deepEqual(await client.login(uid, await backend.getToken(uid)), { ok: true });
    const events: string[] = [];
    client.on('reloginCompleted', (e) => {
      events.push(`relogin:${e.successful}`);
      client.close();
    });
    client.on('connected', () => events.push('connected'));
    client.on('closed', (e) => events.push(`closed:${e.reason}`));
    proxy.cut();
    await until(() => events.length >= 2);
    await sleep(200);
    assert.deepEqual(events, ['relogin:true', 'closed:close']);
    assert.equal(client.state, 'closed');
    assert.equal(open(), 0, 'the relogged-in socket is closed');
  });

  test('login() called from a kickout listener is honoured, not cancelled by the kickout', async () => {
    const uid = 5006n;
    const token = await backend.getToken(uid);
    const { client } = await viaProxy();
    assert.deepEqual(await client.login(uid, token), { ok: true });
    let again: Promise<{ ok: boolean }> | undefined;
    client.once('kickout', () => {
      again = client.login(uid, token); // the app decides to take the session back
    });
    await backend.kickout(uid);
    await until(() => again !== undefined);
    const result = await again!.then(
      (r) => r,
      (err: unknown) => err,
    );
    assert.deepEqual(result, { ok: true }, `login() from the kickout listener: ${String(result)}`);
    assert.equal(client.state, 'online');
  });

  test('login() then close() in the same tick: login rejects 20015, no uncaught ws error (default factory)', async () => {
    const uid = 5009n;
    const token = await backend.getToken(uid);
    const client = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID });
    const login = client.login(uid, token);
    client.close(); // e.g. a UI component mounted and unmounted at once
    await assert.rejects(login, (err: { code?: number }) => err.code === 20015);
    await sleep(100); // ws emits its 'error' for the aborted handshake on the next tick
    assert.equal(client.state, 'closed');
  });

  test('login() twice in the same tick: the first rejects 20015, the second logs in, no uncaught ws error', async () => {
    const uid = 5010n;
    const token = await backend.getToken(uid);
    const client = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID });
    cleanups.push(() => client.close());
    const first = client.login(uid, token);
    const second = client.login(uid, token);
    await assert.rejects(first, (err: { code?: number }) => err.code === 20015);
    assert.deepEqual(await second, { ok: true });
    await sleep(100);
    assert.equal(client.state, 'online');
  });
});
