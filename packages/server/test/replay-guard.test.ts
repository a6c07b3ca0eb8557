import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodePayload, encodePayload, Flag, json, type Payload } from '@rtm/fpnn';
import { RawClient, signFields, startTestServer, uniqueSalt, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';
import { questPrint, ReplayGuard } from '../src/gate/signature.js';

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

// What "the same payload" is (server-api.md §1): the decoded call, not its bytes.
describe('questPrint', () => {
  const utf8 = new TextEncoder();
  const big = 1n << 60n;
  const call: Payload = {
    pid: 11000001,
    salt: 5n,
    ts: 1_700_000_000,
    sign: 'AB',
    uid: big,
    to: [big + 1n, 7],
    msg: 'héllo 😀',
    mtype: 30,
    attrs: { b: 1, a: 'x' },
  };

  it('is the same for every encoding of one call: key order, integer widths, str or bin, nil keys, the signature fields', () => {
    const print = questPrint('sendmsgs', call);
    const again: Payload = {
      attrs: { a: 'x', b: 1n },
      mtype: 30.0,
      msg: utf8.encode('héllo 😀'),
      to: [big + 1n, 7n],
      uid: big,
      none: null, // nil = absent
      sign: 'ab',
      ts: 1_700_000_000n,
      salt: 5,
      pid: 11000001n,
    };
    assert.equal(questPrint('sendmsgs', again), print);
    for (const flag of [Flag.MSGPACK, Flag.JSON]) {
      const bytes = encodePayload(flag, call);
      assert.equal(questPrint('sendmsgs', decodePayload(flag, bytes)), print, `decoded from ${flag === Flag.MSGPACK ? 'msgpack' : 'JSON'}`);
    }
    assert.equal(questPrint('m', { x: 2 ** 60 }), questPrint('m', { x: big }), 'a float64 holding an integer (msgpack-lite)');
    assert.equal(questPrint('m', { x: -5 }), questPrint('m', { x: -5n }));
    for (const text of ['', 'abc', 'abcde', 'aé😀b', '日本語', 'y'.repeat(1001)]) {
      assert.equal(questPrint('m', { x: text }), questPrint('m', { x: utf8.encode(text) }), JSON.stringify(text));
    }
  });

  it('tells distinct calls apart', () => {
    const print = questPrint('sendmsgs', call);
    const others: [string, Payload][] = [
      ['sendmsg', call], // the legacy sign does not bind the method
      ['sendmsgs', { ...call, mtype: 31 }],
      ['sendmsgs', { ...call, to: [7, big + 1n] }],
      ['sendmsgs', { ...call, msg: 'hello 😀' }],
      ['sendmsgs', { ...call, attrs: { a: 1, b: 'x' } }],
      ['sendmsgs', { ...call, extra: 0 }],
    ];
    for (const [method, payload] of others) assert.notEqual(questPrint(method, payload), print, `${method} ${json.stringify(payload)}`);
    const pairs: [unknown, unknown][] = [
      ['1', 1],
      [1, true],
      [-5, 5],
      [-(1n << 62n), 1n << 62n],
      [2n ** 64n - 1n, -1n], // a uint64 and the int64 of the same bits
      [1.5, 1],
      [
        ['ab', 'c'],
        ['a', 'bc'],
      ],
      ['a', 'a\0'],
      [{}, []],
      [1n << 70n, 1n << 71n],
    ];
    for (const [a, b] of pairs) assert.notEqual(questPrint('m', { x: a }), questPrint('m', { x: b }), json.stringify([a, b]));
    assert.notEqual(questPrint('m', { x: '' }), questPrint('m', {}));
    assert.notEqual(questPrint('m', { a: 1, b: 2 }), questPrint('m', { a: 2, b: 1 }));
  });

  it('reads nesting to a bounded depth: a payload nested deeper than any method reads does not overflow the stack', () => {
    let array: unknown = 1;
    let map: unknown = 1;
    for (let i = 0; i < 100_000; i++) {
      array = [array];
      map = { y: map };
    }
    assert.equal(typeof questPrint('m', { x: array, z: map }), 'number');
    assert.notEqual(questPrint('m', { x: [[[1]]] }), questPrint('m', { x: [[[2]]] }));
  });
});

// A captured quest sent again must be refused however it is re-encoded or re-sent.
describe('server gate: a replay is the same call, however it is encoded or sent (real server)', () => {
  const BIG = 1n << 60n;
  let server: TestServer;
  let raw: RawClient;
  before(async () => {
    server = await startTestServer();
    raw = await RawClient.tcp(server.serverEndpoint);
  });
  after(async () => {
    raw.close();
    await server.close();
  });

  /** Sends an `addfriends` for `uid` signed with `f`, then undoes it (another salt): a replay that took effect shows. */
  async function addThenUndo(uid: bigint, f: Payload): Promise<void> {
    await raw.quest('addfriends', { ...f, uid, friends: [uid + 1n] });
    await raw.signed('delfriends', { uid, friends: [uid + 1n] }, TEST_PID, TEST_SECRET);
  }
  const friendsOf = (uid: bigint) => raw.signed('getfriends', { uid }, TEST_PID, TEST_SECRET);
  const signed = () => signFields('addfriends', TEST_PID, TEST_SECRET, uniqueSalt());

  it('its sign in lower case (compared case-insensitively)', async () => {
    const uid = BIG + 101n;
    const f = signed();
    await addThenUndo(uid, f);
    await assert.rejects(raw.quest('addfriends', { ...f, sign: (f.sign as string).toLowerCase(), uid, friends: [uid + 1n] }), {
      code: 200006,
    });
    assert.deepEqual(await friendsOf(uid), { uids: [] }, 'the replayed addfriends took effect');
  });

  it('its keys in another order', async () => {
    const uid = BIG + 201n;
    const f = signed();
    await addThenUndo(uid, f);
    await assert.rejects(raw.quest('addfriends', { friends: [uid + 1n], uid, sign: f.sign, ts: f.ts, salt: f.salt, pid: f.pid }), {
      code: 200006,
    });
    assert.deepEqual(await friendsOf(uid), { uids: [] }, 'the replayed addfriends took effect');
  });

  it('pid and ts as int64 instead of uint32 (Node msgpack-lite writes d3 where Python writes ce)', async () => {
    const uid = BIG + 301n;
    const f = signed();
    await addThenUndo(uid, f);
    await assert.rejects(raw.quest('addfriends', { ...f, pid: BigInt(TEST_PID), ts: BigInt(f.ts as number), uid, friends: [uid + 1n] }), {
      code: 200006,
    });
    assert.deepEqual(await friendsOf(uid), { uids: [] }, 'the replayed addfriends took effect');
  });

  it('signed for TCP, sent again over WebSocket', async () => {
    const uid = BIG + 501n;
    const f = signed();
    await addThenUndo(uid, f);
    const ws = await RawClient.websocket(server.serverEndpoint);
    try {
      await assert.rejects(ws.quest('addfriends', { ...f, uid, friends: [uid + 1n] }), { code: 200006 });
    } finally {
      ws.close();
    }
    assert.deepEqual(await friendsOf(uid), { uids: [] }, 'the replayed addfriends took effect');
  });

  it('signed for TCP, sent again over the HTTP bridge; another payload with that signature still passes there', async () => {
    const uid = BIG + 401n;
    const f = signed();
    await addThenUndo(uid, f);
    const post = async (friend: bigint) => {
      const res = await fetch(`http://${server.serverEndpoint}/service/addfriends`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: `{"pid":${f.pid},"salt":${f.salt},"ts":${f.ts},"sign":"${f.sign}","uid":${uid},"friends":[${friend}]}`,
      });
      return { status: res.status, answer: (await res.json()) as { code?: number } };
    };
    const replay = await post(uid + 1n);
    assert.equal(replay.answer.code, 200006, `HTTP ${replay.status} ${JSON.stringify(replay.answer)}`);
    const other = await post(uid + 2n); // same salt, another call (the Python SDK within one millisecond)
    assert.equal(other.status, 200, JSON.stringify(other.answer));
    assert.deepEqual(await friendsOf(uid), { uids: [uid + 2n] });
  });
});
