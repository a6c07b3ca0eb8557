import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RtmError, type Field, type Payload, type Schema } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';
import { clientMethods } from '../src/methods/client/index.js';
import { serverMethods } from '../src/methods/server/index.js';
import { MessageKind } from '../src/store/store.js';

// Ids that name a user, group or room are > 0 on input: no one can log in as a uid ≤ 0 (auth:
// 200001), so what a method stored or pushed for one was kept for nobody. Such ids are answered
// 200034 INVALID_PARAMETER with an `ex` naming the key and value, and nothing is stored or pushed.
// Every method of both gates is walked for its int64 keys: each names a user, group or room
// (`f.uid` / `f.gid` / `f.rid`, checked here over the wire) or is one of the exceptions below,
// each with its reason, so a method added with a plain `f.id` target fails this file.

let nextUid = 13n << 56n;
const newUid = (): bigint => ++nextUid;
let nextMid = 3n << 60n;
const newMid = (): bigint => ++nextMid;
let nextId = 13n << 48n;
const newId = (): bigint => ++nextId;

type Gate = 'server' | 'client';

/** int64 keys that are not held to > 0, and why: `<key>` in every method, or `<gate> <method>.<key>`. */
const NOT_TARGETS: Readonly<Record<string, string>> = {
  mid: 'a message id chosen by the sender, any int64',
  begin: 'a history time bound: ≤ 0 = none (server-api.md §3.1)',
  end: 'a history time bound: ≤ 0 = none (server-api.md §3.1)',
  lastid: 'a history cursor: ≤ 0 = first page (server-api.md §3.1)',
  mtime: 'an unread baseline time: ≤ 0 = the default (client-api.md §3.3)',
  'server gettoken.uid': 'a uid ≤ 0 is 200001, the code auth gives it (errors-and-limits.md §2)',
  'server addgroupban.gid': 'no gid or ≤ 0 = every group (server-api.md §4, Go)',
  'server removegroupban.gid': 'no gid or ≤ 0 = the all-groups ban',
  'server isbanofgroup.gid': '≤ 0 asks about the all-groups ban',
  'server addroomban.rid': 'no rid or ≤ 0 = every room',
  'server removeroomban.rid': 'no rid or ≤ 0 = the all-rooms ban',
  'server isbanofroom.rid': '≤ 0 asks about the all-rooms ban',
  'server getgroupmsg.uid': 'the reader, optional and unused; Go always sends it, 0 when it has none',
  'server getroommsg.uid': 'the reader, optional and unused; Go always sends it, 0 when it has none',
  'server getbroadcastmsg.uid': 'the reader, optional and unused; Go always sends it, 0 when it has none',
  'server getmsg.xid': 'a uid, gid or rid by type (> 0, tested below), none for a broadcast (0)',
  'server delmsg.xid': 'a uid, gid or rid by type (> 0, tested below), none for a broadcast (0)',
  'server getmsgnum.xid': 'a gid or rid by type (> 0, tested below)',
  'client getmsg.xid': 'a uid, gid or rid by type (> 0, tested below), none for a broadcast (0)',
  'client delmsg.xid': 'a uid, gid or rid by type (> 0, tested below), none for a broadcast (0)',
  'client addoption.xid': 'push options are accepted as no-ops: the xid is kept nowhere',
  'client removeoption.xid': 'push options are accepted as no-ops: the xid is kept nowhere',
};

const isInt64 = (field: Field<unknown>): boolean => field.describe === 'an integer id' || field.item?.describe === 'an integer id';

interface IdField {
  gate: Gate;
  method: string;
  key: string;
  field: Field<unknown>;
}

function fieldsOf(gate: Gate, table: Readonly<Record<string, { readonly schema: Schema }>>): IdField[] {
  return Object.entries(table).flatMap(([method, def]) => Object.entries(def.schema).map(([key, field]) => ({ gate, method, key, field })));
}

const all = [...fieldsOf('server', serverMethods), ...fieldsOf('client', clientMethods)];
const targets = all.filter((x) => x.field.names !== undefined);

/** A value of the right type for a key that is not the one under test (parse checks keys in order). */
function sample(field: Field<unknown>): unknown {
  if (field.names !== undefined) return field.item ? [newUid()] : newUid();
  if (field.item || field.describe.startsWith('a list')) return [];
  const byKind: Record<string, unknown> = {
    'an integer id': 7n,
    'an integer': 1,
    'a string': 'x',
    'a string or binary': 'x',
    'a boolean': false,
    'a map of strings': {},
  };
  if (!(field.describe in byKind)) throw new Error(`no sample value for a key that is ${field.describe}`);
  return byKind[field.describe];
}

/** The method's required keys with sample values, and `key` set to `value`. */
function payloadWith(t: IdField, value: unknown): Payload {
  const { schema } = (t.gate === 'server' ? serverMethods : clientMethods)[t.method]!;
  const out: Payload = {};
  for (const [k, field] of Object.entries(schema)) if (!field.optional && k !== t.key) out[k] = sample(field);
  out[t.key] = value;
  return out;
}

async function refused(run: Promise<Payload>, ex: string): Promise<void> {
  await assert.rejects(run, (err: unknown) => {
    assert.ok(err instanceof RtmError, `an error answer, got ${String(err)}`);
    assert.equal(err.code, 200034, `code 200034 INVALID_PARAMETER (ex: ${err.message})`);
    assert.equal(err.message, ex);
    return true;
  });
}

describe('method tables: every int64 key is a target id (> 0) or a named exception', () => {
  it('no int64 key is left unclassified', () => {
    const unclassified = all
      .filter((x) => isInt64(x.field) && x.field.names === undefined)
      .filter((x) => NOT_TARGETS[x.key] === undefined && NOT_TARGETS[`${x.gate} ${x.method}.${x.key}`] === undefined)
      .map((x) => `${x.gate} ${x.method}.${x.key}`);
    assert.deepEqual(unclassified, [], 'give these f.uid / f.gid / f.rid (or an exception here with its reason)');
  });

  it('every exception still names a key of that method that is a plain int64', () => {
    for (const name of Object.keys(NOT_TARGETS).filter((n) => n.includes(' '))) {
      const [gate, path] = name.split(' ') as [Gate, string];
      const [method, key] = path.split('.') as [string, string];
      const field = (gate === 'server' ? serverMethods : clientMethods)[method]?.schema[key];
      assert.ok(field && isInt64(field) && field.names === undefined, `${name} is an exception that no longer applies`);
    }
  });

  it('the target ids are where one expects them (a sample of both gates)', () => {
    const names = new Set(targets.map((t) => `${t.gate} ${t.method}.${t.key}`));
    for (const expected of [
      'client sendmsg.to',
      'client sendgroupmsg.gid',
      'client sendroommsg.rid',
      'client enterroom.rid',
      'client getp2pmsg.ouid',
      'client addfriends.friends',
      'client addgroupmembers.uids',
      'client getmsg.from',
      'server sendmsg.from',
      'server sendmsg.to',
      'server sendmsgs.tos',
      'server sendgroupmsg.gid',
      'server sendroommsg.rid',
      'server addgroupmembers.uids',
      'server addfriends.uid',
      'server getp2pmsg.ouid',
      'server setlisten.uids',
      'server addgroupban.uid',
    ])
      assert.ok(names.has(expected), `${expected} is a target id`);
    assert.ok(targets.length > 80, `${targets.length} target keys`);
  });
});

describe('a target id ≤ 0 is 200034 on every method that takes one', () => {
  let server: TestServer;
  let backend: RawClient;
  let client: RawClient;
  const me = newUid();

  before(async () => {
    server = await startTestServer({ clientCallsPerSecond: 0 });
    backend = await RawClient.tcp(server.serverEndpoint);
    client = await RawClient.loggedIn(server.clientEndpoint, backend, me);
  });
  after(async () => {
    client.close();
    backend.close();
    await server.close();
  });

  const call = (gate: Gate, method: string, payload: Payload): Promise<Payload> =>
    gate === 'server' ? backend.signed(method, payload, TEST_PID, TEST_SECRET) : client.quest(method, payload);

  for (const t of targets) {
    it(`${t.gate} ${t.method}: ${t.key}`, async () => {
      const names = t.field.names!;
      if (t.field.item) {
        await refused(call(t.gate, t.method, payloadWith(t, [newUid(), 0n])), `${t.key}[1] must be > 0 (a ${names}), got 0`);
        await refused(call(t.gate, t.method, payloadWith(t, [-5n])), `${t.key}[0] must be > 0 (a ${names}), got -5`);
      } else {
        await refused(call(t.gate, t.method, payloadWith(t, 0n)), `${t.key} must be > 0 (a ${names}), got 0`);
        await refused(call(t.gate, t.method, payloadWith(t, -5n)), `${t.key} must be > 0 (a ${names}), got -5`);
        await refused(call(t.gate, t.method, payloadWith(t, -(2n ** 63n))), `${t.key} must be > 0 (a ${names}), got -9223372036854775808`);
      }
    });
  }

  it('getmsg / delmsg / getmsgnum: xid > 0 for a p2p, group or room message; a broadcast has none', async () => {
    const key = { mid: 1n, from: me };
    for (const gate of ['server', 'client'] as const) {
      for (const method of ['getmsg', 'delmsg']) {
        await refused(call(gate, method, { ...key, xid: 0n, type: 1 }), 'xid must be > 0 (a uid for type 1), got 0');
        await refused(call(gate, method, { ...key, xid: -5n, type: 2 }), 'xid must be > 0 (a gid for type 2), got -5');
        await refused(call(gate, method, { ...key, xid: 0n, type: 3 }), 'xid must be > 0 (a rid for type 3), got 0');
        // A broadcast's xid is 0 (Node sends it so): looked up, not found.
        await assert.rejects(call(gate, method, { ...key, xid: 0n, type: 4 }), { code: 200070 });
      }
    }
    await refused(call('server', 'getmsgnum', { type: 2, xid: 0n }), 'xid must be > 0 (a gid for type 2), got 0');
    await refused(call('server', 'getmsgnum', { type: 3, xid: -1n }), 'xid must be > 0 (a rid for type 3), got -1');
    assert.deepEqual(await call('server', 'getmsgnum', { type: 2, xid: newId() }), { sender: 0, num: 0 });
  });

  it('the exceptions keep their meaning: bans of all groups / rooms, an unused reader of 0', async () => {
    const u = newUid();
    const signed = (method: string, payload: Payload): Promise<Payload> => call('server', method, payload);
    await signed('addgroupban', { gid: 0n, uid: u, btime: 60 });
    assert.deepEqual(await signed('isbanofgroup', { gid: newId(), uid: u }), { ok: true }, 'gid 0: banned in every group');
    assert.deepEqual(await signed('isbanofgroup', { gid: -1n, uid: u }), { ok: true });
    await signed('removegroupban', { gid: -1n, uid: u });
    assert.deepEqual(await signed('isbanofgroup', { gid: 0n, uid: u }), { ok: false });
    await signed('addroomban', { rid: -3n, uid: u, btime: 0 });
    assert.deepEqual(await signed('isbanofroom', { rid: newId(), uid: u }), { ok: true }, 'rid ≤ 0: banned in every room');
    for (const method of ['getgroupmsg', 'getroommsg', 'getbroadcastmsg']) {
      const page = await signed(method, { gid: newId(), rid: newId(), uid: 0n, desc: true, num: 10 });
      assert.equal(page['num'], 0, `${method} with reader 0`);
    }
    // History cursors ≤ 0 are "none".
    const page = await signed('getp2pmsg', { uid: u, ouid: newUid(), desc: true, num: 10, begin: 0n, end: -1n, lastid: -1n });
    assert.equal(page['num'], 0);
  });
});

describe('refused target ids store nothing and push nothing', () => {
  let server: TestServer;
  let backend: RawClient;
  let listener: RawClient;
  const open: RawClient[] = [];
  const signed = (method: string, payload: Payload): Promise<Payload> => backend.signed(method, payload, TEST_PID, TEST_SECRET);
  const login = async (uid: bigint): Promise<RawClient> => {
    const c = await RawClient.loggedIn(server.clientEndpoint, backend, uid);
    open.push(c);
    return c;
  };
  const store = () => server.services.store;
  const p2pHistory = (uid: bigint, peer: bigint) =>
    store().history({ conversation: { pid: TEST_PID, kind: MessageKind.P2P, uid, peer }, desc: true, num: 10 });
  const streamHistory = (kind: 2 | 3, to: bigint) => store().history({ conversation: { pid: TEST_PID, kind, to }, desc: true, num: 10 });
  const send = (more: Payload): Payload => ({ mid: newMid(), mtype: 30, msg: 'hi', attrs: '', ...more });

  before(async () => {
    server = await startTestServer({ clientCallsPerSecond: 0 });
    backend = await RawClient.tcp(server.serverEndpoint);
    listener = await RawClient.tcp(server.serverEndpoint);
    await listener.signed('setlisten', { p2p: true, group: true, room: true, ev: false }, TEST_PID, TEST_SECRET);
  });
  after(async () => {
    for (const c of open) c.close();
    listener.close();
    backend.close();
    await server.close();
  });

  it('p2p sends to uid 0 / -5 (client and server gate) and from 0, and sendmsgs with one bad uid', async () => {
    const [a, b] = [newUid(), newUid()];
    const alice = await login(a);
    const bob = await login(b);
    await assert.rejects(alice.quest('sendmsg', send({ to: 0n })), { code: 200034, message: 'to must be > 0 (a uid), got 0' });
    await assert.rejects(alice.quest('sendmsg', send({ to: -5n })), { code: 200034, message: 'to must be > 0 (a uid), got -5' });
    await assert.rejects(signed('sendmsg', send({ from: a, to: 0n })), { code: 200034 });
    await assert.rejects(signed('sendmsg', send({ from: 0n, to: b })), { code: 200034, message: 'from must be > 0 (a uid), got 0' });
    await assert.rejects(signed('sendmsgs', send({ from: a, tos: [b, 0n] })), {
      code: 200034,
      message: 'tos[1] must be > 0 (a uid), got 0',
    });
    await assert.rejects(signed('broadcastmsg', send({ from: -1n })), { code: 200034 });

    // Nothing stored: no history with 0 / -5 / b, no conversation in anyone's list, nothing unread.
    for (const peer of [0n, -5n, b]) assert.deepEqual(await p2pHistory(a, peer), [], `a ↔ ${peer}`);
    assert.deepEqual(await p2pHistory(b, 0n), []);
    assert.deepEqual(await store().p2pPeers(TEST_PID, a), []);
    assert.deepEqual(await store().p2pPeers(TEST_PID, b), []);
    assert.deepEqual(await bob.quest('getunread', {}), { p2p: [], group: [] });
    assert.deepEqual(
      await store().history({ conversation: { pid: TEST_PID, kind: MessageKind.BROADCAST, to: 0n }, desc: true, num: 10 }),
      [],
    );

    // Nothing pushed: a good message afterwards is the first push bob and the listener see.
    const good = send({ to: b });
    await alice.quest('sendmsg', good);
    assert.deepEqual(
      (await bob.waitForPushes('pushmsg')).map((p) => p['mid']),
      [good['mid']],
    );
    assert.deepEqual(
      (await listener.waitForPushes('pushmsg')).map((p) => p['mid']),
      [good['mid']],
    );
    assert.deepEqual(
      bob.pushes.map((p) => p.method),
      ['pushmsg'],
    );
  });

  it('group 0 and room -1: no members, rooms or messages; a list with uid 0 adds none of the list', async () => {
    const [u, v] = [newUid(), newUid()];
    const user = await login(u);
    await assert.rejects(signed('addgroupmembers', { gid: 0n, uids: [u] }), { code: 200034, message: 'gid must be > 0 (a gid), got 0' });
    const gid = newId();
    await assert.rejects(signed('addgroupmembers', { gid, uids: [u, 0n] }), {
      code: 200034,
      message: 'uids[1] must be > 0 (a uid), got 0',
    });
    await assert.rejects(signed('sendgroupmsg', send({ from: u, gid: 0n })), { code: 200034 });
    await assert.rejects(user.quest('sendgroupmsg', send({ gid: 0n })), { code: 200034 });
    await assert.rejects(user.quest('enterroom', { rid: -1n }), { code: 200034, message: 'rid must be > 0 (a rid), got -1' });
    await assert.rejects(user.quest('enterrooms', { rids: [newId(), -1n] }), { code: 200034 });
    await assert.rejects(signed('addroommember', { rid: -1n, uid: u }), { code: 200034 });
    await assert.rejects(signed('addroommember', { rid: newId(), uid: 0n }), { code: 200034 });
    await assert.rejects(user.quest('sendroommsg', send({ rid: -1n })), { code: 200034 });
    await assert.rejects(signed('sendroommsg', send({ from: u, rid: -1n })), { code: 200034 });

    assert.deepEqual(await store().groupMembers(TEST_PID, 0n), []);
    assert.deepEqual(await store().groupMembers(TEST_PID, gid), [], 'all or nothing: u was not added either');
    assert.deepEqual(await store().userGroups(TEST_PID, u), []);
    assert.deepEqual(await store().roomMembers(TEST_PID, -1n), []);
    assert.deepEqual(await store().userRooms(TEST_PID, u), []);
    assert.deepEqual(await store().userRooms(TEST_PID, 0n), []);
    assert.deepEqual(await streamHistory(2, 0n), []);
    assert.deepEqual(await streamHistory(3, -1n), []);
    assert.deepEqual(await user.quest('getuserrooms', {}), { rooms: [] });
    await signed('addgroupmembers', { gid, uids: [u, v] }); // the same list without 0 is accepted
    assert.deepEqual((await store().groupMembers(TEST_PID, gid)).sort(), [u, v].sort());
    assert.equal(listener.pushes.filter((p) => p.method !== 'ping' && p.method !== 'pushmsg').length, 0, 'no group or room push');
  });

  it('friends, blacks, info, data and listen of uid 0: nothing kept', async () => {
    const u = newUid();
    const user = await login(u);
    await assert.rejects(user.quest('addfriends', { friends: [0n] }), { code: 200034, message: 'friends[0] must be > 0 (a uid), got 0' });
    await assert.rejects(signed('addfriends', { uid: 0n, friends: [u] }), { code: 200034, message: 'uid must be > 0 (a uid), got 0' });
    await assert.rejects(signed('addfriends', { uid: u, friends: [newUid(), -5n] }), { code: 200034 });
    await assert.rejects(user.quest('addblacks', { blacks: [-5n] }), { code: 200034 });
    await assert.rejects(signed('setuserinfo', { uid: 0n, oinfo: 'nobody' }), { code: 200034 });
    await assert.rejects(signed('setgroupinfo', { gid: -2n, oinfo: 'nothing' }), { code: 200034 });
    await assert.rejects(signed('dataset', { uid: 0n, key: 'k', val: 'v' }), { code: 200034 });
    await assert.rejects(listener.signed('addlisten', { uids: [0n] }, TEST_PID, TEST_SECRET), { code: 200034 });

    assert.deepEqual(await store().friends(TEST_PID, u), []);
    assert.deepEqual(await store().friends(TEST_PID, 0n), []);
    assert.deepEqual(await store().blacks(TEST_PID, u), []);
    assert.deepEqual(await store().getInfo(TEST_PID, 'user', 0n), { oinfo: '', pinfo: '' });
    assert.deepEqual(await store().getInfo(TEST_PID, 'group', -2n), { oinfo: '', pinfo: '' });
    assert.equal(await store().dataGet(TEST_PID, 0n, 'k'), undefined);
  });
});
