import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { UnansweredPushes } from '../src/gate/unanswered-pushes.js';

// gate/unanswered-pushes.ts against the plain list it stands for: pushes written with marks, the
// peer answering them in order (as every SDK does), some answers to other quests in between.

type Step = { write: bigint } | { answer: number } | { other: true };

const steps = fc.array(
  fc.oneof(
    fc.bigInt({ min: 1000n, max: 1100n }).map((write) => ({ write })),
    fc.integer({ min: 1, max: 4 }).map((answer) => ({ answer })), // answer the next `answer` pushes in order
    fc.constant({ other: true as const }), // the answer to a ping: not a push
  ),
  { maxLength: 60 },
);

describe('UnansweredPushes', () => {
  it('never hides an unanswered push, and forgets them all once all are answered', () => {
    fc.assert(
      fc.property(steps, (script: Step[]) => {
        const tracker = new UnansweredPushes();
        const outstanding: { seq: number; mark: bigint }[] = [];
        let seq = 1;
        for (const step of script) {
          if ('write' in step) {
            outstanding.push({ seq, mark: step.write });
            tracker.written(seq++, step.write);
          } else if ('answer' in step) {
            for (const p of outstanding.splice(0, step.answer)) tracker.answered(p.seq);
          } else {
            tracker.answered(seq++); // a seq no push has
          }
          const oldest = tracker.oldestMark;
          if (outstanding.length === 0) {
            assert.equal(oldest, undefined, 'all answered');
          } else {
            const least = outstanding.reduce((min, p) => (p.mark < min ? p.mark : min), outstanding[0]!.mark);
            assert.ok(oldest !== undefined && oldest <= least, `mark ${oldest} hides an unanswered push of ${least}`);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('moves on by one round trip under a steady stream', () => {
    const tracker = new UnansweredPushes();
    tracker.written(1, 100n);
    tracker.written(2, 101n);
    tracker.written(3, 102n);
    assert.equal(tracker.oldestMark, 100n);
    tracker.answered(1); // the checkpoint: the oldest is now the first written after it
    assert.equal(tracker.oldestMark, 101n);
    tracker.written(4, 103n);
    tracker.answered(2); // not the checkpoint (3): stays, a little late
    assert.equal(tracker.oldestMark, 101n);
    tracker.answered(3);
    assert.equal(tracker.oldestMark, 103n);
    tracker.answered(4);
    assert.equal(tracker.oldestMark, undefined);
  });
});
