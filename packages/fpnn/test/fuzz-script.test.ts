/**
 * scripts/fuzz.ts against a tiny FPNN echo server written here (node:net + FrameDecoder + FpnnPeer,
 * WebSocket through `ws` on the same port): the fuzzer runs bounded, reports reactions, and the
 * server keeps answering `*ping`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { FpnnPeer, FpnnProtocolError, FrameDecoder, RtmError, type Frame, type QuestHandler } from '@rtm/fpnn';
import { runFuzz } from '../../../scripts/fuzz.js';

// The fuzzer's golden inputs (real SDK quests from fixtures/spec-vectors, mostly echoed with an ok
// answer here): ≈ 85 ok answers (without them, random valid frames, mostly refused: ≈ 45).

const handler: QuestHandler = (q) => {
  if (q.method === '*ping') return { ts: BigInt(Date.now()) };
  if (q.method === '*key') throw new FpnnProtocolError('*key not supported here');
  if (q.method.startsWith('echo') || q.method === 'sendmsg') return q.payload;
  throw new RtmError(20004, `unknown method '${q.method}'`);
};

/** One connection: bytes in, frames to the peer; a protocol error closes it (never answered). */
function serve(write: (b: Uint8Array) => void, close: () => void): { data(chunk: Uint8Array): void; end(): void } {
  const decoder = new FrameDecoder(64 * 1024);
  const peer = new FpnnPeer({ write, onQuest: handler, questTimeoutMs: 1000 });
  return {
    data(chunk) {
      let frames: Frame[];
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        if (!(err instanceof FpnnProtocolError)) throw err;
        peer.close('protocol error');
        close();
        return;
      }
      for (const f of frames) {
        if (f.kind === 'quest' && f.method === '*key') {
          close(); // not the first quest or not supported: close without answering
          return;
        }
        peer.receive(f);
      }
    },
    end: () => peer.close(),
  };
}

let server: net.Server;
let port = 0;
const sockets = new Set<net.Socket>();
let unexpected: unknown[] = [];

before(async () => {
  const httpServer = http.createServer((_req, res) => res.writeHead(404).end());
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
  httpServer.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws)));
  httpServer.on('clientError', (_e, socket) => socket.destroy());
  wss.on('connection', (ws: WebSocket) => {
    const conn = serve(
      (b) => ws.send(b, { binary: true }),
      () => ws.terminate(),
    );
    ws.on('message', (data) => {
      try {
        conn.data(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer));
      } catch (err) {
        unexpected.push(err);
        ws.terminate();
      }
    });
    ws.on('close', () => conn.end());
    ws.on('error', () => ws.terminate());
  });
  server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    // Sniff the first bytes: "GET " is a WebSocket upgrade, anything else FPNN.
    socket.once('data', (first: Buffer) => {
      if (first.subarray(0, 4).toString('latin1') === 'GET ') {
        socket.unshift(first);
        httpServer.emit('connection', socket);
        return;
      }
      const conn = serve(
        (b) => socket.write(b),
        () => socket.destroy(),
      );
      const onData = (chunk: Buffer): void => {
        try {
          conn.data(chunk);
        } catch (err) {
          unexpected.push(err);
          socket.destroy();
        }
      };
      socket.on('data', onData);
      socket.on('close', () => conn.end());
      onData(first);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('scripts/fuzz.ts (runFuzz) against an FPNN echo server', () => {
  it('sends a few thousand inputs over TCP and WebSocket; the server keeps serving *ping', async () => {
    unexpected = [];
    const report = await runFuzz({
      host: '127.0.0.1',
      port,
      count: 2000,
      seed: 12345,
      concurrency: 16,
      reactionMs: 100,
      healthEvery: 500,
      timeLimitMs: 20_000,
    });
    assert.equal(report.sent, 2000);
    assert.equal(report.stoppedByTimeLimit, false);
    assert.ok(report.byTransport.tcp > 400 && report.byTransport.ws > 400, JSON.stringify(report.byTransport));
    for (const [kind, n] of Object.entries(report.byKind)) assert.ok(n > 50, `${kind}: ${n}`);
    assert.equal(report.reactions.answered + report.reactions.closed + report.reactions.silent, report.sent);
    // Oversize headers are closed, never answered (on a loaded machine a close may land after the
    // reaction window and count as silent, so only its presence is asserted).
    assert.ok(report.closesByKind.oversize > 0, `oversize closes ${report.closesByKind.oversize}/${report.byKind.oversize}`);
    assert.ok(report.answers.ok > 50, `ok answers ${report.answers.ok}`);
    assert.ok((report.answers.byCode['20004'] ?? 0) > 50, JSON.stringify(report.answers.byCode));
    // Undecodable payloads: 20006 (msgpack), 10004 (JSON), 10003 (not a map).
    const undecodable = ['20006', '10004', '10003'].reduce((n, code) => n + (report.answers.byCode[code] ?? 0), 0);
    assert.ok(undecodable > 10, JSON.stringify(report.answers.byCode));
    assert.equal(report.badServerFrames, 0);
    assert.equal(report.health.failed, 0, report.health.lastError);
    assert.ok(report.health.ok >= 4);
    assert.equal(report.healthyAtEnd, true);
    assert.deepEqual(unexpected, []);
  });

  it('is bounded by its time limit and refuses non-loopback hosts', async () => {
    const report = await runFuzz({ host: '127.0.0.1', port, count: 1_000_000, transports: ['tcp'], timeLimitMs: 300, seed: 1 });
    assert.equal(report.stoppedByTimeLimit, true);
    assert.ok(report.sent < 1_000_000);
    assert.ok(report.durationMs < 5000);
    assert.equal(report.healthyAtEnd, true);
    await assert.rejects(runFuzz({ host: '10.0.0.1', port, count: 1 }), /only loopback/);
    await assert.rejects(runFuzz({ host: 'example.com', port, count: 1 }), /only loopback/);
  });

  it('reports a server that stops serving', async () => {
    const dead = net.createServer((s) => s.destroy());
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    try {
      const report = await runFuzz({
        host: '127.0.0.1',
        port: (dead.address() as AddressInfo).port,
        count: 50,
        transports: ['tcp'],
        seed: 2,
      });
      assert.equal(report.healthyAtEnd, false);
      assert.match(report.health.lastError ?? '', /closed|connect/);
    } finally {
      await new Promise<void>((resolve) => dead.close(() => resolve()));
    }
  });
});
