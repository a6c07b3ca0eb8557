import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { readmeExampleErrors } from '../../../test/readme/compile-examples.js';
import { RTMClient, RTMError, RtmError, type WebSocketLike } from '../src/index.js';
import { readBody, readHistoryRow, readIdMap } from '../src/convert.js';
import { MidGenerator } from '../src/mid.js';
import { DEFAULT_RECONNECT_STRATEGY, resolveOptions } from '../src/options.js';
import { messageBytes } from '../src/transport.js';
import { FakeRtmServer } from './helpers/fake-server.js';

test('mids are ms·1000 + 0..998 and strictly increasing even when the clock stands still or steps back', () => {
  const gen = new MidGenerator(0);
  assert.equal(gen.next(1000), 1000001n);
  assert.equal(gen.next(1000), 1000002n);
  const many = Array.from({ length: 2000 }, () => gen.next(1000));
  for (let i = 1; i < many.length; i++) assert.ok(many[i]! > many[i - 1]!);
  assert.ok(gen.next(500) > many.at(-1)!);
  const wrapping = new MidGenerator(997);
  assert.deepEqual([wrapping.next(7), wrapping.next(8), wrapping.next(9)], [7998n, 8000n, 9001n]);
});

test("two devices' mids in the same millisecond differ: each generator starts its counter at random", () => {
  const firsts = new Set(Array.from({ length: 20 }, () => new MidGenerator().next(1000)));
  assert.ok(firsts.size > 1, 'twenty generators all began at the same place');
  for (const mid of firsts) assert.ok(mid >= 1000000n && mid <= 1000998n, String(mid));
});

test('readBody: strings, bytes and chat maps', () => {
  assert.deepEqual(readBody('x'), { message: 'x' });
  assert.deepEqual(readBody(new Uint8Array([1])), { message: new Uint8Array([1]) });
  const map = { source: 'en', target: '', sourceText: 'hi', targetText: '' };
  assert.deepEqual(readBody(map), { message: 'hi', translatedInfo: map });
  assert.deepEqual(readBody(new Map(Object.entries({ ...map, targetText: 'salut' }))).message, 'salut');
});

test('history rows and id maps accept every integer form', () => {
  const row = readHistoryRow([1, 2n, 30, 1.795315887537e12, 1, 'm', new TextEncoder().encode('a'), '99']);
  assert.deepEqual(row, { id: 1n, fromUid: 2n, mtype: 30, mid: 1795315887537n, deleted: true, message: 'm', attrs: 'a', mtime: 99n });
  assert.deepEqual(readIdMap({ '81985529216486895': 1 }, Number), new Map([[81985529216486895n, 1]]));
});

test('received WebSocket data in every form becomes bytes', () => {
  assert.deepEqual(messageBytes(new Uint8Array([1, 2]).buffer), new Uint8Array([1, 2]));
  assert.deepEqual(messageBytes(Buffer.from([3])), new Uint8Array([3]));
  assert.deepEqual(messageBytes('A'), new Uint8Array([65]));
  assert.deepEqual(messageBytes([Buffer.from([1]), Buffer.from([2])]), new Uint8Array([1, 2]));
  assert.equal(messageBytes(42), undefined);
});

test('the webSocketFactory option creates the socket', async (t) => {
  const server = await FakeRtmServer.start();
  const urls: string[] = [];
  const client = new RTMClient({
    endpoint: server.endpoint,
    pid: 1,
    webSocketFactory: (url) => {
      urls.push(url);
      return new WebSocket(url) as unknown as WebSocketLike;
    },
  });
  t.after(async () => {
    client.close();
    await server.close();
  });
  assert.deepEqual(await client.login(1001, 'token-1001'), { ok: true });
  assert.deepEqual(urls, [`ws://${server.endpoint}/service/websocket`]);
});

test('frames split across WebSocket messages and joined in one are decoded', async (t) => {
  const server = await FakeRtmServer.start();
  const client = new RTMClient({ endpoint: server.endpoint, pid: 1 });
  t.after(async () => {
    client.close();
    await server.close();
  });
  await client.login(1001n, 'token-1001');
  const got: bigint[] = [];
  client.on('message', (m) => got.push(m.mid));
  const { encodeQuest, encodePayload, Flag } = await import('@rtm/fpnn');
  const push = (mid: bigint, seq: number) =>
    encodeQuest(
      'pushmsg',
      encodePayload(Flag.MSGPACK, { from: 2, to: 1001, mtype: 30, mid, msg: 'x', attrs: '', mtime: 1 }),
      Flag.MSGPACK,
      false,
      seq,
    );
  const a = push(1n, 101);
  const b = push(2n, 102);
  const c = push(3n, 103);
  const conn = server.last;
  conn.sendRaw(a.subarray(0, 5));
  conn.sendRaw(a.subarray(5));
  const joined = new Uint8Array(b.length + c.length);
  joined.set(b);
  joined.set(c, b.length);
  conn.sendRaw(joined);
  const json = encodeQuest(
    'pushmsg',
    encodePayload(Flag.JSON, { from: 2, to: 1001, mtype: 30, mid: 4, msg: 'j', attrs: '', mtime: 1 }),
    Flag.JSON,
    false,
    104,
  );
  conn.sendRaw(json);
  for (let i = 0; i < 50 && got.length < 4; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(got, [1n, 2n, 3n, 4n]);
});

test('off() removes a listener added with once()', () => {
  const client = new RTMClient({ endpoint: 'h:1', pid: 1 });
  const calls: string[] = [];
  const f = (): number => calls.push('f');
  client.once('kickout', f);
  client.off('kickout', f);
  assert.equal(client.listenerCount('kickout'), 0);
  client.once('kickout', f).on('kickout', () => calls.push('g'));
  (client as unknown as { emit(event: string, payload: unknown): void }).emit('kickout', {});
  (client as unknown as { emit(event: string, payload: unknown): void }).emit('kickout', {});
  assert.deepEqual(calls, ['f', 'g', 'g']);
  assert.equal(client.listenerCount('kickout'), 1);
});

test('options: a bad value throws a TypeError naming the option; 0 is no wait or timeout, so refused', () => {
  const make = (extra: object) => () => new RTMClient({ endpoint: '127.0.0.1:1', pid: 1, ...extra });
  const refused = (extra: object, option: string) =>
    assert.throws(make(extra), (err: unknown) => err instanceof TypeError && err.message.includes(`'${option}'`), option);
  refused({ connectTimeoutMs: 0 }, 'connectTimeoutMs');
  refused({ questTimeoutMs: 0 }, 'questTimeoutMs');
  refused({ questTimeoutMs: -1 }, 'questTimeoutMs');
  refused({ reconnectStrategy: { maxIntervalSeconds: 0 } }, 'reconnectStrategy.maxIntervalSeconds');
  refused({ reconnectStrategy: { linearRegressiveCount: 0 } }, 'reconnectStrategy.linearRegressiveCount');
  refused({ maxPingIntervalSeconds: Number.NaN }, 'maxPingIntervalSeconds');
  refused({ pid: 0 }, 'pid');
  refused({ endpoint: 'nohost' }, 'endpoint');
  make({ maxPingIntervalSeconds: 0, reconnectStrategy: { startConnectFailedCount: 0, maxIntervalSeconds: 0.1 } })();
  // Infinity would make every back-off step 0: a relogin loop without a wait.
  refused({ reconnectStrategy: { linearRegressiveCount: Infinity } }, 'reconnectStrategy.linearRegressiveCount');
});

test('options: a wait longer than a timer can keep (2^31 - 1 ms) is refused, not fired after 1 ms', () => {
  const make = (extra: object) => () => new RTMClient({ endpoint: '127.0.0.1:1', pid: 1, ...extra });
  const refused = (extra: object, option: string) =>
    assert.throws(make(extra), (err: unknown) => err instanceof TypeError && err.message.includes(`'${option}' must be at most`), option);
  refused({ connectTimeoutMs: 2 ** 31 }, 'connectTimeoutMs');
  refused({ questTimeoutMs: 2 ** 31 }, 'questTimeoutMs');
  refused({ maxPingIntervalSeconds: 2 ** 31 / 1000 }, 'maxPingIntervalSeconds');
  refused({ reconnectStrategy: { maxIntervalSeconds: 2 ** 31 / 1000 } }, 'reconnectStrategy.maxIntervalSeconds');
  make({ connectTimeoutMs: 2 ** 31 - 1, questTimeoutMs: 2 ** 31 - 1, maxPingIntervalSeconds: 2_147_483 })();
});

test('options: a reconnectStrategy field given as undefined keeps its default', () => {
  const strategy = resolveOptions({
    endpoint: '127.0.0.1:1',
    pid: 1,
    reconnectStrategy: {
      startConnectFailedCount: undefined,
      maxIntervalSeconds: undefined,
      linearRegressiveCount: 2,
      stableAfterMs: undefined,
    },
  }).reconnectStrategy;
  assert.deepEqual({ ...strategy }, { ...DEFAULT_RECONNECT_STRATEGY, linearRegressiveCount: 2 });
});

test('sslEndpoint ("host:port" of the TLS port, the official ssl_endpoint) becomes the wss:// URL, and wins over endpoint', () => {
  const url = (o: object) => resolveOptions({ pid: 1, ...o }).url;
  assert.equal(url({ sslEndpoint: 'rtm.example.com:13322' }), 'wss://rtm.example.com:13322/service/websocket');
  assert.equal(
    url({ endpoint: 'rtm.example.com:13325', sslEndpoint: 'rtm.example.com:13322' }),
    'wss://rtm.example.com:13322/service/websocket',
  );
  assert.equal(url({ sslEndpoint: '[::1]:13322' }), 'wss://[::1]:13322/service/websocket');
  assert.equal(url({ endpoint: 'rtm.example.com:13325' }), 'ws://rtm.example.com:13321/service/websocket');
  for (const bad of ['rtm.example.com', 'wss://rtm.example.com:13322/service/websocket', '', 13322])
    assert.throws(
      () => url({ sslEndpoint: bad }),
      (err: unknown) => err instanceof TypeError && err.message.includes("'sslEndpoint'"),
      String(bad),
    );
  assert.throws(
    () => url({}),
    (err: unknown) => err instanceof TypeError && err.message.includes("'endpoint' is required (or sslEndpoint)"),
  );
});

test('RTMError is RtmError under the name of the RTM SDK docs', async () => {
  assert.equal(RTMError, RtmError);
  const error = new RTMError(200034, 'x');
  assert.ok(error instanceof RtmError);
  assert.equal(error.code, 200034);
  const client = new RTMClient({ endpoint: '127.0.0.1:1', pid: 1 });
  await assert.rejects(client.getFriends(), (err: unknown) => err instanceof RTMError && err.code === 20012);
});

test('the README examples compile against the exported API', () => {
  const errors = readmeExampleErrors(new URL('../README.md', import.meta.url), {
    imports: { './rtm-client.browser.js': '@rtm/client-sdk' }, // the bundle is built from the package
  });
  assert.deepEqual(errors, []);
});
