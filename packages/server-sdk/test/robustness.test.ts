/**
 * The server SDK as a backend meets it: a real server (startTestServer), a network that fails
 * (startFaultyProxy: cut, silent), many calls at once, listeners of the app's making, processes
 * that must exit by themselves, and the README's examples run as written.
 */
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import ts from 'typescript';
import { startFaultyProxy, startTestServer, TEST_PID, TEST_SECRET, until, type FaultyProxy } from '@rtm/testkit';
import { FpnnErrorCode, RtmError, RTMServerClient, type Logger, type RTMServerClientOptions, type SendError } from '../src/index.js';

const server = await startTestServer();
after(() => server.close());
const [serverHost, serverPort] = server.serverEndpoint.split(':') as [string, string];

const fastReconnect = { immediateRetries: 0, minDelayMs: 50, maxDelayMs: 100 };

function newClient(t: TestContext, options: Partial<RTMServerClientOptions> = {}): RTMServerClient {
  const client = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, ...options });
  t.after(() => client.close());
  return client;
}

/** A client connected to the real server through a faulty proxy. */
async function throughProxy(
  t: TestContext,
  options: Partial<RTMServerClientOptions> = {},
): Promise<{ proxy: FaultyProxy; client: RTMServerClient }> {
  const proxy = await startFaultyProxy(serverHost, Number(serverPort));
  t.after(() => proxy.close());
  const client = newClient(t, { endpoint: `127.0.0.1:${proxy.port}`, reconnect: fastReconnect, ...options });
  await client.connect();
  return { proxy, client };
}

const outcome = (p: Promise<unknown>): Promise<RtmError | 'resolved'> =>
  p.then(
    () => 'resolved' as const,
    (e: RtmError) => e,
  );

// ---------------------------------------------------------------- timeouts

test('a connection that does not listen is kept open by its *ping keepalive (the server pings only listeners)', async (t) => {
  const quick = await startTestServer({ idleTimeoutMs: 1000, pingIntervalMs: 250 });
  t.after(() => quick.close());
  const connect = async (keepAliveMs: number) => {
    const client = newClient(t, { endpoint: quick.serverEndpoint, keepAliveMs });
    const closed: string[] = [];
    client.on('closed', ({ reason }) => closed.push(reason));
    await client.connect();
    await client.getToken(1);
    return { client, closed };
  };
  const kept = await connect(300);
  const dropped = await connect(0);
  assert.ok(await until(() => dropped.closed.length > 0, 3000), 'without the keepalive the server closes it once idle');
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual(kept.closed, [], 'kept past the idle timeout');
  assert.equal(kept.client.lastPingAt, undefined, 'no server ping: it does not listen');
  assert.equal(typeof (await kept.client.getToken(2)), 'string');
});

test('a call with a timeoutMs much shorter than questTimeoutMs times out on time (not at the next 1 s sweep)', async (t) => {
  const { proxy, client } = await throughProxy(t); // questTimeoutMs: the default 20 s
  proxy.holdAnswers = true;
  let started = Date.now();
  const err = await outcome(client.getToken(1, { timeoutMs: 100 }));
  assert.ok(err instanceof RtmError && err.code === FpnnErrorCode.CORE_TIMEOUT);
  assert.ok(Date.now() - started < 600, `a 100 ms call rejected after ${Date.now() - started} ms`);

  // The same for the time left to a call that first waited for a reconnection.
  proxy.holdAnswers = false;
  const closed = new Promise((r) => client.once('closed', r));
  const reconnected = new Promise((r) => client.once('connected', r));
  proxy.cut();
  await closed;
  proxy.holdAnswers = true;
  started = Date.now();
  const waited = outcome(client.getToken(1, { timeoutMs: 300 }));
  await reconnected;
  const err2 = await waited;
  assert.ok(err2 instanceof RtmError && err2.code === FpnnErrorCode.CORE_TIMEOUT);
  assert.ok(Date.now() - started < 850, `a 300 ms call rejected after ${Date.now() - started} ms`);
});

test('a call that times out waiting for a reconnection says it was not sent', async (t) => {
  const { proxy, client } = await throughProxy(t);
  const closed = new Promise((r) => client.once('closed', r));
  proxy.close(); // every reconnection attempt is refused
  await closed;
  const err = (await outcome(client.sendMessage(51, 1, 2, 'x', '', { timeoutMs: 100 }))) as SendError;
  assert.equal(err.code, FpnnErrorCode.CORE_TIMEOUT);
  assert.match(err.message, /'sendmsg' was not sent: no usable connection to 127\.0\.0\.1:\d+ within 100 ms \(state: reconnecting\)/);
  assert.equal(typeof err.mid, 'bigint');
});

// ---------------------------------------------------------------- connection loss and many calls

test('a send whose answer is lost fails with 20002 and its mid; resending with that mid stores it once', async (t) => {
  const { proxy, client } = await throughProxy(t);
  const direct = newClient(t);
  await direct.connect();
  await client.addGroupMembers(9001, [1, 2]);
  proxy.holdAnswers = true;
  const sending = outcome(client.sendGroupMessage(51, 1, 9001, 'once'));
  // The server stored it (seen from another connection); its answer is held, then the connection cut.
  assert.ok(await until(async () => (await direct.getGroupMessage(1, 9001, true, 10)).num === 1, 2000));
  proxy.holdAnswers = false;
  proxy.cut();
  const err = (await sending) as SendError;
  assert.equal(err.code, FpnnErrorCode.CORE_CONNECTION_CLOSED, err.message);
  const again = await client.sendGroupMessage(51, 1, 9001, 'once', '', { mid: err.mid });
  assert.equal(again.mid, err.mid);
  const page = await client.getGroupMessage(1, 9001, true, 10);
  assert.deepEqual(
    page.messages.map((m) => [m.mid, m.message]),
    [[err.mid, 'once']],
  );
});

test('2000 calls made while reconnecting are all answered, in call order', async (t) => {
  const { proxy, client } = await throughProxy(t, { reconnect: { ...fastReconnect, minDelayMs: 100 } });
  const closed = new Promise((r) => client.once('closed', r));
  proxy.cut();
  await closed;
  assert.equal(client.state, 'reconnecting');
  const sent = await Promise.all(Array.from({ length: 2000 }, (_, i) => client.sendMessage(51, 8001, 8002, `m${i}`)));
  assert.equal(new Set(sent.map((s) => s.mid)).size, 2000);
  const seen: string[] = [];
  let lastid: bigint | undefined;
  for (;;) {
    const page = await client.getP2PMessage(8001, 8002, false, 20, lastid === undefined ? {} : { lastid });
    seen.push(...page.messages.map((m) => String(m.message)));
    if (page.num < 20) break;
    lastid = page.lastid;
  }
  assert.equal(seen.length, 2000);
  assert.ok(
    seen.every((m, i) => m === `m${i}`),
    'stored in call order',
  );
});

// ---------------------------------------------------------------- listening

test('after a reconnection the listen state is restored: pushes keep flowing', async (t) => {
  const { proxy, client: listener } = await throughProxy(t);
  const sender = newClient(t);
  await sender.connect();
  await listener.addListen({ uids: [7001] });
  const got: string[] = [];
  listener.on('message', (m) => got.push(String(m.message)));
  await sender.sendMessage(51, 7001, 7002, 'before');
  assert.ok(await until(() => got.length === 1, 2000));
  const reconnected = new Promise((r) => listener.once('connected', r));
  proxy.cut();
  assert.deepEqual(await reconnected, { endpoint: `127.0.0.1:${proxy.port}`, reconnected: true });
  await sender.sendMessage(51, 7001, 7002, 'after');
  assert.ok(await until(() => got.length === 2, 2000), `got ${got.join(', ')}`);
  assert.deepEqual(got, ['before', 'after']);
});

test('an async listener that rejects is reported to the logger; the push is answered and the connection stays', async (t) => {
  const logged: unknown[] = [];
  const logger: Logger = { debug() {}, info() {}, warn() {}, error: (_message, err) => logged.push(err) };
  const listener = newClient(t, { logger });
  const sender = newClient(t);
  await Promise.all([listener.connect(), sender.connect()]);
  await listener.setListen({ uids: [7101] });
  const got: string[] = [];
  listener.on('message', async (m) => {
    await Promise.resolve();
    throw new Error(`async listener failed on ${String(m.message)}`);
  });
  listener.once('message', async () => Promise.reject(new Error('async once listener failed')));
  listener.on('message', (m) => got.push(String(m.message)));
  await sender.sendMessage(51, 7101, 7102, 'first');
  await sender.sendMessage(51, 7101, 7102, 'second');
  assert.ok(await until(() => got.length === 2 && logged.length === 3, 2000), `got ${got.join(', ')}; logged ${logged.length}`);
  assert.deepEqual(logged.map((e) => (e as Error).message).sort(), [
    'async listener failed on first',
    'async listener failed on second',
    'async once listener failed',
  ]);
  assert.equal(listener.state, 'connected');
});

// ---------------------------------------------------------------- processes exit by themselves

const SDK = new URL('../src/index.ts', import.meta.url).href;

/** Runs an ES module text in a child node (TypeScript sources through tsx); resolves when it exits by itself. */
function runChild(code: string, env: Record<string, string> = {}): Promise<{ code: number | null; output: string; ms: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, ['--conditions=rtm-source', '--import', 'tsx', '--input-type=module', '-e', code], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  // A child still running after 15 s is one that a socket or timer keeps alive: the test fails.
  const timer = setTimeout(() => child.kill(), 15_000);
  return new Promise((resolve) =>
    child.on('exit', (exitCode) => {
      clearTimeout(timer);
      resolve({ code: exitCode, output, ms: Date.now() - started });
    }),
  );
}

test('a process exits by itself after close(): with calls in flight, twice, while connecting, after a failed connect()', async () => {
  const { code, output } = await runChild(`
    import { RTMServerClient } from '${SDK}';
    const options = { pid: ${TEST_PID}, secret: '${TEST_SECRET}', endpoint: '${server.serverEndpoint}' };
    const a = new RTMServerClient(options);
    await a.connect();
    await a.setListen({ p2p: true });
    const inFlight = a.getToken(1).then(() => 'answered', (e) => e.code);
    await Promise.all([a.close(), a.close()]);
    const b = new RTMServerClient(options);
    const connecting = b.connect().catch((e) => e.code);
    await b.close();
    const c = new RTMServerClient({ ...options, endpoint: '127.0.0.1:1' });
    const failed = await c.connect().catch((e) => e.code);
    console.log(JSON.stringify([await inFlight, await connecting, failed, a.state, b.state, c.state]));
  `);
  assert.equal(code, 0, output);
  const [inFlight, ...rest] = JSON.parse(output.trim()) as unknown[];
  assert.ok(inFlight === 'answered' || inFlight === FpnnErrorCode.CORE_CONNECTION_CLOSED, String(inFlight));
  assert.deepEqual(rest, [FpnnErrorCode.CORE_INVALID_CONNECTION, FpnnErrorCode.CORE_INVALID_CONNECTION, 'closed', 'closed', 'idle']);
});

// ---------------------------------------------------------------- the README

test("the README's examples run as written against a real server, and the process then exits by itself", async () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8').split('\n');
  const lines: string[] = [];
  let fence: string | undefined;
  for (const line of readme) {
    const marker = /^```(\w*)\s*$/.exec(line);
    if (marker) fence = fence === undefined ? marker[1] : undefined;
    else if (fence === 'ts') lines.push(line);
  }
  // The blocks run in order as one module, as types.test.ts compiles them. The first block ends
  // with close() to show it; the later blocks use the connection, so that close() moves to the end.
  const close = lines.findIndex((l) => /^await client\.close\(\);/.test(l));
  assert.ok(close > 0, 'the Connect example closes the client');
  const source = [...lines.slice(0, close), ...lines.slice(close + 1), "console.log('README done');", lines[close]!]
    .join('\n')
    .replaceAll("'@rtm/server-sdk'", `'${SDK}'`)
    .replace("'127.0.0.1:13315'", `'${server.serverEndpoint}'`)
    .replace('pid: 1000001,', `pid: ${TEST_PID},`);
  assert.notEqual(source.indexOf(server.serverEndpoint), -1, 'the example connects to the test server');
  assert.notEqual(source.indexOf(`pid: ${TEST_PID},`), -1, "the example is the test server's project");
  const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
  const { code, output } = await runChild(js, { RTM_PROJECT_SECRET: TEST_SECRET });
  assert.equal(code, 0, output);
  assert.match(output, /README done\n/);
  assert.match(output, /closed: closed by client false/);
});
