import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RepeatFilter } from '../src/observability/repeats.js';

test('RepeatFilter: the first of a kind is logged, the same within the window counted and reported with the next one logged', () => {
  let now = 0;
  const f = new RepeatFilter(10_000, 3, () => now);
  assert.deepEqual(f.admit('a'), { log: true, repeats: 0 });
  assert.deepEqual(f.admit('a'), { log: false });
  assert.deepEqual(f.admit('b'), { log: true, repeats: 0 }, 'another kind is not held back');
  now = 9_999;
  assert.deepEqual(f.admit('a'), { log: false });
  now = 10_000;
  assert.deepEqual(f.admit('a'), { log: true, repeats: 2 }, 'after the window: logged, with the two left out');
  assert.deepEqual(f.admit('a'), { log: false });
  now = 30_000;
  assert.deepEqual(f.admit('a'), { log: true, repeats: 1 });
  assert.deepEqual(f.admit('a2'), { log: true, repeats: 0 });
  // A fourth kind past maxKinds (3) starts over rather than growing: 'a' is logged again at once.
  assert.deepEqual(f.admit('c'), { log: true, repeats: 0 });
  assert.deepEqual(f.admit('a'), { log: true, repeats: 0 });
});
