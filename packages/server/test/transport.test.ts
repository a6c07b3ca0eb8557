import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { decodePayload, encodeAnswer, encodePayload, encodeQuest, Flag, FrameDecoder, type Frame, type Payload } from '@rtm/fpnn';
import {
  RawClient,
  recordingSocket,
  signFields,
  startTestServer,
  TEST_PID,
  TEST_SECRET,
  uniqueSalt,
  until,
  type TestServer,
} from '@rtm/testkit';
import WebSocket from 'ws';
import { isInternalPeer } from '../src/gate/internal-address.js';
import { createLogger } from '../src/observability/logger.js';

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

/** An open WebSocket that records what it receives and whether it was closed. */
async function openWebSocket(
  endpoint: string,
): Promise<{ ws: WebSocket; got: Buffer[]; closed: () => boolean; closeCode: () => number | undefined }> {
  const ws = new WebSocket(`ws://${endpoint}/service/websocket`);
  ws.binaryType = 'nodebuffer';
  ws.on('error', () => undefined);
  const got: Buffer[] = [];
  let code: number | undefined;
  let isClosed = false;
  ws.on('message', (d: Buffer) => got.push(d));
  ws.once('close', (c) => {
    isClosed = true;
    code = c;
  });
  await new Promise((r) => ws.once('open', r));
  return { ws, got, closed: () => isClosed, closeCode: () => code };
}

/** A frame header with its seq (16 bytes; method and payload do not follow). */
function header(version: number, flag: number, mtype: number, ss: number, psize: number, seq = 1): Buffer {
  const b = Buffer.alloc(16);
  b.write('FPNN', 0, 'latin1');
  b[4] = version;
  b[5] = flag;
  b[6] = mtype;
  b[7] = ss;
  b.writeUInt32LE(psize, 8);
  b.writeUInt32LE(seq, 12);
  return b;
}

/** A twoway JSON quest frame from raw JSON text (so the test controls the exact number spelling). */
function jsonQuest(method: string, text: string, seq: number): Buffer {
  const body = Buffer.from(text, 'utf8');
  return Buffer.concat([header(1, Flag.JSON, 1, Buffer.byteLength(method), body.length, seq), Buffer.from(method), body]);
}

function answerOf(frames: Frame[], seq: number): { ok: boolean; payload: Payload } | undefined {
  const f = frames.find((x) => x.kind === 'answer' && x.seq === seq);
  if (!f || f.kind !== 'answer') return undefined;
  return { ok: f.ok, payload: decodePayload(f.flag, f.payload) };
}

/** The answer to one raw JSON quest on the server gate. */
async function rawJsonQuest(port: number, method: string, text: string, seq: number): Promise<{ ok: boolean; payload: Payload }> {
  const s = await recordingSocket(port);
  s.socket.write(jsonQuest(method, text, seq));
  await until(() => answerOf(s.frames(), seq) !== undefined, 3000);
  const a = answerOf(s.frames(), seq);
  s.socket.destroy();
  assert.ok(a, `no answer to ${method}`);
  return a;
}

/** A gettoken quest as JSON text; `uid` and `extra` are spliced in as written. */
function gettokenJson(uid: string, extra = ''): string {
  const salt = uniqueSalt();
  const f = signFields('gettoken', TEST_PID, TEST_SECRET, salt);
  return `{"pid":${TEST_PID},"sign":"${String(f.sign)}","salt":${salt},"ts":${String(f.ts)},"uid":${uid}${extra}}`;
}

const show = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? String(x) : x));

describe('transport: one port, three protocols, robust against bad input', () => {
  let server: TestServer;
  const logLines: string[] = [];
  before(async () => {
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logLines.push(chunk.toString());
        cb();
      },
    });
    server = await startTestServer(
      {
        maxFrameBytes: 64 * 1024,
        pingIntervalMs: 200,
        idleTimeoutMs: 1500,
        maxOutboundBytes: 64 * 1024,
        pushTimeoutMs: 500,
      },
      { logger: createLogger('warn', sink) },
    );
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

  // spec/fpnn.md §2: a BigInt-capable JSON parser, and integral floats accepted where an integer is
  // expected. Python's json.dumps(float) writes `1795315914246001.0`; a literal of 16+ characters
  // with a fraction was refused whole (20006).
  it('JSON number literals: an id spelled "….0" is that integer, a long fraction elsewhere is no error', async () => {
    const spelled = await rawJsonQuest(server.serverPort, 'gettoken', gettokenJson('1795315914246001.0'), 3);
    assert.ok(spelled.ok, `refused: ${show(spelled.payload)}`);
    assert.equal(typeof spelled.payload.token, 'string');
    const fraction = await rawJsonQuest(server.serverPort, 'gettoken', gettokenJson('4242', ',"x":0.30000000000000004'), 4);
    assert.ok(fraction.ok, `refused: ${show(fraction.payload)}`);
    // Where an integer is expected, a fraction is still 10010.
    const notInteger = await rawJsonQuest(server.serverPort, 'gettoken', gettokenJson('1795315914246001.5'), 5);
    assert.equal(notInteger.payload.code, 10010);
  });

  it('JSON integers above 2^53 survive: gettoken over JSON, then auth over msgpack with the same uid', async () => {
    const uid = 81985529216486895n;
    const a = await rawJsonQuest(server.serverPort, 'gettoken', gettokenJson(String(uid)), 9);
    assert.ok(a.ok, show(a.payload));
    const c = await RawClient.tcp(server.clientEndpoint);
    assert.deepEqual(await c.quest('auth', { pid: TEST_PID, uid, token: a.payload.token as string }), { ok: true });
    c.close();
  });

  // errors-and-limits.md §1: 10004 PROTO_JSON_CONVERT. The HTTP bridge answered 10004 for a bad JSON
  // body, a JSON FPNN frame with the same payload 20006.
  it('a JSON frame whose payload is not valid JSON is answered 10004, as the HTTP bridge answers the same body', async () => {
    const res = await fetch(`http://${server.serverEndpoint}/service/gettoken`, { method: 'POST', body: '{bad' });
    assert.equal(res.status, 500);
    assert.equal(((await res.json()) as { code: number }).code, 10004);
    const a = await rawJsonQuest(server.serverPort, 'gettoken', '{bad', 5);
    assert.equal(a.ok, false);
    assert.equal(a.payload.code, 10004);
  });

  // spec/fpnn.md §7: error answers carry {code, ex}. A body over the limit destroyed the socket
  // before the answer could be written. The limit is the frame limit (64 KiB here).
  it('HTTP bridge: a body over the frame limit is answered 413 {code, ex}, declared or chunked, then the connection closes', async () => {
    const body = JSON.stringify({ pad: 'x'.repeat(2 * 1024 * 1024) });
    const chunked = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 8; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(16 * 1024)));
        controller.close();
      },
    });
    for (const init of [{ body }, { body: chunked, duplex: 'half' }] as RequestInit[]) {
      let res: Response;
      try {
        res = await fetch(`http://${server.serverEndpoint}/service/*ping`, { method: 'POST', ...init });
      } catch (err) {
        assert.fail(`no HTTP answer: ${(err as Error).message} / ${String((err as { cause?: { code?: string } }).cause?.code)}`);
      }
      assert.equal(res.status, 413);
      assert.equal(res.headers.get('connection'), 'close');
      const answer = (await res.json()) as { code: number; ex: string };
      assert.equal(answer.code, 20010);
      assert.match(answer.ex, /exceeds 65536 bytes/);
    }
    // Under the limit, the same bridge serves.
    const ok = await fetch(`http://${server.serverEndpoint}/service/*ping`, {
      method: 'POST',
      body: JSON.stringify({ pad: 'x'.repeat(60_000) }),
    });
    assert.equal(ok.status, 200);
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

  // spec/fpnn.md §5: "on receive treat the message payloads as a byte stream (handles both).
  // Accept text-opcode messages the same way."
  it('reads a WebSocket text message as FPNN bytes like a binary one: a frame is served, other bytes close', async () => {
    const ok = await openWebSocket(server.clientEndpoint);
    // All bytes < 0x80: valid UTF-8, so a legal text message.
    ok.ws.send(jsonQuest('*ping', '{}', 7), { binary: false });
    await until(() => ok.got.length > 0 || ok.closed(), 3000);
    ok.ws.terminate();
    assert.equal(ok.closeCode(), undefined, `closed with ${ok.closeCode()}`);
    const a = answerOf(new FrameDecoder().push(Buffer.concat(ok.got)), 7);
    assert.ok(a?.ok && a.payload.ts !== undefined);
    // Bytes that are not FPNN close the connection, whichever opcode carries them.
    for (const binary of [false, true]) {
      const bad = await openWebSocket(server.clientEndpoint);
      bad.ws.send(Buffer.from('not fpnn at all!'), { binary });
      assert.ok(await until(() => bad.closed(), 3000), `${binary ? 'binary' : 'text'} garbage not closed`);
    }
    await stillServing();
  });

  it('WebSocket: a fragmented message, two frames in one message, one frame split over two messages', async () => {
    const { ws, got } = await openWebSocket(server.clientEndpoint);
    const q = (seq: number) => Buffer.from(encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, seq));
    const a = q(1);
    ws.send(a.subarray(0, 5), { fin: false });
    ws.send(a.subarray(5), { fin: true });
    ws.send(Buffer.concat([q(2), q(3)]));
    const b = q(4);
    ws.send(b.subarray(0, 7));
    ws.send(b.subarray(7));
    const seqs = () => new FrameDecoder().push(Buffer.concat(got)).map((f) => f.seq);
    await until(() => seqs().length >= 4, 3000);
    ws.terminate();
    assert.deepEqual(seqs().sort(), [1, 2, 3, 4]);
  });

  it('oneway quests (unknown, *ping, bad payload) are never answered', async () => {
    const s = await recordingSocket(server.serverPort);
    s.socket.write(encodeQuest('nosuch', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, true));
    s.socket.write(encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, true));
    s.socket.write(encodeQuest('gettoken', new Uint8Array([0xc1]), Flag.MSGPACK, true));
    s.socket.write(encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 42));
    await until(() => s.frames().length > 0, 2000);
    await new Promise((r) => setTimeout(r, 200));
    const answers = s.frames().filter((f) => f.kind === 'answer');
    s.socket.destroy();
    assert.deepEqual(
      answers.map((f) => f.seq),
      [42],
    );
  });

  it('unknown method: client gate 200022 before auth, 20004 after; server gate 20004; flags echoed', async () => {
    const backend = await RawClient.tcp(server.serverEndpoint);
    await assert.rejects(backend.quest('nosuch', {}), { code: 20004 });
    const { token } = await backend.signed('gettoken', { uid: 5151n }, TEST_PID, TEST_SECRET);
    const c = await RawClient.tcp(server.clientEndpoint);
    await assert.rejects(c.quest('nosuch', {}, Flag.JSON), { code: 200022 });
    assert.deepEqual(await c.quest('auth', { pid: TEST_PID, uid: 5151n, token }), { ok: true });
    await assert.rejects(c.quest('nosuch', {}), { code: 20004 });
    c.close();
    backend.close();
  });

  // spec/fpnn.md §8: *status and *infos are internal-network only (others 20013); *tune is not implemented.
  it('*status answers {status: true} and *infos what the node is, to loopback peers on both gates (before a login too) and over HTTP', async () => {
    for (const [gate, endpoint] of [
      ['server', server.serverEndpoint],
      ['client', server.clientEndpoint],
    ] as const) {
      const c = await RawClient.tcp(endpoint);
      assert.deepEqual(await c.quest('*status', {}), { status: true });
      const infos = await c.quest('*infos', {});
      assert.equal(infos['gate'], gate);
      assert.equal(infos['server'], 'rtm-server');
      assert.match(String(infos['version']), /^\d+\.\d+\.\d+/);
      assert.equal(infos['store'], 'sqlite');
      assert.equal(infos['bus'], 'local');
      assert.equal(infos['busConnected'], true);
      assert.equal(infos['endpoint'], server.clientEndpoint);
      assert.equal(infos['inFlight'], 1, 'the *infos quest itself');
      assert.ok((infos['connections'] as { [g: string]: number })[gate]! >= 1, JSON.stringify(infos));
      await assert.rejects(c.quest('*tune', { key: 'k', value: 'v' }), { code: gate === 'server' ? 20004 : 200022 });
      c.close();
    }
    const res = await fetch(`http://${server.serverEndpoint}/service/*status`, { method: 'POST', body: '{}' });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: true });
    const infos = await fetch(`http://${server.serverEndpoint}/service/*infos`, { method: 'POST', body: '{}' });
    assert.equal(infos.status, 200);
    assert.equal(((await infos.json()) as { gate: string }).gate, 'server');
    // Bound to an IPv6 address, the node names its client gate [addr]:port (pushevent, kickout's ce).
    const v6 = await startTestServer({ host: '::1' });
    try {
      const c = await RawClient.tcp(`[::1]:${v6.serverPort}`);
      assert.equal((await c.quest('*infos', {}))['endpoint'], `[::1]:${v6.clientPort}`);
      c.close();
    } finally {
      await v6.close();
    }
    // Who counts as internal: loopback and private networks, IPv4-mapped too; nothing else.
    for (const remote of ['127.0.0.1:5', '10.1.2.3:5', '172.20.0.1:5', '192.168.1.1:5', '::1:5', '::ffff:10.0.0.1:5', 'fd00::1:5']) {
      assert.equal(isInternalPeer(remote), true, remote);
    }
    for (const remote of ['8.8.8.8:5', '172.32.0.1:5', '::ffff:8.8.8.8:5', '2001:db8::1:5', 'undefined:undefined']) {
      assert.equal(isInternalPeer(remote), false, remote);
    }
  });

  it('pings a listening backend and awaits the answer; closes idle connections', async () => {
    const backend = await RawClient.tcp(server.serverEndpoint);
    await backend.signed('addlisten', { events: ['login'] }, TEST_PID, TEST_SECRET);
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

  it('pings come every RTM_PING_INTERVAL_MS, not at the idle check nearest to it', async () => {
    // Idle checks every 3200 ÷ 4 = 800 ms at the most: pings came every 800 ms instead of 1000.
    const s = await startTestServer({ pingIntervalMs: 1000, idleTimeoutMs: 3200 });
    const backend = await RawClient.tcp(s.serverEndpoint);
    try {
      await backend.signed('addlisten', { events: ['login'] }, TEST_PID, TEST_SECRET); // pinged once it listens
      const at: number[] = [];
      const seen = backend.pushes.length;
      while (at.length < 5) {
        await backend.waitForPushes('ping', seen + at.length + 1, 5000);
        at.push(Date.now());
      }
      // A late timer only lengthens an interval; the first ping may have come late, hence 0.9.
      const mean = (at[4]! - at[0]!) / 4;
      assert.ok(mean >= 900 && mean < 1600, `a ping every ${mean} ms`);
    } finally {
      backend.close();
      await s.close();
    }
  });

  it('server gate: only connections that listen are pinged; one that does not is closed once idle', async () => {
    const s = await startTestServer({ pingIntervalMs: 200, idleTimeoutMs: 1200 });
    const quiet = await RawClient.tcp(s.serverEndpoint);
    const listening = await RawClient.tcp(s.serverEndpoint);
    try {
      // As the PHP SDK: a call, a pause of several ping intervals, a call whose answer is the next
      // frame. A ping in between was read as that answer (a seq mismatch, then garbage for good).
      assert.ok(typeof (await quest(quiet, 'gettoken', { uid: 1n })).token === 'string');
      await listening.signed('setlisten', { ev: true }, TEST_PID, TEST_SECRET);
      await listening.waitForPushes('ping', 3, 3000);
      assert.ok(typeof (await quest(quiet, 'gettoken', { uid: 2n })).token === 'string');
      assert.deepEqual(quiet.pushes, [], 'no quest from the server to a connection that does not listen');
      // Nothing either way for the idle timeout: closed (its SDK connects again at its next call).
      const before = Date.now();
      await quiet.closed;
      assert.ok(Date.now() - before >= 800, `closed ${Date.now() - before} ms after the last call`);
      assert.ok(listening.pushes.filter((p) => p.method === 'ping').length >= 5, 'the listening one is pinged all along');
    } finally {
      quiet.close();
      listening.close();
      await s.close();
    }
    function quest(c: RawClient, method: string, payload: Payload) {
      return c.signed(method, payload, TEST_PID, TEST_SECRET);
    }
  });

  // spec/fpnn.md §4: idle = no complete frame either way. The server gate counts its own pings as
  // activity (a backend that only listens may never answer them), which kept a peer that never
  // completes a frame open for ever, its partial frame buffered (slowloris).
  it(
    'server gate, TCP: a peer that never completes a frame is closed after the idle timeout, though pinged',
    { timeout: 15_000 },
    async () => {
      const s = await recordingSocket(server.serverPort);
      // Header of a twoway quest declaring a 60 KB payload, then only a few bytes of it.
      s.socket.write(Buffer.concat([header(1, Flag.MSGPACK, 1, 4, 60_000), Buffer.from('sendmsg!', 'latin1')]));
      const closed = await until(() => s.closed(), 6_000); // 4x the 1.5 s idle timeout
      s.socket.destroy();
      assert.ok(closed, 'half-sent frame held open past 4x the idle timeout (server pings keep it "active")');
    },
  );

  it(
    'server gate, WebSocket: an unfinished FPNN frame, an unfinished WebSocket frame, or nothing at all is closed after the idle timeout',
    { timeout: 15_000 },
    async () => {
      // Half an FPNN frame in a whole message.
      const fpnn = await openWebSocket(server.serverEndpoint);
      fpnn.ws.send(Buffer.concat([header(1, Flag.MSGPACK, 1, 4, 60_000), Buffer.from('abcd')]));
      // A whole FPNN frame first, then a WebSocket frame header declaring 60,000 bytes and a few of them.
      const wsFrame = await openWebSocket(server.serverEndpoint);
      wsFrame.ws.send(encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 1));
      await until(() => wsFrame.got.length > 0, 2000);
      const head = Buffer.from([0x82, 0x80 | 126, 60_000 >> 8, 60_000 & 0xff, 1, 2, 3, 4, 9, 9, 9]);
      (wsFrame.ws as unknown as { _socket: Socket })._socket.write(head);
      // Opened, then silent.
      const silent = await openWebSocket(server.serverEndpoint);
      const closed = await until(() => fpnn.closed() && wsFrame.closed() && silent.closed(), 6_000);
      for (const c of [fpnn, wsFrame, silent]) c.ws.terminate();
      assert.ok(
        closed,
        `held open past 4x the idle timeout: fpnn ${fpnn.closed()}, ws frame ${wsFrame.closed()}, silent ${silent.closed()}`,
      );
    },
  );

  it(
    'server gate: a backend that sent a frame, then never answers the pings, is kept (the Python SDK without a push processor)',
    { timeout: 15_000 },
    async () => {
      const s = await recordingSocket(server.serverPort);
      const listen = { ...signFields('addlisten', TEST_PID, TEST_SECRET, uniqueSalt()), events: ['login'] };
      s.socket.write(encodeQuest('addlisten', encodePayload(Flag.MSGPACK, listen), Flag.MSGPACK, false, 1));
      await new Promise((r) => setTimeout(r, 3500)); // over twice the 1.5 s idle timeout
      const pings = s.frames().filter((f) => f.kind === 'quest' && f.method === 'ping');
      const open = !s.closed();
      s.socket.destroy();
      assert.ok(open, 'a listening backend was closed as idle');
      assert.ok(pings.length >= 3, `${pings.length} pings`);
    },
  );

  it('a stall of the server process: a peer whose frame came during it is not closed as idle', { timeout: 15_000 }, async () => {
    // Node runs overdue timers before it reads sockets: the keepalive tick that ends a stall
    // (a long GC, a suspended VM) must not judge idleness before the frames that came meanwhile.
    const backend = await RawClient.tcp(server.serverEndpoint);
    const uid = 7_000_001n;
    const { token } = await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET);
    backend.close();
    // A raw socket: it never answers the server's pings, so only its own frames keep it active.
    const s = await recordingSocket(server.clientPort);
    s.socket.write(encodeQuest('auth', encodePayload(Flag.MSGPACK, { pid: TEST_PID, uid, token }), Flag.MSGPACK, false, 1));
    await until(() => s.frames().some((f) => f.kind === 'answer'), 2000);
    await new Promise((r) => setTimeout(r, 900)); // silent for 0.9 s of the 1.5 s idle timeout
    s.socket.write(encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, true));
    const end = Date.now() + 1000; // the stall: the server reads that frame only after it
    while (Date.now() < end);
    await new Promise((r) => setTimeout(r, 300));
    const open = !s.closed();
    s.socket.destroy();
    assert.ok(open, 'closed as idle by the tick that ended the stall');
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

  it('a TCP client that never reads is closed, and logged, once its outbound buffer passes the bound', { timeout: 30_000 }, async () => {
    const s = await recordingSocket(server.clientPort);
    s.socket.pause();
    const ping = encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, 1);
    const batch = Buffer.concat(Array.from({ length: 2000 }, () => ping));
    // This connection's line: the WebSocket one above logged too.
    const logged = () => logLines.some((l) => l.includes('slow consumer') && l.includes(`:${s.socket.localPort}"`));
    for (let i = 0; i < 400 && !s.closed() && !logged(); i++) {
      if (!s.socket.write(batch)) await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(await until(logged, 5000), 'slow consumer logged');
    s.socket.destroy();
  });

  it('*key on a server without an encryption key closes without an answer', async () => {
    const s = await recordingSocket(server.serverPort);
    s.socket.write(encodeQuest('*key', encodePayload(Flag.MSGPACK, { publicKey: new Uint8Array(64), bits: 192 }), Flag.MSGPACK, false, 1));
    assert.ok(await until(() => s.closed(), 2000));
    assert.equal(s.received().length, 0);
  });
});
