import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { startTestServer, type TestServer } from '@rtm/testkit';
import { runFuzz } from '../../../scripts/fuzz.js';

// The live-server fuzz run in CI: a few thousand random and mutated inputs over TCP and WebSocket,
// against both gates; the server must keep serving, never write an invalid frame, and stay bounded.

// What the heap holds, not what it has yet to collect: a loaded machine may not have run a full GC
// since the garbage of 1,500 inputs (frames, sockets) was made.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
describe('fuzzing the real server', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ maxFrameBytes: 1024 * 1024 });
  });
  after(async () => {
    await server.close();
  });

  for (const gate of ['server', 'client'] as const) {
    it(`${gate} gate survives 1,500 hostile inputs with bounded memory`, async () => {
      const port = gate === 'server' ? server.serverPort : server.clientPort;
      gc();
      const heapBefore = process.memoryUsage().heapUsed;
      const report = await runFuzz({
        host: '127.0.0.1',
        port,
        count: 1500,
        concurrency: 16,
        reactionMs: 15,
        healthEvery: 250,
        timeLimitMs: 60_000,
        seed: gate === 'server' ? 1 : 2,
      });
      assert.equal(report.healthyAtEnd, true, 'still serving *ping over TCP and WebSocket');
      assert.equal(report.health.failed, 0, report.health.lastError);
      assert.equal(report.badServerFrames, 0, 'every byte the server wrote was valid FPNN');
      assert.ok(report.sent >= 1500);
      gc();
      const grown = process.memoryUsage().heapUsed - heapBefore;
      assert.ok(grown < 64 * 1024 * 1024, `heap grew by ${grown} bytes`);
    });
  }
});

describe('metrics under hostile input', () => {
  it('random method names do not become metric labels', async () => {
    const { RawClient } = await import('@rtm/testkit');
    const server = await startTestServer();
    try {
      const c = await RawClient.tcp(server.clientEndpoint);
      for (let i = 0; i < 50; i++) await assert.rejects(c.quest(`random-${i}-${Math.random()}`, {}));
      c.close();
      const text = await server.services.metrics.registry.metrics();
      assert.doesNotMatch(text, /random-/);
      assert.match(text, /method="unknown"/);
    } finally {
      await server.close();
    }
  });
});
