/**
 * The executable contract of `Store` (packages/server/src/store/store.ts): one suite, run against
 * every implementation (STYLE.md guideline 6).
 *
 *   storeConformance('sqlite', async () => ({ store: new SqliteStore({ dataDir }), cleanup }));
 *
 * The factory returns a fresh, empty, not yet initialised store for every test; the suite calls
 * `init()` and `close()`, then `cleanup()`.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { StrBytes } from '@rtm/fpnn';
import type {
  AppendResult,
  ConversationRef,
  HistoryQuery,
  MessageKind,
  NewMessage,
  Store,
  StoredMessage,
} from '../../server/src/store/store.js';

export interface StoreUnderTest {
  store: Store;
  cleanup(): Promise<void>;
}

// Local copies of the wire kinds: a type-only import keeps testkit free of a runtime dependency on the server.
const P2P = 1 as const;
const GROUP = 2 as const;
const ROOM = 3 as const;
const BROADCAST = 4 as const;

const PID = 1000;
const BIG = 2n ** 53n; // every id below is above 2^53 unless a test needs small ones

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function msg(kind: MessageKind, from: bigint, to: bigint, mid: bigint, over: Partial<NewMessage> = {}): NewMessage {
  return { pid: PID, kind, from, to, mid, mtype: 30, msg: `m${mid}`, attrs: '', ...over };
}

function stored(r: AppendResult | undefined): StoredMessage {
  assert.ok(r, 'missing append result');
  assert.equal(r.status, 'stored', `expected stored, got ${r.status}`);
  return (r as { message: StoredMessage }).message;
}

async function appendOne(store: Store, m: NewMessage): Promise<StoredMessage> {
  const [r] = await store.append([m]);
  return stored(r);
}

/** Pages through a whole conversation; asserts every page respects the cursor. */
async function pageAll(store: Store, base: Omit<HistoryQuery, 'lastid'>, maxPages = 10_000): Promise<StoredMessage[]> {
  const out: StoredMessage[] = [];
  let lastid = 0n;
  for (let i = 0; i < maxPages; i++) {
    const page = await store.history({ ...base, lastid });
    assert.ok(page.length <= base.num, 'page larger than num');
    for (const m of page) {
      if (lastid !== 0n) assert.ok(base.desc ? m.id < lastid : m.id > lastid, 'page does not respect lastid');
    }
    out.push(...page);
    if (page.length < base.num) return out;
    lastid = page[page.length - 1]!.id;
  }
  throw new Error('too many pages');
}

/**
 * Ends (pid, uid)'s presence as a node does: joins it, then claims its end at the version joined
 * (logout time `endedAt`, the rooms joined through `roomsThrough` left); answers the rooms left.
 * The joining node is dropped again, so that its record of the presence stays out of other tests.
 */
async function endPresenceNow(store: Store, pid: number, uid: bigint, endedAt: bigint, roomsThrough: bigint): Promise<bigint[]> {
  const node = 'conformance-ender';
  const { version } = await store.joinPresence(pid, uid, node);
  const rooms = await store.endPresence(pid, uid, version, endedAt, roomsThrough);
  await store.dropNode(node);
  assert.ok(rooms, 'the end of a presence just joined wins');
  return rooms;
}

function ids(ms: readonly { id: bigint }[]): bigint[] {
  return ms.map((m) => m.id);
}

function assertStrictlyIncreasing(xs: readonly bigint[], what: string): void {
  for (let i = 1; i < xs.length; i++) assert.ok(xs[i - 1]! < xs[i]!, `${what} not strictly increasing at ${i}`);
}

export function storeConformance(name: string, factory: () => Promise<StoreUnderTest>): void {
  describe(`Store conformance: ${name}`, () => {
    let store: Store;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      const made = await factory();
      store = made.store;
      cleanup = made.cleanup;
      await store.init();
    });

    afterEach(async () => {
      await store.close();
      await cleanup();
    });

    describe('lifecycle', () => {
      it('init() is idempotent', async () => {
        await store.init();
        const m = await appendOne(store, msg(P2P, BIG + 1n, BIG + 2n, 1n));
        await store.init();
        assert.deepEqual(await store.getMessage(m), m);
      });

      it('ping() answers while the store is open', async () => {
        await store.ping();
      });
    });

    describe('append and history', () => {
      it('attrs with U+0000 are refused alone; the appends of the same turn are stored', async () => {
        const to = BIG + 4242n;
        const results = await Promise.allSettled([
          store.append([msg(GROUP, BIG + 1n, to, 1n)]),
          store.append([msg(GROUP, BIG + 1n, to, 2n, { attrs: 'a\u0000b' })]),
          store.append([msg(GROUP, BIG + 1n, to, 3n)]),
        ]);
        assert.deepEqual(
          results.map((r) => r.status),
          ['fulfilled', 'rejected', 'fulfilled'],
        );
        const page = await store.history({ conversation: { pid: PID, kind: GROUP, to }, desc: false, num: 10 });
        assert.deepEqual(
          page.map((m) => m.mid),
          [1n, 3n],
        );
      });

      it('stores a message and returns it with id and mtime', async () => {
        const before = BigInt(Date.now());
        const m = await appendOne(store, msg(GROUP, BIG + 1n, BIG + 100n, BIG + 7n, { mtype: 31, attrs: '{"a":1}' }));
        const after = BigInt(Date.now());
        assert.equal(typeof m.id, 'bigint');
        assert.ok(m.mtime >= before - 1000n && m.mtime <= after + 1000n, 'mtime is the clock in ms');
        const got = await store.getMessage({ pid: PID, kind: GROUP, from: BIG + 1n, to: BIG + 100n, mid: BIG + 7n });
        assert.deepEqual(got, m);
        const page = await store.history({ conversation: { pid: PID, kind: GROUP, to: BIG + 100n }, desc: true, num: 10 });
        assert.deepEqual(page, [m]);
      });

      it('pages through 1,200 messages of one conversation with no gap or duplicate (desc and asc)', async () => {
        const a = BIG + 11n;
        const b = BIG + 12n;
        const c = BIG + 13n;
        const promises: Promise<AppendResult[]>[] = [];
        // Many appends per turn (group commit), interleaved with a second conversation.
        for (let i = 0; i < 1200; i++) {
          const from = i % 3 === 0 ? b : a;
          promises.push(store.append([msg(P2P, from, from === a ? b : a, BigInt(i + 1))]));
          if (i % 4 === 0) promises.push(store.append([msg(P2P, a, c, BigInt(i + 1))]));
          if (i % 100 === 99) await Promise.all(promises.splice(0));
        }
        await Promise.all(promises);
        const conversation: ConversationRef = { pid: PID, kind: P2P, uid: a, peer: b };
        const desc = await pageAll(store, { conversation, desc: true, num: 37 });
        const asc = await pageAll(store, { conversation, desc: false, num: 37 });
        assert.equal(desc.length, 1200);
        assert.equal(asc.length, 1200);
        assertStrictlyIncreasing(ids(asc), 'asc ids');
        assertStrictlyIncreasing(ids(desc).reverse(), 'desc ids');
        assert.deepEqual(ids(asc), ids(desc).reverse());
        assert.equal(new Set(asc.map((m) => m.mid)).size, 1200);
        for (const m of asc) assert.ok((m.from === a && m.to === b) || (m.from === b && m.to === a));
        const other = await pageAll(store, { conversation: { pid: PID, kind: P2P, uid: c, peer: a }, desc: true, num: 100 });
        assert.equal(other.length, 300);
      });

      it('type filters page rare, common and absent types exactly, deleted messages left out (desc and asc)', async () => {
        // 1,500 messages: mostly 51, every 97th a 40 (rare: past any first look at the newest rows),
        // every 5th a 30; a few of each deleted.
        const to = BIG + 5151n;
        const conversation: ConversationRef = { pid: PID, kind: GROUP, to };
        const typeOf = (i: number) => (i % 97 === 0 ? 40 : i % 5 === 0 ? 30 : 51);
        const promises: Promise<AppendResult[]>[] = [];
        for (let i = 1; i <= 1500; i++) {
          promises.push(store.append([msg(GROUP, BIG + BigInt(i % 7), to, BigInt(i), { mtype: typeOf(i) })]));
          if (i % 250 === 0) await Promise.all(promises.splice(0));
        }
        const gone = [97 * 3, 97 * 11, 5 * 41, 5 * 200, 1499];
        for (const i of gone)
          assert.ok(await store.deleteMessage({ pid: PID, kind: GROUP, from: BIG + BigInt(i % 7), to, mid: BigInt(i) }));
        const want = (types: number[]) =>
          Array.from({ length: 1500 }, (_, k) => k + 1).filter((i) => types.includes(typeOf(i)) && !gone.includes(i));
        for (const types of [[40], [30], [40, 30], [51, 40, 30], [99], [99, 40]]) {
          for (const num of [1, 7, 20]) {
            const asc = await pageAll(store, { conversation, desc: false, num, mtypes: types });
            const desc = await pageAll(store, { conversation, desc: true, num, mtypes: types });
            assert.deepEqual(
              asc.map((m) => Number(m.mid)),
              want(types),
              `asc, types ${types}, num ${num}`,
            );
            assert.deepEqual(
              desc.map((m) => Number(m.mid)),
              want(types).reverse(),
              `desc, types ${types}, num ${num}`,
            );
          }
        }
        // The newest message of the given types: what a conversation list shows.
        const [last] = await store.history({ conversation, desc: true, num: 1, mtypes: [40] });
        assert.equal(last?.mid, 1455n);

        // historyWithin: at most maxScan rows a page; short pages say where they stopped, and paging
        // on from there finds every message, in order, with no page reading more than maxScan.
        for (const maxScan of [50, 300]) {
          for (const types of [[40], [30], [99], [51, 30]]) {
            for (const desc of [true, false]) {
              const got: bigint[] = [];
              let lastid = 0n;
              for (let pages = 0; ; pages++) {
                assert.ok(pages < 2000, 'too many pages');
                const w = await store.historyWithin({ conversation, desc, num: 20, lastid, mtypes: types }, maxScan);
                assert.ok(w.messages.length <= 20);
                got.push(...w.messages.map((m) => m.mid));
                if (w.scannedTo !== undefined) {
                  assert.ok(w.messages.length < 20, 'scannedTo only on a short page');
                  for (const m of w.messages) assert.ok(desc ? m.id >= w.scannedTo : m.id <= w.scannedTo, 'a message past scannedTo');
                  lastid = w.scannedTo;
                } else if (w.messages.length === 20) {
                  lastid = w.messages.at(-1)!.id;
                } else {
                  break;
                }
              }
              const expected = want(types).map(BigInt);
              assert.deepEqual(got, desc ? expected.reverse() : expected, `maxScan ${maxScan}, types ${types}, desc ${desc}`);
            }
          }
        }
        const unfiltered = await store.historyWithin({ conversation, desc: true, num: 5 }, 1);
        assert.deepEqual(
          unfiltered.messages.map((m) => m.mid),
          [1500n, 1498n, 1497n, 1496n, 1495n],
          'without mtypes it is history',
        );
        assert.equal(unfiltered.scannedTo, undefined);
      });

      it('a p2p conversation is the same from both sides', async () => {
        const a = BIG + 21n;
        const b = BIG + 22n;
        await appendOne(store, msg(P2P, a, b, 1n));
        await appendOne(store, msg(P2P, b, a, 2n));
        await appendOne(store, msg(P2P, a, b, 3n));
        await appendOne(store, msg(P2P, a, BIG + 23n, 4n));
        const fromA = await store.history({ conversation: { pid: PID, kind: P2P, uid: a, peer: b }, desc: true, num: 10 });
        const fromB = await store.history({ conversation: { pid: PID, kind: P2P, uid: b, peer: a }, desc: true, num: 10 });
        assert.equal(fromA.length, 3);
        assert.deepEqual(fromA, fromB);
        assert.deepEqual(
          fromA.map((m) => m.mid),
          [3n, 2n, 1n],
        );
      });

      it('conversations are separated by pid and kind', async () => {
        const x = BIG + 30n;
        await appendOne(store, msg(GROUP, 1n, x, 1n));
        await appendOne(store, msg(ROOM, 1n, x, 1n));
        await appendOne(store, { ...msg(GROUP, 1n, x, 2n), pid: PID + 1 });
        await appendOne(store, msg(BROADCAST, 1n, 0n, 1n));
        await appendOne(store, msg(BROADCAST, 2n, 0n, 2n));
        const q = (conversation: ConversationRef) => store.history({ conversation, desc: true, num: 10 });
        assert.equal((await q({ pid: PID, kind: GROUP, to: x })).length, 1);
        assert.equal((await q({ pid: PID, kind: ROOM, to: x })).length, 1);
        assert.equal((await q({ pid: PID + 1, kind: GROUP, to: x })).length, 1);
        assert.equal((await q({ pid: PID, kind: BROADCAST, to: 0n })).length, 2);
        assert.equal((await q({ pid: PID + 1, kind: BROADCAST, to: 0n })).length, 0);
      });

      it('begin/end are inclusive mtime windows, in both directions and across pages', async () => {
        const gid = BIG + 40n;
        const phases: StoredMessage[][] = [];
        let mid = 0n;
        for (let p = 0; p < 5; p++) {
          const rs = await store.append(Array.from({ length: 6 }, () => msg(GROUP, BIG + 1n, gid, ++mid)));
          phases.push(rs.map(stored));
          await sleep(5);
        }
        for (let p = 1; p < 5; p++) assert.ok(phases[p]![0]!.mtime > phases[p - 1]![0]!.mtime, 'phases have distinct mtimes');
        const begin = phases[1]![0]!.mtime;
        const end = phases[3]![0]!.mtime;
        const expected = ids(phases.slice(1, 4).flat());
        const conversation: ConversationRef = { pid: PID, kind: GROUP, to: gid };
        const desc = await pageAll(store, { conversation, desc: true, num: 4, begin, end });
        const asc = await pageAll(store, { conversation, desc: false, num: 4, begin, end });
        assert.deepEqual(ids(asc), expected);
        assert.deepEqual(ids(desc), [...expected].reverse());
        const onlyBegin = await pageAll(store, { conversation, desc: false, num: 5, begin: phases[4]![0]!.mtime });
        assert.deepEqual(ids(onlyBegin), ids(phases[4]!));
        const onlyEnd = await pageAll(store, { conversation, desc: true, num: 5, end: phases[0]![0]!.mtime });
        assert.deepEqual(ids(onlyEnd), ids(phases[0]!).reverse());
        assert.deepEqual(await store.history({ conversation, desc: true, num: 5, begin: phases[4]![0]!.mtime + 1000n }), []);
        assert.deepEqual(await store.history({ conversation, desc: true, num: 5, end: phases[0]![0]!.mtime - 1000n }), []);
        assert.deepEqual(await store.history({ conversation, desc: true, num: 5, begin: end + 1n, end: begin }), []);
        // 0n means unbounded (Go SDKs always send begin/end).
        assert.equal((await pageAll(store, { conversation, desc: true, num: 7, begin: 0n, end: 0n })).length, 30);
      });

      it('mtypes filters history (undefined or empty = all)', async () => {
        const gid = BIG + 50n;
        const all: StoredMessage[] = [];
        for (let i = 0; i < 60; i++) all.push(await appendOne(store, msg(GROUP, 1n, gid, BigInt(i + 1), { mtype: 30 + (i % 4) })));
        const conversation: ConversationRef = { pid: PID, kind: GROUP, to: gid };
        const want = all.filter((m) => m.mtype === 30 || m.mtype === 32);
        const desc = await pageAll(store, { conversation, desc: true, num: 7, mtypes: [30, 32] });
        const asc = await pageAll(store, { conversation, desc: false, num: 7, mtypes: [32, 30] });
        assert.deepEqual(ids(asc), ids(want));
        assert.deepEqual(ids(desc), ids(want).reverse());
        assert.equal((await pageAll(store, { conversation, desc: true, num: 7, mtypes: [] })).length, 60);
        assert.equal((await pageAll(store, { conversation, desc: true, num: 7, mtypes: [99] })).length, 0);
      });

      it('lastid: desc returns ids below it, asc ids above it; 0n is the first page', async () => {
        const gid = BIG + 60n;
        const all: StoredMessage[] = [];
        for (let i = 0; i < 10; i++) all.push(await appendOne(store, msg(GROUP, 1n, gid, BigInt(i + 1))));
        const conversation: ConversationRef = { pid: PID, kind: GROUP, to: gid };
        const pivot = all[5]!.id;
        assert.deepEqual(ids(await store.history({ conversation, desc: true, num: 3, lastid: pivot })), [
          all[4]!.id,
          all[3]!.id,
          all[2]!.id,
        ]);
        assert.deepEqual(ids(await store.history({ conversation, desc: false, num: 3, lastid: pivot })), [
          all[6]!.id,
          all[7]!.id,
          all[8]!.id,
        ]);
        assert.deepEqual(ids(await store.history({ conversation, desc: true, num: 2, lastid: 0n })), [all[9]!.id, all[8]!.id]);
        assert.deepEqual(ids(await store.history({ conversation, desc: false, num: 2, lastid: 0n })), [all[0]!.id, all[1]!.id]);
        // The cursor may be the id of a message deleted meanwhile.
        await store.deleteMessage(all[5]!);
        assert.deepEqual(ids(await store.history({ conversation, desc: true, num: 1, lastid: pivot })), [all[4]!.id]);
        assert.deepEqual(ids(await store.history({ conversation, desc: false, num: 1, lastid: pivot })), [all[6]!.id]);
        assert.deepEqual(await store.history({ conversation, desc: false, num: 5, lastid: all[9]!.id }), []);
        assert.deepEqual(await store.history({ conversation, desc: true, num: 5, lastid: all[0]!.id }), []);
      });

      it('ids above 2^53 (uids, gids, mids) round-trip exactly', async () => {
        const a = 2n ** 62n + 12345n;
        const b = 2n ** 62n + 12346n;
        const gid = 2n ** 63n - 1n;
        const mid = 2n ** 63n - 3n;
        const p = await appendOne(store, msg(P2P, a, b, mid));
        const g = await appendOne(store, msg(GROUP, a, gid, mid + 1n));
        const n = await appendOne(store, msg(P2P, -(2n ** 62n), a, -(2n ** 60n) - 1n));
        assert.deepEqual(await store.getMessage({ pid: PID, kind: P2P, from: a, to: b, mid }), p);
        assert.deepEqual(await store.getMessage({ pid: PID, kind: GROUP, from: a, to: gid, mid: mid + 1n }), g);
        assert.deepEqual(await store.getMessage({ pid: PID, kind: P2P, from: -(2n ** 62n), to: a, mid: -(2n ** 60n) - 1n }), n);
        const [h] = await store.history({ conversation: { pid: PID, kind: P2P, uid: b, peer: a }, desc: true, num: 5 });
        assert.equal(h?.mid, mid);
        assert.equal(h?.from, a);
        assert.equal(h?.to, b);
        const [hg] = await store.history({ conversation: { pid: PID, kind: GROUP, to: gid }, desc: true, num: 5 });
        assert.equal(hg?.to, gid);
        assert.deepEqual(await store.p2pPeers(PID, b), [a]);
        const unread = await store.unreadP2P({ pid: PID, uid: b, since: 0n });
        assert.equal(unread.get(a)?.count, 1);
        await store.addGroupMembers(PID, gid, [a, b]);
        assert.deepEqual(await store.userGroups(PID, a), [gid]);
        assert.deepEqual(await store.groupMembers(PID, gid), [a, b]);
      });

      it('str and bin bodies keep their kind and bytes', async () => {
        const bodies: (string | Uint8Array)[] = [
          '',
          'hello',
          'héllo ✓ 😀',
          new Uint8Array(0),
          new Uint8Array([0, 1, 2, 255]),
          new TextEncoder().encode('hello'),
        ];
        const gid = BIG + 70n;
        for (let i = 0; i < bodies.length; i++) await appendOne(store, msg(GROUP, 1n, gid, BigInt(i + 1), { msg: bodies[i]! }));
        const page = await store.history({ conversation: { pid: PID, kind: GROUP, to: gid }, desc: false, num: 20 });
        assert.equal(page.length, bodies.length);
        page.forEach((m, i) => {
          const want = bodies[i]!;
          if (typeof want === 'string') assert.equal(m.msg, want);
          else {
            assert.ok(m.msg instanceof Uint8Array, `body ${i} should be bytes`);
            assert.deepEqual([...(m.msg as Uint8Array)], [...want]);
          }
        });
        const got = await store.getMessage({ pid: PID, kind: GROUP, from: 1n, to: gid, mid: 5n });
        assert.ok(got?.msg instanceof Uint8Array);
      });

      it('a str body whose bytes are not UTF-8 (a StrBytes) keeps its bytes and stays a str; its resend is a duplicate, the same bytes as bin a collision', async () => {
        const gid = BIG + 71n;
        const bytes = [0x00, 0xff, 0xfe, 0x80, 0x81, 0x01, 0xc3, 0x28]; // the Go SDK's SendMessageByBinary sends such a str
        const body = StrBytes.view(new Uint8Array(bytes));
        const sent = await appendOne(store, msg(GROUP, 1n, gid, 1n, { msg: body }));
        await appendOne(store, msg(GROUP, 1n, gid, 2n, { msg: new Uint8Array(bytes) }));
        const [asStr, asBin] = await store.history({ conversation: { pid: PID, kind: GROUP, to: gid }, desc: false, num: 20 });
        assert.ok(asStr!.msg instanceof StrBytes, 'still a str');
        assert.deepEqual([...(asStr!.msg as Uint8Array)], bytes);
        assert.ok(asBin!.msg instanceof Uint8Array && !(asBin!.msg instanceof StrBytes), 'bin stays bin');
        const got = await store.getMessage({ pid: PID, kind: GROUP, from: 1n, to: gid, mid: 1n });
        assert.ok(got?.msg instanceof StrBytes);
        assert.deepEqual([...got.msg], bytes);
        const [again] = await store.append([msg(GROUP, 1n, gid, 1n, { msg: StrBytes.view(new Uint8Array(bytes)) })]);
        assert.equal(again!.status, 'duplicate');
        assert.equal(again!.status === 'duplicate' && again!.message.mtime, sent.mtime);
        const [asBinAgain] = await store.append([msg(GROUP, 1n, gid, 1n, { msg: new Uint8Array(bytes) })]);
        assert.equal(asBinAgain!.status, 'collision');
      });
    });

    describe('duplicates and collisions', () => {
      it('same key and content is a duplicate returning the original; different content is a collision', async () => {
        const base = msg(P2P, BIG + 80n, BIG + 81n, BIG + 1n, { mtype: 30, msg: 'abc', attrs: 'x' });
        const original = await appendOne(store, base);
        await sleep(3);
        const [dup] = await store.append([{ ...base }]);
        assert.deepEqual(dup, { status: 'duplicate', message: original });
        for (const change of [{ mtype: 31 }, { msg: 'abd' }, { attrs: 'y' }, { msg: new TextEncoder().encode('abc') }]) {
          const [r] = await store.append([{ ...base, ...change }]);
          assert.deepEqual(r, { status: 'collision' }, `collision expected for ${JSON.stringify(Object.keys(change))}`);
        }
        // Same mid but another target or sender or kind is another message.
        stored((await store.append([{ ...base, to: BIG + 82n }]))[0]);
        stored((await store.append([{ ...base, from: BIG + 83n }]))[0]);
        stored((await store.append([{ ...base, kind: GROUP }]))[0]);
        const page = await store.history({ conversation: { pid: PID, kind: P2P, uid: BIG + 80n, peer: BIG + 81n }, desc: true, num: 10 });
        assert.deepEqual(page, [original]);
      });

      it('bin duplicates compare bytes', async () => {
        const base = msg(GROUP, 1n, BIG + 85n, 1n, { msg: new Uint8Array([1, 2, 3]) });
        const original = await appendOne(store, base);
        assert.deepEqual(await store.append([{ ...base, msg: new Uint8Array([1, 2, 3]) }]), [{ status: 'duplicate', message: original }]);
        assert.deepEqual(await store.append([{ ...base, msg: new Uint8Array([1, 2, 4]) }]), [{ status: 'collision' }]);
        assert.deepEqual(await store.append([{ ...base, msg: new Uint8Array([1, 2]) }]), [{ status: 'collision' }]);
      });

      it('sendmsgs-style batch: one message per recipient, results in input order, duplicates inside the batch, all or nothing', async () => {
        const from = BIG + 90n;
        const tos = [BIG + 91n, BIG + 92n, BIG + 93n];
        const rs = await store.append(tos.map((to) => msg(P2P, from, to, 77n)));
        const ms = rs.map(stored);
        assert.deepEqual(
          ms.map((m) => m.to),
          tos,
        );
        assertStrictlyIncreasing(ids(ms), 'batch ids');
        assert.equal(new Set(ms.map((m) => m.mtime)).size, 1, 'one batch, one mtime');
        // A resend of the batch is all duplicates; a batch may repeat a key, and may mix outcomes.
        const again = await store.append(tos.map((to) => msg(P2P, from, to, 77n)));
        assert.deepEqual(
          again,
          ms.map((message) => ({ status: 'duplicate', message })),
        );
        // A batch is all or nothing: one collision, and nothing of it is stored.
        const mixed = await store.append([
          msg(P2P, from, BIG + 94n, 77n),
          msg(P2P, from, BIG + 94n, 77n),
          msg(P2P, from, BIG + 91n, 77n, { attrs: 'other' }),
          msg(P2P, from, BIG + 92n, 77n),
        ]);
        assert.deepEqual(mixed, [
          { status: 'withheld' },
          { status: 'withheld' },
          { status: 'collision' },
          { status: 'duplicate', message: ms[1] },
        ]);
        assert.deepEqual(await store.p2pPeers(PID, from), [...tos].reverse());
        const none = await store.history({ conversation: { pid: PID, kind: P2P, uid: from, peer: BIG + 94n }, desc: true, num: 10 });
        assert.deepEqual(none, []);
        // Without the colliding message the same batch is stored, after every id given out before.
        const rest = await store.append([msg(P2P, from, BIG + 94n, 77n), msg(P2P, from, BIG + 94n, 77n), msg(P2P, from, BIG + 95n, 77n)]);
        const first = stored(rest[0]);
        assert.deepEqual(rest[1], { status: 'duplicate', message: first });
        assertStrictlyIncreasing([...ids(ms), first.id, stored(rest[2]).id], 'ids after a withheld batch');
        assert.deepEqual(await store.p2pPeers(PID, from), [BIG + 95n, BIG + 94n, ...[...tos].reverse()]);
      });

      it('an empty batch resolves to no results', async () => {
        assert.deepEqual(await store.append([]), []);
      });
    });

    describe('group commit and ordering', () => {
      it('concurrent appends all resolve, with distinct ids, increasing in commit order', async () => {
        const gid = BIG + 100n;
        const rs = await Promise.all(Array.from({ length: 300 }, (_, i) => store.append([msg(GROUP, BigInt(i % 7), gid, BigInt(i + 1))])));
        const ms = rs.map((r) => stored(r[0]));
        assert.equal(new Set(ids(ms)).size, 300);
        const byId = [...ms].sort((x, y) => (x.id < y.id ? -1 : 1));
        for (let i = 1; i < byId.length; i++) assert.ok(byId[i]!.mtime >= byId[i - 1]!.mtime, 'mtime never decreases with id');
        const later = await appendOne(store, msg(GROUP, 1n, gid, 1000n));
        assert.ok(later.id > byId[byId.length - 1]!.id);
        assert.ok(later.mtime >= byId[byId.length - 1]!.mtime);
        const all = await pageAll(store, { conversation: { pid: PID, kind: GROUP, to: gid }, desc: false, num: 20 });
        assert.deepEqual(ids(all), [...ids(byId), later.id]);
      });

      it('appends across event-loop turns keep ids and mtimes increasing', async () => {
        const seen: StoredMessage[] = [];
        for (let i = 0; i < 20; i++) {
          seen.push(await appendOne(store, msg(BROADCAST, BigInt(i), 0n, BigInt(i + 1))));
          if (i % 5 === 0) await sleep(1);
        }
        assertStrictlyIncreasing(ids(seen), 'ids');
        for (let i = 1; i < seen.length; i++) assert.ok(seen[i]!.mtime >= seen[i - 1]!.mtime);
      });
    });

    describe('deletion and counts', () => {
      it('a deleted message is hidden from history, getMessage, counts and unread', async () => {
        const gid = BIG + 110n;
        const a = BIG + 111n;
        const b = BIG + 112n;
        await store.addGroupMembers(PID, gid, [a, b]);
        const g1 = await appendOne(store, msg(GROUP, a, gid, 1n));
        const g2 = await appendOne(store, msg(GROUP, a, gid, 2n));
        const p1 = await appendOne(store, msg(P2P, a, b, 3n));
        const p2 = await appendOne(store, msg(P2P, a, b, 4n));
        assert.equal(await store.deleteMessage({ pid: PID, kind: GROUP, from: a, to: gid, mid: 2n }), true);
        assert.equal(await store.deleteMessage({ pid: PID, kind: GROUP, from: a, to: gid, mid: 2n }), false);
        assert.equal(await store.deleteMessage({ pid: PID, kind: GROUP, from: a, to: gid, mid: 999n }), false);
        assert.equal(await store.deleteMessage(p2), true);
        assert.equal(await store.getMessage(g2), undefined);
        assert.deepEqual(await store.getMessage(g1), g1);
        assert.deepEqual(await store.history({ conversation: { pid: PID, kind: GROUP, to: gid }, desc: true, num: 10 }), [g1]);
        assert.deepEqual(await store.history({ conversation: { pid: PID, kind: P2P, uid: b, peer: a }, desc: false, num: 10 }), [p1]);
        assert.deepEqual(await store.countMessages({ pid: PID, kind: GROUP, to: gid }), { sender: 1, num: 1 });
        assert.deepEqual(await store.unreadP2P({ pid: PID, uid: b, since: 0n }), new Map([[a, { count: 1, ltime: p1.mtime }]]));
        const ug = await store.unreadGroups({ pid: PID, uid: b, since: 0n, gids: [gid] });
        assert.deepEqual(ug, new Map([[gid, { count: 1, ltime: g1.mtime }]]));
        // A resend of a deleted message does not bring it back.
        const [again] = await store.append([msg(GROUP, a, gid, 2n)]);
        assert.notEqual(again?.status, 'stored');
        assert.equal(await store.getMessage(g2), undefined);
      });

      it('countMessages counts distinct senders and messages, with mtypes and begin/end', async () => {
        const gid = BIG + 120n;
        const [first] = (await store.append([msg(ROOM, 1n, gid, 1n, { mtype: 30 }), msg(ROOM, 1n, gid, 2n, { mtype: 31 })])).map(stored);
        await sleep(5);
        const late = await appendOne(store, msg(ROOM, 2n, gid, 3n, { mtype: 30 }));
        await appendOne(store, msg(ROOM, 3n, gid, 4n, { mtype: 32 }));
        await appendOne(store, msg(ROOM, 3n, BIG + 121n, 5n, { mtype: 30 }));
        await appendOne(store, msg(GROUP, 4n, gid, 6n, { mtype: 30 }));
        assert.deepEqual(await store.countMessages({ pid: PID, kind: ROOM, to: gid }), { sender: 3, num: 4 });
        assert.deepEqual(await store.countMessages({ pid: PID, kind: ROOM, to: gid, mtypes: [30] }), { sender: 2, num: 2 });
        assert.deepEqual(await store.countMessages({ pid: PID, kind: ROOM, to: gid, begin: late.mtime }), { sender: 2, num: 2 });
        assert.deepEqual(await store.countMessages({ pid: PID, kind: ROOM, to: gid, end: first!.mtime }), { sender: 1, num: 2 });
        assert.deepEqual(await store.countMessages({ pid: PID, kind: GROUP, to: gid }), { sender: 1, num: 1 });
        assert.deepEqual(await store.countMessages({ pid: PID, kind: GROUP, to: BIG + 999n }), { sender: 0, num: 0 });
      });
    });

    describe('unread and conversations', () => {
      it('unreadP2P counts messages to uid per peer after since, with mtypes, peers and ltime', async () => {
        const me = BIG + 130n;
        const x = BIG + 131n;
        const y = BIG + 132n;
        const old = await appendOne(store, msg(P2P, x, me, 1n));
        await sleep(5);
        const x1 = await appendOne(store, msg(P2P, x, me, 2n, { mtype: 30 }));
        const x2 = await appendOne(store, msg(P2P, x, me, 3n, { mtype: 40 }));
        const y1 = await appendOne(store, msg(P2P, y, me, 4n, { mtype: 30 }));
        await appendOne(store, msg(P2P, me, x, 5n)); // sent by me: never unread for me
        await appendOne(store, msg(P2P, x, BIG + 133n, 6n)); // to someone else
        const since = old.mtime;
        assert.deepEqual(
          await store.unreadP2P({ pid: PID, uid: me, since }),
          new Map([
            [x, { count: 2, ltime: x2.mtime }],
            [y, { count: 1, ltime: y1.mtime }],
          ]),
        );
        assert.deepEqual(
          await store.unreadP2P({ pid: PID, uid: me, since, mtypes: [30] }),
          new Map([
            [x, { count: 1, ltime: x1.mtime }],
            [y, { count: 1, ltime: y1.mtime }],
          ]),
        );
        assert.deepEqual(
          await store.unreadP2P({ pid: PID, uid: me, since, peers: [y, BIG + 999n] }),
          new Map([[y, { count: 1, ltime: y1.mtime }]]),
        );
        assert.deepEqual(await store.unreadP2P({ pid: PID, uid: me, since, peers: [] }), new Map());
        assert.equal((await store.unreadP2P({ pid: PID, uid: me, since: 0n })).get(x)?.count, 3);
        assert.deepEqual(await store.unreadP2P({ pid: PID, uid: me, since: y1.mtime + 10_000n }), new Map());
      });

      it('unreadGroups counts messages by others after since, per group of gids', async () => {
        const me = BIG + 140n;
        const g1 = BIG + 141n;
        const g2 = BIG + 142n;
        await store.addGroupMembers(PID, g1, [me, 1n, 2n]);
        await store.addGroupMembers(PID, g2, [me, 2n]);
        await store.addGroupMembers(PID, BIG + 143n, [me, 2n]);
        const old = await appendOne(store, msg(GROUP, 1n, g1, 1n));
        await sleep(5);
        const a = await appendOne(store, msg(GROUP, 1n, g1, 2n, { mtype: 30 }));
        const b = await appendOne(store, msg(GROUP, 2n, g1, 3n, { mtype: 41 }));
        await appendOne(store, msg(GROUP, me, g1, 4n)); // mine
        const c = await appendOne(store, msg(GROUP, 2n, g2, 5n, { mtype: 30 }));
        await appendOne(store, msg(GROUP, 2n, BIG + 143n, 6n)); // not asked
        await appendOne(store, msg(ROOM, 2n, g1, 7n)); // a room with the same id
        const since = old.mtime;
        assert.deepEqual(
          await store.unreadGroups({ pid: PID, uid: me, since, gids: [g1, g2, BIG + 999n] }),
          new Map([
            [g1, { count: 2, ltime: b.mtime }],
            [g2, { count: 1, ltime: c.mtime }],
          ]),
        );
        assert.deepEqual(
          await store.unreadGroups({ pid: PID, uid: me, since, gids: [g1], mtypes: [30] }),
          new Map([[g1, { count: 1, ltime: a.mtime }]]),
        );
        assert.deepEqual(await store.unreadGroups({ pid: PID, uid: me, since, gids: [] }), new Map());
      });

      it('unreadGroups counts only what was sent after uid joined; a member added again keeps its join', async () => {
        const [me, other, gid, left] = [BIG + 144n, BIG + 145n, BIG + 146n, BIG + 147n];
        await store.addGroupMembers(PID, gid, [other]);
        await store.addGroupMembers(PID, left, [me, other]);
        await appendOne(store, msg(GROUP, other, gid, 1n)); // before I joined
        await store.addGroupMembers(PID, gid, [me]);
        // Same millisecond or not, a message stored after the join counts (the join is an unread mark).
        const after = await appendOne(store, msg(GROUP, other, gid, 2n));
        await store.addGroupMembers(PID, gid, [me, other]); // again: nothing moves
        const later = await appendOne(store, msg(GROUP, other, gid, 3n));
        await appendOne(store, msg(GROUP, other, left, 4n));
        await store.removeGroupMembers(PID, left, [me]); // not a member: nothing counts
        assert.deepEqual(
          await store.unreadGroups({ pid: PID, uid: me, since: 0n, gids: [gid, left] }),
          new Map([[gid, { count: 2, ltime: later.mtime }]]),
        );
        assert.deepEqual(
          await store.unreadGroups({ pid: PID, uid: me, since: after.mtime, gids: [gid] }),
          new Map([[gid, { count: 1, ltime: later.mtime }]]),
        );
        // Left and added back: a new join, counting from there.
        await store.removeGroupMembers(PID, gid, [me]);
        await store.addGroupMembers(PID, gid, [me]);
        const back = await appendOne(store, msg(GROUP, other, gid, 5n));
        assert.deepEqual(
          await store.unreadGroups({ pid: PID, uid: me, since: 0n, gids: [gid] }),
          new Map([[gid, { count: 1, ltime: back.mtime }]]),
        );
      });

      it('p2pPeers lists peers newest first from both sides; removeP2PSession hides until a new message', async () => {
        const me = BIG + 150n;
        const [p1, p2, p3] = [BIG + 151n, BIG + 152n, BIG + 153n];
        await appendOne(store, msg(P2P, me, p1, 1n));
        await appendOne(store, msg(P2P, p2, me, 2n));
        await appendOne(store, msg(P2P, me, p3, 3n));
        await appendOne(store, msg(P2P, p1, me, 4n));
        assert.deepEqual(await store.p2pPeers(PID, me), [p1, p3, p2]);
        assert.deepEqual(await store.p2pPeers(PID, p2), [me]);
        await store.removeP2PSession(PID, me, p3);
        assert.deepEqual(await store.p2pPeers(PID, me), [p1, p2]);
        assert.deepEqual(await store.p2pPeers(PID, p3), [me], 'removal is one-sided');
        await appendOne(store, msg(P2P, p3, me, 5n));
        assert.deepEqual(await store.p2pPeers(PID, me), [p3, p1, p2]);
        assert.deepEqual(await store.p2pPeers(PID, BIG + 159n), []);
        // A duplicate is not new activity.
        await store.append([msg(P2P, me, p2, 6n)]);
        await store.append([msg(P2P, me, p1, 7n)]);
        await store.append([msg(P2P, me, p2, 6n)]);
        assert.deepEqual(await store.p2pPeers(PID, me), [p1, p2, p3]);
      });

      it('unread baseline times are stored per user', async () => {
        const logout = (uid: bigint, at: bigint) => endPresenceNow(store, PID, uid, at, store.roomsCut());
        assert.deepEqual(await store.getUnreadBaseline(PID, BIG + 160n), {});
        await logout(BIG + 160n, 1_700_000_000_123n);
        assert.deepEqual(await store.getUnreadBaseline(PID, BIG + 160n), { logoutTime: 1_700_000_000_123n });
        await store.setClearTime(PID, BIG + 160n, 1_700_000_000_456n);
        await logout(BIG + 160n, 1_700_000_000_789n);
        assert.deepEqual(await store.getUnreadBaseline(PID, BIG + 160n), { logoutTime: 1_700_000_000_789n, clearTime: 1_700_000_000_456n });
        await store.setClearTime(PID, BIG + 161n, 5n);
        assert.deepEqual(await store.getUnreadBaseline(PID, BIG + 161n), { clearTime: 5n });
        assert.deepEqual(await store.getUnreadBaseline(PID + 1, BIG + 160n), {});
        // Only forward: a write of an earlier time (a race lost by the later one) changes nothing.
        await logout(BIG + 160n, 1_700_000_000_100n);
        await store.setClearTime(PID, BIG + 160n, 1_700_000_000_400n);
        assert.deepEqual(await store.getUnreadBaseline(PID, BIG + 160n), { logoutTime: 1_700_000_000_789n, clearTime: 1_700_000_000_456n });
        await store.setClearTime(PID, BIG + 160n, 1_700_000_000_999n);
        assert.deepEqual(await store.getUnreadBaseline(PID, BIG + 160n), { logoutTime: 1_700_000_000_789n, clearTime: 1_700_000_000_999n });
      });
    });

    describe('presence ends handed over at a stop', () => {
      it('are kept, taken once by the user coming back or once their deadline passes', async () => {
        const [a, b, c] = [BIG + 160n, BIG + 161n, BIG + 162n];
        assert.equal(await store.takePresenceEnd(PID, a), undefined);
        assert.deepEqual(await store.takeExpiredPresenceEnds(10_000n, 10), []);
        await store.savePresenceEnds([]);
        await store.savePresenceEnds([
          { pid: PID, uid: a, endedAt: 100n, deadline: 1_000n },
          { pid: PID, uid: b, endedAt: 200n, deadline: 2_000n },
          { pid: PID, uid: c, endedAt: 300n, deadline: 3_000n },
        ]);
        await store.savePresenceEnds([{ pid: PID, uid: c, endedAt: 350n, deadline: 3_500n }]); // a later one replaces it
        assert.deepEqual(await store.takePresenceEnd(PID, b), { pid: PID, uid: b, endedAt: 200n, deadline: 2_000n });
        assert.equal(await store.takePresenceEnd(PID, b), undefined, 'taken once');
        assert.equal(await store.takePresenceEnd(PID + 1, a), undefined, 'per project');
        assert.deepEqual(await store.takeExpiredPresenceEnds(999n, 10), []);
        assert.deepEqual(await store.takeExpiredPresenceEnds(3_000n, 10), [{ pid: PID, uid: a, endedAt: 100n, deadline: 1_000n }]);
        assert.deepEqual(await store.takeExpiredPresenceEnds(3_000n, 10), []);
        assert.deepEqual(await store.takeExpiredPresenceEnds(BIG, 10), [{ pid: PID, uid: c, endedAt: 350n, deadline: 3_500n }]);
        // At most `limit` a call, the earliest deadlines first.
        const many = [5n, 3n, 4n, 1n, 2n].map((n) => ({ pid: PID, uid: BIG + 170n + n, endedAt: n, deadline: 10_000n + n }));
        await store.savePresenceEnds(many);
        assert.deepEqual(
          (await store.takeExpiredPresenceEnds(BIG, 2)).map((e) => e.endedAt),
          [1n, 2n],
        );
        assert.deepEqual(
          (await store.takeExpiredPresenceEnds(BIG, 2)).map((e) => e.endedAt),
          [3n, 4n],
        );
        assert.deepEqual(
          (await store.takeExpiredPresenceEnds(BIG, 2)).map((e) => e.endedAt),
          [5n],
        );
      });
    });

    describe('presences held by nodes', () => {
      it("a dead node's presences come back once, as the ends it would have handed over; a live node's stay", async () => {
        const [a, b, c, d] = [BIG + 180n, BIG + 181n, BIG + 182n, BIG + 183n];
        const GRACE = 500n;
        assert.deepEqual(await store.takeOrphanedPresences(BIG, GRACE, 10), [], 'no node yet');
        assert.equal(await store.touchNode('live', 1_000n, 10n), false, 'a new node');
        assert.equal(await store.touchNode('dead', 1_000n, 11n), false);
        assert.equal(await store.touchNode('dead', 2_000n, 20n), true, 'known: touched');
        const held = (pid: number, uid: bigint, endedAt?: bigint) => ({ pid, uid, held: true, endedAt });
        await store.recordPresences('live', [held(PID, a)]);
        await store.recordPresences('dead', []);
        await store.recordPresences('dead', [held(PID, a), held(PID, b), held(PID, c), held(PID, d), held(PID + 1, a)]); // a on two nodes
        await store.recordPresences('dead', [held(PID, c, 15n), held(PID, d, 16n)]); // their grace periods run
        await store.recordPresences('dead', [
          held(PID, d), // d came back: no longer ending
          { pid: PID + 1, uid: a, held: false }, // another project's presence ended
          held(PID + 1, b, 17n), // never held before: recorded anyway
          { pid: PID + 1, uid: c, held: false }, // never held: nothing to release
        ]);
        assert.deepEqual(
          await store.presenceHolders(PID, a),
          [
            { node: 'dead', seenAt: 2_000n },
            { node: 'live', seenAt: 1_000n },
          ],
          'by node, with their last touch',
        );
        assert.deepEqual(await store.presenceHolders(PID, c), [{ node: 'dead', endedAt: 15n, seenAt: 2_000n }]);
        assert.deepEqual(await store.presenceHolders(PID + 1, a), [], 'released');
        assert.deepEqual(await store.presenceHolders(PID + 2, a), [], 'per project');
        assert.equal(await store.touchNode('live', 5_000n, 50n), true);
        assert.deepEqual(await store.liveNodes(1_000n), ['dead', 'live'], 'touched at or after 1000, by id');
        assert.deepEqual(await store.liveNodes(2_001n), ['live'], 'the dead node last touched at 2000');
        assert.deepEqual(await store.liveNodes(5_001n), [], 'none touched since');
        assert.deepEqual(await store.takeOrphanedPresences(2_000n, GRACE, 10), [], 'touched at 2000: not dead before 2000');
        const taken = await store.takeOrphanedPresences(2_001n, GRACE, 3);
        const more = await store.takeOrphanedPresences(2_001n, GRACE, 3);
        const key = (e: { pid: number; uid: bigint }): string => `${e.pid}:${e.uid}`;
        assert.equal(taken.length, 3, 'at most `limit` a call');
        assert.deepEqual(
          [...taken, ...more].sort((x, y) => key(x).localeCompare(key(y))),
          [
            { pid: PID, uid: a, endedAt: 20n, deadline: 2_500n }, // a session there: the node's last mark
            { pid: PID, uid: b, endedAt: 20n, deadline: 2_500n },
            { pid: PID, uid: c, endedAt: 15n, deadline: 2_500n }, // its grace period's start
            { pid: PID, uid: d, endedAt: 20n, deadline: 2_500n },
            { pid: PID + 1, uid: b, endedAt: 17n, deadline: 2_500n },
          ].sort((x, y) => key(x).localeCompare(key(y))),
        );
        assert.deepEqual(await store.takeOrphanedPresences(5_000n, GRACE, 10), [], 'taken once; the live node (touched at 5000) holds on');
        assert.deepEqual(await store.presenceHolders(PID, a), [{ node: 'live', seenAt: 5_000n }], "the dead node's taken");
        assert.equal(await store.touchNode('dead', 6_000n, 60n), false, 'the dead node was forgotten once it held none');
        // A graceful stop forgets the node and what it held.
        await store.recordPresences('dead', [held(PID, b)]);
        await store.dropNode('dead');
        await store.dropNode('live');
        assert.deepEqual(await store.takeOrphanedPresences(BIG, GRACE, 10), []);
        assert.equal(await store.touchNode('live', 7_000n, 70n), false, 'forgotten');
        await store.dropNode('live');
      });
    });

    describe('the claim of a presence', () => {
      it('a join begins a presence only when none goes on; an end wins only at the version it read', async () => {
        const [a, b, rid, later] = [BIG + 190n, BIG + 191n, BIG + 192n, BIG + 193n];
        assert.deepEqual(await store.presenceClaim(PID, a), { version: 0n, live: false }, 'never logged in');
        assert.deepEqual(await store.joinPresence(PID, a, 'node-a'), { version: 1n, began: true }, 'the first login begins one');
        assert.deepEqual(await store.joinPresence(PID, a, 'node-b'), { version: 2n, began: false }, 'another node joins it');
        assert.deepEqual(
          (await store.presenceHolders(PID, a)).map((h) => h.node),
          ['node-a', 'node-b'],
          'each join recorded its node as a holder',
        );
        assert.deepEqual(await store.presenceClaim(PID, a), { version: 2n, live: true });
        assert.deepEqual(await store.presenceClaim(PID + 1, a), { version: 0n, live: false }, 'per project');
        await store.addRoomMember(PID, rid, a);
        const through = store.roomsCut();
        await store.addRoomMember(PID, later, a); // joined after the cut: stays
        assert.equal(await store.endPresence(PID, a, 1n, 500n, through), undefined, 'a join came since version 1: nothing ended');
        assert.deepEqual(await store.getUnreadBaseline(PID, a), {}, 'nor written');
        assert.deepEqual(await store.roomMembers(PID, rid), [a]);
        assert.deepEqual(await store.endPresence(PID, a, 2n, 500n, through), [rid], 'ended: the rooms joined before the cut left');
        assert.deepEqual(await store.getUnreadBaseline(PID, a), { logoutTime: 500n });
        assert.deepEqual(await store.userRooms(PID, a), [later]);
        assert.deepEqual(await store.presenceClaim(PID, a), { version: 3n, live: false });
        assert.equal(await store.endPresence(PID, a, 2n, 600n, store.roomsCut()), undefined, 'ended once');
        assert.equal(await store.endPresence(PID, a, 3n, 600n, store.roomsCut()), undefined, 'not live: nothing to end');
        assert.deepEqual(await store.getUnreadBaseline(PID, a), { logoutTime: 500n });
        assert.deepEqual(
          await store.joinPresence(PID, a, 'node-a'),
          { version: 4n, began: true },
          'the next login begins the next presence',
        );
        assert.deepEqual(
          await store.endPresence(PID, a, 4n, 400n, store.roomsCut()),
          [later],
          'an earlier logout time does not move it back',
        );
        assert.deepEqual(await store.getUnreadBaseline(PID, a), { logoutTime: 500n });
        // Joins and ends at once, each as two nodes would race them: exactly one of each wins.
        const joins = await Promise.all([store.joinPresence(PID, b, 'node-a'), store.joinPresence(PID, b, 'node-b')]);
        assert.deepEqual(joins.map((j) => j.began).sort(), [false, true], 'one of two joins at once begins it');
        const { version } = await store.presenceClaim(PID, b);
        const ends = await Promise.all([1000n, 2000n].map((at) => store.endPresence(PID, b, version, at, store.roomsCut())));
        assert.deepEqual(
          ends.map((e) => e !== undefined),
          ends[0] ? [true, false] : [false, true],
          'one of two ends at once ends it',
        );
        await store.dropNode('node-a');
        await store.dropNode('node-b');
      });

      it('a join records its node as holding a session: a node that dies just after it leaves no claim that nobody ends', async () => {
        const u = BIG + 195n;
        assert.equal(await store.touchNode('joiner', 1_000n, 10n), false);
        await store.recordPresences('joiner', [{ pid: PID, uid: u, held: true, endedAt: 5n }]); // a grace period ran there…
        assert.deepEqual(await store.joinPresence(PID, u, 'joiner'), { version: 1n, began: true });
        assert.deepEqual(await store.presenceHolders(PID, u), [{ node: 'joiner', seenAt: 1_000n }], '…and the join made it a session');
        // The node dies before its own (batched) record of the login is written: the claim is live,
        // and the sweep of another node takes it as it takes a recorded one, so its end comes.
        assert.deepEqual(await store.takeOrphanedPresences(1_001n, 500n, 10), [{ pid: PID, uid: u, endedAt: 10n, deadline: 1_500n }]);
        assert.deepEqual(await store.presenceHolders(PID, u), []);
        assert.deepEqual(await store.presenceClaim(PID, u), { version: 1n, live: true }, 'for the taker to end');
        await store.dropNode('joiner');
      });
    });

    describe('tokens, groups, rooms', () => {
      it('tokens', async () => {
        assert.equal(await store.getToken(PID, BIG + 1n), undefined);
        assert.equal(await store.issueToken(PID, BIG + 1n, 'A'.repeat(32)), 'A'.repeat(32));
        assert.equal(await store.issueToken(PID, BIG + 2n, 'B'.repeat(32)), 'B'.repeat(32));
        assert.equal(await store.getToken(PID, BIG + 1n), 'A'.repeat(32));
        // The first token stays: a second issue answers it and stores nothing.
        assert.equal(await store.issueToken(PID, BIG + 1n, 'C'.repeat(32)), 'A'.repeat(32));
        assert.equal(await store.getToken(PID, BIG + 1n), 'A'.repeat(32));
        await store.deleteToken(PID, BIG + 1n);
        assert.equal(await store.getToken(PID, BIG + 1n), undefined);
        assert.equal(await store.issueToken(PID, BIG + 1n, 'C'.repeat(32)), 'C'.repeat(32));
        assert.equal(await store.getToken(PID, BIG + 2n), 'B'.repeat(32));
        assert.equal(await store.getToken(PID + 1, BIG + 2n), undefined);
      });

      it('groups: members, count, membership, user groups, delete', async () => {
        const [g1, g2] = [BIG + 200n, BIG + 201n];
        const [u1, u2, u3] = [BIG + 1n, BIG + 2n, BIG + 3n];
        await store.addGroupMembers(PID, g1, [u3, u1, u2]);
        await store.addGroupMembers(PID, g1, [u1]); // idempotent
        await store.addGroupMembers(PID, g2, [u1]);
        assert.deepEqual(await store.groupMembers(PID, g1), [u1, u2, u3]);
        assert.equal(await store.groupMemberCount(PID, g1), 3);
        assert.equal(await store.isGroupMember(PID, g1, u2), true);
        assert.deepEqual(await store.userGroups(PID, u1), [g1, g2]);
        await store.removeGroupMembers(PID, g1, [u2, BIG + 9n]);
        assert.deepEqual(await store.groupMembers(PID, g1), [u1, u3]);
        assert.equal(await store.isGroupMember(PID, g1, u2), false);
        await store.setInfo(PID, 'group', g1, { oinfo: 'o', pinfo: 'p' });
        await store.deleteGroup(PID, g1);
        assert.deepEqual(await store.groupMembers(PID, g1), []);
        assert.equal(await store.groupMemberCount(PID, g1), 0);
        assert.deepEqual(await store.getInfo(PID, 'group', g1), { oinfo: '', pinfo: '' });
        assert.deepEqual(await store.userGroups(PID, u1), [g2]);
        assert.deepEqual(await store.groupMembers(PID + 1, g2), []);
      });

      it('countGroups: the gids with members, per project, stopping at upTo', async () => {
        const [u1, u2, u3] = [BIG + 1n, BIG + 2n, BIG + 3n];
        assert.equal(await store.countGroups(PID), 0);
        // Small and large gids, groups of several members (counted once), another project.
        const [g1, g2, g3, g4] = [7n, BIG + 500n, BIG + 501n, 2n ** 62n];
        await store.addGroupMembers(PID, g1, [u1]);
        await store.addGroupMembers(PID, g2, [u1, u2, u3]);
        await store.addGroupMembers(PID, g3, [u2]);
        await store.addGroupMembers(PID, g4, [u3, u1]);
        await store.addGroupMembers(PID, g2, [u1]); // already in: no new group
        await store.addGroupMembers(PID + 1, g2, [u1]);
        await store.setInfo(PID, 'group', BIG + 999n, { oinfo: 'info, no members' }); // no group
        assert.equal(await store.countGroups(PID), 4);
        assert.equal(await store.countGroups(PID + 1), 1);
        assert.equal(await store.countGroups(PID - 1), 0);
        assert.equal(await store.countGroups(PID, 10_000), 4);
        assert.equal(await store.countGroups(PID, 4), 4);
        assert.equal(await store.countGroups(PID, 3), 3, 'counting stops at upTo');
        assert.equal(await store.countGroups(PID, 1), 1);
        assert.equal(await store.countGroups(PID, 0), 0);
        // Gone with their last member, or deleted; a group that keeps members stays.
        await store.removeGroupMembers(PID, g3, [u2]);
        await store.removeGroupMembers(PID, g2, [u1, u2]);
        await store.deleteGroup(PID, g4);
        assert.equal(await store.countGroups(PID), 2);
        await store.addGroupMembers(PID, g3, [u1]); // back
        assert.equal(await store.countGroups(PID), 3);
        assert.equal(await store.countGroups(PID + 1), 1);
      });

      it('rooms: members, counts, user rooms, left at the end of a presence', async () => {
        const [r1, r2, r3] = [BIG + 300n, BIG + 301n, BIG + 302n];
        const [u1, u2] = [BIG + 1n, BIG + 2n];
        await store.addRoomMember(PID, r1, u1);
        await store.addRoomMember(PID, r1, u1);
        await store.addRoomMember(PID, r1, u2);
        await store.addRoomMember(PID, r2, u1);
        await store.addRoomMember(PID, r3, u2);
        assert.deepEqual(await store.roomMembers(PID, r1), [u1, u2]);
        assert.deepEqual(
          await store.roomCounts(PID, [r1, r2, BIG + 399n]),
          new Map([
            [r1, 2],
            [r2, 1],
          ]),
        );
        assert.deepEqual(await store.roomCounts(PID, []), new Map());
        assert.deepEqual(await store.userRooms(PID, u1), [r1, r2]);
        await store.removeRoomMember(PID, r1, u2);
        assert.deepEqual(await store.roomMembers(PID, r1), [u1]);
        assert.deepEqual(await endPresenceNow(store, PID, u1, 1n, store.roomsCut()), [r1, r2]);
        assert.deepEqual(await store.userRooms(PID, u1), []);
        assert.deepEqual(await store.roomMembers(PID, r1), []);
        assert.deepEqual(await store.userRooms(PID, u2), [r3]);
        assert.deepEqual(await endPresenceNow(store, PID, u1, 2n, store.roomsCut()), []);
      });

      it('the end of a presence leaves the rooms joined after its cut, re-joins included, even in the same millisecond', async () => {
        const [r1, r2, r3] = [BIG + 310n, BIG + 311n, BIG + 312n];
        const u = BIG + 3n;
        await store.addRoomMember(PID, r1, u);
        await store.addRoomMember(PID, r2, u);
        const end = store.roomsCut(); // the user's presence ends here…
        await store.addRoomMember(PID, r3, u); // …and a backend adds them to a room, and again to r2,
        await store.addRoomMember(PID, r2, u); // before the end's cleanup runs
        assert.deepEqual(await endPresenceNow(store, PID, u, 1n, end), [r1]);
        assert.deepEqual(await store.userRooms(PID, u), [r2, r3]);
      });

      it('the end of a presence leaves every room joined before its cut, while message commits are in flight', async () => {
        // A presence ends while other users' messages are being committed (a busy server). An
        // unread mark is lowered below such commits; a cut for rooms must not be, or the room the
        // user entered just before is never left and they stay in its member list for good.
        const u = BIG + 320n;
        const kept: bigint[] = [];
        for (let i = 0n; i < 30n; i++) {
          const rid = BIG + 330n + i;
          const sending = store.append([msg(P2P, BIG + 321n, BIG + 322n, BIG + 3000n + i)]);
          await new Promise<void>((resolve) => setImmediate(resolve)); // the commit has begun
          await store.addRoomMember(PID, rid, u);
          const through = store.roomsCut(); // the presence ends
          const left = await endPresenceNow(store, PID, u, 1n, through);
          if (!left.includes(rid)) kept.push(rid);
          stored((await sending)[0]);
        }
        assert.deepEqual(kept, [], 'rooms joined before the cut were all left');
        assert.deepEqual(await store.userRooms(PID, u), []);
      });
    });

    describe('bans and blacklists', () => {
      it('bans: per target and for all of a scope, with expiry at `now`', async () => {
        const u = BIG + 400n;
        const [g1, g2] = [BIG + 401n, BIG + 402n];
        const now = 1_700_000_000_000n;
        await store.addBan(PID, 'group', g1, u);
        assert.equal(await store.isBanned(PID, 'group', g1, u, now), true);
        assert.equal(await store.isBanned(PID, 'group', g2, u, now), false);
        assert.equal(await store.isBanned(PID, 'room', g1, u, now), false, 'scopes are independent');
        assert.equal(await store.isBanned(PID, 'group', g1, BIG + 409n, now), false);
        await store.addBan(PID, 'room', 0n, u, now + 1000n);
        assert.equal(await store.isBanned(PID, 'room', g2, u, now), true, 'all-rooms ban');
        assert.equal(await store.isBanned(PID, 'room', g2, u, now + 999n), true);
        assert.equal(await store.isBanned(PID, 'room', g2, u, now + 1000n), false, 'expired at until');
        await store.addBan(PID, 'room', 0n, u); // re-ban forever replaces the expiry
        assert.equal(await store.isBanned(PID, 'room', g2, u, now + 10_000_000n), true);
        await store.removeBan(PID, 'room', 0n, u);
        assert.equal(await store.isBanned(PID, 'room', g2, u, now), false);
        await store.removeBan(PID, 'group', g1, u);
        assert.equal(await store.isBanned(PID, 'group', g1, u, now), false);
        await store.addBan(PID, 'group', g2, u, now - 1n);
        assert.equal(await store.isBanned(PID, 'group', g2, u, now), false, 'already expired');
      });

      it('project blacklist with expiry', async () => {
        const u = BIG + 410n;
        const now = 1_700_000_000_000n;
        assert.equal(await store.isProjectBlack(PID, u, now), false);
        await store.addProjectBlack(PID, u, now + 5n);
        assert.equal(await store.isProjectBlack(PID, u, now), true);
        assert.equal(await store.isProjectBlack(PID, u, now + 5n), false);
        assert.equal(await store.isProjectBlack(PID + 1, u, now), false);
        await store.addProjectBlack(PID, u);
        assert.equal(await store.isProjectBlack(PID, u, now + 1_000_000_000n), true);
        await store.removeProjectBlack(PID, u);
        assert.equal(await store.isProjectBlack(PID, u, now), false);
      });

      it('kickouts: kept in time order, read from a time, forgotten when older than forgetBefore', async () => {
        const [u, v] = [BIG + 415n, BIG + 416n];
        const t = 1_800_000_000_000n;
        assert.deepEqual(await store.kickoutsSince(t, 10), []);
        await store.recordKickout({ pid: PID, uid: u, at: t + 10n }, 0n);
        await store.recordKickout({ pid: PID + 1, uid: v, at: t + 20n, endpoint: 'node-b:13321' }, 0n);
        await store.recordKickout({ pid: PID, uid: v, at: t + 30n }, 0n);
        assert.deepEqual(await store.kickoutsSince(t + 10n, 10), [
          { pid: PID, uid: u, at: t + 10n },
          { pid: PID + 1, uid: v, at: t + 20n, endpoint: 'node-b:13321' },
          { pid: PID, uid: v, at: t + 30n },
        ]);
        assert.deepEqual(
          (await store.kickoutsSince(t + 11n, 1)).map((k) => k.at),
          [t + 20n],
          'from a time, at most limit',
        );
        await store.recordKickout({ pid: PID, uid: u, at: t + 40n }, t + 25n); // forgets the two before t + 25
        assert.deepEqual(
          (await store.kickoutsSince(0n, 10)).map((k) => k.at),
          [t + 30n, t + 40n],
        );
      });

      it('friends are symmetric', async () => {
        const [a, b, c, d] = [BIG + 420n, BIG + 421n, BIG + 422n, BIG + 423n];
        await store.addFriends(PID, a, [c, b]);
        await store.addFriends(PID, b, [a]); // already friends
        assert.deepEqual(await store.friends(PID, a), [b, c]);
        assert.deepEqual(await store.friends(PID, b), [a]);
        assert.deepEqual(await store.friends(PID, c), [a]);
        assert.deepEqual(await store.filterFriends(PID, c, [a, b, d]), [a]);
        assert.deepEqual(await store.filterFriends(PID, c, []), []);
        await store.removeFriends(PID, c, [a]);
        assert.deepEqual(await store.friends(PID, a), [b]);
        assert.deepEqual(await store.friends(PID, c), []);
      });

      it('blacks and blockedBy have a direction', async () => {
        const [a, b, c] = [BIG + 430n, BIG + 431n, BIG + 432n];
        await store.addBlacks(PID, a, [b, c]); // a blocks b and c
        await store.addBlacks(PID, a, [b]);
        assert.deepEqual(await store.blacks(PID, a), [b, c]);
        assert.deepEqual(await store.blacks(PID, b), []);
        assert.deepEqual(await store.blockedBy(PID, b, [a, c]), [a], 'a has blocked b');
        assert.deepEqual(await store.blockedBy(PID, a, [b, c]), [], 'nobody blocked a');
        assert.deepEqual(await store.blockedBy(PID, b, []), []);
        await store.removeBlacks(PID, a, [b]);
        assert.deepEqual(await store.blacks(PID, a), [c]);
        assert.deepEqual(await store.blockedBy(PID, b, [a]), []);
      });
    });

    describe('info and data', () => {
      it('info: absent parts stay unchanged, unset parts read as ""', async () => {
        const u = BIG + 500n;
        assert.deepEqual(await store.getInfo(PID, 'user', u), { oinfo: '', pinfo: '' });
        await store.setInfo(PID, 'user', u, { oinfo: 'public' });
        assert.deepEqual(await store.getInfo(PID, 'user', u), { oinfo: 'public', pinfo: '' });
        await store.setInfo(PID, 'user', u, { pinfo: 'private' });
        assert.deepEqual(await store.getInfo(PID, 'user', u), { oinfo: 'public', pinfo: 'private' });
        await store.setInfo(PID, 'user', u, {});
        await store.setInfo(PID, 'user', u, { oinfo: 'public 2', pinfo: undefined });
        assert.deepEqual(await store.getInfo(PID, 'user', u), { oinfo: 'public 2', pinfo: 'private' });
        await store.setInfo(PID, 'user', u, { pinfo: '' });
        assert.deepEqual(await store.getInfo(PID, 'user', u), { oinfo: 'public 2', pinfo: '' });
        assert.deepEqual(await store.getInfo(PID, 'room', u), { oinfo: '', pinfo: '' }, 'kinds are separate');
        await store.setInfo(PID, 'room', u, { oinfo: 'room' });
        assert.deepEqual(await store.getInfo(PID, 'user', u), { oinfo: 'public 2', pinfo: '' });
      });

      it('open infos of those that have one', async () => {
        const [a, b, c] = [BIG + 510n, BIG + 511n, BIG + 512n];
        await store.setInfo(PID, 'user', a, { oinfo: 'A', pinfo: 'secret' });
        await store.setInfo(PID, 'user', b, { oinfo: 'B' });
        await store.setInfo(PID, 'group', c, { oinfo: 'G' });
        assert.deepEqual(
          await store.getOpenInfos(PID, 'user', [a, b, c]),
          new Map([
            [a, 'A'],
            [b, 'B'],
          ]),
        );
        assert.deepEqual(await store.getOpenInfos(PID, 'group', [a, c]), new Map([[c, 'G']]));
        assert.deepEqual(await store.getOpenInfos(PID, 'user', []), new Map());
      });

      it('key-value data per user', async () => {
        const u = BIG + 520n;
        assert.equal(await store.dataGet(PID, u, 'k'), undefined);
        await store.dataSet(PID, u, 'k', 'v1');
        await store.dataSet(PID, u, 'k2', '');
        await store.dataSet(PID, u, 'k', 'v2');
        assert.equal(await store.dataGet(PID, u, 'k'), 'v2');
        assert.equal(await store.dataGet(PID, u, 'k2'), '');
        assert.equal(await store.dataGet(PID, u + 1n, 'k'), undefined);
        await store.dataDelete(PID, u, 'k');
        assert.equal(await store.dataGet(PID, u, 'k'), undefined);
        assert.equal(await store.dataGet(PID, u, 'k2'), '');
      });
    });

    describe('retention', () => {
      it('removes messages older than maxAgeMs', async () => {
        const gid = BIG + 600n;
        const old = (await store.append([1n, 2n, 3n].map((mid) => msg(GROUP, 1n, gid, mid)))).map(stored);
        await sleep(5);
        const cut = BigInt(Date.now());
        await sleep(2);
        const fresh = (await store.append([4n, 5n].map((mid) => msg(GROUP, 1n, gid, mid)))).map(stored);
        const removed = await store.sweepRetention({ maxAgeMs: 60_000 }, cut + 60_000n);
        assert.equal(removed, 3);
        assert.deepEqual(await pageAll(store, { conversation: { pid: PID, kind: GROUP, to: gid }, desc: false, num: 10 }), fresh);
        assert.equal(await store.getMessage(old[0]!), undefined);
        assert.equal(await store.sweepRetention({ maxAgeMs: 60_000 }, cut + 60_000n), 0);
        assert.equal(await store.sweepRetention({}, cut), 0);
      });

      it('keeps at most maxPerConversation messages per conversation; ids keep increasing after', async () => {
        const [a, b] = [BIG + 610n, BIG + 611n];
        const gid = BIG + 612n;
        const p = (await store.append(Array.from({ length: 10 }, (_, i) => msg(P2P, i % 2 ? a : b, i % 2 ? b : a, BigInt(i + 1))))).map(
          stored,
        );
        const g = (await store.append(Array.from({ length: 3 }, (_, i) => msg(GROUP, a, gid, BigInt(i + 1))))).map(stored);
        assert.equal(await store.sweepRetention({ maxPerConversation: 4 }, BigInt(Date.now())), 6);
        const conversation: ConversationRef = { pid: PID, kind: P2P, uid: a, peer: b };
        assert.deepEqual(await pageAll(store, { conversation, desc: false, num: 3 }), p.slice(6));
        assert.deepEqual(await pageAll(store, { conversation: { pid: PID, kind: GROUP, to: gid }, desc: false, num: 5 }), g);
        const maxId = g[g.length - 1]!.id;
        assert.equal(await store.sweepRetention({ maxPerConversation: 0 }, BigInt(Date.now())), 7);
        const next = await appendOne(store, msg(GROUP, a, gid, 100n));
        assert.ok(next.id > maxId, 'ids of removed messages are never reused');
        assert.ok(next.mtime >= g[g.length - 1]!.mtime);
      });
    });
  });
}
