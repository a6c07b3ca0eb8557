import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import {
  DEFAULT_RECONNECT_POLICY,
  FpnnErrorCode,
  RtmError,
  reconnectDelayMs,
  RTMServerClient,
  type RTMServerClientOptions,
  type ServerClientEvents,
} from '../src/index.js';
import { FakeRtmServer } from './fake-server.js';

async function setup(
  t: TestContext,
  options: Partial<RTMServerClientOptions> = {},
): Promise<{ server: FakeRtmServer; client: RTMServerClient }> {
  const server = await FakeRtmServer.start();
  const client = new RTMServerClient({
    pid: server.pid,
    secret: server.secret,
    endpoint: server.endpoint,
    questTimeoutMs: 2000,
    ...options,
  });
  t.after(async () => {
    await client.close();
    await server.close();
  });
  await client.connect();
  return { server, client };
}

function next<K extends keyof ServerClientEvents>(client: RTMServerClient, event: K): Promise<ServerClientEvents[K]> {
  return new Promise((resolve) => client.once(event, resolve));
}

const strip = (p: Record<string, unknown>): Record<string, unknown> => {
  const { pid: _p, sign: _s, salt: _l, ts: _t, ...rest } = p;
  return rest;
};

test('back-off: 5 immediate attempts, then 2 s to 120 s in 5 linear steps, then 120 s', () => {
  const delays = Array.from({ length: 12 }, (_, failures) => reconnectDelayMs(failures));
  assert.deepEqual(delays, [0, 0, 0, 0, 0, 2000, 31500, 61000, 90500, 120000, 120000, 120000]);
  assert.equal(reconnectDelayMs(3, { ...DEFAULT_RECONNECT_POLICY, immediateRetries: 0, steps: 1 }), 120000);
});

test('after the server drops the connection the client reconnects and re-sends its listen state with setlisten', async (t) => {
  const { server, client } = await setup(t);
  await client.setListen({ p2p: true, events: true });
  await client.addListen({ gids: [2001, 2002], uids: [2n ** 60n], events: ['login'] });
  await client.removeListen({ gids: [2002] });
  await client.addListen({ rids: [3001] });
  assert.deepEqual(client.listenState, {
    flags: { p2p: true, group: false, room: false, ev: true },
    gids: [2001n],
    rids: [3001n],
    uids: [2n ** 60n],
    events: ['login'],
  });
  assert.deepEqual(strip(server.questsOf('setlisten')[0]!.payload), { p2p: true, group: false, room: false, ev: true });
  assert.deepEqual(strip(server.questsOf('addlisten')[0]!.payload), { gids: [2001n, 2002n], uids: [2n ** 60n], events: ['login'] });

  const closed = next(client, 'closed');
  const connected = next(client, 'connected');
  server.dropConnections();
  assert.equal((await closed).willReconnect, true);
  assert.deepEqual(await connected, { endpoint: server.endpoint, reconnected: true });
  const [, restore] = await server.waitForQuests('setlisten', 2);
  assert.ok(restore!.signOk);
  assert.equal(restore!.connection, 2);
  assert.deepEqual(strip(restore!.payload), {
    p2p: true,
    group: false,
    room: false,
    ev: true,
    gids: [2001n],
    rids: [3001n],
    uids: [2n ** 60n],
    events: ['login'],
  });
  assert.equal(client.state, 'connected');
});

test('setListen list form replaces the lists; the all form replaces the flags; both are restored', async (t) => {
  const { server, client } = await setup(t);
  await client.setListen({ uids: [1, 2] });
  assert.deepEqual(strip(server.questsOf('setlisten')[0]!.payload), { gids: [], rids: [], uids: [1n, 2n], events: [] });
  await client.setAllListen({ group: true });
  assert.deepEqual(strip(server.questsOf('setlisten')[1]!.payload), { p2p: false, group: true, room: false, ev: false });
  assert.deepEqual(client.listenState, {
    flags: { p2p: false, group: true, room: false, ev: false },
    gids: [],
    rids: [],
    uids: [1n, 2n],
    events: [],
  });
  const connected = next(client, 'connected');
  server.dropConnections();
  await connected;
  const restore = (await server.waitForQuests('setlisten', 3))[2]!;
  assert.deepEqual(strip(restore.payload), {
    p2p: false,
    group: true,
    room: false,
    ev: false,
    gids: [],
    rids: [],
    uids: [1n, 2n],
    events: [],
  });
});

test('without listen state nothing is re-sent; a failed setListen does not change the state', async (t) => {
  const { server, client } = await setup(t);
  server.on('setlisten', () => {
    throw new RtmError(200034, 'bad');
  });
  await assert.rejects(client.setListen({ gids: [1] }), (e: RtmError) => e.code === 200034);
  assert.deepEqual(client.listenState, { gids: [], rids: [], uids: [], events: [] });
  const connected = next(client, 'connected');
  server.dropConnections();
  await connected;
  server.on('gettoken', () => ({ token: 't' }));
  assert.equal(await client.getToken(1), 't');
  assert.equal(server.questsOf('setlisten').length, 1);
});

test('calls made while the server is unreachable wait for the reconnection (listen restored first), within their timeout', async (t) => {
  const { server, client } = await setup(t, { reconnect: { immediateRetries: 0, minDelayMs: 30, maxDelayMs: 30 } });
  await client.addListen({ gids: [7] });
  server.on('gettoken', () => ({ token: 'after' }));
  await server.stopListening();
  const closed = next(client, 'closed');
  server.dropConnections();
  await closed;
  assert.equal(client.state, 'reconnecting');
  const errors: Error[] = [];
  client.on('error', (e) => errors.push(e));

  const tooShort = client.getToken(1, { timeoutMs: 60 });
  const waiting = client.getToken(2);
  await assert.rejects(tooShort, (e: RtmError) => e.code === FpnnErrorCode.CORE_TIMEOUT);
  await server.resumeListening();
  assert.equal(await waiting, 'after');
  assert.ok(errors.length >= 1, 'failed attempts are reported as error events');
  const order = server.quests.filter((q) => q.connection > 1).map((q) => q.method);
  assert.deepEqual(order, ['setlisten', 'gettoken']);
});

test('autoReconnect: false — a dropped connection stays down and calls fail with 20012 until connect()', async (t) => {
  const { server, client } = await setup(t, { autoReconnect: false });
  server.on('gettoken', () => ({ token: 't' }));
  const closed = next(client, 'closed');
  server.dropConnections();
  assert.equal((await closed).willReconnect, false);
  assert.equal(client.state, 'disconnected');
  await assert.rejects(client.getToken(1), (e: RtmError) => e.code === FpnnErrorCode.CORE_INVALID_CONNECTION);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(server.accepted, 1, 'no reconnection attempt');
  await client.connect();
  assert.equal(await client.getToken(1), 't');
});

test('in-flight quests fail with 20002 when the connection drops', async (t) => {
  const { server, client } = await setup(t);
  server.on('gettoken', () => new Promise(() => {}));
  const pending = assert.rejects(client.getToken(1), (e: RtmError) => e.code === FpnnErrorCode.CORE_CONNECTION_CLOSED);
  await server.waitForQuests('gettoken');
  server.dropConnections();
  await pending;
});

test('once pings started, a silent server is dropped after pingTimeoutMs and the client reconnects', async (t) => {
  const { server, client } = await setup(t, { pingTimeoutMs: 100 });
  const closed = next(client, 'closed');
  const connected = next(client, 'connected');
  await server.push('ping', {});
  const info = await closed;
  assert.match(info.reason, /no ping from the server for 100 ms/);
  assert.equal(info.willReconnect, true);
  await connected;
  assert.equal(server.accepted, 2);
});

test('close() leaves no socket or timer behind, even while reconnecting', async () => {
  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const sockets = (): string[] => process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP'));
  await new Promise((r) => setTimeout(r, 20)); // let the previous tests' sockets finish closing
  const timersBefore = timers();
  const server = await FakeRtmServer.start();
  const client = new RTMServerClient({
    pid: server.pid,
    secret: server.secret,
    endpoint: server.endpoint,
    reconnect: { immediateRetries: 0, minDelayMs: 5000, maxDelayMs: 5000 },
  });
  await client.connect();
  await server.push('ping', {});
  await server.stopListening();
  const closed = new Promise((r) => client.once('closed', r));
  server.dropConnections();
  await closed;
  await new Promise((r) => setTimeout(r, 50)); // one failed attempt, then a 5 s back-off timer is armed
  assert.equal(client.state, 'reconnecting');
  const waiting = client.getToken(1).catch((e: RtmError) => e.code);
  await client.close();
  assert.equal(await waiting, FpnnErrorCode.CORE_INVALID_CONNECTION);
  await server.close();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(sockets(), []);
  assert.ok(timers() <= timersBefore, `timers: ${timers()} after vs ${timersBefore} before`);
});

test('close() aborts a connect() still in flight: it rejects with 20012 and no connect timer is left', async () => {
  const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  await new Promise((r) => setTimeout(r, 20)); // let the previous tests' sockets finish closing
  const timersBefore = timers();
  const server = await FakeRtmServer.start();
  const client = new RTMServerClient({ pid: server.pid, secret: server.secret, endpoint: server.endpoint });
  const connecting = client.connect().catch((e: RtmError) => e.code);
  assert.equal(client.state, 'connecting');
  assert.ok(timers() > timersBefore, 'the connect timer runs');
  await client.close(); // before the TCP connection completed
  assert.ok(timers() <= timersBefore, `timers: ${timers()} after close() vs ${timersBefore} before`);
  assert.equal(await connecting, FpnnErrorCode.CORE_INVALID_CONNECTION);
  assert.equal(client.state, 'closed');
  await server.close();
});

test('close() aborts a connection stuck in the encryption handshake: its socket closes at once', async (t) => {
  // Accepts TCP connections and never answers (here: the *key quest).
  const accepted: Socket[] = [];
  const silent = createServer((socket) => accepted.push(socket.resume()));
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.after(() => {
    for (const s of accepted) s.destroy();
    silent.close();
  });
  const serverPublicKey = generateKeyPairSync('ec', { namedCurve: 'secp256k1' })
    .publicKey.export({ type: 'spki', format: 'pem' })
    .toString();
  const client = new RTMServerClient({
    pid: 1,
    secret: 's',
    endpoint: `127.0.0.1:${(silent.address() as AddressInfo).port}`,
    encryption: { serverPublicKey },
  });
  const connecting = client.connect().catch((e: RtmError) => e.code);
  while (accepted.length === 0) await new Promise((r) => setTimeout(r, 5));
  const started = Date.now();
  await client.close();
  assert.equal(await connecting, FpnnErrorCode.CORE_INVALID_CONNECTION);
  // The server sees the client's socket close now, not after connectTimeoutMs (30 s).
  const socket = accepted[0]!;
  if (!socket.closed) await Promise.race([once(socket, 'close'), new Promise((r) => setTimeout(r, 500))]);
  assert.ok(socket.closed, 'the client socket was closed');
  assert.ok(Date.now() - started < 500, `close() took ${Date.now() - started} ms`);
});
