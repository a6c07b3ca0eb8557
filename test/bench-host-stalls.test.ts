import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { measureHostStalls } from '../bench/workers/host-stalls.js';

// The latency bench prints what the machine took from busy threads before each run; these bounds
// check the summing: with no threshold every clock read is a "stall" (the whole wall time), with an
// unreachable one nothing is.

describe('bench: measureHostStalls', () => {
  it('counts the whole wall time when every gap is over the threshold', async () => {
    const s = await measureHostStalls(150, 0, 2);
    assert.equal(s.threads, 2);
    assert.ok(s.msPerSecond > 900 && s.msPerSecond <= 1001, `msPerSecond ${s.msPerSecond}`);
    assert.ok(s.perSecond > 10_000, `perSecond ${s.perSecond}`);
    assert.ok(s.maxMs > 0 && s.maxMs <= 1000, `maxMs ${s.maxMs}`);
  });

  it('counts nothing under an unreachable threshold', async () => {
    const s = await measureHostStalls(100, 10_000_000, 1);
    assert.deepEqual(s, { threads: 1, thresholdMs: 10_000, msPerSecond: 0, perSecond: 0, maxMs: 0 });
  });
});
