/**
 * The session at the edges of its life: what arrives in the same read as the `auth` answer, pushes
 * queued behind a listener that closes, sends cut by a disconnect, a `webSocketFactory` that is slow
 * or hands over an open socket, and calls made while the server is closing. Each case once went
 * wrong (an audit of the SDK): login() resolving for a session already closed, events after
 * close(), a TypeError in place of a send's 20002.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { encodeAnswerFrame, encodeQuestFrame, RtmError } from '@rtm/fpnn';
import { RTMServerClient } from '@rtm/server-sdk';
import { startFaultyProxy, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';
import { WebSocket } from 'ws';
import { RTMClient, type NetworkEvents, type RTMClientOptions, type SendError, type WebSocketLike } from '../src/index.js';
import { FakeRtmServer, sleep } from './helpers/fake-server.js';

const PID = 11000001;

/** A `networkEvents` target that counts its `online` listeners (one left behind is a leak in a page). */
function fakeNetwork(): { target: NetworkEvents; listeners: Set<() => void> } {
  const listeners = new Set<() => void>();
  return {
    listeners,
    target: { addEventListener: (_t, l) => void listeners.add(l), removeEventListener: (_t, l) => void listeners.delete(l) },
  };
}

const pushmsg = (to: bigint, mid: bigint, seq: number): Uint8Array =>
  encodeQuestFrame('pushmsg', { from: 2002n, to, mtype: 32, mid, msg: `m${mid}`, attrs: '', mtime: 1n }, 0x80, false, seq);

describe('the session at its edges (fake server)', () => {
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** A server that answers `auth` and sends `next` in the same WebSocket message (fpnn.md §5 allows it). */
  async function authAnsweredWith(next: Uint8Array) {
    const server = await FakeRtmServer.start();
    server.handlers.auth = (_p, conn) => {
      conn.sendRaw(Buffer.concat([encodeAnswerFrame(server.received('auth').at(-1)!.seq, { ok: true }), next]));
      return new Promise(() => undefined); // answered above
    };
    const net = fakeNetwork();
    const client = new RTMClient({ endpoint: server.endpoint, pid: PID, networkEvents: net.target, autoReconnect: false });
    cleanups.push(
      () => server.close(),
      () => client.close(),
    );
    const events: string[] = [];
    for (const e of ['kickout', 'closed', 'connected', 'message'] as const) client.on(e, () => events.push(e));
    return { client, net, events };
  }

  test('a kickout in the same read as the auth answer: login() rejects 20015, no connected after closed, no listener left', async () => {
    const { client, net, events } = await authAnsweredWith(encodeQuestFrame('kickout', {}, 0x80, true));
    await assert.rejects(client.login(1001n, 'token'), (err: unknown) => err instanceof RtmError && err.code === 20015);
    await sleep(50);
    assert.deepEqual(events, ['kickout', 'closed']);
    assert.equal(client.state, 'closed');
    assert.equal(net.listeners.size, 0);
  });

  test('close() from the listener of a push that came with the auth answer: login() rejects 20015, no listener left', async () => {
    const { client, net, events } = await authAnsweredWith(pushmsg(1001n, 1n, 99));
    client.on('message', () => client.close());
    await assert.rejects(client.login(1001n, 'token'), (err: unknown) => err instanceof RtmError && err.code === 20015);
    await sleep(50);
    assert.deepEqual(events, ['message', 'closed']);
    assert.equal(net.listeners.size, 0);
  });

  test('pushes queued behind a listener that calls close() are not emitted', async () => {
    const server = await FakeRtmServer.start();
    const client = new RTMClient({ endpoint: server.endpoint, pid: PID });
    cleanups.push(
      () => server.close(),
      () => client.close(),
    );
    await client.login(1001n, 'token-1001');
    const events: string[] = [];
    client.on('closed', (e) => events.push(`closed ${e.reason}`));
    client.on('message', (m) => {
      events.push(`message ${String(m.message)}`);
      client.close();
    });
    server.last.sendRaw(Buffer.concat([pushmsg(1001n, 1n, 11), pushmsg(1001n, 2n, 12)]));
    await sleep(100);
    assert.deepEqual(events, ['message m1', 'closed close']);
  });

  test('a call made while the server is closing the WebSocket rejects 20002 (connection lost), not a send error', async () => {
    const server = await FakeRtmServer.start();
    server.handlers.getfriends = () => ({ uids: [] });
    const sockets: WebSocket[] = [];
    const client = new RTMClient({
      endpoint: server.endpoint,
      pid: PID,
      autoReconnect: false,
      webSocketFactory: (url) => {
        const ws = new WebSocket(url);
        sockets.push(ws);
        return ws as unknown as WebSocketLike;
      },
    });
    cleanups.push(
      () => server.close(),
      () => client.close(),
    );
    await client.login(1001n, 'token-1001');
    server.last.ws.close(1001, 'going away');
    while (sockets[0]!.readyState === WebSocket.OPEN) await new Promise((r) => setImmediate(r));
    assert.equal(client.state, 'online', 'the close event has not come yet');
    await assert.rejects(client.getFriends(), (err: unknown) => err instanceof RtmError && err.code === 20002);
  });
});

describe('the session at its edges (real server)', () => {
  let server: TestServer;
  let backend: RTMServerClient;
  const clients: RTMClient[] = [];
  const timers: NodeJS.Timeout[] = [];

  before(async () => {
    server = await startTestServer();
    backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    await backend.connect();
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const t of timers) clearTimeout(t);
    await backend.close();
    await server.close();
  });

  const client = (options: Partial<RTMClientOptions>): RTMClient => {
    const c = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID, ...options });
    clients.push(c);
    return c;
  };
  const later = <T>(ms: number, value: () => T): Promise<T> => new Promise((r) => timers.push(setTimeout(() => r(value()), ms)));

  test('sends pending when the connection drops each reject 20002 with their own mid', async () => {
    const proxy = await startFaultyProxy('127.0.0.1', Number(server.clientEndpoint.split(':')[1]));
    try {
      const c = client({ endpoint: `127.0.0.1:${proxy.port}`, autoReconnect: false });
      assert.deepEqual(await c.login(7001n, await backend.getToken(7001n)), { ok: true });
      proxy.holdRequests = true; // the sends never reach the server
      const sends = [111n, 222n, 333n].map((mid) => c.sendMessage(7002n, 30, 'x', '', mid).catch((err: unknown) => err as SendError));
      await sleep(50);
      proxy.cut();
      const errors = await Promise.all(sends);
      assert.deepEqual(
        errors.map((e) => [e instanceof RtmError && e.code, e.mid]),
        [
          [20002, 111n],
          [20002, 222n],
          [20002, 333n],
        ],
      );
    } finally {
      proxy.close();
    }
  });

  test('close() while an async webSocketFactory works: login() rejects 20015 at once, and the socket it makes is closed', async () => {
    let made: WebSocket | undefined;
    const c = client({
      webSocketFactory: (url) => later(300, () => (made = new WebSocket(url)) as unknown as WebSocketLike),
    });
    const login = c.login(7101n, 'whatever');
    await sleep(20);
    const t0 = Date.now();
    c.close();
    await assert.rejects(login, (err: unknown) => err instanceof RtmError && err.code === 20015);
    assert.ok(Date.now() - t0 < 100, 'at once');
    await sleep(400);
    assert.ok(made, 'the factory finished');
    assert.notEqual(made.readyState, WebSocket.OPEN);
  });

  test('connectTimeoutMs covers the webSocketFactory too', async () => {
    const c = client({ connectTimeoutMs: 200, webSocketFactory: () => new Promise<WebSocketLike>(() => undefined) });
    await assert.rejects(c.login(7102n, 'x'), (err: unknown) => err instanceof RtmError && err.code === 20003);
  });

  test('a webSocketFactory that resolves with a socket already open', async () => {
    const c = client({
      connectTimeoutMs: 2000,
      webSocketFactory: async (url) => {
        const ws = new WebSocket(url);
        await once(ws, 'open');
        return ws as unknown as WebSocketLike;
      },
    });
    assert.deepEqual(await c.login(7301n, await backend.getToken(7301n)), { ok: true });
    assert.deepEqual(await c.getFriends(), []);
  });
});
