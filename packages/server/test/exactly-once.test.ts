import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RTMClient, RtmError, type RTMClientEvents, type SendError as ClientSendError } from '@rtm/client-sdk';
import { RTMServerClient, type SendError } from '@rtm/server-sdk';
import { startFaultyProxy, startTestServer, TEST_PID, TEST_SECRET, until, type FaultyProxy, type TestServer } from '@rtm/testkit';

// Exactly-once delivery end to end (README "Behaviour worth knowing": Delivery, Resends; server-api.md
// §2.1): every message reaches every online device that should get it once, a resend with the same
// mid is stored and pushed once, and what a device missed while cut off is in history and unread.
// Faults come from testkit's TCP proxy in front of a gate.

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

type Pushed = RTMClientEvents['message'] | RTMClientEvents['groupMessage'] | RTMClientEvents['roomMessage'];

/** Every message a client surfaced, in order. */
function record(client: RTMClient): Pushed[] {
  const got: Pushed[] = [];
  client.on('message', (m) => got.push(m));
  client.on('groupMessage', (m) => got.push(m));
  client.on('roomMessage', (m) => got.push(m));
  return got;
}

const mids = (list: readonly Pushed[]): bigint[] => list.map((m) => m.mid);
const count = (list: readonly Pushed[], mid: bigint): number => list.filter((m) => m.mid === mid).length;

let nextUid = 2n ** 60n;
const freshUid = (): bigint => ++nextUid;
let nextMid = 2n ** 58n;
const freshMid = (): bigint => ++nextMid;

describe('exactly-once delivery', () => {
  let server: TestServer;
  let echoServer: TestServer;
  let backend: RTMServerClient;
  let echoBackend: RTMServerClient;
  const clients: RTMClient[] = [];
  const proxies: FaultyProxy[] = [];

  before(async () => {
    server = await startTestServer();
    echoServer = await startTestServer({ pushToSenderDevices: true });
    backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    echoBackend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: echoServer.serverEndpoint, autoReconnect: false });
    await backend.connect();
    await echoBackend.connect();
  });
  after(async () => {
    for (const client of clients) client.close();
    for (const proxy of proxies) proxy.close();
    await backend.close();
    await echoBackend.close();
    await server.close();
    await echoServer.close();
  });

  const proxyTo = async (endpoint: string): Promise<FaultyProxy> => {
    const [host, port] = endpoint.split(':');
    const proxy = await startFaultyProxy(host!, Number(port));
    proxies.push(proxy);
    return proxy;
  };

  /**
   * A logged-in client. `duplicateFilterMs: 0` shows every push as it came on the wire (what an
   * SDK without a duplicate filter would surface); the default shows what our SDK surfaces.
   */
  const login = async (
    uid: bigint,
    opts: { via?: FaultyProxy; on?: TestServer; duplicateFilterMs?: number; autoReconnect?: boolean } = {},
  ): Promise<RTMClient> => {
    const target = opts.on ?? server;
    const endpoint = opts.via ? `127.0.0.1:${opts.via.port}` : target.clientEndpoint;
    const client = new RTMClient({
      endpoint,
      pid: TEST_PID,
      autoReconnect: opts.autoReconnect ?? true,
      duplicateFilterMs: opts.duplicateFilterMs,
      questTimeoutMs: 5000,
      reconnectStrategy: { startConnectFailedCount: 100, maxIntervalSeconds: 0.2, stableAfterMs: 0 },
    });
    clients.push(client);
    const api = target === echoServer ? echoBackend : backend;
    assert.deepEqual(await client.login(uid, await api.getToken(uid)), { ok: true });
    return client;
  };

  const relogged = (client: RTMClient): Promise<void> =>
    new Promise((resolve) => {
      const on = (e: { relogin: boolean }): void => {
        if (!e.relogin) return;
        client.off('connected', on);
        resolve();
      };
      client.on('connected', on);
    });

  const p2pHistory = async (client: RTMClient, peer: bigint): Promise<bigint[]> =>
    (await client.getP2PMessage(peer, false, 100)).messages.map((m) => m.mid);

  // ---------------------------------------------------------------- resends after a lost answer

  it('client send whose answer is lost, resent with the same mid after relogin: stored and pushed once', async () => {
    const [A, B] = [freshUid(), freshUid()];
    const proxy = await proxyTo(server.clientEndpoint);
    const a = await login(A, { via: proxy });
    const b = await login(B, { duplicateFilterMs: 0 });
    const got = record(b);
    const mid = freshMid();
    proxy.holdAnswers = true;
    const first = a.sendMessage(B, 30, 'once', '', mid);
    await until(() => got.length === 1); // the server stored and pushed it; its answer is held
    const back = relogged(a);
    proxy.holdAnswers = false;
    proxy.cut();
    await assert.rejects(first, (err: unknown) => err instanceof RtmError && err.code === 20002);
    await back;
    const again = await a.sendMessage(B, 30, 'once', '', mid);
    assert.equal(again.mid, mid);
    await sleep(200);
    assert.deepEqual(mids(got), [mid], 'one push');
    assert.deepEqual(await p2pHistory(b, A), [mid], 'one message in history');
    assert.equal(again.mtime, got[0]!.mtime, 'the resend is answered with the original mtime');
  });

  it('client send without a mid whose answer is lost: the error names the generated mid, and resending it stores and pushes once', async () => {
    const [A, B] = [freshUid(), freshUid()];
    const proxy = await proxyTo(server.clientEndpoint);
    const a = await login(A, { via: proxy });
    const b = await login(B, { duplicateFilterMs: 0 });
    const got = record(b);
    proxy.holdAnswers = true;
    const first = a.sendMessage(B, 30, 'no mid given');
    await until(() => got.length === 1);
    const back = relogged(a);
    proxy.holdAnswers = false;
    proxy.cut();
    const err = await first.then(
      () => assert.fail('the answer was lost'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RtmError && err.code === 20002, String(err));
    // The official SDKs answer a failed send with {mid, error}: the app resends that mid.
    const lostMid = (err as ClientSendError).mid;
    assert.equal(lostMid, got[0]!.mid, 'the failed send tells which mid it sent');
    await back;
    await a.sendMessage(B, 30, 'no mid given', '', lostMid);
    await sleep(200);
    assert.equal(got.length, 1, 'one push');
    assert.equal((await p2pHistory(b, A)).length, 1, 'one message in history');
  });

  it('server SDK send whose answer is lost (no mid given: the error names it), retried with that mid on a new connection: stored and pushed once', async () => {
    const [A, B] = [freshUid(), freshUid()];
    const G = freshUid();
    await backend.addGroupMembers(G, [A, B]);
    const b = await login(B, { duplicateFilterMs: 0 });
    const got = record(b);
    const proxy = await proxyTo(server.serverEndpoint);
    const flaky = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: `127.0.0.1:${proxy.port}`, autoReconnect: true });
    try {
      await flaky.connect();
      for (const send of [
        (mid?: bigint) => flaky.sendMessage(30, A, B, 'p2p once', '', { mid }),
        (mid?: bigint) => flaky.sendGroupMessage(30, A, G, 'group once', '', { mid }),
      ]) {
        const before = got.length;
        proxy.holdAnswers = true;
        const first = send();
        await until(() => got.length === before + 1);
        proxy.holdAnswers = false;
        proxy.cut();
        const err = await first.then(
          () => assert.fail('the answer was lost'),
          (e: unknown) => e as SendError,
        );
        assert.ok(err instanceof RtmError, String(err));
        assert.equal(err.mid, got.at(-1)!.mid, 'the failed send tells which mid it sent');
        const again = await send(err.mid);
        assert.equal(again.mtime, got.at(-1)!.mtime);
      }
      await sleep(200);
      assert.equal(got.length, 2, 'one push each');
      assert.equal((await p2pHistory(b, A)).length, 1);
      assert.equal((await b.getGroupMessage(G, false, 10)).messages.length, 1);
    } finally {
      await flaky.close();
    }
  });

  it('a resend racing the original (same mid, same turn): stored and pushed once', async () => {
    const [A, B] = [freshUid(), freshUid()];
    const b = await login(B, { duplicateFilterMs: 0 });
    const got = record(b);
    const mid = freshMid();
    const answers = await Promise.all([
      backend.sendMessage(30, A, B, 'twice at once', '', { mid }),
      backend.sendMessage(30, A, B, 'twice at once', '', { mid }),
      backend.sendMessage(30, A, B, 'twice at once', '', { mid }),
    ]);
    assert.equal(new Set(answers.map((x) => x.mtime)).size, 1);
    await sleep(200);
    assert.deepEqual(mids(got), [mid]);
  });

  it('a resend after the sender lost the right to send there (left the room, banned in the group, blocked): the original mtime, nothing stored or pushed again', async () => {
    const [A, B] = [freshUid(), freshUid()];
    const [G, R] = [freshUid(), freshUid()];
    await backend.addGroupMembers(G, [A, B]);
    const a = await login(A);
    const b = await login(B, { duplicateFilterMs: 0 });
    await a.enterRoom(R);
    await b.enterRoom(R);
    const got = record(b);
    const room = await a.sendRoomMessage(R, 30, 'room', '', freshMid());
    const group = await a.sendGroupMessage(G, 30, 'group', '', freshMid());
    const p2p = await a.sendMessage(B, 30, 'p2p', '', freshMid());
    await until(() => got.length === 3);
    // The answers were lost (say), and before the resends the sender's rights went away.
    await a.leaveRoom(R);
    await backend.addGroupBan(G, A, 60);
    await backend.addBlacks(B, [A]);
    const again = [
      await a.sendRoomMessage(R, 30, 'room', '', room.mid),
      await a.sendGroupMessage(G, 30, 'group', '', group.mid),
      await a.sendMessage(B, 30, 'p2p', '', p2p.mid),
    ];
    assert.deepEqual(
      again.map((r) => r.mtime),
      [room.mtime, group.mtime, p2p.mtime],
    );
    // Not a way around the rights: another message, or the same mid with other content, is refused.
    const refused = async (send: Promise<unknown>, code: number) =>
      assert.rejects(send, (err: unknown) => err instanceof RtmError && err.code === code);
    await refused(a.sendRoomMessage(R, 30, 'room, new', '', freshMid()), 200040);
    await refused(a.sendRoomMessage(R, 30, 'room, changed', '', room.mid), 200040);
    await refused(a.sendGroupMessage(G, 30, 'group, new', '', freshMid()), 200044);
    await refused(a.sendMessage(B, 30, 'p2p, changed', '', p2p.mid), 200049);
    await sleep(200);
    assert.deepEqual(mids(got), [room.mid, group.mid, p2p.mid], 'pushed once each');
    assert.deepEqual(await p2pHistory(b, A), [p2p.mid]);
    assert.deepEqual(
      (await b.getGroupMessage(G, false, 10)).messages.map((m) => m.mid),
      [group.mid],
    );
  });

  it('the same mid to another target, or from another device of the same user', async () => {
    const [A, B, C] = [freshUid(), freshUid(), freshUid()];
    const a1 = await login(A);
    const a2 = await login(A);
    const b = await login(B, { duplicateFilterMs: 0 });
    const c = await login(C, { duplicateFilterMs: 0 });
    const [gotB, gotC] = [record(b), record(c)];
    const mid = freshMid();
    await a1.sendMessage(B, 30, 'same mid', '', mid);
    await a1.sendMessage(C, 30, 'same mid', '', mid); // another target: another message
    await a2.sendMessage(B, 30, 'same mid', '', mid); // another device: a resend
    await sleep(200);
    assert.deepEqual(mids(gotB), [mid]);
    assert.deepEqual(mids(gotC), [mid]);
    assert.deepEqual(await p2pHistory(b, A), [mid]);
    assert.deepEqual(await p2pHistory(c, A), [mid]);
  });

  // ---------------------------------------------------------------- receivers cut off and back

  it('a receiver cut off with pushes in flight relogs in: nothing twice, nothing after the relogin lost, the rest in history and unread', async () => {
    const [A, B] = [freshUid(), freshUid()];
    const proxy = await proxyTo(server.clientEndpoint);
    const b = await login(B, { via: proxy });
    const got = record(b);
    const before = [];
    for (let i = 0; i < 5; i++) before.push((await backend.sendMessage(30, A, B, `before ${i}`)).mid);
    await until(() => got.length === 5);
    proxy.holdAnswers = true; // pushes from now on go into the cut connection
    const lost = [];
    for (let i = 0; i < 5; i++) lost.push((await backend.sendMessage(30, A, B, `in flight ${i}`)).mid);
    const back = relogged(b);
    proxy.cut();
    proxy.holdAnswers = false;
    await back;
    const afterwards = [];
    for (let i = 0; i < 5; i++) afterwards.push((await backend.sendMessage(30, A, B, `after ${i}`)).mid);
    await until(() => got.length >= 10);
    await sleep(300);
    assert.deepEqual(mids(got), [...before, ...afterwards], 'each once, in order; none of the cut ones re-pushed twice');
    assert.deepEqual(await p2pHistory(b, A), [...before, ...lost, ...afterwards]);
    const unread = await b.getP2PUnreadMessageNum([A]);
    assert.equal(unread.p2p.get(A), 15, 'a relogin within the grace period keeps every message unread');
  });

  it('two devices of one user, one of them reconnecting: the other gets every message once, the reconnected one every later one once', async () => {
    const [A, B] = [freshUid(), freshUid()];
    const G = freshUid();
    await backend.addGroupMembers(G, [A, B]);
    const proxy = await proxyTo(server.clientEndpoint);
    const b1 = await login(B, { via: proxy, duplicateFilterMs: 0 });
    const b2 = await login(B, { duplicateFilterMs: 0 });
    const [got1, got2] = [record(b1), record(b2)];
    const a = await login(A);
    const sent: bigint[] = [];
    const send = async (i: number): Promise<void> => {
      sent.push((await a.sendMessage(B, 30, `p2p ${i}`)).mid);
      sent.push((await a.sendGroupMessage(G, 30, `group ${i}`)).mid);
    };
    await send(0);
    proxy.holdAnswers = true;
    await send(1);
    const back = relogged(b1);
    proxy.cut();
    proxy.holdAnswers = false;
    await send(2); // while b1 is away
    await back;
    await send(3);
    await until(() => got2.length >= 8 && got1.length >= 4);
    await sleep(300);
    assert.deepEqual(mids(got2), sent, 'the device that stayed: every one once');
    assert.deepEqual(
      mids(got1),
      [...sent.slice(0, 2), ...sent.slice(6)],
      'the reconnected device: before the cut and after the relogin, once',
    );
  });

  it('group and room messages to a member on two devices: each device once', async () => {
    const [A, B] = [freshUid(), freshUid()];
    const [G, R] = [freshUid(), freshUid()];
    await backend.addGroupMembers(G, [A, B]);
    const b1 = await login(B, { duplicateFilterMs: 0 });
    const b2 = await login(B, { duplicateFilterMs: 0 });
    const a = await login(A);
    await a.enterRoom(R);
    await b1.enterRoom(R);
    await b2.enterRoom(R); // the same user entering again from the second device
    const [got1, got2] = [record(b1), record(b2)];
    const g = await a.sendGroupMessage(G, 30, 'to the group');
    const r = await a.sendRoomMessage(R, 30, 'to the room');
    const rb = await backend.sendRoomMessage(30, A, R, 'to the room from the backend');
    await until(() => got1.length >= 3 && got2.length >= 3);
    await sleep(200);
    for (const got of [got1, got2]) assert.deepEqual(mids(got), [g.mid, r.mid, rb.mid]);
  });

  it('pushes while a device logs in: each message once, none committed after the login answer missed', async () => {
    const [A, B] = [freshUid(), freshUid()];
    const token = await backend.getToken(B);
    const client = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID, duplicateFilterMs: 0, autoReconnect: false });
    clients.push(client);
    const got = record(client);
    let stop = false;
    const sent: { mid: bigint; mtime: bigint }[] = [];
    const sending = (async () => {
      while (!stop) sent.push(await backend.sendMessage(30, A, B, 'burst'));
    })();
    await sleep(30);
    await client.login(B, token);
    const loggedInAt = BigInt(Date.now());
    await sleep(100);
    stop = true;
    await sending;
    await sleep(200);
    for (const m of got) assert.equal(count(got, m.mid), 1, `mid ${m.mid} once`);
    const pushed = new Set(mids(got));
    const missed = sent.filter((m) => !pushed.has(m.mid) && m.mtime > loggedInAt);
    assert.deepEqual(missed, [], 'sent after the login answer: pushed');
    // The pushed ones are the newest: no gap after the first push.
    const firstPushed = sent.findIndex((m) => pushed.has(m.mid));
    assert.ok(firstPushed >= 0);
    assert.deepEqual(
      sent.slice(firstPushed).map((m) => m.mid),
      mids(got),
    );
  });

  // ---------------------------------------------------------------- the sender's other devices (RTM_PUSH_TO_SENDER_DEVICES)

  it('echo to my other device: one mid to two peers is two messages, and my other device shows both', async () => {
    const [A, B, C] = [freshUid(), freshUid(), freshUid()];
    const a1 = await login(A, { on: echoServer });
    const a2 = await login(A, { on: echoServer }); // our SDK with its duplicate filter
    const got = record(a2);
    const mid = freshMid();
    await a1.sendMessage(B, 30, 'to B', '', mid);
    await a1.sendMessage(C, 30, 'to C', '', mid);
    await until(() => got.length >= 2, 2000).catch(() => undefined);
    assert.deepEqual(
      got.map((m) => (m as RTMClientEvents['message']).toUid),
      [B, C],
      'both messages reach my other device',
    );
  });

  it('echo: a backend message from a user to that same user is pushed to each of their devices once', async () => {
    const A = freshUid();
    const B = freshUid();
    const a1 = await login(A, { on: echoServer, duplicateFilterMs: 0 });
    const a2 = await login(A, { on: echoServer, duplicateFilterMs: 0 });
    const [got1, got2] = [record(a1), record(a2)];
    const note = await echoBackend.sendMessage(30, A, A, 'note to self');
    const many = await echoBackend.sendMessages(30, A, [A, B], 'to me and B');
    await until(() => got1.length >= 3 && got2.length >= 3);
    await sleep(200);
    for (const got of [got1, got2]) {
      assert.equal(count(got, note.mid), 1, 'the note once');
      assert.deepEqual(
        got.filter((m) => m.mid === many.mid).map((m) => (m as RTMClientEvents['message']).toUid),
        [A, B],
        'the sendmsgs: its message to me once, its message to B once',
      );
    }
  });
});
