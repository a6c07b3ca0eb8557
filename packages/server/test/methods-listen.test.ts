import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FrameDecoder, type Payload } from '@rtm/fpnn';
import { RawClient, signFields, startTestServer, uniqueSalt, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';

// Listening server connections (server-api.md §4 "Listening", §6 pushes), real sockets.

const BIG = 1n << 60n;

async function rejectsCode(p: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(p, (err: { code?: number; message?: string }) => {
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('listen: addlisten, removelisten, setlisten and the pushes they select', () => {
  let server: TestServer;
  let backend: RawClient;
  const conns: RawClient[] = [];
  let mid = 1n;
  const signed = (c: RawClient, method: string, payload: Payload = {}) => c.signed(method, payload, TEST_PID, TEST_SECRET);
  const call = (method: string, payload: Payload = {}) => signed(backend, method, payload);
  async function listener(): Promise<Awaited<ReturnType<typeof RawClient.tcp>>> {
    const c = await RawClient.tcp(server.serverEndpoint);
    conns.push(c);
    return c;
  }
  const pushed = (c: RawClient, method: string) => c.pushes.filter((p) => p.method === method).map((p) => p.payload);
  const texts = (c: RawClient, method: string) => pushed(c, method).map((p) => p.msg);

  // Senders: u1, u2 members of g1 and g2 and in r1 and r2.
  const [u1, u2, u3] = [BIG + 1n, BIG + 2n, BIG + 3n];
  const [g1, g2] = [BIG + 10n, BIG + 11n];
  const [r1, r2] = [BIG + 20n, BIG + 21n];
  const p2p = (from: bigint, to: bigint, msg: string) => call('sendmsg', { from, to, mid: mid++, mtype: 51, msg, attrs: '' });
  const group = (gid: bigint, msg: string) => call('sendgroupmsg', { from: u1, gid, mid: mid++, mtype: 51, msg, attrs: '' });
  const room = (rid: bigint, msg: string) => call('sendroommsg', { from: u1, rid, mid: mid++, mtype: 51, msg, attrs: '' });

  before(async () => {
    server = await startTestServer({ logoutGraceMs: 50 });
    backend = await RawClient.tcp(server.serverEndpoint);
    for (const gid of [g1, g2]) await call('addgroupmembers', { gid, uids: [u1, u2] });
    for (const rid of [r1, r2]) await call('addroommembers', { rid, uids: [u1, u2] });
  });
  after(async () => {
    for (const c of conns) c.close();
    backend.close();
    await server.close();
  });

  it('addlisten selects by gid, rid and uid (sender or receiver); removelisten drops them', async () => {
    const l = await listener();
    assert.deepEqual(await signed(l, 'addlisten', { gids: [g1], rids: [r1], uids: [u3] }), {});
    await group(g2, 'g2 not listened');
    await room(r2, 'r2 not listened');
    await p2p(u1, u2, 'u1->u2 not listened');
    await group(g1, 'g1');
    await room(r1, 'r1');
    await p2p(u3, u1, 'from u3');
    await p2p(u2, u3, 'to u3');
    await l.waitForPushes('pushmsg', 2);
    assert.deepEqual(texts(l, 'pushgroupmsg'), ['g1']);
    assert.deepEqual(texts(l, 'pushroommsg'), ['r1']);
    assert.deepEqual(texts(l, 'pushmsg'), ['from u3', 'to u3']);
    const [g] = pushed(l, 'pushgroupmsg');
    assert.deepEqual(Object.keys(g!).sort(), ['attrs', 'from', 'gid', 'mid', 'msg', 'mtime', 'mtype']);
    assert.equal(g!.gid, g1);
    assert.equal(g!.from, u1);
    assert.equal(pushed(l, 'pushroommsg')[0]!.rid, r1);
    const m = pushed(l, 'pushmsg')[0]!;
    assert.equal(m.from, u3);
    assert.equal(m.to, u1);
    assert.equal(typeof m.mtime, 'bigint');
    assert.equal(l.pushes.filter((p) => p.method === 'pushbroadcastmsg').length, 0);

    assert.deepEqual(await signed(l, 'removelisten', { gids: [g1], uids: [u3] }), {});
    await group(g1, 'g1 after remove');
    await p2p(u3, u1, 'u3 after remove');
    await room(r1, 'r1 still');
    await l.waitForPushes('pushroommsg', 2);
    assert.deepEqual(texts(l, 'pushgroupmsg'), ['g1']);
    assert.deepEqual(texts(l, 'pushmsg'), ['from u3', 'to u3']);
  });

  it('setlisten: flags then lists in two quests keep both; each kind replaces only itself', async () => {
    const l = await listener();
    assert.deepEqual(await signed(l, 'setlisten', { group: true }), {});
    assert.deepEqual(await signed(l, 'setlisten', { uids: [u3] }), {}); // Python's reconnect: "all" form, then lists
    await room(r1, 'room: not listened');
    await p2p(u1, u2, 'p2p: not listened');
    await group(g2, 'any group');
    await p2p(u3, u2, 'from u3');
    await l.waitForPushes('pushmsg');
    assert.deepEqual(texts(l, 'pushgroupmsg'), ['any group']);
    assert.deepEqual(texts(l, 'pushmsg'), ['from u3']);
    assert.deepEqual(texts(l, 'pushroommsg'), []);

    // A boolean key resets the four flags (absent = false); the lists stay.
    await signed(l, 'setlisten', { room: true });
    await group(g2, 'group: no longer');
    await room(r2, 'any room');
    await p2p(u3, u2, 'u3 still');
    await l.waitForPushes('pushmsg', 2);
    assert.deepEqual(texts(l, 'pushgroupmsg'), ['any group']);
    assert.deepEqual(texts(l, 'pushroommsg'), ['any room']);

    // A list key replaces the four lists (absent = empty); the flags stay.
    await signed(l, 'setlisten', { gids: [g1] });
    await p2p(u3, u2, 'u3: no longer');
    await group(g2, 'g2: no');
    await room(r1, 'rooms: flag kept');
    await group(g1, 'g1: listed');
    await l.waitForPushes('pushgroupmsg', 2);
    assert.deepEqual(texts(l, 'pushmsg'), ['from u3', 'u3 still']);
    assert.deepEqual(texts(l, 'pushroommsg'), ['any room', 'rooms: flag kept']);
    assert.deepEqual(texts(l, 'pushgroupmsg'), ['any group', 'g1: listed']);

    // Both kinds in one quest (Node's form): both replaced.
    await signed(l, 'setlisten', { p2p: true, rids: [r2] });
    await room(r1, 'r1: no');
    await group(g1, 'g1: no');
    await room(r2, 'r2: listed');
    await p2p(u1, u2, 'all p2p');
    await l.waitForPushes('pushmsg', 3);
    assert.deepEqual(texts(l, 'pushroommsg'), ['any room', 'rooms: flag kept', 'r2: listed']);
    assert.deepEqual(texts(l, 'pushgroupmsg'), ['any group', 'g1: listed']);
    assert.deepEqual(texts(l, 'pushmsg'), ['from u3', 'u3 still', 'all p2p']);

    // Neither kind: the "all" form with every flag false (the C# SDK's SetListen(false, false,
    // false, false) sends no key); the lists stay.
    await signed(l, 'setlisten', {});
    await p2p(u1, u2, 'p2p: all no longer');
    await room(r2, 'r2: still listed');
    await l.waitForPushes('pushroommsg', 4);
    assert.deepEqual(texts(l, 'pushmsg'), ['from u3', 'u3 still', 'all p2p']);
    assert.deepEqual(texts(l, 'pushroommsg'), ['any room', 'rooms: flag kept', 'r2: listed', 'r2: still listed']);
  });

  it("lists as maps keyed by the ids (the Go SDK's restore on reconnect) select as lists do", async () => {
    // The Go SDK keeps its listen lists as map[int64]struct{} and sends them so after a reconnect:
    // {uids: {2002: {}}}, the ids as int keys and empty maps as values.
    const l = await listener();
    const set = <K>(...keys: K[]) => new Map(keys.map((k) => [k, {}]));
    assert.deepEqual(await signed(l, 'setlisten', { uids: set(u3), gids: set(g1), rids: set(r1, r2), events: set('login') }), {});
    await p2p(u1, u2, 'u1->u2 not listened');
    await group(g2, 'g2 not listened');
    await p2p(u3, u1, 'from u3');
    await group(g1, 'g1');
    await room(r2, 'r2');
    await l.waitForPushes('pushroommsg');
    assert.deepEqual(texts(l, 'pushmsg'), ['from u3']);
    assert.deepEqual(texts(l, 'pushgroupmsg'), ['g1']);
    assert.deepEqual(texts(l, 'pushroommsg'), ['r2']);

    assert.deepEqual(await signed(l, 'removelisten', { rids: set(r2) }), {});
    assert.deepEqual(await signed(l, 'addlisten', { uids: set(u2) }), {});
    await room(r2, 'r2 after remove');
    await room(r1, 'r1 still');
    await p2p(u1, u2, 'to u2');
    await l.waitForPushes('pushmsg', 2);
    assert.deepEqual(texts(l, 'pushroommsg'), ['r2', 'r1 still']);
    assert.deepEqual(texts(l, 'pushmsg'), ['from u3', 'to u2']);

    // Map keys are read as the list's items are: an id > 0, else refused and nothing changes.
    await rejectsCode(signed(l, 'addlisten', { uids: { abc: {} } }), 10010);
    await rejectsCode(signed(l, 'addlisten', { uids: set(0n) }), 200034);
  });

  it('pushevent login / logout for listened events; ev flag listens to all', async () => {
    const l = await listener();
    const all = await listener();
    const none = await listener();
    assert.deepEqual(await signed(l, 'addlisten', { events: ['login', 'logout'] }), {});
    assert.deepEqual(await signed(all, 'setlisten', { ev: true }), {});
    assert.deepEqual(await signed(none, 'addlisten', { events: ['logout'] }), {});
    const uid = BIG + 77n;
    const { token } = await call('gettoken', { uid });
    const user = await RawClient.websocket(server.clientEndpoint);
    conns.push(user);
    await user.quest('auth', { pid: TEST_PID, uid, token });
    const [login] = await l.waitForPushes('pushevent');
    assert.equal(login!.event, 'login');
    assert.equal(login!.uid, uid);
    assert.equal(login!.pid, TEST_PID);
    assert.equal(typeof login!.time, 'number');
    assert.equal(typeof login!.endpoint, 'string');
    await all.waitForPushes('pushevent');
    await user.quest('bye');
    const events = await l.waitForPushes('pushevent', 2);
    assert.equal(events[1]!.event, 'logout');
    assert.equal(events[1]!.uid, uid);
    await all.waitForPushes('pushevent', 2);
    assert.deepEqual(
      (await none.waitForPushes('pushevent')).map((p) => p.event),
      ['logout'],
    );

    // a dropped connection (no bye) ends the presence after the grace period (50 ms here)
    const again = await RawClient.websocket(server.clientEndpoint);
    await again.quest('auth', { pid: TEST_PID, uid, token });
    await l.waitForPushes('pushevent', 3);
    again.close();
    const four = await l.waitForPushes('pushevent', 4);
    assert.deepEqual(
      four.map((p) => p.event),
      ['login', 'logout', 'login', 'logout'],
    );
  });

  it('a backend that listens to what it sends gets the answer first, then the push (persist, answer, then push)', async () => {
    const l = await listener();
    await signed(l, 'setlisten', { p2p: true, group: true });
    const frames: string[] = [];
    const decoder = new FrameDecoder();
    l.socket.on('data', (chunk: Uint8Array) => {
      for (const f of decoder.push(chunk)) frames.push(f.kind === 'answer' ? 'answer' : f.method);
    });
    for (let i = 0; i < 3; i++) {
      await signed(l, 'sendmsg', { from: u1, to: u2, mid: mid++, mtype: 51, msg: `own ${i}`, attrs: '' });
      await signed(l, 'sendgroupmsg', { from: u1, gid: g1, mid: mid++, mtype: 51, msg: `own group ${i}`, attrs: '' });
    }
    await l.waitForPushes('pushgroupmsg', 3);
    assert.deepEqual(frames, Array.from({ length: 3 }, () => ['answer', 'pushmsg', 'answer', 'pushgroupmsg']).flat());
    assert.deepEqual(texts(l, 'pushmsg'), ['own 0', 'own 1', 'own 2']);
  });

  it('bad listen quests: no list (10009), wrong types (10010), over HTTP (20013)', async () => {
    const l = await listener();
    await rejectsCode(signed(l, 'addlisten', {}), 10009);
    await rejectsCode(signed(l, 'removelisten', { p2p: true }), 10009);
    await rejectsCode(signed(l, 'addlisten', { gids: 'x' }), 10010);
    await rejectsCode(signed(l, 'addlisten', { events: [1] }), 10010);
    await rejectsCode(signed(l, 'setlisten', { p2p: 'yes' }), 10010);
    await rejectsCode(signed(l, 'setlisten', { uids: [{}] }), 10010);

    for (const method of ['addlisten', 'removelisten', 'setlisten']) {
      const f = signFields(method, TEST_PID, TEST_SECRET, uniqueSalt());
      const body = `{"pid":${f.pid},"salt":${f.salt},"ts":${f.ts},"sign":"${f.sign}","gids":[1],"p2p":true}`;
      const res = await fetch(`http://${server.serverEndpoint}/service/${method}`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
      });
      const answer = (await res.json()) as { code: number; ex: string };
      assert.equal(res.status, 500);
      assert.equal(answer.code, 20013);
      assert.match(answer.ex, /persistent/);
    }
  });
});
