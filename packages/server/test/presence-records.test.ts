import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { createLogger } from '../src/observability/logger.js';
import { PresenceRecords } from '../src/services/presence-records.js';
import type { NodePresence, Store } from '../src/store/store.js';

// services/presence-records.ts against a plain map: whatever the turns, the write delays and the
// failures, once the writes settle the store holds the last change of each user — after a failure,
// once the owner has recorded everything again.

/** The records of one node, as a store keeps them; each write takes a while and may fail. */
class FakeStore {
  readonly rows = new Map<string, bigint | null>();
  writes = 0;
  concurrent = 0;
  maxConcurrent = 0;
  constructor(
    private readonly delays: number[],
    private readonly failures: boolean[],
  ) {}
  async recordPresences(_node: string, changes: readonly NodePresence[], replace = false): Promise<void> {
    const n = this.writes++;
    this.concurrent++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
    try {
      await new Promise((r) => setTimeout(r, this.delays[n % this.delays.length]));
      if (this.failures[n % this.failures.length]) throw new Error('disk I/O error');
      if (replace) this.rows.clear();
      for (const c of changes) {
        if (c.held) this.rows.set(`${c.pid}:${c.uid}`, c.endedAt ?? null);
        else this.rows.delete(`${c.pid}:${c.uid}`);
      }
    } finally {
      this.concurrent--;
    }
  }
}

const change = fc.record({
  uid: fc.integer({ min: 0, max: 5 }),
  held: fc.boolean(),
  endedAt: fc.option(fc.integer({ min: 1, max: 99 }), { nil: undefined }),
});

describe('PresenceRecords', () => {
  it('leaves the store with the last change of each user, writing one batch at a time', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(change, { maxLength: 6 }), { minLength: 1, maxLength: 8 }), // turns of changes
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 5 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 5 }),
        async (turns, delays, failures) => {
          const store = new FakeStore(delays, failures);
          const records = new PresenceRecords(store as unknown as Store, 'n1', createLogger('silent'));
          const model = new Map<string, bigint | null>();
          for (const turn of turns) {
            for (const c of turn) {
              const k = `1:${c.uid}`;
              if (c.held) {
                records.held(1, BigInt(c.uid), c.endedAt === undefined ? undefined : BigInt(c.endedAt));
                model.set(k, c.endedAt === undefined ? null : BigInt(c.endedAt));
              } else {
                records.released(1, BigInt(c.uid));
                model.delete(k);
              }
            }
            await new Promise((r) => setImmediate(r)); // the next turn
          }
          // What the owner does at its next sweep after a failed write: record everything again.
          for (let attempt = 0; attempt < 3; attempt++) {
            await records.idle();
            if (!records.lost) break;
            records.replaceAll(
              [...model].map(([k, endedAt]) => ({ pid: 1, uid: BigInt(k.split(':')[1]!), endedAt: endedAt ?? undefined })),
            );
          }
          await records.idle();
          if (records.lost) return; // failed every time: nothing to say of the rows
          assert.deepEqual(store.rows, model);
          assert.ok(store.maxConcurrent <= 1, 'one write after another');
        },
      ),
      { numRuns: 60 },
    );
  });

  it('drops the changes that come after close()', async () => {
    const store = new FakeStore([0], [false]);
    const records = new PresenceRecords(store as unknown as Store, 'n1', createLogger('silent'));
    records.held(1, 5n);
    await records.close();
    records.held(1, 6n);
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual([...store.rows.keys()], ['1:5']);
  });
});
