import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { sendParts, summariseParts } from '../bench/workers/send-trace.js';

// The latency bench splits each slow message's time at the server's two timestamps: the parts must
// add up to the latency, only slow messages the server saw count, and the summary must be exact.

describe('bench: send trace', () => {
  it('splits slow messages at the server times, found by the body', () => {
    const sent = 1_764_600_000_123.456;
    const samples = [
      { sentAtMs: sent, latencyMs: 3 }, // slow: 1 ms before, 0.5 inside, 1.5 after
      { sentAtMs: sent + 1, latencyMs: 0.4 }, // fast: left out
      { sentAtMs: sent + 2, latencyMs: 2 }, // slow, but the server never saw it: left out
    ];
    const server = {
      [String(sent)]: [sent + 1, sent + 1.5] as [number, number],
      [String(sent + 1)]: [sent + 1.1, sent + 1.2] as [number, number],
    };
    const parts = sendParts(samples, server, 1.5);
    assert.equal(parts.length, 1);
    assert.ok(
      Math.abs(parts[0]!.beforeMs - 1) < 1e-3 && Math.abs(parts[0]!.insideMs - 0.5) < 1e-3 && Math.abs(parts[0]!.afterMs - 1.5) < 1e-3,
    );
    assert.deepEqual(
      summariseParts(
        [
          { beforeMs: 1, insideMs: 0.1, afterMs: 0.2 },
          { beforeMs: 0.2, insideMs: 0.6, afterMs: 2 },
          { beforeMs: 0.7, insideMs: 0.3, afterMs: 0.4 },
        ],
        0.5,
      ),
      {
        messages: 3,
        median: { beforeMs: 0.7, insideMs: 0.3, afterMs: 0.4 },
        longPct: { beforeMs: 66.7, insideMs: 33.3, afterMs: 33.3 },
        longMs: 0.5,
      },
    );
  });

  it('parts add up to each slow latency', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(
          fc.record({
            sentAtMs: fc.double({ min: 1e12, max: 2e12, noNaN: true }),
            latencyMs: fc.double({ min: 0, max: 50, noNaN: true }),
            taken: fc.double({ min: 0, max: 1, noNaN: true }),
            stored: fc.double({ min: 0, max: 1, noNaN: true }),
          }),
          { selector: (r) => r.sentAtMs },
        ),
        (rows) => {
          const server: Record<string, [number, number]> = {};
          for (const r of rows) {
            const a = r.sentAtMs + r.latencyMs * Math.min(r.taken, r.stored);
            const b = r.sentAtMs + r.latencyMs * Math.max(r.taken, r.stored);
            server[String(r.sentAtMs)] = [a, b];
          }
          const parts = sendParts(rows, server, 1.5);
          const slow = rows.filter((r) => r.latencyMs > 1.5);
          assert.equal(parts.length, slow.length);
          parts.forEach((p, i) => {
            assert.ok(Math.abs(p.beforeMs + p.insideMs + p.afterMs - slow[i]!.latencyMs) < 1e-3); // ms since the epoch: ulps of 0.24 µs
            assert.ok(p.beforeMs > -1e-3 && p.insideMs > -1e-3 && p.afterMs > -1e-3);
          });
        },
      ),
    );
  });
});
