import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { encodeQuest, Flag, type Payload } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';

// Resource bounds: no peer (unauthenticated, a user, a backend with a valid secret making a
// mistake) makes the server's memory grow without bound or stalls its event loop for long.

async function rejectsCode(p: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(p, (err: { code?: number; message?: string }) => {
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('resource bounds', () => {
  let server: TestServer;
  const conns: RawClient[] = [];
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    for (const c of conns) c.close();
    await server.close();
  });
  async function tcp(endpoint: string): Promise<RawClient> {
    const c = await RawClient.tcp(endpoint);
    conns.push(c);
    return c;
  }

  it('listen sets of a server connection are bounded: addlisten past maxListenItems is refused (200032)', async () => {
    const backend = await tcp(server.serverEndpoint);
    const signed = (method: string, payload: Payload) => backend.signed(method, payload, TEST_PID, TEST_SECRET);
    const max = 100_000; // the default of RTM_MAX_LISTEN_ITEMS
    const batch = 40_000;
    let next = 1n;
    const ids = (n: number) => Array.from({ length: n }, () => next++);
    // Repeated addlisten with fresh uids: before the bound every one was added, without end.
    let refused = 0;
    for (let i = 0; i < Math.ceil((2 * max) / batch); i++) {
      try {
        await signed('addlisten', { uids: ids(batch) });
      } catch (err) {
        assert.equal((err as { code?: number }).code, 200032, (err as Error).message);
        refused++;
      }
    }
    assert.ok(refused > 0, 'some addlisten were refused');
    const [conn] = [...(server.services.listeners.listeners(TEST_PID) ?? [])];
    const listen = conn!.session!.listen;
    const held = listen.uids.size + listen.gids.size + listen.rids.size + listen.events.size;
    assert.ok(held <= max, `listen sets hold ${held} items, the bound is ${max}`);
    // setlisten replaces: more than the bound at once is refused, within it works.
    await rejectsCode(signed('setlisten', { uids: ids(max + 1) }), 200032);
    assert.deepEqual(await signed('setlisten', { uids: ids(10) }), {});
    assert.equal(conn!.session!.listen.uids.size, 10);
    // A setlisten replaces all four lists (absent = empty, server-api.md §4): only the lists it gives count.
    assert.deepEqual(await signed('setlisten', { gids: ids(max - 20) }), {});
    assert.deepEqual(await signed('setlisten', { uids: ids(30) }), {});
    assert.deepEqual([conn!.session!.listen.gids.size, conn!.session!.listen.uids.size], [0, 30]);
    await rejectsCode(signed('setlisten', { gids: ids(max - 20), uids: ids(30) }), 200032);
    assert.deepEqual(await signed('setlisten', { gids: ids(5) }), {});
    // Event names are kept as given (only login/logout match): a long one is refused.
    await rejectsCode(signed('addlisten', { events: ['x'.repeat(100_000)] }), 200034);
    assert.deepEqual(await signed('addlisten', { events: ['login', 'logout'] }), {});
  });

  it('a client that has not logged in cannot make the server decode a large frame (memory, event-loop stall)', async () => {
    // 7 MB of empty msgpack maps (0x80): within the 8 MiB frame limit, one JS object per byte
    // (hundreds of MB and seconds of decoding) from a peer that never logged in.
    const n = 7_000_000;
    const payload = new Uint8Array(8 + n).fill(0x80);
    payload.set([0x81, 0xa1, 0x78, 0xdd]); // {x: array32 of n}
    new DataView(payload.buffer).setUint32(4, n);
    const frame = encodeQuest('auth', payload, Flag.MSGPACK, false, 1);
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    const c = await tcp(server.clientEndpoint);
    let answered = false;
    c.peer.expectAnswer(1, 'auth', 20_000).then(
      () => (answered = true),
      (err: { code?: number }) => (answered = err.code !== 20002 && err.code !== 20003),
    );
    c.write(frame);
    await Promise.race([c.closed, new Promise((r) => setTimeout(r, 8000))]);
    lag.disable();
    const worst = lag.max / 1e6;
    assert.ok(c.isClosed, 'the connection is closed');
    assert.equal(answered, false, 'the frame was refused from its header, never decoded');
    assert.ok(worst < 1000, `the event loop stalled ${worst.toFixed(0)} ms`);
    // A login still works (its frame is small).
    const backend = await tcp(server.serverEndpoint);
    const { token } = await backend.signed('gettoken', { uid: 7n }, TEST_PID, TEST_SECRET);
    const user = await tcp(server.clientEndpoint);
    assert.deepEqual(await user.quest('auth', { pid: TEST_PID, uid: 7n, token, attrs: { a: 'b'.repeat(1000) } }), { ok: true });
  });

  it('a client-gate connection that never logs in is closed after the idle timeout, however often it pings', async () => {
    const quick = await startTestServer({ idleTimeoutMs: 1200, pingIntervalMs: 300 });
    try {
      const idler = await RawClient.tcp(quick.clientEndpoint);
      const token = (await (await tcp(quick.serverEndpoint)).signed('gettoken', { uid: 4242n }, TEST_PID, TEST_SECRET))['token'];
      const user = await RawClient.tcp(quick.clientEndpoint);
      assert.deepEqual(await user.quest('auth', { pid: TEST_PID, uid: 4242n, token }), { ok: true });
      const started = Date.now();
      while (!idler.isClosed && Date.now() - started < 5000) {
        await idler.quest('*ping').catch(() => undefined);
        await user.quest('*ping').catch(() => undefined);
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.ok(idler.isClosed, 'the connection that never logged in is closed');
      assert.ok(Date.now() - started >= 1000, 'not before the idle timeout');
      assert.equal(user.isClosed, false, 'a logged-in one that pings stays');
      user.close();
    } finally {
      await quick.close();
    }
  });

  it("a user's conversation list costs a bounded amount however many peers the user has", async () => {
    // A backend's system account writes to 40,000 users (sendmsgs, 2000 at a time): the account
    // then has 40,000 p2p conversations. Listing them read the last message of every one of them
    // on the event loop (~0.1 ms each: seconds for the whole server) into one answer of megabytes.
    const backend = await tcp(server.serverEndpoint);
    const signed = (method: string, payload: Payload) => backend.signed(method, payload, TEST_PID, TEST_SECRET);
    const system = 900_000n;
    let to = 1_000_000n;
    for (let i = 0; i < 20; i++) {
      const tos = Array.from({ length: 2000 }, () => to++);
      await signed('sendmsgs', { from: system, tos, mid: BigInt(i + 1), mtype: 30, msg: `note ${i}`, attrs: '' });
    }
    await signed('sendmsg', { from: to - 1n, to: system, mid: 1n, mtype: 30, msg: 'latest', attrs: '' });
    const { token } = await signed('gettoken', { uid: system });
    const user = await tcp(server.clientEndpoint);
    assert.deepEqual(await user.quest('auth', { pid: TEST_PID, uid: system, token }), { ok: true });
    const max = server.config.limits.maxQueryItems;
    const lag = monitorEventLoopDelay({ resolution: 10 });
    lag.enable();
    const list = await user.quest('getp2pconversationlist', {});
    const unread = await user.quest('getp2punreadconversationlist', {});
    lag.disable();
    const worst = lag.max / 1e6;
    const conversations = list.conversations as bigint[];
    assert.equal(conversations.length, max, `the newest ${max} conversations`);
    assert.equal(conversations[0], to - 1n, 'newest first');
    assert.equal((list.msgs as unknown[]).length, max);
    assert.deepEqual(unread.conversations, [to - 1n], 'the unread one is found');
    assert.ok(worst < 1000, `the event loop stalled ${worst.toFixed(0)} ms`);
  });
});
