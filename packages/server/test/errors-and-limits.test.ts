import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { encodeQuestFrame, RtmError, type Payload } from '@rtm/fpnn';
import { RawClient, signFields, startTestServer, TEST_PID, TEST_SECRET, uniqueSalt, type TestServer } from '@rtm/testkit';
import { DEFAULT_CONFIG, DEFAULT_LIMITS } from '../src/config.js';
import { SqliteStore } from '../src/store/sqlite.js';

// Line by line through spec/errors-and-limits.md: every error code the server raises, in each
// situation the spec lists, and every limit at its value (accepted) and one past it (refused with
// the spec's code). Real servers, raw FPNN frames over TCP (server gate) and WebSocket (client
// gate), the HTTP bridge where it has its own answers. Codes of the frame layer (10003, 10004,
// 20006, oversize and malformed frames, idle timeout) are in transport.test.ts and
// resource-bounds.test.ts; the listen bound (200032) in client-api-conformance.test.ts.

const OTHER_PID = 11000002;
const OTHER_SECRET = 'other-project-secret';
const ADMIN = 9n << 56n;

let nextUid = 9n << 56n;
const newUid = (): bigint => ++nextUid;
let nextMid = 6n << 60n;
const newMid = (): bigint => ++nextMid;
let nextId = 9n << 48n;
/** A fresh gid or rid. */
const newId = (): bigint => ++nextId;
/** `n` fresh uids. */
const uids = (n: number): bigint[] => Array.from({ length: n }, newUid);
/** Two fresh uids. */
const two = (): [bigint, bigint] => [newUid(), newUid()];

interface Ctx {
  server: TestServer;
  backend: RawClient;
  signed(method: string, payload: Payload): Promise<Payload>;
  login(uid?: bigint): Promise<RawClient>;
  /** A twoway quest over a WebSocket to the client gate, not logged in. */
  anonymous(): Promise<RawClient>;
}

/** What a row expects: success (optionally checked), or an error answer with this code. */
type Want = 'ok' | number | ((answer: Payload) => void);
type Row = readonly [what: string, want: Want, run: (c: Ctx) => Promise<Payload>, ex?: RegExp];

/** Runs one row: an error answer must carry exactly the code and a useful `ex` (fpnn.md §3). */
async function check(run: Promise<Payload>, want: Want, ex?: RegExp): Promise<void> {
  let answer: Payload;
  try {
    answer = await run;
  } catch (err) {
    if (typeof want !== 'number') throw err;
    assert.ok(err instanceof RtmError, `expected an error answer, got ${String(err)}`);
    assert.equal(err.code, want, `code (ex: ${err.message})`);
    assert.ok(err.message.length > 5 && err.message !== 'error answer without ex', `ex is useful: '${err.message}'`);
    if (ex) assert.match(err.message, ex);
    return;
  }
  if (typeof want === 'number')
    assert.fail(`expected error ${want}, got ${JSON.stringify(answer, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`);
  if (typeof want === 'function') want(answer);
}

function table(rows: readonly Row[], ctx: () => Ctx): void {
  for (const [what, want, run, ex] of rows) it(what, () => check(run(ctx()), want, ex));
}

const text = (bytes: number): string => 'a'.repeat(bytes);
const send = (from: bigint, to: bigint, more: Payload = {}): Payload => ({
  from,
  to,
  mid: newMid(),
  mtype: 30,
  msg: 'hi',
  attrs: '',
  ...more,
});

/** Waits, if need be, until the current second has at least 300 ms left (ts boundary rows). */
async function earlyInSecond(): Promise<number> {
  const ms = Date.now() % 1000;
  if (ms > 700) await new Promise((r) => setTimeout(r, 1005 - ms));
  return Math.floor(Date.now() / 1000);
}

async function withServer(overrides: Parameters<typeof startTestServer>[0]): Promise<Ctx> {
  const server = await startTestServer(overrides);
  const backend = await RawClient.tcp(server.serverEndpoint);
  const open: RawClient[] = [backend];
  return {
    server,
    backend,
    signed: (method, payload) => backend.signed(method, payload, TEST_PID, TEST_SECRET),
    async login(uid = newUid()) {
      const c = await RawClient.loggedIn(server.clientEndpoint, backend, uid);
      open.push(c);
      return c;
    },
    async anonymous() {
      const c = await RawClient.websocket(server.clientEndpoint);
      open.push(c);
      return c;
    },
    // Closed by `stop`.
    ...{ open },
  } as Ctx & { open: RawClient[] };
}

async function stop(c: Ctx | undefined): Promise<void> {
  if (!c) return;
  for (const conn of (c as Ctx & { open: RawClient[] }).open) conn.close();
  await c.server.close();
}

/** A quest signed with an explicit ts (seconds). */
const signedAt = (c: Ctx, method: string, payload: Payload, ts: number): Promise<Payload> =>
  c.backend.quest(method, { ...signFields(method, TEST_PID, TEST_SECRET, uniqueSalt(), ts), ...payload });

/** One FPNN-over-HTTP call to the server gate: [status, body]. */
async function http(c: Ctx, path: string, body: unknown): Promise<[number, { code?: number; ex?: string }]> {
  const res = await fetch(`http://${c.server.serverEndpoint}${path}`, { method: 'POST', body: JSON.stringify(body) });
  return [res.status, (await res.json()) as { code?: number; ex?: string }];
}

/** Signed fields for JSON (the HTTP bridge): a salt JSON numbers hold exactly. */
const jsonSigned = (method: string, payload: Record<string, unknown>): Record<string, unknown> => {
  const { pid, salt, ts, sign } = signFields(method, TEST_PID, TEST_SECRET, BigInt(Math.floor(Math.random() * 2 ** 31)));
  return { pid, salt: Number(salt), ts, sign, ...payload };
};

describe('errors-and-limits.md: defaults of §3', () => {
  it('every limit defaults to the spec value (call rates and retention: the self-hosted proposal)', () => {
    const L = DEFAULT_LIMITS;
    assert.deepEqual(
      [L.maxMsgBytes, L.maxAttrsBytes, L.maxInfoBytes, L.maxDataKeyBytes, L.maxDataValBytes, L.historyMaxNum],
      [20480, 2048, 65535, 128, 65535, 20],
    );
    assert.deepEqual(
      [L.maxItemsPerCall, L.maxOnlineQuery, L.maxRecipients, L.maxGroupsPerProject, L.maxGroupMembers, L.maxFriends, L.maxRoomsPerUser],
      [100, 200, 2000, 10000, 10000, 300, 10],
    );
    const C = DEFAULT_CONFIG;
    assert.equal(C.maxFrameBytes, 8 * 1024 * 1024, 'frame size 8 MiB');
    assert.equal(C.idleTimeoutMs, 60_000, 'idle timeout 60 s');
    assert.equal(C.pingIntervalMs, 20_000, 'ping interval 20 s (proposal)');
    assert.equal(C.pushTimeoutMs, 5_000, 'push answer timeout 5 s (proposal)');
    assert.equal(C.signWindowSeconds, 300, 'signature window ±300 s (proposal)');
    assert.deepEqual(
      [C.serverCallsPerSecond, C.clientCallsPerSecond, C.clientCallBurst],
      [0, 50, 100],
      'rates: server unlimited, client 50/s bursts',
    );
    assert.deepEqual([C.retentionDays, C.retentionMaxPerConversation], [0, 0], 'retention off on a self-hosted server');
  });
});

describe('errors-and-limits.md over the wire (default limits)', () => {
  let ctx: Ctx | undefined;
  before(async () => {
    ctx = await withServer({
      projects: [
        { pid: TEST_PID, secret: TEST_SECRET },
        { pid: OTHER_PID, secret: OTHER_SECRET },
      ],
      broadcastAdminUids: [ADMIN],
      clientCallsPerSecond: 0, // rates have their own server below
    });
  });
  after(() => stop(ctx));
  const c = (): Ctx => ctx!;

  describe('§1 FPNN codes', () => {
    table(
      [
        ['20004 unknown method, server gate', 20004, (c) => c.signed('nosuchmethod', {})],
        ['20004 unknown method, client gate after a login', 20004, async (c) => (await c.login()).quest('nosuchmethod', {})],
        [
          'method name of 255 bytes (the header limit) is a frame like any: answered 20004',
          20004,
          (c) => c.backend.quest('m'.repeat(255), {}),
        ],
        ['10009 a required key missing', 10009, (c) => c.signed('getuserinfo', {})],
        ['10009 a required key nil (nil = absent)', 10009, (c) => c.signed('getuserinfo', { uid: null })],
        ['10010 a key of the wrong type', 10010, (c) => c.signed('getuserinfo', { uid: 'abc' })],
        [
          '10010 a non-integral float where an integer is expected',
          10010,
          (c) => c.signed('getp2pmsg', { uid: 1n, ouid: 2n, desc: true, num: 1.5 }),
        ],
        [
          '10010 an id past int64: the ex names the value',
          10010,
          (c) => c.signed('getuserinfo', { uid: 2n ** 63n }),
          /'uid' must be an integer \(int64\), got 9223372036854775808 \(out of range\)/,
        ],
        ['10009 on the client gate too', 10009, async (c) => (await c.login()).quest('getgroupinfo', {})],
        [
          '20013 a server-gate connection serves one project: another project on it',
          20013,
          async (c) => {
            await c.signed('getuserinfo', { uid: 1n });
            return c.backend.signed('getuserinfo', { uid: 1n }, OTHER_PID, OTHER_SECRET);
          },
        ],
      ],
      c,
    );

    it('HTTP bridge: errors are 500 {code, ex}; listen over HTTP 20013; a path not /service/<method> 20010', async () => {
      const [s1, b1] = await http(c(), '/service/addlisten', jsonSigned('addlisten', { uids: [1] }));
      assert.deepEqual([s1, b1.code, typeof b1.ex], [500, 20013, 'string']);
      const [s2, b2] = await http(c(), '/service/getuserinfo', { ...jsonSigned('getuserinfo', { uid: 1 }), sign: '00' });
      assert.deepEqual([s2, b2.code, typeof b2.ex], [500, 200002, 'string']);
      const [s3, b3] = await http(c(), '/other/getuserinfo', {});
      assert.deepEqual([s3, b3.code, typeof b3.ex], [404, 20010, 'string']);
    });
  });

  describe('§2 RTM codes: login (client gate)', () => {
    table(
      [
        [
          'auth attrs of 2048 bytes (keys and values) accepted',
          (a) => assert.deepEqual(a, { ok: true }),
          async (c) => {
            const uid = newUid();
            const { token } = await c.signed('gettoken', { uid });
            return (await c.anonymous()).quest('auth', { pid: TEST_PID, uid, token, attrs: { k: text(2047) } });
          },
        ],
        [
          '200030 auth attrs of 2049 bytes',
          200030,
          async (c) => {
            const uid = newUid();
            const { token } = await c.signed('gettoken', { uid });
            return (await c.anonymous()).quest('auth', { pid: TEST_PID, uid, token, attrs: { k: text(2048) } });
          },
        ],
        [
          '200030 addattrs past 2048 bytes with the attrs already set',
          200030,
          async (c) => {
            const client = await c.login();
            await client.quest('addattrs', { attrs: { a: text(1023) } }); // 1024 bytes
            await client.quest('addattrs', { attrs: { b: text(1023) } }); // 2048: accepted
            return client.quest('addattrs', { attrs: { c: '' } }); // 2049
          },
        ],
        ['200001 auth with an unknown pid', 200001, async (c) => (await c.anonymous()).quest('auth', { pid: 999, uid: 1n, token: 'x' })],
        ['200001 auth with uid 0', 200001, async (c) => (await c.anonymous()).quest('auth', { pid: TEST_PID, uid: 0n, token: 'x' })],
        ['200001 auth with uid -1', 200001, async (c) => (await c.anonymous()).quest('auth', { pid: TEST_PID, uid: -1n, token: 'x' })],
        [
          'uid 1 (the smallest valid) logs in',
          (a) => assert.deepEqual(a, { ok: true }),
          async (c) => {
            const { token } = await c.signed('gettoken', { uid: 1n });
            return (await c.anonymous()).quest('auth', { pid: TEST_PID, uid: 1n, token });
          },
        ],
        [
          'a bad token is {ok:false}, not an error (200027 is SDK-local)',
          (a) => assert.deepEqual(a, { ok: false }),
          async (c) => (await c.anonymous()).quest('auth', { pid: TEST_PID, uid: newUid(), token: 'bad' }),
        ],
        ['200022 a method before auth', 200022, async (c) => (await c.anonymous()).quest('getservertime', {})],
        [
          '200023 a second auth on a connection',
          200023,
          async (c) => {
            const uid = newUid();
            const client = await c.login(uid);
            const { token } = await c.signed('gettoken', { uid });
            return client.quest('auth', { pid: TEST_PID, uid, token });
          },
        ],
        [
          '200024 auth of a user on the project blacklist',
          200024,
          async (c) => {
            const uid = newUid();
            const { token } = await c.signed('gettoken', { uid });
            await c.signed('addprojectblack', { uid, btime: 60 });
            return (await c.anonymous()).quest('auth', { pid: TEST_PID, uid, token });
          },
        ],
        [
          '200025 an admin uid may not log in as a client',
          200025,
          async (c) => {
            const { token } = await c.signed('gettoken', { uid: ADMIN });
            return (await c.anonymous()).quest('auth', { pid: TEST_PID, uid: ADMIN, token });
          },
        ],
      ],
      c,
    );
  });

  describe('§2 RTM codes: server-gate signature', () => {
    table(
      [
        ['200002 unknown pid', 200002, (c) => c.backend.signed('getuserinfo', { uid: 1n }, 999, TEST_SECRET)],
        ['200002 wrong sign', 200002, (c) => c.backend.signed('getuserinfo', { uid: 1n }, TEST_PID, 'wrong-secret')],
        [
          '200002 missing salt / sign',
          200002,
          (c) => c.backend.quest('getuserinfo', { pid: TEST_PID, ts: Math.floor(Date.now() / 1000), uid: 1n }),
        ],
        [
          '200002 missing ts (legacy signature off)',
          200002,
          (c) => c.backend.quest('getuserinfo', { ...signFields('getuserinfo', TEST_PID, TEST_SECRET, 5n), ts: undefined, uid: 1n }),
        ],
        [
          '200006 the same signed quest again',
          200006,
          async (c) => {
            const quest = { ...signFields('getuserinfo', TEST_PID, TEST_SECRET, uniqueSalt()), uid: 1n };
            await c.backend.quest('getuserinfo', quest);
            return c.backend.quest('getuserinfo', quest);
          },
        ],
        [
          '200008 ts not an integer',
          200008,
          (c) => c.backend.quest('getuserinfo', { ...signFields('getuserinfo', TEST_PID, TEST_SECRET, uniqueSalt()), ts: 'now', uid: 1n }),
        ],
        ['ts exactly 300 s behind is accepted', 'ok', async (c) => signedAt(c, 'getuserinfo', { uid: 1n }, (await earlyInSecond()) - 300)],
        ['200008 ts 301 s behind', 200008, async (c) => signedAt(c, 'getuserinfo', { uid: 1n }, (await earlyInSecond()) - 301)],
        ['ts exactly 300 s ahead is accepted', 'ok', async (c) => signedAt(c, 'getuserinfo', { uid: 1n }, (await earlyInSecond()) + 300)],
        ['200008 ts 301 s ahead', 200008, async (c) => signedAt(c, 'getuserinfo', { uid: 1n }, (await earlyInSecond()) + 301)],
        [
          '200006 a replay of a quest signed exactly 300 s ago is still caught',
          200006,
          async (c) => {
            const quest = { ...signFields('getuserinfo', TEST_PID, TEST_SECRET, uniqueSalt(), (await earlyInSecond()) - 300), uid: 1n };
            await c.backend.quest('getuserinfo', quest);
            return c.backend.quest('getuserinfo', quest);
          },
        ],
      ],
      c,
    );
  });

  describe('§2 RTM codes: messages', () => {
    table(
      [
        ['200005 mtype 0 (server gate)', 200005, (c) => c.signed('sendmsg', send(newUid(), newUid(), { mtype: 0 }))],
        ['mtype 1 accepted', 'ok', (c) => c.signed('sendmsg', send(newUid(), newUid(), { mtype: 1 }))],
        ['mtype 127 accepted', 'ok', (c) => c.signed('sendmsg', send(newUid(), newUid(), { mtype: 127 }))],
        ['200005 mtype 128 (server gate)', 200005, (c) => c.signed('sendmsg', send(newUid(), newUid(), { mtype: 128 }))],
        [
          '200005 mtype 0 (client gate)',
          200005,
          async (c) => (await c.login()).quest('sendmsg', { to: newUid(), mid: newMid(), mtype: 0, msg: 'x' }),
        ],
        [
          '200005 mtype 128 (client gate)',
          200005,
          async (c) => (await c.login()).quest('sendmsg', { to: newUid(), mid: newMid(), mtype: 128, msg: 'x' }),
        ],
        [
          "200021 a client deletes another user's message",
          200021,
          async (c) => {
            const [a, b] = two();
            const quest = send(a, b);
            await c.signed('sendmsg', quest);
            return (await c.login(b)).quest('delmsg', { mid: quest.mid, from: a, xid: b, type: 1 });
          },
        ],
        [
          '200021 a client reads a p2p message of two other users',
          200021,
          async (c) => {
            const [a, b] = two();
            const quest = send(a, b);
            await c.signed('sendmsg', quest);
            return (await c.login()).quest('getmsg', { mid: quest.mid, from: a, xid: b, type: 1 });
          },
        ],
        [
          '200024 a sender on the project blacklist',
          200024,
          async (c) => {
            const a = newUid();
            await c.signed('addprojectblack', { uid: a, btime: 60 });
            return c.signed('sendmsg', send(a, newUid()));
          },
        ],
        [
          '200026 broadcast from a non-admin (admin uids configured)',
          200026,
          (c) => c.signed('broadcastmsg', { from: newUid(), mid: newMid(), mtype: 30, msg: 'x', attrs: '' }),
        ],
        [
          'broadcast from an admin uid accepted',
          'ok',
          (c) => c.signed('broadcastmsg', { from: ADMIN, mid: newMid(), mtype: 30, msg: 'x', attrs: '' }),
        ],
        ['200034 history num 0', 200034, (c) => c.signed('getp2pmsg', { uid: 1n, ouid: 2n, desc: true, num: 0 })],
        ['200034 history num -1', 200034, (c) => c.signed('getp2pmsg', { uid: 1n, ouid: 2n, desc: true, num: -1 })],
        ['history num 1 accepted', 'ok', (c) => c.signed('getp2pmsg', { uid: 1n, ouid: 2n, desc: true, num: 1 })],
        [
          '200034 history begin after end',
          200034,
          (c) => c.signed('getp2pmsg', { uid: 1n, ouid: 2n, desc: true, num: 10, begin: 2000n, end: 1000n }),
        ],
        [
          '200034 getmsgnum begin after end, as for history',
          200034,
          (c) => c.signed('getmsgnum', { type: 2, xid: newId(), begin: 2000n, end: 1000n }),
          /begin \(2000\) is after end \(1000\)/,
        ],
        [
          'getmsgnum begin = end accepted, ≤ 0 = no bound',
          (a) => assert.deepEqual(a, { sender: 0, num: 0 }),
          (c) => c.signed('getmsgnum', { type: 3, xid: newId(), begin: 1000n, end: 1000n }),
        ],
        [
          'getmsgnum begin > 0 with end 0 (no upper bound) accepted',
          (a) => assert.deepEqual(a, { sender: 0, num: 0 }),
          (c) => c.signed('getmsgnum', { type: 3, xid: newId(), begin: 1000n, end: 0n }),
        ],
        ['200034 getmsg type 5 (∉ 1..4)', 200034, (c) => c.signed('getmsg', { mid: 1n, from: 1n, xid: 2n, type: 5 })],
        ['200034 getmsg type 0', 200034, (c) => c.signed('getmsg', { mid: 1n, from: 1n, xid: 2n, type: 0 })],
        [
          '200040 room send from a user not in the room (server gate)',
          200040,
          (c) => c.signed('sendroommsg', { from: newUid(), rid: newId(), mid: newMid(), mtype: 30, msg: 'x', attrs: '' }),
        ],
        [
          '200040 room send (client gate)',
          200040,
          async (c) => (await c.login()).quest('sendroommsg', { rid: newId(), mid: newMid(), mtype: 30, msg: 'x' }),
        ],
        [
          '200040 room history (client gate)',
          200040,
          async (c) => (await c.login()).quest('getroommsg', { rid: newId(), desc: true, num: 10 }),
        ],
        ['200040 room info (client gate)', 200040, async (c) => (await c.login()).quest('getroominfo', { rid: newId() })],
        [
          '200041 group send from a non-member (server gate)',
          200041,
          async (c) => {
            const gid = newId();
            await c.signed('addgroupmembers', { gid, uids: [newUid()] });
            return c.signed('sendgroupmsg', { from: newUid(), gid, mid: newMid(), mtype: 30, msg: 'x', attrs: '' });
          },
        ],
        [
          '200041 group send (client gate)',
          200041,
          async (c) => (await c.login()).quest('sendgroupmsg', { gid: newId(), mid: newMid(), mtype: 30, msg: 'x' }),
        ],
        [
          '200041 group history (client gate)',
          200041,
          async (c) => (await c.login()).quest('getgroupmsg', { gid: newId(), desc: true, num: 10 }),
        ],
        ['200041 group info (client gate)', 200041, async (c) => (await c.login()).quest('getgroupinfo', { gid: newId() })],
        [
          '200044 a member banned in the group sends',
          200044,
          async (c) => {
            const [gid, a] = [newId(), newUid()];
            await c.signed('addgroupmembers', { gid, uids: [a] });
            await c.signed('addgroupban', { gid, uid: a, btime: 60 });
            return c.signed('sendgroupmsg', { from: a, gid, mid: newMid(), mtype: 30, msg: 'x', attrs: '' });
          },
        ],
        [
          '200045 a user banned in the room sends',
          200045,
          async (c) => {
            const [rid, a] = [newId(), newUid()];
            await c.signed('addroommember', { rid, uid: a });
            await c.signed('addroomban', { rid, uid: a, btime: 60 });
            return c.signed('sendroommsg', { from: a, rid, mid: newMid(), mtype: 30, msg: 'x', attrs: '' });
          },
        ],
        [
          '200046 a send to a group without members',
          200046,
          (c) => c.signed('sendgroupmsg', { from: newUid(), gid: newId(), mid: newMid(), mtype: 30, msg: 'x', attrs: '' }),
        ],
        [
          '200049 a p2p send to a user who blocked the sender',
          200049,
          async (c) => {
            const [a, b] = two();
            await c.signed('addblacks', { uid: b, blacks: [a] });
            return c.signed('sendmsg', send(a, b));
          },
        ],
        [
          '200052 a client sends to itself',
          200052,
          async (c) => {
            const a = newUid();
            return (await c.login(a)).quest('sendmsg', { to: a, mid: newMid(), mtype: 30, msg: 'x' });
          },
        ],
        [
          '200053 the same mid with other content',
          200053,
          async (c) => {
            const quest = send(newUid(), newUid());
            await c.signed('sendmsg', quest);
            return c.signed('sendmsg', { ...quest, msg: 'other' });
          },
        ],
        [
          'the same mid with the same content: idempotent success, the same mtime',
          'ok',
          async (c) => {
            const quest = send(newUid(), newUid());
            const first = await c.signed('sendmsg', quest);
            const again = await c.signed('sendmsg', quest);
            assert.equal(again.mtime, first.mtime);
            return again;
          },
        ],
        ['200060 a value-added method', 200060, async (c) => (await c.login()).quest('translate', { text: 'x', dst: 'en' })],
        [
          '200070 getmsg of a missing message',
          200070,
          (c) => c.signed('getmsg', { mid: newMid(), from: newUid(), xid: newUid(), type: 1 }),
        ],
        [
          '200070 delmsg of a missing message (server gate)',
          200070,
          (c) => c.signed('delmsg', { mid: newMid(), from: newUid(), xid: newUid(), type: 1 }),
        ],
        [
          '200070 delmsg of a missing own message (client gate)',
          200070,
          async (c) => {
            const a = newUid();
            return (await c.login(a)).quest('delmsg', { mid: newMid(), from: a, xid: newUid(), type: 1 });
          },
        ],
      ],
      c,
    );
  });

  describe('§3 sizes: message, attrs, info, data', () => {
    const utf8 = 'é'.repeat(10240); // 20480 bytes in 10240 characters
    table(
      [
        ['msg of 20480 bytes accepted', 'ok', (c) => c.signed('sendmsg', send(newUid(), newUid(), { msg: text(20480) }))],
        ['200030 msg of 20481 bytes', 200030, (c) => c.signed('sendmsg', send(newUid(), newUid(), { msg: text(20481) }))],
        ['msg of 20480 UTF-8 bytes accepted', 'ok', (c) => c.signed('sendmsg', send(newUid(), newUid(), { msg: utf8 }))],
        [
          '200030 msg of 20481 UTF-8 bytes (limits count bytes, not characters)',
          200030,
          (c) => c.signed('sendmsg', send(newUid(), newUid(), { msg: `${utf8}a` })),
        ],
        ['binary msg of 20480 bytes accepted', 'ok', (c) => c.signed('sendmsg', send(newUid(), newUid(), { msg: new Uint8Array(20480) }))],
        ['200030 binary msg of 20481 bytes', 200030, (c) => c.signed('sendmsg', send(newUid(), newUid(), { msg: new Uint8Array(20481) }))],
        [
          'client msg of 20480 bytes accepted',
          'ok',
          async (c) => (await c.login()).quest('sendmsg', { to: newUid(), mid: newMid(), mtype: 30, msg: text(20480) }),
        ],
        [
          '200030 client msg of 20481 bytes',
          200030,
          async (c) => (await c.login()).quest('sendmsg', { to: newUid(), mid: newMid(), mtype: 30, msg: text(20481) }),
        ],
        ['attrs of 2048 bytes accepted', 'ok', (c) => c.signed('sendmsg', send(newUid(), newUid(), { attrs: text(2048) }))],
        ['200030 attrs of 2049 bytes', 200030, (c) => c.signed('sendmsg', send(newUid(), newUid(), { attrs: text(2049) }))],
        [
          'client attrs of 2048 bytes accepted',
          'ok',
          async (c) => (await c.login()).quest('sendmsg', { to: newUid(), mid: newMid(), mtype: 30, msg: 'x', attrs: text(2048) }),
        ],
        [
          '200030 client attrs of 2049 bytes',
          200030,
          async (c) => (await c.login()).quest('sendmsg', { to: newUid(), mid: newMid(), mtype: 30, msg: 'x', attrs: text(2049) }),
        ],
        ['oinfo of 65535 bytes accepted', 'ok', (c) => c.signed('setuserinfo', { uid: newUid(), oinfo: text(65535) })],
        ['200030 oinfo of 65536 bytes', 200030, (c) => c.signed('setuserinfo', { uid: newUid(), oinfo: text(65536) })],
        ['pinfo of 65535 bytes accepted', 'ok', (c) => c.signed('setgroupinfo', { gid: newId(), pinfo: text(65535) })],
        ['200030 pinfo of 65536 bytes', 200030, (c) => c.signed('setroominfo', { rid: newId(), pinfo: text(65536) })],
        ['200030 client oinfo of 65536 bytes', 200030, async (c) => (await c.login()).quest('setuserinfo', { oinfo: text(65536) })],
        ['dataset key of 128 bytes accepted', 'ok', (c) => c.signed('dataset', { uid: newUid(), key: text(128), val: 'v' })],
        ['200035 dataset key of 129 bytes', 200035, (c) => c.signed('dataset', { uid: newUid(), key: text(129), val: 'v' })],
        ['dataset val of 65535 bytes accepted', 'ok', (c) => c.signed('dataset', { uid: newUid(), key: 'k', val: text(65535) })],
        ['200035 dataset val of 65536 bytes', 200035, (c) => c.signed('dataset', { uid: newUid(), key: 'k', val: text(65536) })],
        ['200035 client dataset key of 129 bytes', 200035, async (c) => (await c.login()).quest('dataset', { key: text(129), val: 'v' })],
      ],
      c,
    );
  });

  describe('§3 per-call lists (200032 past the limit, 200033 empty where members are required)', () => {
    const both = (method: string, key: string, limit: number, base: Payload, emptyCode: Want = 200033): Row[] => [
      [`${method} ${key}: ${limit} accepted`, 'ok', (c) => c.signed(method, { ...base, [key]: uids(limit) })],
      [`200032 ${method} ${key}: ${limit + 1}`, 200032, (c) => c.signed(method, { ...base, [key]: uids(limit + 1) })],
      [`${method} ${key}: empty → ${String(emptyCode)}`, emptyCode, (c) => c.signed(method, { ...base, [key]: [] })],
    ];
    table(
      [
        ...both('addgroupmembers', 'uids', 100, { gid: newId() }),
        ...both('delgroupmembers', 'uids', 100, { gid: newId() }),
        ...both('addfriends', 'friends', 100, { uid: newUid() }),
        ...both('delfriends', 'friends', 100, { uid: newUid() }),
        ...both('addblacks', 'blacks', 100, { uid: newUid() }),
        ...both('delblacks', 'blacks', 100, { uid: newUid() }),
        ...both('isfriends', 'fuids', 100, { uid: newUid() }, 'ok'),
        ...both('isblacks', 'buids', 100, { uid: newUid() }, 'ok'),
        ...both('getuseropeninfo', 'uids', 100, {}, 'ok'),
        ...both('getonlineusers', 'uids', 200, {}, 'ok'),
        ['client getonlineusers: 200 accepted', 'ok', async (c) => (await c.login()).quest('getonlineusers', { uids: uids(200) })],
        ['200032 client getonlineusers: 201', 200032, async (c) => (await c.login()).quest('getonlineusers', { uids: uids(201) })],
        ['client getuseropeninfo: 100 accepted', 'ok', async (c) => (await c.login()).quest('getuseropeninfo', { uids: uids(100) })],
        ['200032 client getuseropeninfo: 101', 200032, async (c) => (await c.login()).quest('getuseropeninfo', { uids: uids(101) })],
        ['200032 client addfriends: 101', 200032, async (c) => (await c.login()).quest('addfriends', { friends: uids(101) })],
        ['200033 client addblacks: empty', 200033, async (c) => (await c.login()).quest('addblacks', { blacks: [] })],
        [
          'sendmsgs to 2000 recipients accepted',
          'ok',
          (c) => c.signed('sendmsgs', { from: newUid(), tos: uids(2000), mid: newMid(), mtype: 30, msg: 'x', attrs: '' }),
        ],
        [
          '200032 sendmsgs to 2001 recipients',
          200032,
          (c) => c.signed('sendmsgs', { from: newUid(), tos: uids(2001), mid: newMid(), mtype: 30, msg: 'x', attrs: '' }),
        ],
        [
          '200033 sendmsgs to no one',
          200033,
          (c) => c.signed('sendmsgs', { from: newUid(), tos: [], mid: newMid(), mtype: 30, msg: 'x', attrs: '' }),
        ],
      ],
      c,
    );
  });

  describe('§3 counts: history page, friends, rooms', () => {
    it('history num: 20 gives 20, 21 is clamped to 20 (proposal: clamp)', async () => {
      const [a, b] = two();
      for (let i = 0; i < 21; i++) await c().signed('sendmsg', send(a, b));
      const at = await c().signed('getp2pmsg', { uid: a, ouid: b, desc: true, num: 20 });
      const past = await c().signed('getp2pmsg', { uid: a, ouid: b, desc: true, num: 21 });
      assert.deepEqual([(at.msgs as unknown[]).length, at.num], [20, 20]);
      assert.deepEqual([(past.msgs as unknown[]).length, past.num], [20, 20]);
    });

    it('friends per user: 300 accepted, the 301st 200048, on either side of the friendship', async () => {
      const [u, other] = two();
      for (let i = 0; i < 3; i++) await c().signed('addfriends', { uid: u, friends: uids(100) });
      await check(c().signed('addfriends', { uid: u, friends: [newUid()] }), 200048);
      await check(c().signed('addfriends', { uid: other, friends: [u] }), 200048);
      assert.equal(((await c().signed('getfriends', { uid: u })).uids as unknown[]).length, 300);
    });

    it('rooms per user: 10 accepted, the 11th 200047 (client enterroom and server addroommember); re-entering one is no new room', async () => {
      const u = newUid();
      const client = await c().login(u);
      const rids = Array.from({ length: 10 }, newId);
      await check(client.quest('enterrooms', { rids }), 'ok');
      await check(client.quest('enterroom', { rid: rids[0]! }), 'ok');
      await check(client.quest('enterroom', { rid: newId() }), 200047);
      await check(c().signed('addroommember', { rid: newId(), uid: u }), 200047);
      await check(client.quest('enterrooms', { rids: Array.from({ length: 11 }, newId) }), 200047);
    });
  });
});

describe('errors-and-limits.md: configured limits (groups, members, frame size)', () => {
  let ctx: Ctx | undefined;
  const FRAME = 64 * 1024;
  before(async () => {
    ctx = await withServer({ limits: { maxGroupMembers: 5, maxGroupsPerProject: 3 }, maxFrameBytes: FRAME });
  });
  after(() => stop(ctx));

  it('members per group: 5 accepted, the 6th 200042; adding a member again is no new one', async () => {
    const c = ctx!;
    const gid = newId();
    const members = uids(5);
    await check(c.signed('addgroupmembers', { gid, uids: members }), 'ok');
    await check(c.signed('addgroupmembers', { gid, uids: [members[0]!] }), 'ok');
    await check(c.signed('addgroupmembers', { gid, uids: [newUid()] }), 200042);
    const member = await c.login(members[1]!);
    await check(member.quest('addgroupmembers', { gid, uids: [newUid()] }), 200042);
  });

  it('groups per project: up to 3 accepted, a 4th 200034 (README: deliberate code); an ended group frees its place', async () => {
    const c = ctx!;
    // The group of the test above is one of the three.
    const [g2, g3, g4] = [newId(), newId(), newId()];
    await check(c.signed('addgroupmembers', { gid: g2, uids: [newUid()] }), 'ok');
    await check(c.signed('addgroupmembers', { gid: g3, uids: [newUid()] }), 'ok');
    await check(c.signed('addgroupmembers', { gid: g4, uids: [newUid()] }), 200034);
    await c.signed('delgroup', { gid: g3 });
    await check(c.signed('addgroupmembers', { gid: g4, uids: [newUid()] }), 'ok');
  });

  it(`frame size: a frame of exactly ${FRAME} bytes is served, one byte more closes the connection`, async () => {
    const c = ctx!;
    const sized = (total: number): Payload => {
      const empty = encodeQuestFrame('nosuchmethod', { pad: '' }).length;
      // A str of n bytes takes n + 3 bytes of msgpack (str16) for 256 ≤ n < 65536: 2 more than ''.
      return { pad: text(total - empty - 2) };
    };
    const conn = await RawClient.tcp(c.server.serverEndpoint);
    try {
      assert.equal(encodeQuestFrame('nosuchmethod', sized(FRAME)).length, FRAME);
      await check(conn.quest('nosuchmethod', sized(FRAME)), 20004);
      assert.equal(encodeQuestFrame('nosuchmethod', sized(FRAME + 1)).length, FRAME + 1);
      await assert.rejects(conn.quest('nosuchmethod', sized(FRAME + 1)), (err: RtmError) => err.code === 20002);
      await conn.closed;
    } finally {
      conn.close();
    }
  });
});

describe('errors-and-limits.md: call rates (200010)', () => {
  let ctx: Ctx | undefined;
  before(async () => {
    ctx = await withServer({ clientCallsPerSecond: 1, clientCallBurst: 3, serverCallsPerSecond: 3 });
  });
  after(() => stop(ctx));

  it('client gate, burst 3 per user: 3 calls accepted, the 4th 200010; another user is not limited', async () => {
    const c = ctx!;
    // The logins take 2 of the server-gate bucket's 3 calls (gettoken).
    const [a, b] = [await c.login(), await c.login()];
    const calls = [0, 1, 2].map(() => a.quest('getservertime', {}));
    for (const call of calls) await check(call, 'ok');
    await check(a.quest('getservertime', {}), 200010);
    await check(b.quest('getservertime', {}), 'ok');
  });
  it("server gate, 3 calls/s per project: a second's calls at once accepted, one more 200010", async () => {
    const c = ctx!;
    await new Promise((r) => setTimeout(r, 1050)); // a full bucket again, after the logins above
    const calls = [0, 1, 2].map(() => c.signed('getuserinfo', { uid: 1n }));
    for (const call of calls) await check(call, 'ok');
    await check(c.signed('getuserinfo', { uid: 1n }), 200010);
  });
});

/** A store whose info reads of uid `HELD` wait until `release()`: a quest in flight at will. */
const HELD = 424242n;
class HeldInfoStore extends SqliteStore {
  reading = false;
  private waiters: (() => void)[] = [];
  release(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  override async getInfo(...args: Parameters<SqliteStore['getInfo']>): ReturnType<SqliteStore['getInfo']> {
    if (args[2] === HELD) {
      this.reading = true;
      await new Promise<void>((r) => this.waiters.push(r));
    }
    return super.getInfo(...args);
  }
}

describe('errors-and-limits.md: 20014 CORE_SERVER_STOPPING', () => {
  it('a quest that arrives during a graceful stop is answered 20014; the one in flight is answered', async () => {
    let store: HeldInfoStore | undefined;
    const server = await startTestServer({}, { makeStore: (dataDir) => (store = new HeldInfoStore({ dataDir })) });
    const backend = await RawClient.tcp(server.serverEndpoint);
    try {
      const held = backend.signed('getuserinfo', { uid: HELD }, TEST_PID, TEST_SECRET);
      while (!store!.reading) await new Promise((r) => setTimeout(r, 5));
      const stopped = server.close();
      await check(backend.signed('getuserinfo', { uid: 1n }, TEST_PID, TEST_SECRET), 20014);
      store!.release();
      await check(held, 'ok');
      await stopped;
    } finally {
      store?.release();
      backend.close();
      await server.close().catch(() => undefined);
    }
  });
});
