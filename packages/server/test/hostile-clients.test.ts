import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { encodePayload, encodeQuest, Flag, FrameDecoder } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, until, type TestServer } from '@rtm/testkit';

// Hostile peers of a server on the internet, beyond resource-bounds.test.ts: what a peer that
// never authenticates can hold (sockets, buffered bytes) and cost (decoding) must be bounded.

/** A raw socket to a port, with whether the server closed it and what it answered. */
function open(port: number): { socket: Socket; closed: () => boolean; received: () => string } {
  const socket = connect(port, '127.0.0.1');
  let closed = false;
  const chunks: Buffer[] = [];
  socket.on('error', () => undefined);
  socket.on('data', (d) => chunks.push(d));
  socket.on('close', () => (closed = true));
  return { socket, closed: () => closed, received: () => Buffer.concat(chunks).toString('latin1') };
}

describe('hostile clients', () => {
  let server: TestServer;
  const sockets: Socket[] = [];
  before(async () => {
    server = await startTestServer({ idleTimeoutMs: 1500, pingIntervalMs: 500 });
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await server.close();
  });
  const tracked = (port: number): ReturnType<typeof open> => {
    const s = open(port);
    sockets.push(s.socket);
    return s;
  };

  // The HTTP server behind the FPNN port never listens itself (the listener hands it sockets), so
  // node's headersTimeout / requestTimeout, checked from its listening server, never applied: a
  // request trickled a byte at a time held its socket (and, for a body, its bytes) for ever.
  it('an HTTP request (headers or body) trickled slowly is closed after the idle timeout, on both ports', { timeout: 15_000 }, async () => {
    const headers = [tracked(server.clientPort), tracked(server.serverPort)];
    for (const h of headers) h.socket.write('GET /service/websocket HTTP/1.1\r\nHost: x\r\n');
    const body = tracked(server.serverPort);
    body.socket.write('POST /service/gettoken HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"pid":');
    const silent = tracked(server.serverPort);
    silent.socket.write('GET ');
    const trickle = setInterval(() => {
      for (const h of headers) h.socket.write('X-A: b\r\n');
      body.socket.write(' ');
    }, 200);
    const all = [...headers, body, silent];
    const closed = await until(() => all.every((s) => s.closed()), 6000); // 4x the 1.5 s timeout
    clearInterval(trickle);
    assert.ok(closed, `held open: ${all.map((s) => s.closed()).join(', ')}`);
    // A keep-alive connection serves request after request, each within the timeout.
    const ka = tracked(server.serverPort);
    for (let i = 0; i < 3; i++) {
      ka.socket.write('GET /service/*ping HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.ok(await until(() => ka.received().split('HTTP/1.1 200').length === i + 2, 2000), `answer ${i + 1}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
    assert.equal(ka.closed(), false, 'an HTTP connection used in time stays open');
  });

  // The client gate answers every HTTP call 20013, but read the body first: up to
  // RTM_MAX_FRAME_BYTES (8 MiB) buffered per connection for a peer nobody knows.
  it('the client port answers an HTTP call 20013 before its body is read, then closes', async () => {
    const big = tracked(server.clientPort);
    big.socket.write('POST /service/auth HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n{"pid":');
    assert.ok(await until(() => big.received().includes('"code":20013'), 2000), 'answered before the body arrived');
    assert.match(big.received(), /^HTTP\/1\.1 500 .*\r\nConnection: close\r\n/s);
    assert.ok(await until(() => big.closed(), 2000), 'closed: the rest of its body is not read');
    const small = await fetch(`http://${server.clientEndpoint}/service/auth`, { method: 'POST', body: '{}' });
    assert.equal(small.status, 500);
    assert.equal(((await small.json()) as { code: number }).code, 20013);
  });

  // Over TCP a client-gate connection not logged in yet may send frames of ~68 KiB (its frame
  // header is refused before the body is read); over WebSocket, ws buffered a message up to
  // RTM_MAX_FRAME_BYTES before the FPNN decoder saw a byte of it: 7 MiB per connection (20
  // connections: +300 MB), whole or in fragments, for the idle timeout.
  it('a WebSocket client not logged in cannot have a large message buffered, whole or fragmented', async () => {
    const fragmented = await RawClient.websocket(server.clientEndpoint);
    const whole = await RawClient.websocket(server.clientEndpoint);
    const codes: number[] = [];
    for (const c of [fragmented, whole]) c.ws.once('close', (code) => codes.push(code));
    const started = Date.now();
    for (let i = 0; i < 4; i++) fragmented.ws.send(Buffer.alloc(64 * 1024), { binary: true, fin: false });
    // A frame header declaring 1 MB, then 100 KB of it.
    const head = Buffer.from([0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4]);
    (whole.ws as unknown as { _socket: Socket })._socket.write(Buffer.concat([head, Buffer.alloc(100_000)]));
    const closed = await until(() => fragmented.isClosed && whole.isClosed, 1000);
    assert.ok(closed, `open after ${Date.now() - started} ms: fragmented ${!fragmented.isClosed}, whole ${!whole.isClosed}`);
    assert.deepEqual(codes, [1009, 1009], 'closed as messages too big');
    // Once logged in, messages up to the frame limit: 200 KB of pipelined *ping in one message.
    const backend = await RawClient.tcp(server.serverEndpoint);
    const user = await RawClient.loggedIn(server.clientEndpoint, backend, 5151n);
    const pings = Array.from({ length: 8000 }, (_, i) => encodeQuest('*ping', new Uint8Array([0x80]), Flag.MSGPACK, false, 1000 + i));
    const answered = user.peer.expectAnswer(1000 + 7999, '*ping', 5000);
    user.write(Buffer.concat(pings));
    await answered;
    for (const c of [backend, user]) c.close();
  });

  // ws answers every ping with a pong, written past the slow-consumer bound (our writes only were
  // checked): a client that sent pings and never read had the server queue pongs without end,
  // +190 MB in 4 s over loopback, until the idle timeout.
  it('a WebSocket client that floods pings and never reads is closed as a slow consumer', { timeout: 20_000 }, async () => {
    // A server of its own: the 1.5 s idle timeout of the others would close it first.
    const quiet = await startTestServer();
    try {
      const c = await RawClient.websocket(quiet.clientEndpoint);
      const socket = (c.ws as unknown as { _socket: Socket })._socket;
      socket.pause();
      const ping = Buffer.alloc(125);
      let sent = 0;
      const started = Date.now();
      while (!c.isClosed && Date.now() - started < 10_000) {
        if (socket.writableLength > 1_000_000) await new Promise((r) => setTimeout(r, 1));
        else for (let i = 0; i < 1000; i++, sent += 131) c.ws.ping(ping);
        await new Promise((r) => setImmediate(r));
      }
      const closed = c.isClosed;
      c.close();
      assert.ok(closed, `open after ${(sent / 1e6).toFixed(0)} MB of pings`);
      const text = await quiet.services.metrics.registry.metrics();
      assert.match(text, /rtm_disconnects_total\{gate="client",reason="slow consumer"\} 1/);
    } finally {
      await quiet.close();
    }
  });

  // Before a login every quest but auth is refused, but each refusal cost ~5 µs (an error, an
  // answer), and node reads up to 2 MB from one socket per event-loop turn: four connections
  // pipelining refused quests stalled the loop 0.6 s at a time, a logged-in user's *ping took 1.1 s.
  it('a client-gate connection that sends many quests before a login is closed', async () => {
    const s = tracked(server.clientPort);
    const quests = Array.from({ length: 1000 }, (_, i) =>
      encodeQuest(i % 2 ? 'which' : 'foo', new Uint8Array([0x80]), Flag.MSGPACK, false, i + 1),
    );
    s.socket.write(Buffer.concat(quests));
    assert.ok(await until(() => s.closed(), 800), 'closed at once, not by the login timeout');
    const answers = new FrameDecoder().push(Buffer.from(s.received(), 'latin1')).length;
    assert.ok(answers <= 100, `${answers} quests answered`);
    // What a client sends before its login (pings, auth again after a refusal) is served: *ping
    // is not counted (answered at once; round-trip benchmarks pipeline it without a login).
    const c = await RawClient.tcp(server.clientEndpoint);
    await Promise.all(Array.from({ length: 300 }, () => c.quest('*ping')));
    assert.deepEqual(await c.quest('auth', { pid: TEST_PID, uid: 1n, token: 'wrong' }), { ok: false });
    c.close();
  });

  // Before a signature is checked, the server gate decoded whatever payload came: 7 MB of empty
  // msgpack maps (one JS object per byte) took 3.7 s of event loop and 450 MB of heap, a map of a
  // million keys 2.2 s, 4 million JSON zeros 1.9 s.
  for (const [name, flag, payload] of [
    ['msgpack payload of 7 million empty maps', Flag.MSGPACK, emptyMaps(7_000_000)],
    ['JSON payload of a million empty maps', Flag.JSON, Buffer.from(`{"x":[${'{},'.repeat(1_000_000)}{}]}`)],
    [
      'msgpack map of a million keys',
      Flag.MSGPACK,
      encodePayload(Flag.MSGPACK, Object.fromEntries(Array.from({ length: 1e6 }, (_, i) => [i.toString(36), 0]))),
    ],
    ['JSON payload of 4 million zeros', Flag.JSON, Buffer.from(`{"x":[${'0,'.repeat(4_000_000)}0]}`)],
  ] as const) {
    it(`a ${name} is refused without being decoded`, async () => {
      const lag = monitorEventLoopDelay({ resolution: 10 });
      lag.enable();
      const c = await RawClient.tcp(server.serverEndpoint);
      const answer = c.peer.expectAnswer(1, 'sendmsg', 20_000).then(
        () => 0,
        (err: { code?: number }) => err.code ?? -1,
      );
      c.write(encodeQuest('sendmsg', payload, flag, false, 1));
      const code = await answer;
      lag.disable();
      c.close();
      const worst = lag.max / 1e6;
      assert.equal(code, flag === Flag.MSGPACK ? 20006 : 10004, 'refused as a payload that cannot be decoded');
      assert.ok(worst < 1000, `the event loop stalled ${worst.toFixed(0)} ms`);
    });
  }
});

/** A msgpack payload `{x: [{}, {}, …]}` of `n` empty maps: one byte each. */
function emptyMaps(n: number): Uint8Array {
  const payload = new Uint8Array(8 + n).fill(0x80);
  payload.set([0x81, 0xa1, 0x78, 0xdd]);
  new DataView(payload.buffer).setUint32(4, n);
  return payload;
}
