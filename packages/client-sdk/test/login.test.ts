import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { test } from 'node:test';
import { RtmError } from '@rtm/fpnn';
import { RTMClient, type ClosedEvent } from '../src/index.js';
import { FakeRtmServer, sleep, withTimeout } from './helpers/fake-server.js';
import { sameFrameIgnoringSeq, webClientFrame } from './helpers/vectors.js';

async function start(t: { after(fn: () => unknown): void }, options: Partial<ConstructorParameters<typeof RTMClient>[0]> = {}) {
  const server = await FakeRtmServer.start();
  const client = new RTMClient({ endpoint: server.endpoint, pid: 11000001, ...options });
  t.after(async () => {
    client.close();
    await server.close();
  });
  return { server, client };
}

test('login sends auth {pid, uid, token, version} and resolves {ok: true}', async (t) => {
  const { server, client } = await start(t);
  const connected: unknown[] = [];
  client.on('connected', (e) => connected.push(e));
  assert.deepEqual(await client.login(1001, 'token-1001'), { ok: true });
  const auth = await server.waitForQuest('auth');
  assert.deepEqual(Object.keys(auth.payload), ['pid', 'uid', 'token', 'version']);
  assert.deepEqual(auth.payload, { pid: 11000001, uid: 1001n, token: 'token-1001', version: 'TypeScript_0.1.0' });
  assert.equal(client.state, 'online');
  assert.equal(client.uid, 1001n);
  assert.deepEqual(connected, [{ uid: 1001n, relogin: false }]);
});

test('auth frame is byte-identical to the browser SDK capture', async (t) => {
  const server = await FakeRtmServer.start({ tokens: { '1001': 'C975E8521DD213BB0E5DC351C5C05ED2' } });
  const client = new RTMClient({ endpoint: server.endpoint, pid: 11000001, sdkVersion: 'WebSocket_2.7.6' });
  t.after(async () => {
    client.close();
    await server.close();
  });
  assert.deepEqual(await client.login(1001n, 'C975E8521DD213BB0E5DC351C5C05ED2'), { ok: true });
  const auth = await server.waitForQuest('auth');
  assert.ok(sameFrameIgnoringSeq(auth.raw, webClientFrame('auth')), Buffer.from(auth.raw).toString('hex'));
});

test('auth carries the attrs option', async (t) => {
  const { server, client } = await start(t, { attrs: { device: 'web' } });
  await client.login(1001n, 'token-1001');
  assert.deepEqual((await server.waitForQuest('auth')).payload.attrs, { device: 'web' });
});

test('{ok: false} resolves as a normal answer and is not retried', async (t) => {
  const { server, client } = await start(t, { reconnectStrategy: { startConnectFailedCount: 3 } });
  const closed: ClosedEvent[] = [];
  client.on('closed', (e) => closed.push(e));
  assert.deepEqual(await client.login(1001n, 'wrong'), { ok: false });
  await server.last.waitClosed();
  await sleep(100);
  assert.equal(server.connections.length, 1);
  assert.equal(server.received('auth').length, 1);
  assert.equal(client.state, 'idle');
  assert.deepEqual(closed, []);
  await assert.rejects(client.getFriends(), (err: RtmError) => err.code === 20012);
});

test('an error answer to auth rejects with its code', async (t) => {
  const { server, client } = await start(t);
  server.handlers.auth = () => {
    throw new RtmError(200024, 'denied');
  };
  await assert.rejects(
    client.login(1001n, 'token-1001'),
    (err: unknown) => err instanceof RtmError && err.code === 200024 && err.message === 'denied',
  );
  await sleep(50);
  assert.equal(server.connections.length, 1, 'a failed first login is not retried');
});

test('an unreachable endpoint rejects with 20012', async () => {
  const server = await FakeRtmServer.start();
  const endpoint = server.endpoint;
  await server.close();
  const client = new RTMClient({ endpoint, pid: 1 });
  await assert.rejects(client.login(1n, 'x'), (err: unknown) => err instanceof RtmError && err.code === 20012);
  client.close();
});

test('close() aborts a connection still opening: no socket or timer is left behind', async (t) => {
  // A server that accepts TCP connections but never answers the WebSocket upgrade.
  const accepted: Socket[] = [];
  const silent = createServer((socket) => accepted.push(socket.resume())); // reads (and drops) the upgrade request
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.after(() => {
    for (const s of accepted) s.destroy();
    silent.close();
  });
  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const timersBefore = timers();
  const client = new RTMClient({ endpoint: `127.0.0.1:${(silent.address() as AddressInfo).port}`, pid: 1 });
  const login = client.login(1001n, 'token-1001');
  while (accepted.length === 0) await sleep(5);
  assert.ok(timers() > timersBefore, 'the connect timer runs');
  client.close();
  await assert.rejects(login, (err: unknown) => err instanceof RtmError && err.code === 20015);
  assert.equal(client.state, 'closed');
  assert.ok(timers() <= timersBefore, `timers: ${timers()} after close() vs ${timersBefore} before`);
  // The client's socket is gone: the server sees it close now, not after connectTimeoutMs (30 s)
  // (within 5 s: a loaded machine may take a while even for "now").
  if (!accepted[0]!.closed) await withTimeout(once(accepted[0]!, 'close'), 5000, 'the client socket closing');
});

test('close() while auth is pending closes that connection at once', async (t) => {
  const { server, client } = await start(t);
  server.handlers.auth = () => new Promise(() => {});
  const login = client.login(1001n, 'token-1001');
  await server.waitForQuest('auth');
  client.close();
  // At once, not when auth times out (questTimeoutMs, 20 s); within 5 s, for a loaded machine.
  await withTimeout(
    assert.rejects(login, (err: unknown) => err instanceof RtmError && err.code === 20015),
    5000,
    'login() rejecting',
  );
  await withTimeout(server.last.waitClosed(), 5000, 'the connection closing');
});

test('methods before login reject with 20012', async () => {
  const client = new RTMClient({ endpoint: '127.0.0.1:1', pid: 1 });
  await assert.rejects(client.sendMessage(2n, 30, 'x'), (err: unknown) => err instanceof RtmError && err.code === 20012);
  client.close();
});

test('a quest without answer times out with 20003', async (t) => {
  const { server, client } = await start(t, { questTimeoutMs: 150 });
  server.handlers.getfriends = () => new Promise(() => {});
  await client.login(1001n, 'token-1001');
  await assert.rejects(client.getFriends(), (err: unknown) => err instanceof RtmError && err.code === 20003);
});

test('logout sends bye, closes, and emits closed {reason: logout}', async (t) => {
  const { server, client } = await start(t);
  await client.login(1001n, 'token-1001');
  const closed: ClosedEvent[] = [];
  client.on('closed', (e) => closed.push(e));
  await client.logout();
  const bye = await server.waitForQuest('bye');
  assert.deepEqual(bye.payload, {});
  await server.last.waitClosed();
  assert.deepEqual(closed, [{ reason: 'logout', code: 0 }]);
  assert.equal(client.state, 'closed');
  await sleep(50);
  assert.equal(server.connections.length, 1, 'no relogin after logout');
});

test('a connection lost while waiting for the answer to bye ends the session: no relogin after logout', async (t) => {
  const { server, client } = await start(t);
  await client.login(1001n, 'token-1001');
  // The server (or the network) drops the socket instead of answering bye.
  server.handlers.bye = (_p, conn) => {
    conn.drop();
    return new Promise(() => {});
  };
  const events: string[] = [];
  client.on('disconnected', () => events.push('disconnected'));
  client.on('connected', () => events.push('connected'));
  client.on('closed', (e) => events.push(`closed:${e.reason}`));
  await client.logout();
  assert.equal(client.state, 'closed');
  await sleep(100);
  assert.deepEqual(events, ['closed:logout']);
  assert.equal(client.state, 'closed');
  assert.equal(server.connections.length, 1, 'no relogin after logout');
});

test('close() during a pending logout ends the session once', async (t) => {
  const { server, client } = await start(t);
  await client.login(1001n, 'token-1001');
  server.handlers.bye = () => new Promise(() => {});
  const closed: ClosedEvent[] = [];
  client.on('closed', (e) => closed.push(e));
  const logout = client.logout();
  await server.waitForQuest('bye');
  client.close();
  await logout;
  assert.deepEqual(closed, [{ reason: 'close', code: 0 }]);
  assert.equal(client.state, 'closed');
});

test('bye frame is byte-identical to the browser SDK capture', async (t) => {
  const { server, client } = await start(t);
  await client.login(1001n, 'token-1001');
  await client.logout();
  assert.ok(sameFrameIgnoringSeq((await server.waitForQuest('bye')).raw, webClientFrame('bye')));
});

test('close() closes at once and emits closed {reason: close}', async (t) => {
  const { server, client } = await start(t);
  await client.login(1001n, 'token-1001');
  const closed: ClosedEvent[] = [];
  client.on('closed', (e) => closed.push(e));
  client.close();
  await server.last.waitClosed();
  assert.deepEqual(closed, [{ reason: 'close', code: 0 }]);
  assert.equal(server.received('bye').length, 0);
});

test('options are validated and endpoints become WebSocket URLs', () => {
  assert.equal(new RTMClient({ endpoint: 'rtm.example.com:13325', pid: 1 }).options.url, 'ws://rtm.example.com:13321/service/websocket');
  assert.equal(new RTMClient({ endpoint: 'host:8080', pid: 1 }).options.url, 'ws://host:8080/service/websocket');
  assert.equal(new RTMClient({ endpoint: 'wss://h/service/websocket', pid: 1 }).options.url, 'wss://h/service/websocket');
  assert.throws(() => new RTMClient({ endpoint: 'nohost', pid: 1 }), /endpoint/);
  assert.throws(() => new RTMClient({ endpoint: 'h:1', pid: 0 }), /pid/);
  assert.throws(() => new RTMClient({ endpoint: 'h:1', pid: 1, questTimeoutMs: -1 }), /questTimeoutMs/);
  const o = new RTMClient({ endpoint: 'h:1', pid: 1 }).options;
  assert.equal(o.questTimeoutMs, 20000);
  assert.equal(o.maxPingIntervalSeconds, 60);
  assert.equal(o.autoReconnect, true);
  assert.deepEqual(
    { ...o.reconnectStrategy },
    { startConnectFailedCount: 3, maxIntervalSeconds: 8, linearRegressiveCount: 4, stableAfterMs: 1500 },
  );
  assert.throws(() => new RTMClient({ endpoint: 'h:1', pid: 1, reconnectStrategy: { stableAfterMs: -1 } }), /stableAfterMs/);
});
