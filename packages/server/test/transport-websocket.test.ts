import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { WebSocketTransport } from '../src/transport/websocket.js';

// The WebSocket transport writes the frames of one event-loop turn as one buffer, past ws's
// sender. Each must still arrive as its own binary message, whole, in order, with every length
// form of the header (7, 16 and 64-bit), push templates with their own seq, and nothing after the
// close frame.

/** A payload that looks like an FPNN frame: the seq field (bytes 12–15) is what templates patch. */
function payload(size: number, fill: number): Buffer {
  const b = Buffer.alloc(size, fill);
  b.writeUInt32LE(0, 12);
  return b;
}

describe('WebSocketTransport: a turn of frames in one write', () => {
  let wss: WebSocketServer;
  let port: number;
  const accepted: WebSocket[] = [];

  before(async () => {
    wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    wss.on('connection', (ws) => accepted.push(ws));
    await new Promise((r) => wss.once('listening', r));
    port = (wss.address() as AddressInfo).port;
  });
  after(() => new Promise((r) => wss.close(r)));

  /** A connected pair: our transport on the server side, the messages the client gets, and its close. */
  async function pair(): Promise<{ transport: WebSocketTransport; server: WebSocket; messages: Buffer[]; closed: Promise<number> }> {
    const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
    const messages: Buffer[] = [];
    client.on('message', (data: Buffer, isBinary) => {
      assert.equal(isBinary, true);
      messages.push(Buffer.from(data));
    });
    const closed = new Promise<number>((r) => client.once('close', (code) => r(code)));
    await new Promise((r) => client.once('open', r));
    while (accepted.length === 0) await new Promise((r) => setTimeout(r, 5));
    const server = accepted.shift()!;
    const transport = new WebSocketTransport(server, 'test');
    transport.start({ onTransportData: () => undefined, onTransportClose: () => undefined });
    return { transport, server, messages, closed };
  }

  it('delivers every frame of a turn whole and in order, templates with their seq', async () => {
    const { transport, messages, closed } = await pair();
    const small = payload(20, 1);
    const medium = payload(300, 2); // 16-bit length
    const large = payload(70_000, 3); // 64-bit length
    const template = payload(40, 4);
    transport.write(small);
    assert.equal(transport.writeWithSeq(template, 7), 2 + 40, 'bytes on the wire');
    transport.write(large);
    assert.equal(transport.writeWithSeq(template, 0xfffffffe), 2 + 40);
    transport.write(medium);
    assert.ok(transport.bufferedBytes >= 20 + 40 + 70_000 + 40 + 300, 'queued bytes count toward the outbound bound');
    await new Promise((r) => setImmediate(r));
    const expected = [small, Buffer.from(template), large, Buffer.from(template), medium];
    expected[1]!.writeUInt32LE(7, 12);
    expected[3]!.writeUInt32LE(0xfffffffe, 12);
    while (messages.length < expected.length) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(messages, expected);
    assert.equal(template.readUInt32LE(12), 0, 'the shared template is never changed');
    transport.close();
    assert.equal(await closed, 1000);
  });

  it('writes what the turn queued before the close frame', async () => {
    const { transport, messages, closed } = await pair();
    transport.write(payload(16, 5));
    transport.writeWithSeq(payload(16, 6), 9);
    transport.close();
    transport.write(payload(16, 7)); // after close: dropped
    assert.equal(await closed, 1000);
    assert.deepEqual(
      messages.map((m) => m[0]),
      [5, 6],
    );
    assert.equal(messages[1]!.readUInt32LE(12), 9);
  });

  it('flushes every connection of a turn, and each again in later turns', async () => {
    const a = await pair();
    const b = await pair();
    const bSocket = (b.server as unknown as { _socket: { write: (...args: unknown[]) => boolean } })._socket;
    const write = bSocket.write.bind(bSocket);
    let bWrites = 0;
    bSocket.write = (...args: unknown[]) => {
      bWrites++;
      return write(...args);
    };
    a.transport.write(payload(16, 1)); // one frame each: no arrays on this path
    b.transport.writeWithSeq(payload(16, 2), 5);
    await new Promise((r) => setImmediate(r));
    a.transport.write(payload(16, 3));
    a.transport.write(payload(200, 4));
    b.transport.write(payload(16, 6));
    await Promise.resolve(); // a frame queued from a promise callback still goes out this turn
    b.transport.writeWithSeq(payload(16, 7), 8);
    while (a.messages.length < 3 || b.messages.length < 3) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(
      a.messages.map((m) => m[0]),
      [1, 3, 4],
    );
    assert.deepEqual(
      b.messages.map((m) => [m[0], m.readUInt32LE(12)]),
      [
        [2, 5],
        [6, 0],
        [7, 8],
      ],
    );
    assert.equal(bWrites, 2, 'one socket write per turn, the promise callback’s frame included');
    a.transport.close();
    b.transport.close();
    await Promise.all([a.closed, b.closed]);
  });

  it('drops a connection whose socket write throws; the others of the turn still get their frames', { timeout: 10_000 }, async () => {
    const broken = await pair();
    const fine = await pair();
    const socket = (broken.server as unknown as { _socket: { write: () => never } })._socket;
    socket.write = () => {
      throw new Error('boom');
    };
    broken.transport.write(payload(16, 1));
    fine.transport.write(payload(16, 2));
    assert.equal(await broken.closed, 1006, 'terminated, no close frame');
    while (fine.messages.length < 1) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(
      fine.messages.map((m) => m[0]),
      [2],
    );
    fine.transport.write(payload(16, 3)); // the next turn is flushed too
    while (fine.messages.length < 2) await new Promise((r) => setTimeout(r, 5));
    fine.transport.close();
    assert.equal(await fine.closed, 1000);
  });
});
