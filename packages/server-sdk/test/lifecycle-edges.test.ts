/**
 * The client at the edges of its life, against the fake server: pushes behind a listener that
 * closes, calls failed together, two connect() at once, a call right after the watchdog closed the
 * connection, the connect deadline over the `*key` exchange, and options that would make a
 * reconnect storm. Each case once went wrong (an audit of the SDK).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { encodeQuestFrame, Flag } from '@rtm/fpnn';
import { RTMServerClient, RtmError, type SendError } from '../src/index.js';
import { FakeRtmServer, silentServer } from './fake-server.js';

const caught = (p: Promise<unknown>): Promise<RtmError> =>
  p.then(
    () => assert.fail('resolved'),
    (err: unknown) => err as RtmError,
  );

const serverPublicKey = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();

test('no event after close() from a push listener, also for pushes and pings of the same read', async (t) => {
  const server = await FakeRtmServer.start();
  const client = new RTMServerClient({ pid: server.pid, secret: server.secret, endpoint: server.endpoint });
  t.after(async () => {
    await client.close();
    await server.close();
  });
  await client.connect();
  const events: string[] = [];
  client.on('message', (m) => {
    events.push(`message ${m.mid}`);
    void client.close();
  });
  client.on('ping', () => events.push('ping'));
  client.on('closed', () => events.push('closed'));
  const push = (seq: number, mid: bigint): Uint8Array =>
    encodeQuestFrame('pushmsg', { from: 1n, to: 2n, mtype: 30, mid, msg: `m${mid}`, attrs: '', mtime: 1n }, Flag.MSGPACK, false, seq);
  server.writeRaw(Buffer.concat([push(1, 1n), push(2, 2n), encodeQuestFrame('ping', {}, Flag.MSGPACK, false, 3)]));
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(events, ['message 1', 'closed']);
});

test('calls waiting for a connection that close() ends each get an error of their own', async (t) => {
  const server = await FakeRtmServer.start();
  const client = new RTMServerClient({
    pid: server.pid,
    secret: server.secret,
    endpoint: server.endpoint,
    reconnect: { immediateRetries: 0, minDelayMs: 5000, maxDelayMs: 5000 },
  });
  t.after(async () => {
    await client.close();
    await server.close();
  });
  await client.connect();
  await server.stopListening();
  server.dropConnections();
  while (client.state !== 'reconnecting') await new Promise((r) => setTimeout(r, 5));
  const waiting = [caught(client.getToken(1)), caught(client.getToken(2)), caught(client.sendMessage(30, 1, 2, 'x', '', { mid: 77n }))];
  await client.close();
  const errors = await Promise.all(waiting);
  assert.equal(new Set(errors).size, 3, 'three error objects');
  assert.deepEqual(
    errors.map((e) => [e.code, (e as Partial<SendError>).mid]),
    [
      [20012, undefined],
      [20012, undefined],
      [20012, 77n],
    ],
  );
});

test('two connect() at once share one outcome; a call made meanwhile gets its own error', async (t) => {
  const { endpoint } = await silentServer(t);
  const client = new RTMServerClient({ pid: 1, secret: 's', endpoint, encryption: { serverPublicKey }, connectTimeoutMs: 300 });
  t.after(() => client.close());
  const [first, second, call] = await Promise.all([caught(client.connect()), caught(client.connect()), caught(client.getToken(1))]);
  assert.equal(first, second, 'the second connect() joins the first');
  assert.notEqual(call, first);
  // The deadline covers the `*key` exchange too, and its end is a timeout (20003), not 20012.
  assert.equal(first.code, 20003, first.message);
  assert.match(first.message, /timed out after 300 ms/);
});

test('a second connect() waits for the first, also when the first takes longer than connectTimeoutMs', async (t) => {
  const server = await FakeRtmServer.start();
  const client = new RTMServerClient({ pid: server.pid, secret: server.secret, endpoint: server.endpoint, connectTimeoutMs: 300 });
  t.after(async () => {
    await client.close();
    await server.close();
  });
  await client.connect();
  await client.addListen({ gids: [1n] });
  await client.close();
  // The listen restore of the next connect() takes 500 ms.
  server.on('setlisten', () => new Promise((r) => setTimeout(() => r({}), 500)));
  await Promise.all([client.connect(), client.connect()]);
  assert.equal(client.state, 'connected');
});

test('a send retried at once after the ping watchdog closed the connection waits for the reconnection', async (t) => {
  const server = await FakeRtmServer.start();
  let sends = 0;
  server.on('sendmsg', () => (++sends === 1 ? new Promise(() => {}) : { mtime: 5n }));
  const client = new RTMServerClient({ pid: server.pid, secret: server.secret, endpoint: server.endpoint, pingTimeoutMs: 200 });
  t.after(async () => {
    await client.close();
    await server.close();
  });
  await client.connect();
  await server.push('ping', {}); // arms the watchdog
  const err = await caught(client.sendMessage(30, 1, 2, 'hi'));
  assert.equal(err.code, 20002);
  assert.match(err.message, /no ping/);
  // From the catch: before its socket's close event the connection looked usable, and the retry failed 20002 too.
  const again = await client.sendMessage(30, 1, 2, 'hi', '', { mid: (err as SendError).mid });
  assert.equal(again.mtime, 5n);
  assert.equal(server.accepted, 2);
});

test('reconnect options that would retry in a tight loop are refused; mtypes must be an array', async () => {
  const make = (reconnect: object) => () => new RTMServerClient({ pid: 1, secret: 's', endpoint: '127.0.0.1:1', reconnect });
  assert.throws(make({ steps: 1001 }), /'reconnect.steps' must be at most 1000/);
  assert.throws(make({ immediateRetries: 1001 }), /'reconnect.immediateRetries' must be at most 1000/);
  make({ steps: 1000, immediateRetries: 1000 })();
  const client = new RTMServerClient({ pid: 1, secret: 's', endpoint: '127.0.0.1:1' });
  const bad = await caught(client.getGroupMessage(1, 1, true, 10, { mtypes: 30 as unknown as number[] }));
  assert.ok(bad instanceof RtmError && bad.code === 200034, String(bad));
});
