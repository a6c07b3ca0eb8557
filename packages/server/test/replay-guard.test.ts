import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReplayGuard } from '../src/gate/signature.js';

// The replay memory of the server gate (server-api.md §1: the same signed quest again within the
// window → 200006), on a fake clock. The window is 300 s, as by default.
const W = 300_000;

describe('ReplayGuard', () => {
  it('remembers a quest signed ahead of the clock until its ts + the window, not only the window after it came', () => {
    let now = 1_000 * W;
    const guard = new ReplayGuard(W, 1_000, () => now);
    const ts = now + 200_000; // signed 200 s ahead: still inside the window
    assert.equal(guard.seen('S', 1, ts + W), false);
    now += W + 100_000; // a window and more after it came, but its ts check still passes
    assert.equal(guard.seen('S', 1, ts + W), true, 'the replay is caught');
    now = ts + 2 * W; // the ts check refuses it anyway (and its whole bucket has expired): forgotten
    assert.equal(guard.seen('T', 9, now + W), false);
    assert.equal(guard.remembered, 1, 'the expired quest was dropped');
  });

  it('tells quests with one sign apart by their payload (the Python SDK reuses a salt within a millisecond)', () => {
    const now = 5 * W;
    const guard = new ReplayGuard(W, 1_000, () => now);
    assert.equal(guard.seen('S', 1, now + W), false);
    assert.equal(guard.seen('S', 2, now + W), false);
    assert.equal(guard.seen('S', 3, now + 2 * W), false);
    for (const print of [1, 2, 3]) assert.equal(guard.seen('S', print, now + W), true);
    assert.equal(guard.remembered, 3);
  });

  it('keeps buckets in expiry order when a later quest expires sooner, and drops only what expired', () => {
    let now = 7 * W;
    const guard = new ReplayGuard(W, 1_000, () => now);
    guard.seen('ahead', 1, now + 2 * W); // signed a window ahead
    guard.seen('on time', 1, now + W);
    now += 2 * W + 1; // past every expiry of the bucket of 'on time', not of the one of 'ahead'
    assert.equal(guard.seen('on time', 1, 0), false, 'expired: forgotten (and remembered again)');
    assert.equal(guard.seen('ahead', 1, 0), true, 'still valid: remembered');
  });

  it('stays within its bound: over it, the quests that expire first go first', () => {
    const now = 9 * W;
    const guard = new ReplayGuard(W, 3, () => now);
    guard.seen('a', 1, now + W);
    guard.seen('b', 1, now + 2 * W);
    guard.seen('c', 1, now + 2 * W);
    guard.seen('d', 1, now + 2 * W); // over the bound: the bucket of 'a' is dropped
    assert.equal(guard.remembered, 3);
    assert.equal(guard.seen('b', 1, now + 2 * W), true);
    assert.equal(guard.seen('a', 1, now + W), false, 'forgotten early, for the bound');
    assert.ok(guard.remembered <= 3);
  });
});
