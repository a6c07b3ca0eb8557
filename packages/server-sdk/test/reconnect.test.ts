import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { until } from '@rtm/testkit';
import {
  DEFAULT_RECONNECT_POLICY,
  FpnnErrorCode,
  MAX_TIMEOUT_MS,
  MIN_RECONNECT_MAX_DELAY_MS,
  RtmError,
  RtmErrorCode,
  reconnectDelayMs,
  RTMServerClient,
  type RTMServerClientOptions,
  type ServerClientEvents,
} from '../src/index.js';
import { FakeRtmServer, silentServer } from './fake-server.js';

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

function collect<K extends keyof ServerClientEvents>(client: RTMServerClient, event: K): ServerClientEvents[K][] {
  const seen: ServerClientEvents[K][] = [];
  client.on(event, (e) => seen.push(e));
  return seen;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const tcpHandles = (): number => process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
const never = (): Promise<never> => new Promise(() => {});

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
  const { server, client } = await setup(t, { reconnect: { immediateRetries: 0, minDelayMs: 30, maxDelayMs: 100 } });
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

test('a ping that came during a stall of the process keeps the connection, though the watchdog fires late', async (t) => {
  const { server, client } = await setup(t, { pingTimeoutMs: 300 });
  const closed = collect(client, 'closed');
  await server.push('ping', {}); // the watchdog is armed: 300 ms
  await sleep(200);
  void server.push('ping', {}).catch(() => {}); // written to the socket, then the process stalls
  const end = Date.now() + 400; // the watchdog's time passes during the stall
  while (Date.now() < end);
  await sleep(100);
  assert.deepEqual(closed, []);
  assert.equal(server.accepted, 1);
  // Without pings the watchdog still closes.
  const info = await next(client, 'closed');
  assert.match(info.reason, /no ping from the server for 300 ms/);
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
  const { endpoint, accepted } = await silentServer(t);
  const serverPublicKey = generateKeyPairSync('ec', { namedCurve: 'secp256k1' })
    .publicKey.export({ type: 'spki', format: 'pem' })
    .toString();
  const client = new RTMServerClient({
    pid: 1,
    secret: 's',
    endpoint,
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

// ---------------------------------------------------------------- restoring the listen state

test('a listen restore lost after a reconnect is not adopted: that connection is closed, the next one restores the state before connected', async (t) => {
  const { server, client } = await setup(t, {
    questTimeoutMs: 300,
    reconnect: { immediateRetries: 0, minDelayMs: 50, maxDelayMs: 100, stableAfterMs: 0 },
  });
  await client.addListen({ gids: [7101] });
  let restores = 0;
  server.on('setlisten', () => (++restores === 1 ? never() : {})); // the first restore is never answered
  const errors = collect(client, 'error');
  const closed = collect(client, 'closed');
  const connected = next(client, 'connected');
  server.dropConnections();
  assert.deepEqual(await connected, { endpoint: server.endpoint, reconnected: true });
  assert.deepEqual(client.listenState.gids, [7101n]);
  // Connection 2 restored nothing: it was closed, not declared connected; connection 3 restored it.
  assert.deepEqual(
    server.questsOf('setlisten').map((q) => q.connection),
    [2, 3],
  );
  assert.deepEqual(
    errors.map((e) => (e as RtmError).code),
    [FpnnErrorCode.CORE_TIMEOUT],
    'the failed restore is reported',
  );
  assert.equal(closed.length, 2);
  assert.match(closed[1]!.reason, /the listen state could not be restored: quest 'setlisten' got no answer/);
  assert.equal(closed[1]!.willReconnect, true);
  // Calls and pushes go over the connection whose listen state the server has.
  server.on('isgroupmember', () => ({ ok: true }));
  assert.equal(await client.isGroupMember(7101, 7001), true);
  assert.equal(server.questsOf('isgroupmember')[0]!.connection, 3);
  const pushed = next(client, 'groupMessage');
  await server.push('pushgroupmsg', { from: 7001, gid: 7101, mtype: 51, mid: 2, msg: 'after', attrs: '', mtime: 3 });
  assert.equal((await pushed).message, 'after');
});

test('a reconnection whose listen restore fails counts as a failed attempt: the back-off grows', async (t) => {
  const { server, client } = await setup(t, {
    reconnect: { immediateRetries: 0, minDelayMs: 50, maxDelayMs: 5000, steps: 2, stableAfterMs: 0 },
  });
  await client.addListen({ gids: [1] });
  server.on('setlisten', () => {
    throw new RtmError(RtmErrorCode.INVALID_PARAMETER, 'refused');
  });
  const errors = collect(client, 'error');
  server.dropConnections();
  await sleep(600);
  // The drop (a stable connection) is retried after 50 ms; that restore fails, so the next attempt waits 5 s.
  assert.equal(server.accepted, 2);
  assert.equal(client.state, 'reconnecting');
  assert.deepEqual(
    errors.map((e) => (e as RtmError).code),
    [RtmErrorCode.INVALID_PARAMETER],
  );
});

test('connect() rejects when the listen state cannot be restored: back to idle, nothing retried in the background', async (t) => {
  const { server, client } = await setup(t);
  await client.addListen({ gids: [7201] });
  await client.close();
  server.on('setlisten', () => {
    throw new RtmError(RtmErrorCode.INVALID_PARAMETER, 'refused');
  });
  const errors = collect(client, 'error');
  const connected = collect(client, 'connected');
  await assert.rejects(
    client.connect(),
    (e: RtmError) => e.code === RtmErrorCode.INVALID_PARAMETER && /restoring the listen state failed: refused/.test(e.message),
  );
  assert.equal(client.state, 'idle');
  await assert.rejects(client.getToken(1), (e: RtmError) => e.code === FpnnErrorCode.CORE_INVALID_CONNECTION);
  await sleep(100);
  assert.equal(server.accepted, 2, 'no reconnection');
  assert.deepEqual({ errors, connected }, { errors: [], connected: [] }, 'the rejection is the report, as for a failed open');
  assert.deepEqual(client.listenState.gids, [7201n], 'the listen state is kept for the next connect()');
  server.on('setlisten', () => ({}));
  await client.connect();
  assert.equal(client.state, 'connected');
  assert.equal(server.questsOf('setlisten').length, 2);
});

test('close() during the listen restore of connect() makes connect() reject with 20012, with no error event', async (t) => {
  const { server, client } = await setup(t);
  await client.addListen({ gids: [7201] });
  await client.close();
  server.on('setlisten', never); // the restore sent by the next connect() stays unanswered
  const errors = collect(client, 'error');
  const connecting = client.connect().then(
    () => 'resolved',
    (e: RtmError) => e.code,
  );
  await server.waitForQuests('setlisten');
  assert.equal(client.state, 'connected', 'TCP open, restore pending');
  await client.close();
  assert.equal(client.state, 'closed');
  assert.deepEqual(
    { connect: await connecting, errors: errors.map((e) => e.message) },
    { connect: FpnnErrorCode.CORE_INVALID_CONNECTION, errors: [] },
  );
});

test('a connection that drops during the listen restore of connect() makes connect() reject: idle, no reconnection', async (t) => {
  const { server, client } = await setup(t);
  await client.addListen({ gids: [7201] });
  await client.close();
  server.on('setlisten', never);
  const events = [...collect(client, 'connected'), ...collect(client, 'closed'), ...collect(client, 'error')];
  const connecting = client.connect();
  const waiting = client.getToken(1).catch((e: RtmError) => e.code);
  await server.waitForQuests('setlisten');
  server.dropConnections();
  await assert.rejects(
    connecting,
    (e: RtmError) => e.code === FpnnErrorCode.CORE_INVALID_CONNECTION && /closed while restoring the listen state/.test(e.message),
  );
  assert.equal(client.state, 'idle');
  assert.equal(await waiting, FpnnErrorCode.CORE_INVALID_CONNECTION);
  await sleep(100);
  assert.equal(server.accepted, 2, 'no reconnection');
  assert.deepEqual(events, []);
});

// ---------------------------------------------------------------- timeouts and back-off bounds

test('a call waiting for a reconnection with timeoutMs 2^31-1 (the largest accepted) keeps waiting', async (t) => {
  const { server, client } = await setup(t, { reconnect: { immediateRetries: 0, minDelayMs: 50, maxDelayMs: 100 } });
  server.on('gettoken', () => ({ token: 't' }));
  await server.stopListening();
  const closed = next(client, 'closed');
  server.dropConnections();
  await closed;
  const outcome = client.getToken(1, { timeoutMs: MAX_TIMEOUT_MS }).then(
    (token) => token,
    (e: RtmError) => `rejected ${e.code}`,
  );
  assert.equal(await Promise.race([outcome, sleep(300).then(() => 'still waiting')]), 'still waiting');
  await server.resumeListening();
  assert.equal(await outcome, 't');
});

test('reconnect.maxDelayMs is at least 100 ms: against a gone endpoint the attempts back off, no reconnect storm', async (t) => {
  const base = { pid: 1, secret: 's', endpoint: '127.0.0.1:13315' };
  for (const maxDelayMs of [0, MIN_RECONNECT_MAX_DELAY_MS - 1]) {
    assert.throws(
      () => new RTMServerClient({ ...base, reconnect: { immediateRetries: 0, minDelayMs: 0, maxDelayMs } }),
      (e: unknown) => e instanceof TypeError && /'reconnect.maxDelayMs' must be at least 100 ms/.test(e.message),
    );
  }
  const { server, client } = await setup(t, { reconnect: { immediateRetries: 0, minDelayMs: 0, maxDelayMs: MIN_RECONNECT_MAX_DELAY_MS } });
  const errors = collect(client, 'error');
  await server.close(); // the endpoint is gone: every attempt is refused at once
  await sleep(500);
  const attempts = errors.length;
  await client.close();
  assert.ok(attempts >= 1 && attempts < 20, `${attempts} connection attempts in 500 ms`);
});

// ---------------------------------------------------------------- close() and connect() interleaved

test('close() then connect() at once: the earlier close() does not report closed after the new connection is up', async (t) => {
  const { client } = await setup(t);
  const events: string[] = [];
  client.on('connected', () => events.push('connected'));
  client.on('closed', () => events.push('closed'));
  const closing = client.close();
  await client.connect();
  await closing;
  await sleep(50);
  assert.equal(client.state, 'connected');
  assert.equal(events.at(-1), 'connected', `events: ${events.join(', ')}`);
});

test('two connect() calls and a close() before the socket opens: both reject with 20012, no socket is left, connect() works again', async (t) => {
  const server = await FakeRtmServer.start();
  t.after(() => server.close());
  server.on('gettoken', () => ({ token: 't' }));
  const before = tcpHandles();
  const client = new RTMServerClient({ pid: server.pid, secret: server.secret, endpoint: server.endpoint });
  const a = client.connect().catch((e: RtmError) => e.code);
  const b = client.connect().catch((e: RtmError) => e.code);
  await client.close();
  assert.equal(await a, FpnnErrorCode.CORE_INVALID_CONNECTION);
  assert.equal(await b, FpnnErrorCode.CORE_INVALID_CONNECTION);
  await client.connect();
  assert.equal(await client.getToken(1), 't');
  await client.close();
  assert.ok(await until(() => tcpHandles() <= before, 2000), `TCP handles ${tcpHandles()} vs ${before}`);
});

test('close() from a closed listener stops the reconnection', async (t) => {
  const { server, client } = await setup(t, {
    reconnect: { immediateRetries: 3, minDelayMs: 50, maxDelayMs: 100, steps: 2, stableAfterMs: 0 },
  });
  const connected = collect(client, 'connected');
  client.once('closed', () => void client.close());
  server.dropConnections();
  await sleep(400);
  assert.deepEqual(connected, []);
  assert.equal(client.state, 'closed');
  assert.equal(server.accepted, 1);
});

test('connect() from a closed listener during a reconnection opens no second connection', async (t) => {
  const { server, client } = await setup(t, {
    reconnect: { immediateRetries: 3, minDelayMs: 50, maxDelayMs: 100, steps: 2, stableAfterMs: 0 },
  });
  const connected = collect(client, 'connected');
  client.once('closed', () => void client.connect().catch(() => undefined));
  server.dropConnections();
  assert.ok(await until(() => connected.length >= 1, 2000));
  await sleep(300);
  assert.equal(connected.length, 1);
  assert.equal(server.accepted, 2, 'one reconnection, no second connection');
});
