/**
 * The client SDK under conditions an app meets in the field, against the real server
 * (startTestServer) and a faulty TCP proxy: many clients dropped at once (a server restart),
 * listeners written as async functions, a silent (half-open) connection, and a Node process
 * that must be able to exit after every way a session ends.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { RTMServerClient } from '@rtm/server-sdk';
import { startFaultyProxy, startTestServer, TEST_PID, TEST_SECRET, until, type FaultyProxy, type TestServer } from '@rtm/testkit';
import { WebSocket } from 'ws';
import { RTMClient, type RTMClientOptions, type WebSocketLike } from '../src/index.js';
import { jitteredMs } from '../src/session.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the client SDK in the field (real server)', () => {
  let server: TestServer;
  let backend: RTMServerClient;
  const cleanups: (() => unknown)[] = [];

  before(async () => {
    // Pings every 100 ms, so that a watchdog of a fraction of a second sees them.
    server = await startTestServer({ pingIntervalMs: 100 });
    backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    await backend.connect();
  });
  after(async () => {
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
    await backend.close();
    await server.close();
  });

  async function proxy(): Promise<FaultyProxy> {
    const [, port] = server.clientEndpoint.split(':');
    const p = await startFaultyProxy('127.0.0.1', Number(port));
    cleanups.push(() => p.close());
    return p;
  }

  function client(endpoint: string, options: Partial<RTMClientOptions> = {}): RTMClient {
    const c = new RTMClient({ endpoint, pid: TEST_PID, ...options });
    cleanups.push(() => c.close());
    return c;
  }

  test('jitteredMs: a wait of the schedule becomes a point of its upper half; immediate stays immediate', () => {
    assert.equal(
      jitteredMs(0, () => 0.5),
      0,
    );
    assert.equal(
      jitteredMs(2000, () => 0),
      1000,
    );
    assert.equal(jitteredMs(2000, () => 0.999999) <= 2000, true);
    assert.equal(
      jitteredMs(8000, () => 0.5),
      6000,
    );
  });

  test('clients dropped together (a server restart) do not all come back in the same millisecond', async () => {
    const p = await proxy();
    const waitMs = 600;
    const clients = 12;
    // When each client opened each of its sockets.
    const opened: number[][] = [];
    for (let i = 0; i < clients; i++) {
      const times: number[] = [];
      opened.push(times);
      const uid = 6001n + BigInt(i);
      const c = client(`127.0.0.1:${p.port}`, {
        // Attempt 1 at once, then waits of 600 ms.
        reconnectStrategy: { startConnectFailedCount: 1, maxIntervalSeconds: waitMs / 1000, linearRegressiveCount: 1, stableAfterMs: 0 },
        webSocketFactory: (url) => {
          times.push(performance.now());
          return new WebSocket(url) as unknown as WebSocketLike;
        },
      });
      assert.deepEqual(await c.login(uid, await backend.getToken(uid)), { ok: true });
    }
    // The server goes away and refuses connections for a while.
    p.refuse = true;
    p.cut();
    // Socket 1 was the login, 2 the immediate attempt (refused), 3 the first after a wait.
    assert.ok(await until(() => opened.every((t) => t.length >= 3)), `sockets per client: ${opened.map((t) => t.length)}`);
    p.refuse = false;
    const third = opened.map((t) => t[2]!);
    const spread = Math.max(...third) - Math.min(...third);
    // Without jitter all twelve come within a few ms of each other (one storm of logins at every
    // step); spread over [300, 600] ms, twelve fall within 75 ms once in about 400,000 runs.
    assert.ok(spread >= 75, `the attempts after the first wait came within ${spread.toFixed(1)} ms of each other`);
    for (const t of opened) {
      const waited = t[2]! - t[1]!;
      // Never shorter than half the schedule's wait (a timer may fire a ms early).
      assert.ok(waited >= waitMs / 2 - 5, `waited ${waited.toFixed(1)} ms`);
    }
  });

  test('an async listener that rejects is reported as error, and the pushes after it still come', async () => {
    const [me, peer] = [6021n, 6022n];
    const receiver = client(server.clientEndpoint);
    const sender = client(server.clientEndpoint);
    await receiver.login(me, await backend.getToken(me));
    await sender.login(peer, await backend.getToken(peer));
    const errors: Error[] = [];
    receiver.on('error', (e) => errors.push(e));
    const received: string[] = [];
    receiver.on('message', async (m) => {
      await Promise.resolve(); // e.g. saving it somewhere
      if (m.message === 'boom') throw new Error('cannot store boom');
      received.push(String(m.message));
    });
    receiver.once('message', () => Promise.reject(new Error('once rejected')));
    // Seen by the test without replacing node:test's own handler; without the fix the rejections
    // are unhandled (a plain Node process ends with code 1, see the child process test below).
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown): void => void unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      await sender.sendMessage(me, 32, 'boom');
      await sender.sendMessage(me, 32, 'after');
      await until(() => received.includes('after') && errors.length >= 2);
      await sleep(20); // an unhandled rejection is reported after the microtasks
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    assert.deepEqual(unhandled, []);
    assert.deepEqual(errors.map((e) => e.message).sort(), ['cannot store boom', 'once rejected']);
    assert.deepEqual(received, ['after']);
    assert.equal(receiver.state, 'online');
  });

  test('a silent (half-open) connection is replaced by the ping watchdog: no push twice, the missed one in history', async () => {
    const p = await proxy();
    const [me, peer] = [6031n, 6032n];
    const phone = client(`127.0.0.1:${p.port}`, {
      maxPingIntervalSeconds: 0.5,
      reconnectStrategy: { startConnectFailedCount: 1, maxIntervalSeconds: 1, linearRegressiveCount: 1 },
    });
    const sender = client(server.clientEndpoint);
    await sender.login(peer, await backend.getToken(peer));
    const pushed: string[] = [];
    phone.on('message', (m) => pushed.push(String(m.message)));
    const lost: string[] = [];
    phone.on('disconnected', (e) => {
      lost.push(e.reason);
      p.holdRequests = p.holdAnswers = false; // the network comes back for the relogin
    });
    assert.deepEqual(await phone.login(me, await backend.getToken(me)), { ok: true });
    await sender.sendMessage(me, 32, 'before');
    assert.ok(await until(() => pushed.includes('before')));
    // Nothing passes either way, and nothing resets the connection: only the watchdog can tell.
    p.holdRequests = p.holdAnswers = true;
    await sender.sendMessage(me, 32, 'during');
    assert.ok(await until(() => lost.length > 0, 3000), 'the watchdog did not fire');
    assert.match(lost[0]!, /no ping/);
    assert.ok(await until(() => phone.state === 'online'), `state ${phone.state}`);
    await sender.sendMessage(me, 32, 'after');
    assert.ok(await until(() => pushed.includes('after')));
    await sleep(100);
    assert.deepEqual(pushed, ['before', 'after']);
    const history = await phone.getP2PMessage(peer, false, 10);
    assert.deepEqual(
      history.messages.map((m) => m.message),
      ['before', 'during', 'after'],
    );
  });

  test('a Node process exits by itself after every way a session ends', async () => {
    const child = spawn(
      process.execPath,
      [
        '--conditions=rtm-source',
        '--import',
        'tsx',
        fileURLToPath(new URL('./helpers/exit-child.ts', import.meta.url)),
        server.clientEndpoint,
        server.serverEndpoint,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    // Its scenarios take about a second (plus tsx's start); a leftover timer or socket keeps it
    // alive for 15 s or more (the relogin back-off), or until the server goes away.
    const exited = await new Promise<number | string | null>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve('still running after 12 s');
      }, 12_000);
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
    assert.equal(exited, 0, output);
    assert.deepEqual(JSON.parse(output.trim().split('\n').at(-1)!), { ended: ['close', 'kickout', 'invalidToken', 'logout'] });
  });
});
