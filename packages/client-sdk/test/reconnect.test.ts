import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RtmError } from '@rtm/fpnn';
import { until } from '@rtm/testkit';
import { DEFAULT_RECONNECT_STRATEGY, RTMClient, type RTMClientEvents } from '../src/index.js';
import { reloginDelayMs } from '../src/session.js';
import { FakeRtmServer, nextEvent, sleep } from './helpers/fake-server.js';

async function online(t: { after(fn: () => unknown): void }, options: Partial<ConstructorParameters<typeof RTMClient>[0]> = {}) {
  const server = await FakeRtmServer.start();
  const client = new RTMClient({ endpoint: server.endpoint, pid: 11000001, ...options });
  t.after(async () => {
    client.close();
    await server.close();
  });
  await client.login(1001n, 'token-1001');
  return { server, client };
}

function collect<K extends keyof RTMClientEvents>(client: RTMClient, event: K): RTMClientEvents[K][] {
  const list: RTMClientEvents[K][] = [];
  client.on(event, (e) => list.push(e));
  return list;
}

test('back-off: 3 immediate attempts, then +2 s per attempt up to 8 s (browser SDK defaults)', () => {
  const delays: number[] = [];
  let previous = 0;
  for (let failed = 0; failed < 9; failed++) delays.push((previous = reloginDelayMs(DEFAULT_RECONNECT_STRATEGY, failed, previous)));
  assert.deepEqual(delays, [0, 0, 0, 2000, 4000, 6000, 8000, 8000, 8000]);
});

test('after the server drops the socket the client reconnects and logs in again', async (t) => {
  const { server, client } = await online(t);
  const disconnected = collect(client, 'disconnected');
  const relogins = collect(client, 'reloginCompleted');
  const connected = nextEvent(client, 'connected');
  server.last.drop();
  assert.deepEqual(await connected, { uid: 1001n, relogin: true });
  assert.equal(server.connections.length, 2);
  const auth = await server.waitForQuest('auth', 2);
  assert.deepEqual(auth.payload, { pid: 11000001, uid: 1001n, token: 'token-1001', version: 'TypeScript_0.1.0' });
  assert.equal(disconnected.length, 1);
  assert.equal(disconnected[0]!.willReconnect, true);
  assert.deepEqual(relogins, [{ successful: true, retryAgain: false, attempt: 1 }]);
  server.handlers.getfriends = () => ({ uids: [5] });
  assert.deepEqual(await client.getFriends(), [5n]);
  assert.equal(client.state, 'online');
});

test('while reconnecting, methods reject with 20012 and pending quests with 20002', async (t) => {
  const { server, client } = await online(t);
  server.handlers.getfriends = () => new Promise(() => {});
  const pending = client.getFriends();
  const slowAuth = server.handlers.auth!;
  server.handlers.auth = async (p, c) => {
    await sleep(150);
    return slowAuth(p, c);
  };
  server.last.drop();
  await assert.rejects(pending, (err: unknown) => err instanceof RtmError && err.code === 20002);
  assert.equal(client.state, 'reconnecting');
  await assert.rejects(client.getBlacks(), (err: unknown) => err instanceof RtmError && err.code === 20012);
  await nextEvent(client, 'connected');
  server.handlers.getblacks = () => ({ uids: [] });
  assert.deepEqual(await client.getBlacks(), []);
});

test('failed relogins are retried with back-off until one succeeds', async (t) => {
  const scheduled: string[] = []; // "relogin attempt <n> in <ms> ms", as the SDK logs its schedule
  const { server, client } = await online(t, {
    reconnectStrategy: { startConnectFailedCount: 2, maxIntervalSeconds: 0.4, linearRegressiveCount: 2 },
    logger: { info: (line) => void (line.startsWith('relogin attempt') && scheduled.push(line)) },
  });
  const relogins = collect(client, 'reloginCompleted');
  const ok = server.handlers.auth!;
  let failures = 3;
  const times: number[] = [];
  server.handlers.auth = (p, c) => {
    times.push(Date.now());
    if (failures-- > 0) throw new RtmError(20011, 'busy');
    return ok(p, c);
  };
  server.last.drop();
  await nextEvent(client, 'connected', 3000);
  assert.deepEqual(
    relogins.map((r) => [r.attempt, r.successful, r.retryAgain, r.error?.code]),
    [
      [1, false, true, 20011],
      [2, false, true, 20011],
      [3, false, true, 20011],
      [4, true, false, undefined],
    ],
  );
  // attempts 1 and 2 are immediate; the schedule's waits for 3 and 4 are 200 and 400 ms, each
  // taken at random from its upper half (jitter): 100..200 and 200..400 ms
  // Immediate in the schedule (timing it would fail on a loaded machine); the waits are at least theirs.
  assert.deepEqual(scheduled.slice(0, 2), ['relogin attempt 1 in 0 ms', 'relogin attempt 2 in 0 ms']);
  assert.match(scheduled[2]!, /^relogin attempt 3 in (1\d\d|200) ms$/);
  assert.match(scheduled[3]!, /^relogin attempt 4 in (2\d\d|3\d\d|400) ms$/);
  assert.ok(times[2]! - times[1]! >= 95, `attempt 3 after 100..200 ms (${times[2]! - times[1]!} ms)`);
  assert.ok(times[3]! - times[2]! >= 195, `attempt 4 after 200..400 ms (${times[3]! - times[2]!} ms)`);
});

test('a relogin answered {ok:false} ends the session with 200027 and no more attempts', async (t) => {
  const { server, client } = await online(t);
  const relogins = collect(client, 'reloginCompleted');
  const closed = nextEvent(client, 'closed');
  server.handlers.auth = () => ({ ok: false });
  server.last.drop();
  assert.deepEqual(await closed, { reason: 'invalidToken', code: 200027 });
  assert.equal(relogins.length, 1);
  assert.equal(relogins[0]!.successful, false);
  assert.equal(relogins[0]!.retryAgain, false);
  assert.equal(relogins[0]!.error?.code, 200027);
  await sleep(100);
  assert.equal(server.connections.length, 2);
  assert.equal(client.state, 'closed');
});

test('without autoReconnect a lost connection ends the session', async (t) => {
  const { server, client } = await online(t, { autoReconnect: false });
  const closed = nextEvent(client, 'closed');
  server.last.drop();
  assert.deepEqual(await closed, { reason: 'connectionLost', code: 20002 });
  await sleep(50);
  assert.equal(server.connections.length, 1);
});

test('close() during relogin stops further attempts', async (t) => {
  const { server, client } = await online(t, {
    reconnectStrategy: { startConnectFailedCount: 0, maxIntervalSeconds: 0.1, linearRegressiveCount: 1 },
  });
  server.handlers.auth = () => {
    throw new RtmError(20011, 'busy');
  };
  server.last.drop();
  await nextEvent(client, 'reloginCompleted');
  client.close();
  const count = server.connections.length;
  await sleep(250);
  assert.equal(server.connections.length, count);
  assert.equal(client.state, 'closed');
});

test('ping watchdog: no server ping for maxPingIntervalSeconds → close and relogin', async (t) => {
  const { server, client } = await online(t, { maxPingIntervalSeconds: 0.2 });
  const first = server.last;
  const disconnected = nextEvent(client, 'disconnected');
  const started = Date.now();
  assert.match((await disconnected).reason, /no ping/);
  const waited = Date.now() - started;
  assert.ok(waited >= 150 && waited < 1000, `watchdog fired after ${waited} ms`);
  await first.waitClosed();
  assert.deepEqual(await nextEvent(client, 'connected'), { uid: 1001n, relogin: true });
});

test('ping watchdog: regular pings keep the connection', async (t) => {
  // 1.5 s of pings every 100 ms against a 0.6 s watchdog: without them it would close by 0.9 s;
  // with them it tolerates a stall of the loaded machine up to ~0.5 s.
  const { server, client } = await online(t, { maxPingIntervalSeconds: 0.6 });
  const disconnected = collect(client, 'disconnected');
  for (let i = 0; i < 15; i++) {
    assert.deepEqual(await server.last.push('ping', {}), {});
    await sleep(100);
  }
  assert.deepEqual(disconnected, []);
  assert.equal(server.connections.length, 1);
  assert.equal(client.state, 'online');
});

test('ping watchdog: a check that runs late (stalled event loop, frozen tab) does not judge before reading what arrived', async (t) => {
  // A suspended process or frozen tab runs its overdue timers as soon as it wakes, and Node runs
  // them before it reads its sockets: the check must not call the connection dead on silence it
  // has not looked at yet. Here a ping is on its way before the loop stalls for 2.5 watchdog
  // periods; pings go on afterwards.
  const { server, client } = await online(t, { maxPingIntervalSeconds: 0.4 });
  const disconnected = collect(client, 'disconnected');
  await new Promise<void>((resolve) =>
    setTimeout(() => {
      void server.last.push('ping', {}).catch(() => {});
      const end = Date.now() + 1000;
      while (Date.now() < end); // the stall
      resolve();
    }, 50),
  );
  for (let i = 0; i < 6; i++) {
    await sleep(100);
    void server.last.push('ping', {}).catch(() => {});
  }
  assert.deepEqual(disconnected, []);
  assert.equal(server.connections.length, 1);
  assert.equal(client.state, 'online');
  // The late check asked the connection for a *ping (answered: an error answer proves it alive too).
  assert.ok(server.received('*ping').length >= 1);
});

test('ping watchdog: after a suspension, a connection that answers no *ping is replaced at once, not after the watchdog', async (t) => {
  // Woken from a suspension (a frozen tab, a sleeping laptop), a socket may be dead without a close.
  const { server, client } = await online(t, { maxPingIntervalSeconds: 3, questTimeoutMs: 300 });
  server.handlers['*ping'] = () => new Promise(() => {}); // nothing comes back on this socket
  const disconnected = nextEvent(client, 'disconnected', 8000);
  await sleep(1600); // the first check (at 1.5 s) runs on time
  const end = Date.now() + 2500; // then the process stalls: the next check runs 1 s late
  while (Date.now() < end);
  // The probe times out 300 ms later; the watchdog alone would close at the check after (~5.6 s).
  assert.match((await disconnected).reason, /^no answer to a ping within 300 ms after the page or process was suspended$/);
  assert.deepEqual(await nextEvent(client, 'connected'), { uid: 1001n, relogin: true });
});

test('ping watchdog: a late check still closes a connection that stays silent (throttled background tab)', async (t) => {
  // Chrome's intensive throttling runs a hidden tab's timers once a minute, so every check is
  // late: a late check defers its verdict once, not for ever.
  const { client } = await online(t, { maxPingIntervalSeconds: 0.2 });
  const disconnected = nextEvent(client, 'disconnected');
  const stall = (): void => {
    const end = Date.now() + 250; // each check runs 150 ms late
    while (Date.now() < end);
  };
  const staller = setInterval(stall, 100);
  t.after(() => clearInterval(staller));
  const started = Date.now();
  assert.match((await disconnected).reason, /no ping/);
  assert.ok(Date.now() - started < 3000, `watchdog fired after ${Date.now() - started} ms`);
});

/** A stand-in for a browser's window: `online` events on demand, and the listeners it holds. */
class FakeNetwork {
  readonly listeners = new Set<() => void>();
  addEventListener(type: string, listener: () => void): void {
    if (type === 'online') this.listeners.add(listener);
  }
  removeEventListener(type: string, listener: () => void): void {
    if (type === 'online') this.listeners.delete(listener);
  }
  back(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

test('network back: a relogin waiting out its back-off is tried at once', async (t) => {
  const network = new FakeNetwork();
  const { server, client } = await online(t, {
    networkEvents: network,
    reconnectStrategy: { startConnectFailedCount: 0, maxIntervalSeconds: 30, linearRegressiveCount: 1 },
  });
  const relogins = collect(client, 'reloginCompleted');
  const disconnected = nextEvent(client, 'disconnected');
  server.last.drop();
  await disconnected;
  await sleep(200);
  assert.equal(client.state, 'reconnecting', 'the first attempt waits 15–30 s');
  assert.equal(server.connections.length, 1);
  const started = Date.now();
  const connected = nextEvent(client, 'connected');
  network.back();
  assert.deepEqual(await connected, { uid: 1001n, relogin: true });
  assert.ok(Date.now() - started < 1000, `relogged in after ${Date.now() - started} ms`);
  assert.deepEqual(relogins, [{ successful: true, retryAgain: false, attempt: 1 }]);
  network.back(); // online now: only a *ping
  await server.waitForQuest('*ping');
  assert.equal(server.connections.length, 2);
});

test('network back: a connection that no longer answers is replaced; one that answers stays', async (t) => {
  const network = new FakeNetwork();
  const { server, client } = await online(t, { networkEvents: network, questTimeoutMs: 300 });
  const disconnected = collect(client, 'disconnected');
  // An error answer proves the connection alive as well as any (the fake has no *ping handler).
  network.back();
  await server.waitForQuest('*ping', 1);
  server.handlers['*ping'] = () => ({});
  // A probe goes out once the one before it is answered (one at a time): signal until it does.
  assert.ok(
    await until(() => {
      network.back();
      return server.received('*ping').length >= 2;
    }, 3000),
  );
  await sleep(400);
  assert.equal(disconnected.length, 0);
  assert.equal(client.state, 'online');

  server.handlers['*ping'] = () => new Promise(() => {}); // a socket gone silent
  const connected = nextEvent(client, 'connected');
  network.back();
  assert.deepEqual(await connected, { uid: 1001n, relogin: true });
  assert.equal(disconnected.length, 1);
  assert.match(disconnected[0]!.reason, /no answer to a ping within 300 ms after the network came back/);
  assert.equal(server.connections.length, 2);
});

test('network events: listened to from the login until the session ends, never after', async (t) => {
  const network = new FakeNetwork();
  const server = await FakeRtmServer.start();
  t.after(() => server.close());
  const client = new RTMClient({ endpoint: server.endpoint, pid: 11000001, networkEvents: network });
  assert.equal(network.listeners.size, 0);
  assert.deepEqual(await client.login(1001n, 'wrong'), { ok: false });
  assert.equal(network.listeners.size, 0, 'after a refused login');
  await client.login(1001n, 'token-1001');
  assert.equal(network.listeners.size, 1);
  await client.login(1001n, 'token-1001');
  assert.equal(network.listeners.size, 1, 'a second login listens once');
  await client.logout();
  assert.equal(network.listeners.size, 0, 'after logout()');
  await client.login(1001n, 'token-1001');
  client.close();
  assert.equal(network.listeners.size, 0, 'after close()');
  network.back();
  await sleep(100);
  assert.equal(server.received('*ping').length, 0);
  // Node's global object emits no `online` events: nothing to listen to, nothing fails.
  const plain = new RTMClient({ endpoint: server.endpoint, pid: 11000001 });
  await plain.login(1001n, 'token-1001');
  plain.close();
});

test('login() while relogin is pending replaces the old session', async (t) => {
  const { server, client } = await online(t, {
    reconnectStrategy: { startConnectFailedCount: 0, maxIntervalSeconds: 0.3, linearRegressiveCount: 1 },
  });
  server.last.drop();
  await nextEvent(client, 'disconnected');
  assert.deepEqual(await client.login(1002n, 'token-1002'), { ok: true });
  await sleep(400);
  assert.equal(server.connections.length, 2, 'the pending relogin was cancelled');
  assert.equal(client.uid, 1002n);
});

test('a protocol error from the server is a lost connection: disconnected, then relogin', async (t) => {
  const { server, client } = await online(t);
  const disconnected = nextEvent(client, 'disconnected');
  const connected = nextEvent(client, 'connected');
  // A frame with bad magic ("XXXX" instead of "FPNN"): the stream cannot be trusted any more.
  server.last.sendRaw(new Uint8Array([0x58, 0x58, 0x58, 0x58, 1, 0x80, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
  const lost = await disconnected;
  assert.match(lost.reason, /protocol error/);
  assert.equal(lost.willReconnect, true);
  assert.deepEqual(await connected, { uid: 1001n, relogin: true });
  assert.equal(server.connections.length, 2);
  assert.equal(client.state, 'online');
  server.handlers.getfriends = () => ({ uids: [] });
  assert.deepEqual(await client.getFriends(), []);
});

test('a protocol error without autoReconnect ends the session with closed {connectionLost}', async (t) => {
  const { server, client } = await online(t, { autoReconnect: false });
  const closed = nextEvent(client, 'closed');
  server.last.sendRaw(new Uint8Array([0x58, 0x58, 0x58, 0x58, 1, 0x80, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
  assert.deepEqual(await closed, { reason: 'connectionLost', code: 20002 });
  assert.equal(client.state, 'closed');
});

test('connections that drop right after auth count as failed attempts: relogin backs off (stableAfterMs)', async (t) => {
  const scheduled: string[] = []; // "relogin attempt <n> in <ms> ms"
  const { server, client } = await online(t, {
    reconnectStrategy: { startConnectFailedCount: 1, maxIntervalSeconds: 0.6, linearRegressiveCount: 1, stableAfterMs: 100 },
    logger: { info: (line) => void (line.startsWith('relogin attempt') && scheduled.push(line)) },
  });
  // The server accepts every auth and closes the connection at once (a crash loop, a proxy).
  const ok = server.handlers.auth!;
  let dropAfterAuth = true;
  server.handlers.auth = (p, c) => {
    if (dropAfterAuth) setImmediate(() => c.ws.close());
    return ok(p, c);
  };
  const started = Date.now();
  server.last.drop();
  // Attempt 1 is immediate; its connection drops at once, so attempt 2 waits 300..600 ms (the
  // 600 ms step, jittered; without stableAfterMs every successful auth reset the back-off: a tight
  // 0 ms loop).
  await server.waitForConnections(2);
  await sleep(150);
  assert.equal(server.connections.length, 2, `connections after ${Date.now() - started} ms`);
  dropAfterAuth = false;
  await server.waitForConnections(3, 2000);
  assert.ok(Date.now() - started >= 280, `attempt 2 after ${Date.now() - started} ms`);
  // Stable counts from the login: on a loaded machine its answer may come a while after the connection.
  await until(() => client.state === 'online');
  await sleep(150); // longer than stableAfterMs: this connection is stable
  assert.equal(client.state, 'online');
  // After a stable connection the back-off starts over: the next relogin is immediate, not after
  // the 300..600 ms back-off. The schedule the SDK logs says so whatever the machine's load.
  assert.match(scheduled[1]!, /^relogin attempt 2 in (3\d\d|[45]\d\d|600) ms$/);
  const connected = nextEvent(client, 'connected');
  server.last.drop();
  await connected;
  assert.deepEqual(scheduled.slice(2), ['relogin attempt 1 in 0 ms']);
});
