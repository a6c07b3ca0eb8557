import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageClock } from '../src/store/message-clock.js';

// store/message-clock.ts on a clock the test sets: marks between stored and unstored messages.

test('a mark is at or after every clock handed out, and every later clock is after it, on a stopped clock', () => {
  const clock = new MessageClock(() => 1000);
  const first = clock.take();
  clock.settled(first);
  assert.equal(first, 1000n);
  const mark = clock.mark();
  assert.equal(mark, 1000n, 'the message stored at 1000 is read');
  const next = clock.take();
  clock.settled(next);
  assert.equal(next, 1001n, 'a message after the mark, in the same millisecond, is unread');
  assert.equal(clock.mark(), 1001n);
  assert.equal(clock.take(), 1002n);
});

test('a commit in flight during a mark stays after it', () => {
  let now = 5000;
  const clock = new MessageClock(() => now);
  const done = clock.take();
  clock.settled(done);
  const inFlight = clock.take(); // 5000, its transaction not yet committed
  now = 5003;
  assert.equal(clock.mark(), 4999n, 'below the commit in flight');
  clock.settled(inFlight);
  const later = clock.take();
  assert.equal(later, 5004n, 'a commit begun after the mark is after the time the mark was taken at');
  assert.equal(clock.mark(), 5003n, 'while it is in flight, a mark stays below it');
  clock.settled(later);
  assert.equal(clock.mark(), 5004n);
});

test('clocks never go back, whatever the wall clock does', () => {
  let now = 9000;
  const clock = new MessageClock(() => now);
  assert.equal(clock.take(), 9000n);
  now = 8000;
  assert.equal(clock.take(), 9000n);
  assert.equal(clock.mark(), 8999n, 'both commits are still in flight');
  clock.settled(9000n);
  assert.equal(clock.mark(), 8999n, 'one of the two commits at 9000 is still in flight');
  clock.settled(9000n);
  assert.equal(clock.mark(), 9000n);
  assert.equal(clock.take(), 9001n);
});

test('stamps (room joins) sort against marks (the end of a presence) on a stopped clock', () => {
  const clock = new MessageClock(() => 7000);
  const joined = clock.stamp();
  const end = clock.mark();
  assert.ok(joined <= end, 'a room joined before the end is left');
  const rejoined = clock.stamp();
  assert.ok(rejoined > end, 'a room joined after the end stays');
  assert.ok(clock.mark() >= rejoined);
});

test('a restarted clock that runs behind resumes after the last process: marks cover, clocks follow', () => {
  const before = new MessageClock(() => 3000);
  before.settled(before.take()); // a message at 3000
  before.mark(); // a clear at 3000: later clocks from 3001
  before.settled(before.take()); // a message at 3001
  const clear = before.mark(); // 3001
  assert.equal(before.highestMark, 3001n);

  const after = new MessageClock(() => 2000); // stepped back, or a test's stopped clock
  after.resume(3001n, before.highestMark);
  const next = after.take();
  after.settled(next);
  assert.ok(next > clear, 'a message after the restart counts after the clear before it');
  assert.ok(after.mark() >= next, 'and a clear after it covers it');
});

test('without marks, a restarted clock goes on at the newest mtime, not after it', () => {
  const clock = new MessageClock(() => 2000);
  assert.equal(clock.highestMark, 0n);
  clock.resume(2000n, 0n);
  assert.equal(clock.take(), 2000n, 'no mark since: the same millisecond is fine');
  const behind = new MessageClock(() => 1000);
  behind.resume(2000n, 0n);
  assert.equal(behind.take(), 2000n, 'never before the newest message');
  assert.equal(behind.mark(), 1999n, 'that one is in flight');
});

test('a cut (the end of a presence, for its rooms) is not lowered by a commit in flight; a mark is', () => {
  let now = 3000;
  const clock = new MessageClock(() => now);
  const inFlight = clock.take(); // 3000: another user's message, not yet committed
  const joined = clock.stamp(); // the user enters a room in the same millisecond
  now = 3002;
  assert.equal(clock.mark(), 2999n, 'the unread mark stays below the commit');
  const cut = clock.cut();
  assert.equal(cut, 3002n);
  assert.ok(joined <= cut, 'the room joined before the end is left');
  assert.ok(clock.stamp() > cut, 'a room joined after the end stays, even in the same millisecond');
  clock.settled(inFlight);
});
