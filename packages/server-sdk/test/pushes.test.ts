import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FpnnErrorCode, RtmError, RTMServerClient, type RTMServerClientOptions, type ServerClientEvents } from '../src/index.js';
import { FakeRtmServer, vectorsDir } from './fake-server.js';

const BIG = 81985529216486896n;

async function setup(
  t: TestContext,
  options: Partial<RTMServerClientOptions> = {},
): Promise<{ server: FakeRtmServer; client: RTMServerClient }> {
  const server = await FakeRtmServer.start();
  const client = new RTMServerClient({ pid: server.pid, secret: server.secret, endpoint: server.endpoint, ...options });
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

test('pushmsg is answered {} and emitted as a typed message with exact bigint ids', async (t) => {
  const { server, client } = await setup(t);
  const got = next(client, 'message');
  const answer = await server.push('pushmsg', {
    from: BIG,
    to: 1001,
    mtype: 30,
    mid: BIG + 1n,
    msg: 'golden push',
    attrs: '{"k":"v"}',
    mtime: 1795315974302n,
  });
  assert.deepEqual(answer, {});
  assert.deepEqual(await got, {
    fromUid: BIG,
    toUid: 1001n,
    mtype: 30,
    mid: BIG + 1n,
    message: 'golden push',
    attrs: '{"k":"v"}',
    mtime: 1795315974302n,
  });
});

test('pushgroupmsg, pushroommsg and pushevent become groupMessage, roomMessage and event', async (t) => {
  const { server, client } = await setup(t);
  const group = next(client, 'groupMessage');
  assert.deepEqual(
    await server.push('pushgroupmsg', { from: 1, gid: BIG, mtype: 51, mid: 2, msg: new Uint8Array([9]), attrs: '', mtime: 3 }),
    {},
  );
  assert.deepEqual(await group, { fromUid: 1n, gid: BIG, mtype: 51, mid: 2n, message: new Uint8Array([9]), attrs: '', mtime: 3n });
  const room = next(client, 'roomMessage');
  await server.push('pushroommsg', { from: 1, rid: 3001, mtype: 30, mid: 2, msg: 'r', attrs: 'a', mtime: 3 });
  assert.deepEqual(await room, { fromUid: 1n, rid: 3001n, mtype: 30, mid: 2n, message: 'r', attrs: 'a', mtime: 3n });
  const event = next(client, 'event');
  await server.push('pushevent', { pid: 11000001, event: 'login', uid: BIG, time: 1795315974, endpoint: '127.0.0.1:13321' });
  assert.deepEqual(await event, { pid: 11000001, event: 'login', uid: BIG, time: 1795315974, endpoint: '127.0.0.1:13321' });
  const withData = next(client, 'event');
  await server.push('pushevent', { pid: 1, event: 'logout', uid: 2, time: 3, endpoint: 'e', data: 'd' });
  assert.equal((await withData).data, 'd');
});

test('ping is answered {}, emitted, and its time is kept', async (t) => {
  const { server, client } = await setup(t);
  assert.equal(client.lastPingAt, undefined);
  const ping = next(client, 'ping');
  const before = Date.now();
  assert.deepEqual(await server.push('ping', {}), {});
  const { at } = await ping;
  assert.ok(at >= before && at <= Date.now());
  assert.equal(client.lastPingAt, at);
});

test('a re-pushed message (same kind, sender, target, mid) is emitted once; other targets still are', async (t) => {
  const { server, client } = await setup(t);
  const seen: bigint[] = [];
  client.on('message', (m) => seen.push(m.toUid));
  const push = { from: 1, to: 2, mtype: 30, mid: BIG, msg: 'x', attrs: '', mtime: 1 };
  await server.push('pushmsg', push);
  await server.push('pushmsg', push);
  await server.push('pushmsg', { ...push, to: 3 });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(seen, [2n, 3n]);
});

test('dedupMaxEntries bounds what the duplicate check remembers: the oldest is forgotten first', async (t) => {
  const { server, client } = await setup(t, { dedupMaxEntries: 2 });
  const seen: bigint[] = [];
  client.on('message', (m) => seen.push(m.mid));
  const push = (mid: number) => server.push('pushmsg', { from: 1, to: 2, mtype: 30, mid, msg: 'x', attrs: '', mtime: 1 });
  for (const mid of [1, 2, 2, 3, 3, 2, 1]) await push(mid);
  await new Promise((r) => setImmediate(r));
  // 3 pushes 1 out of the two kept (2, 3): its re-push is emitted again, 2's is not.
  assert.deepEqual(seen, [1n, 2n, 3n, 1n]);
  assert.throws(() => new RTMServerClient({ pid: 1, secret: 's', endpoint: '127.0.0.1:1', dedupMaxEntries: 0 }), /dedupMaxEntries/);
});

test('dedupWindowMs 0 emits every push', async (t) => {
  const { server, client } = await setup(t, { dedupWindowMs: 0 });
  let count = 0;
  client.on('groupMessage', () => count++);
  const push = { from: 1, gid: 2, mtype: 30, mid: 5, msg: 'x', attrs: '', mtime: 1 };
  await server.push('pushgroupmsg', push);
  await server.push('pushgroupmsg', push);
  await new Promise((r) => setImmediate(r));
  assert.equal(count, 2);
});

test('a malformed push is still answered {} and reported as an error event; an unknown method gets 20004', async (t) => {
  const { server, client } = await setup(t);
  const error = next(client, 'error');
  assert.deepEqual(await server.push('pushmsg', { to: 2, mtype: 30 }), {});
  const err = await error;
  assert.ok(err instanceof RtmError);
  assert.equal(err.code, FpnnErrorCode.CORE_INVALID_PACKAGE);
  assert.match(err.message, /'from' is missing/);
  await assert.rejects(server.push('pushbroadcastmsg', {}), (e: RtmError) => e.code === FpnnErrorCode.CORE_UNKNOWN_METHOD);
});

test('a listener that throws does not stop the others', async (t) => {
  const { server, client } = await setup(t);
  client.on('message', () => {
    throw new Error('boom');
  });
  const got = next(client, 'message');
  await server.push('pushmsg', { from: 1, to: 2, mtype: 30, mid: 1, msg: 'x', attrs: '', mtime: 1 });
  assert.equal((await got).fromUid, 1n);
});

test('off() removes a listener added with once(); the remover once() returns works too', async (t) => {
  const { server, client } = await setup(t);
  const calls: string[] = [];
  const f = (): number => calls.push('f');
  client.once('ping', f);
  client.off('ping', f);
  assert.equal(client.listenerCount('ping'), 0);
  client.once('ping', () => calls.push('g'))();
  assert.equal(client.listenerCount('ping'), 0);
  client.once('ping', f);
  for (let i = 0; i < 2; i++) {
    const ping = next(client, 'ping');
    await server.push('ping', {});
    await ping;
  }
  assert.deepEqual(calls, ['f']);
  assert.equal(client.listenerCount('ping'), 0);
});

const answersPath = fileURLToPath(new URL('answers.json', vectorsDir()));

test('captured server push frames (spec/vectors/answers.json) are answered and decoded exactly', async (t) => {
  const { server, client } = await setup(t, { dedupWindowMs: 0 });
  const vectors = JSON.parse(readFileSync(answersPath, 'utf8')) as Array<{ kind: string; hex: string; decoded: Record<string, unknown> }>;
  const pushes = vectors.filter((v) => v.kind === 'push quest pushmsg');
  assert.ok(pushes.length >= 2);
  for (const v of pushes) {
    const got = next(client, 'message');
    server.writeRaw(Buffer.from(v.hex, 'hex'));
    const m = await got;
    assert.equal(m.fromUid, BigInt(v.decoded.from as number));
    assert.equal(m.toUid, BigInt(v.decoded.to as number));
    assert.equal(m.message, v.decoded.msg);
    // The JSON holds ids as lossy numbers; the exact mid is the int64 inside the captured bytes.
    assert.ok(v.hex.includes(m.mid.toString(16).padStart(16, '0')), `mid ${m.mid} is exactly the captured int64`);
  }
  const ping = vectors.find((v) => v.kind === 'push quest ping');
  if (ping) {
    const got = next(client, 'ping');
    server.writeRaw(Buffer.from(ping.hex, 'hex'));
    await got;
  }
});
