import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { slowEpisodes } from '../bench/workers/lib.js';

// The latency bench reads the shape of the tail from these episodes: they must account for every
// slow message exactly once, and split exactly where slow sends are more than the gap apart.

describe('bench: slowEpisodes', () => {
  it('groups slow sends within the gap, biggest first', () => {
    const at = (sentAtMs: number, latencyMs: number) => ({ sentAtMs, latencyMs });
    const episodes = slowEpisodes([at(100, 2), at(0, 3), at(3, 0.2), at(4, 9), at(8, 2), at(50, 1.5), at(101, 4)], 1.5, 5);
    assert.deepEqual(episodes, [
      { fromMs: 0, toMs: 8, count: 3, maxMs: 9 },
      { fromMs: 100, toMs: 101, count: 2, maxMs: 4 },
    ]);
  });

  it('accounts for every slow message once, and episodes are more than the gap apart', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ sentAtMs: fc.integer({ min: 0, max: 10_000 }), latencyMs: fc.double({ min: 0, max: 20, noNaN: true }) })),
        fc.integer({ min: 0, max: 50 }),
        (samples, gap) => {
          const episodes = slowEpisodes(samples, 1.5, gap);
          const slow = samples.filter((s) => s.latencyMs > 1.5);
          assert.equal(
            episodes.reduce((n, e) => n + e.count, 0),
            slow.length,
          );
          const byTime = [...episodes].sort((a, b) => a.fromMs - b.fromMs);
          for (let i = 1; i < byTime.length; i++) assert.ok(byTime[i]!.fromMs - byTime[i - 1]!.toMs > gap);
          for (const e of episodes) {
            const inside = slow.filter((s) => s.sentAtMs >= e.fromMs && s.sentAtMs <= e.toMs);
            assert.equal(inside.length, e.count);
            assert.equal(Math.max(...inside.map((s) => s.latencyMs)), e.maxMs);
          }
          for (let i = 1; i < episodes.length; i++) assert.ok(episodes[i - 1]!.count >= episodes[i]!.count);
        },
      ),
    );
  });
});
