import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { encodePayload, encodeQuest, Flag } from '@rtm/fpnn';
import { clientKeyExchange, derivePublicKeyFormats } from '@rtm/fpnn/crypto';
import {
  rawWebSocket,
  recordingSocket,
  startTestServer,
  until,
  webSocketClientFrame,
  type RecordingSocket,
  type TestServer,
} from '@rtm/testkit';

// Transport edges an audit found open: an encrypted package before a login held to the login
// limit, JSON frames in WebSocket text messages whatever their header bytes, no data frame after
// our close frame, pipelined HTTP that never reads, and an upgrade pipelined behind a request.

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const pingQuest = (seq: number): Buffer => Buffer.from(encodeQuest('*ping', encodePayload(Flag.MSGPACK, {}), Flag.MSGPACK, false, seq));

/** A JSON FPNN quest frame built by hand: its length and seq are binary in the header. */
function jsonQuest(method: string, text: string, seq: number): Buffer {
  const body = Buffer.from(text, 'utf8');
  const header = Buffer.alloc(16);
  header.write('FPNN', 0, 'latin1');
  header[4] = 1;
  header[5] = Flag.JSON;
  header[6] = 1; // twoway
  header[7] = Buffer.byteLength(method);
  header.writeUInt32LE(body.length, 8);
  header.writeUInt32LE(seq, 12);
  return Buffer.concat([header, Buffer.from(method), body]);
}

/** This process's server-side sockets on `port` (the test server runs in this process). */
function serverSockets(port: number): Socket[] {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter((h): h is Socket => h instanceof Socket && h.localPort === port);
}

describe('encrypted packages before a login', () => {
  const privateKey = randomBytes(32).toString('hex');
  let server: TestServer;
  const sockets: RecordingSocket[] = [];
  before(async () => {
    server = await startTestServer({ encryptionKey: privateKey });
  });
  after(async () => {
    for (const s of sockets) s.socket.destroy();
    await server.close();
  });

  it('a package over the pre-login frame limit is refused from its length, not buffered whole (package mode)', async () => {
    const kx = clientKeyExchange(derivePublicKeyFormats(privateKey).raw, { bits: 128, streamMode: false });
    const s = await recordingSocket(server.clientPort);
    sockets.push(s);
    s.socket.write(encodeQuest('*key', encodePayload(Flag.MSGPACK, kx.questPayload), Flag.MSGPACK, false, 1));
    assert.ok(await until(() => s.received().length > 0, 2000), '*key answered');
    const length = Buffer.alloc(4);
    length.writeUInt32LE(1 << 20); // 1 MiB: under RTM_MAX_FRAME_BYTES, over the limit before a login
    s.socket.write(Buffer.concat([length, Buffer.alloc(1024)]));
    assert.ok(await until(() => s.closed(), 2000), 'closed at the length, as a plain frame is at its header');
  });

  it('after a login, packages up to RTM_MAX_FRAME_BYTES pass', async () => {
    // The lift is tested by the encrypted sends of encryption.test.ts; here only that a big one goes.
    const kx = clientKeyExchange(derivePublicKeyFormats(privateKey).raw, { bits: 128, streamMode: false });
    const s = await recordingSocket(server.serverPort);
    sockets.push(s);
    s.socket.write(encodeQuest('*key', encodePayload(Flag.MSGPACK, kx.questPayload), Flag.MSGPACK, false, 1));
    assert.ok(await until(() => s.received().length > 0, 2000), '*key answered');
    const frame = encodeQuest('*ping', encodePayload(Flag.MSGPACK, { pad: 'x'.repeat(200_000) }), Flag.MSGPACK, false, 2);
    const encrypted = kx.ciphers.encrypt(frame);
    s.socket.write(encrypted);
    await sleep(300);
    assert.equal(s.closed(), false, 'a 200 KB package on the server gate (no login there) is read');
  });
});

describe('WebSocket and HTTP edges', () => {
  let server: TestServer;
  const sockets: Socket[] = [];
  before(async () => {
    server = await startTestServer({ idleTimeoutMs: 1500 });
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await server.close();
  });

  it('a JSON FPNN quest in a text message is served whatever bytes its length and seq have (they are not UTF-8)', async () => {
    for (const frame of [
      jsonQuest('*ping', '{}', 7),
      jsonQuest('*ping', '{}', 200),
      jsonQuest('*ping', `{"pad":"${'x'.repeat(120)}"}`, 8),
    ]) {
      const ws = await rawWebSocket(server.clientPort);
      sockets.push(ws.socket);
      ws.socket.write(webSocketClientFrame(1, frame)); // opcode 1: text
      await until(() => ws.frames().length > 0 || ws.closed(), 2000);
      assert.match(ws.frames().join(' '), /^binary\(/, `seq ${frame.readUInt32LE(12)}, payload ${frame.readUInt32LE(8)} bytes`);
      ws.socket.destroy();
    }
  });

  it('no data frame after our close frame: a quest and the peer close frame in one read', async () => {
    const ws = await rawWebSocket(server.clientPort);
    sockets.push(ws.socket);
    const code = Buffer.alloc(2);
    code.writeUInt16BE(1000);
    ws.socket.write(Buffer.concat([webSocketClientFrame(2, pingQuest(1)), webSocketClientFrame(8, code)]));
    assert.ok(await until(() => ws.closed(), 2000));
    await sleep(100);
    const frames = ws.frames();
    const closeAt = frames.findIndex((f) => f.startsWith('close'));
    assert.ok(closeAt >= 0, `a close frame in ${frames.join(', ')}`);
    assert.deepEqual(frames.slice(closeAt + 1), []);
  });

  it('a peer that pipelines HTTP requests and never reads is closed by the deadline, not held', { timeout: 30_000 }, async () => {
    const s = connect(server.serverPort, '127.0.0.1');
    sockets.push(s);
    s.on('error', () => undefined);
    await new Promise((r) => s.once('connect', r));
    s.pause(); // never reads: the answers fill the server's socket
    const batch = Buffer.concat(Array.from({ length: 10_000 }, () => Buffer.from('GET /service/x HTTP/1.1\r\nHost: a\r\n\r\n')));
    for (let i = 0; i < 20; i++) s.write(batch);
    // The idle timeout is 1.5 s; the answers stall at once.
    assert.ok(await until(() => serverSockets(server.serverPort).length === 0, 10_000), 'the server let go of the socket');
  });

  it('an upgrade pipelined behind a request still being answered is refused; after the answer, it is served', async () => {
    const key = randomBytes(16).toString('base64');
    const upgrade =
      `GET /service/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    const request = 'POST /service/gettoken HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}';
    const pipelined = await recordingSocket(server.serverPort);
    sockets.push(pipelined.socket);
    pipelined.socket.write(request + upgrade);
    assert.ok(await until(() => pipelined.closed(), 2000));
    assert.ok(!pipelined.received().includes('101 Switching Protocols'), 'no WebSocket with an HTTP answer inside it');

    const inTurn = await recordingSocket(server.clientPort);
    sockets.push(inTurn.socket);
    inTurn.socket.write('GET /service/x HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.ok(await until(() => inTurn.received().includes('\r\n\r\n'), 2000), 'the first request answered');
    inTurn.socket.write(upgrade);
    assert.ok(await until(() => inTurn.received().includes('101 Switching Protocols'), 2000));
    // A WebSocket in use outlives the HTTP deadline (1.5 s) that the first answer started.
    for (let seq = 1; seq <= 12; seq++) {
      inTurn.socket.write(webSocketClientFrame(2, pingQuest(seq)));
      await sleep(200);
    }
    assert.equal(inTurn.closed(), false);
  });
});
