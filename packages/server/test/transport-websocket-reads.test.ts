import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import WebSocket, { WebSocketServer } from 'ws';
import { webSocketClientFrame as clientFrame } from '@rtm/testkit';
import { WebSocketTransport } from '../src/transport/websocket.js';

// The transport reads whole masked binary frames itself and gives the socket's reads back to ws at
// the first frame of any other kind (see `WebSocketTransport.read`). Every message must still come
// up whole and in order, across any split of the stream, and ws must see everything else from that
// frame on: pings, text, fragments, unmasked or oversized frames, the close handshake.

/** A transport over a stand-in for ws and its socket: what comes up, and what is handed to ws. */
function standIn(
  maxPayload: number,
  onUp: (bytes: Buffer, transport: WebSocketTransport) => void = () => undefined,
): { socket: EventEmitter; up: Buffer[]; toWs: Buffer[] } {
  const socket = new EventEmitter();
  const toWs: Buffer[] = [];
  // The name is how the transport finds ws's own listener.
  function socketOnData(chunk: Buffer): void {
    toWs.push(Buffer.from(chunk));
  }
  socket.on('data', socketOnData);
  const ws = {
    _socket: socket,
    _receiver: { _bufferedBytes: 0, _maxPayload: maxPayload },
    on: () => ws,
    once: () => ws,
    close: () => undefined,
    terminate: () => undefined,
  };
  const up: Buffer[] = [];
  const transport = new WebSocketTransport(ws as unknown as WebSocket, 'stand-in');
  transport.start({
    onTransportData: (bytes) => {
      up.push(Buffer.from(bytes));
      onUp(Buffer.from(bytes), transport);
    },
    onTransportClose: () => undefined,
  });
  return { socket, up, toWs };
}

describe('WebSocketTransport reads: whole binary frames itself, the rest through ws', () => {
  const MAX = 1000;
  const usual = fc.record({
    kind: fc.constant('binary' as const),
    size: fc.oneof(fc.nat(200), fc.integer({ min: 126, max: MAX })),
    key: fc.nat(),
  });
  const other = fc.record({
    kind: fc.constantFrom('ping' as const, 'text' as const, 'unmasked' as const, 'fragment' as const, 'oversized' as const),
    size: fc.nat(100),
    key: fc.nat(),
  });
  const encode = (f: { kind: string; size: number; key: number }, i: number): { bytes: Buffer; payload: Buffer } => {
    const payload = Buffer.alloc(f.kind === 'oversized' ? MAX + 1 + f.size : f.size, i & 0xff);
    if (payload.length >= 4) payload.writeUInt32LE(f.key >>> 0, 0);
    const bytes =
      f.kind === 'binary' || f.kind === 'oversized'
        ? clientFrame(2, payload, { key: f.key })
        : f.kind === 'ping'
          ? clientFrame(9, payload.subarray(0, 100), { key: f.key })
          : f.kind === 'text'
            ? clientFrame(1, payload, { key: f.key })
            : f.kind === 'unmasked'
              ? clientFrame(2, payload, { masked: false })
              : clientFrame(2, payload, { fin: false, key: f.key });
    return { bytes, payload };
  };

  it('any split of the stream: the binary frames before the first other frame come up, ws gets the rest from it', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof({ weight: 4, arbitrary: usual }, { weight: 1, arbitrary: other }), { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (frames, cuts) => {
          const encoded = frames.map(encode);
          const stream = Buffer.concat(encoded.map((e) => e.bytes));
          const firstOther = frames.findIndex((f) => f.kind !== 'binary');
          const mine = firstOther < 0 ? encoded : encoded.slice(0, firstOther);
          const handedAt = mine.reduce((n, e) => n + e.bytes.length, 0);

          const points = [...new Set(cuts.map((c) => (stream.length === 0 ? 0 : c % stream.length)))].sort((a, b) => a - b);
          const { socket, up, toWs } = standIn(MAX);
          let from = 0;
          for (const p of [...points, stream.length]) {
            if (p > from) socket.emit('data', Buffer.from(stream.subarray(from, p)));
            from = Math.max(from, p);
          }
          assert.deepEqual(
            up,
            mine.map((e) => e.payload),
          );
          assert.deepEqual(Buffer.concat(toWs), stream.subarray(handedAt));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('a message that closes the transport hands the rest of its read to ws, for the close handshake', () => {
    const frames = ['a', 'close now', 'c', 'd'].map((t) => clientFrame(2, Buffer.from(t)));
    const { socket, up, toWs } = standIn(MAX, (bytes, transport) => {
      if (bytes.toString() === 'close now') transport.close();
    });
    socket.emit('data', Buffer.concat(frames));
    socket.emit('data', Buffer.from('later'));
    assert.deepEqual(
      up.map((b) => b.toString()),
      ['a', 'close now'],
    );
    assert.deepEqual(Buffer.concat(toWs), Buffer.concat([frames[2]!, frames[3]!, Buffer.from('later')]));
  });

  describe('over a real connection', () => {
    let wss: WebSocketServer;
    let port: number;
    const accepted: WebSocket[] = [];

    before(async () => {
      wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 100_000 });
      wss.on('connection', (ws) => accepted.push(ws));
      await new Promise((r) => wss.once('listening', r));
      port = (wss.address() as AddressInfo).port;
    });
    const clients: WebSocket[] = [];
    after(() => {
      // Also after a failed assertion: nothing left open to keep the run alive.
      for (const c of [...clients, ...wss.clients]) c.terminate();
      return new Promise((r) => wss.close(r));
    });

    /** Whether ws's receiver reads the socket (true) or our transport does (false). */
    const wsReads = (server: WebSocket): boolean =>
      (server as unknown as { _socket: EventEmitter })._socket.listeners('data').some((l) => l.name === 'socketOnData');

    async function connect(): Promise<{
      client: WebSocket;
      server: WebSocket;
      up: Buffer[];
      closed: Promise<number>;
      ended: Promise<void>;
    }> {
      const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
      clients.push(client);
      await new Promise((r) => client.once('open', r));
      while (accepted.length === 0) await new Promise((r) => setTimeout(r, 5));
      const up: Buffer[] = [];
      let onEnd!: () => void;
      const ended = new Promise<void>((r) => (onEnd = r));
      const server = accepted.shift()!;
      new WebSocketTransport(server, 'test').start({ onTransportData: (bytes) => up.push(Buffer.from(bytes)), onTransportClose: onEnd });
      assert.equal(wsReads(server), false, 'the transport reads the socket');
      const closed = new Promise<number>((r) => client.once('close', (code) => r(code)));
      return { client, server, up, closed, ended };
    }

    /** Polls until `done`; gives up after 5 s, so that a failing run ends. */
    const until = async (done: () => boolean): Promise<void> => {
      const deadline = Date.now() + 5000;
      while (!done()) {
        if (Date.now() > deadline) throw new Error('timed out waiting');
        await new Promise((r) => setTimeout(r, 5));
      }
    };

    it('messages of every length form, then a ping answered by ws, then more messages through ws', { timeout: 10_000 }, async () => {
      const { client, server, up, closed, ended } = await connect();
      const sizes = [0, 10, 125, 126, 300, 65_535, 65_536, 70_000];
      const sent = sizes.map((n, i) => Buffer.alloc(n, i + 1));
      for (const m of sent) client.send(m);
      await until(() => up.length === sent.length);
      assert.equal(wsReads(server), false, 'binary messages keep the reads with the transport');
      const pong = new Promise<Buffer>((r) => client.once('pong', r));
      client.ping(Buffer.from('are you there'));
      assert.equal((await pong).toString(), 'are you there');
      assert.equal(wsReads(server), true, 'the ping gave the reads back to ws');
      client.send(Buffer.from('after the ping'));
      await until(() => up.length === sent.length + 1);
      assert.deepEqual(up, [...sent, Buffer.from('after the ping')]);
      client.close(1000);
      assert.equal(await closed, 1000);
      await ended;
    });

    it(
      'a text message comes up as its bytes, like a binary one (spec/fpnn.md §5); an oversized one is refused by ws (1009)',
      { timeout: 10_000 },
      async () => {
        const text = await connect();
        text.client.send(Buffer.from('binary first'));
        text.client.send('then text');
        text.client.send(Buffer.from('binary again'));
        await until(() => text.up.length === 3);
        assert.deepEqual(text.up, [Buffer.from('binary first'), Buffer.from('then text'), Buffer.from('binary again')]);
        assert.equal(wsReads(text.server), true, 'ws reads from the text message on');
        text.client.close(1000);
        assert.equal(await text.closed, 1000);

        const big = await connect();
        big.client.send(Buffer.alloc(100_001));
        assert.equal(await big.closed, 1009);
        assert.deepEqual(big.up, []);
      },
    );
  });
});
