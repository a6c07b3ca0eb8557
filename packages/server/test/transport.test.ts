import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { encodeAnswer, encodePayload, encodeQuest, Flag, FrameDecoder } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';
import WebSocket from 'ws';

/** Opens a raw TCP socket, writes bytes, and resolves with what came back before the server closed it. */
function rawExchange(port: number, bytes: Uint8Array, waitMs = 1500): Promise<{ closed: boolean; received: Buffer }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ closed: false, received: Buffer.concat(chunks) });
    }, waitMs);
    socket.on('data', (d) => chunks.push(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ closed: true, received: Buffer.concat(chunks) });
    });
  });
}

function header(version: number, flag: number, mtype: number, ss: number, psize: number): Buffer {
  const b = Buffer.alloc(16);
  b.write('FPNN', 0, 'latin1');
  b[4] = version;
  b[5] = flag;
  b[6] = mtype;
  b[7] = ss;
  b.writeUInt32LE(psize, 8);
  b.writeUInt32LE(1, 12);
  return b;
}

describe('transport: one port, three protocols, robust against bad input', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({
      maxFrameBytes: 64 * 1024,
      pingIntervalMs: 200,
      idleTimeoutMs: 1500,
      maxOutboundBytes: 64 * 1024,
      pushTimeoutMs: 500,
    });
  });
  after(async () => {
    await server.close();
  });

  const stillServing = async () => {
    const c = await RawClient.tcp(server.serverEndpoint);
    const a = await c.quest('*ping');
    assert.equal(typeof a.ts, 'bigint');
    c.close();
  };

  it('closes on bad magic, unknown version and unknown mtype', async () => {
    const badMagic = Buffer.concat([Buffer.from('FPNX'), Buffer.alloc(12)]);
    // 'FPNX' is not sniffed as FPNN nor HTTP: refused at once.
    assert.equal((await rawExchange(server.serverPort, badMagic)).closed, true);
    assert.equal((await rawExchange(server.serverPort, header(7, 0x80, 1, 3, 1))).closed, true);
    assert.equal((await rawExchange(server.serverPort, header(1, 0x80, 9, 3, 1))).closed, true);
    // A valid first frame followed by garbage: closed after answering the first.
    const ok = encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 1);
    const res = await rawExchange(server.serverPort, Buffer.concat([ok, Buffer.from('GARBAGE-GARBAGE!')]));
    assert.equal(res.closed, true);
    assert.equal(new FrameDecoder().push(res.received)[0]?.kind, 'answer');
    await stillServing();
  });

  it('closes a frame declared over the maximum before its body arrives', async () => {
    const res = await rawExchange(server.serverPort, header(1, 0x80, 1, 4, 10 * 1024 * 1024), 1000);
    assert.equal(res.closed, true);
    await stillServing();
  });

  it('answers an undecodable payload with an error answer carrying code and ex', async () => {
    const frame = encodeQuest('gettoken', new Uint8Array([0xc1, 0xc1, 0xc1]), Flag.MSGPACK, false, 1);
    const res = await rawExchange(server.serverPort, frame, 500);
    const [answer] = new FrameDecoder().push(res.received);
    assert.equal(answer?.kind, 'answer');
    assert.equal(answer.kind === 'answer' && answer.ok, false);
    const c = await RawClient.tcp(server.serverEndpoint);
    await assert.rejects(c.quest('gettoken', {}), { code: 200002 });
    c.close();
  });

  it('answers JSON quests in JSON, msgpack in msgpack; version 0 accepted', async () => {
    const c = await RawClient.tcp(server.serverEndpoint);
    const a = await c.quest('*ping', {}, Flag.JSON);
    assert.ok(Number(a.ts) > 1.7e12, 'JSON answer to a JSON quest');
    await assert.rejects(c.quest('nosuch', {}, Flag.JSON), { code: 20004 });
    c.close();
    const v0 = Buffer.from(encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 9));
    v0[4] = 0;
    const res = await rawExchange(server.serverPort, v0, 500);
    const [answer] = new FrameDecoder().push(res.received);
    assert.ok(answer?.kind === 'answer' && answer.ok && answer.seq === 9);
  });

  it('serves TCP, WebSocket and HTTP on the same port', async () => {
    const tcp = await RawClient.tcp(server.clientEndpoint);
    const ws = await RawClient.websocket(server.clientEndpoint);
    assert.ok((await tcp.quest('*ping')).ts);
    assert.ok((await ws.quest('*ping')).ts);
    await assert.rejects(ws.quest('sendmsg', { to: 1n, mid: 1n, mtype: 30, msg: 'x' }), { code: 200022 });
    tcp.close();
    ws.close();
    const res = await fetch(`http://${server.serverEndpoint}/service/*ping`, { method: 'POST', body: '{}' });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /"ts":\d+/);
  });

  it('closes a WebSocket that sends text or a non-FPNN binary message', async () => {
    for (const payload of ['hello', Buffer.from('not fpnn at all!')]) {
      const ws = new WebSocket(`ws://${server.clientEndpoint}/service/websocket`);
      await new Promise((r) => ws.once('open', r));
      const closed = new Promise((r) => ws.once('close', r));
      ws.send(payload);
      await closed;
    }
    await stillServing();
  });

  it('pings every connection and awaits the answer; closes idle connections', async () => {
    const backend = await RawClient.tcp(server.serverEndpoint);
    await backend.quest('*ping'); // a connection is classified (FPNN/HTTP) by its first bytes
    const pings = await backend.waitForPushes('ping', 2, 3000);
    assert.ok(pings.length >= 2);
    backend.close();
    // A client-gate socket that never answers the server's pings is closed after the idle timeout.
    const silent = connect(server.clientPort, '127.0.0.1');
    silent.on('data', () => undefined);
    silent.on('error', () => undefined);
    silent.write(encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 1));
    silent.write(encodeAnswer(1, encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK)); // stray answer: ignored
    const started = Date.now();
    // Our raw socket never answers the server's pings, but an unanswered ping is not fatal: idleness is.
    await new Promise((r) => silent.once('close', r));
    assert.ok(Date.now() - started >= 1000, 'closed by the idle timeout, not at once');
  });

  it('a server quest to a client is answered and awaited; no answer times out with 20003', async () => {
    const backend = await RawClient.tcp(server.serverEndpoint);
    const { token } = await backend.signed('gettoken', { uid: 4343n }, TEST_PID, TEST_SECRET);
    const ws = await RawClient.websocket(server.clientEndpoint);
    assert.deepEqual(await ws.quest('auth', { pid: TEST_PID, uid: 4343n, token }), { ok: true });
    const [conn] = [...server.services.presence.connectionsOf(TEST_PID, 4343n)!];
    assert.deepEqual(await conn!.quest('ping', {}), {}, 'the client answered the twoway push');
    // A client that logs in, then never answers anything: the quest expires after pushTimeoutMs.
    const silent = connect(server.clientPort, '127.0.0.1');
    silent.on('error', () => undefined);
    const answered = new Promise((r) => silent.once('data', r));
    silent.write(
      encodeQuest(
        'auth',
        encodePayload(Flag.MSGPACK, {
          pid: TEST_PID,
          uid: 4344n,
          token: (await backend.signed('gettoken', { uid: 4344n }, TEST_PID, TEST_SECRET)).token,
        }),
        Flag.MSGPACK,
        false,
        1,
      ),
    );
    await answered;
    const [mute] = [...server.services.presence.connectionsOf(TEST_PID, 4344n)!];
    const started = Date.now();
    await assert.rejects(mute!.quest('ping', {}), { code: 20003 });
    assert.ok(Date.now() - started >= 400, 'waited for the push timeout');
    backend.close();
    ws.close();
    silent.destroy();
  });

  it('closes a slow consumer whose outbound buffer stays over the bound', async () => {
    const backend = await RawClient.tcp(server.serverEndpoint);
    const { token } = await backend.signed('gettoken', { uid: 4242n }, TEST_PID, TEST_SECRET);
    const ws = await RawClient.websocket(server.clientEndpoint);
    assert.deepEqual(await ws.quest('auth', { pid: TEST_PID, uid: 4242n, token }), { ok: true });
    // Stop reading: pause the underlying TCP socket of the WebSocket.
    (ws.ws as unknown as { _socket: import('node:net').Socket })._socket.pause();
    const big = 'x'.repeat(20_000);
    for (let batch = 0; batch < 20 && !ws.isClosed; batch++) {
      await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          backend.signed(
            'sendmsg',
            { from: 1n, to: 4242n, mid: BigInt(batch * 50 + i + 1), mtype: 51, msg: big, attrs: '' },
            TEST_PID,
            TEST_SECRET,
          ),
        ),
      );
    }
    (ws.ws as unknown as { _socket: import('node:net').Socket })._socket.resume();
    await Promise.race([ws.closed, new Promise((_, rej) => setTimeout(() => rej(new Error('slow consumer was not closed')), 5000))]);
    backend.close();
    await stillServing();
  });
});
