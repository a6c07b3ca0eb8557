import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { FrameDecoder } from '@rtm/fpnn';
import { RawClient, startTestServer, TEST_PID, TEST_SECRET, type TestServer } from '@rtm/testkit';
import { loginBefore } from '../src/services/delivery.js';
import { SqliteStore } from '../src/store/sqlite.js';
import type { PresenceJoin } from '../src/store/store.js';
import { withHeldLoginSteps } from './helpers/held-login-steps.js';

// client-api.md §2 `auth`: tokens from gettoken, "auth v2" tokens a backend mints with the
// project's hmacSecret, and admin ids that may not log in as clients. Real server, raw frames.

const HMAC_SECRET = Buffer.from('a project key of thirty-two bytes').toString('base64');
const NO_V2_PID = 11000003;
const ADMIN = 42n;
const BIG = 1n << 60n;
const nowSeconds = () => Math.floor(Date.now() / 1000);
/** `promise`, or a failure naming `what` after `ms`. */
const within = <T>(promise: Promise<T>, what: string, ms = 3000): Promise<T> =>
  Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms).unref()),
  ]);

/** What the Unity token helper computes. */
function v2Token(pid: number, uid: bigint, ts: number, secret = HMAC_SECRET): string {
  return createHmac('sha256', Buffer.from(secret, 'base64')).update(`${pid}:${uid}:${ts}`).digest('base64');
}

describe('client login: gettoken tokens, auth v2 (HMAC) tokens, admin ids', () => {
  let server: TestServer;
  let backend: RawClient;
  const clients: RawClient[] = [];
  const auth = async (payload: Record<string, unknown>) => {
    const client = await RawClient.websocket(server.clientEndpoint);
    clients.push(client);
    return { client, answer: await client.quest('auth', payload).catch((err: { code: number }) => ({ error: err.code })) };
  };

  before(async () => {
    server = await startTestServer({
      projects: [
        { pid: TEST_PID, secret: TEST_SECRET, hmacSecret: HMAC_SECRET },
        { pid: NO_V2_PID, secret: 'no-v2-secret' },
      ],
      hmacTokenTtlSeconds: 3600,
      signWindowSeconds: 300,
      broadcastAdminUids: [ADMIN],
    });
    backend = await RawClient.tcp(server.serverEndpoint);
  });
  after(async () => {
    for (const c of clients) c.close();
    backend.close();
    await server.close();
  });

  it('an auth v2 token works without gettoken, and the session acts as its uid', async () => {
    const uid = BIG + 1n;
    const ts = nowSeconds();
    const { client, answer } = await auth({ pid: TEST_PID, uid, token: v2Token(TEST_PID, uid, ts), ts, authv: 2, version: 'Unity-2.7.26' });
    assert.deepEqual(answer, { ok: true });
    assert.deepEqual(await client.quest('setuserinfo', { oinfo: 'minted' }), {});
    const info = await backend.signed('getuserinfo', { uid }, TEST_PID, TEST_SECRET);
    assert.equal(info.oinfo, 'minted');
    // Within the ttl, an older ts still works (a relogin reuses the token it was given).
    const old = nowSeconds() - 3000;
    assert.deepEqual((await auth({ pid: TEST_PID, uid, token: v2Token(TEST_PID, uid, old), ts: old, authv: 2 })).answer, { ok: true });
  });

  it('a bad auth v2 token is {ok: false}: wrong key, other uid, expired, from the future, no ts, no hmacSecret', async () => {
    const uid = BIG + 2n;
    const ts = nowSeconds();
    const other = Buffer.from('another key of at least sixteen bytes').toString('base64');
    const refused = [
      { pid: TEST_PID, uid, token: v2Token(TEST_PID, uid, ts, other), ts, authv: 2 },
      { pid: TEST_PID, uid, token: v2Token(TEST_PID, uid + 1n, ts), ts, authv: 2 },
      { pid: TEST_PID, uid, token: v2Token(TEST_PID, uid, ts - 3601), ts: ts - 3601, authv: 2 },
      { pid: TEST_PID, uid, token: v2Token(TEST_PID, uid, ts + 400), ts: ts + 400, authv: 2 },
      { pid: TEST_PID, uid, token: v2Token(TEST_PID, uid, ts), authv: 2 },
      { pid: NO_V2_PID, uid, token: v2Token(NO_V2_PID, uid, ts), ts, authv: 2 },
      // Without authv the token is a gettoken one, and this user has none.
      { pid: TEST_PID, uid, token: v2Token(TEST_PID, uid, ts), ts },
    ];
    for (const payload of refused)
      assert.deepEqual(
        (await auth(payload)).answer,
        { ok: false },
        JSON.stringify(payload, (_k, v) => (typeof v === 'bigint' ? String(v) : v)),
      );
  });

  it('a gettoken token is not an auth v2 token, and works as before', async () => {
    const uid = BIG + 3n;
    const { token } = (await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET)) as { token: string };
    assert.deepEqual((await auth({ pid: TEST_PID, uid, token, ts: nowSeconds(), authv: 2 })).answer, { ok: false });
    assert.deepEqual((await auth({ pid: TEST_PID, uid, token })).answer, { ok: true });
    assert.deepEqual((await auth({ pid: TEST_PID, uid, token: token.toLowerCase() })).answer, { ok: false });
  });

  it('an admin id (RTM_BROADCAST_ADMIN_UIDS) may not log in as a client: 200025', async () => {
    const { token } = (await backend.signed('gettoken', { uid: ADMIN }, TEST_PID, TEST_SECRET)) as { token: string };
    assert.deepEqual((await auth({ pid: TEST_PID, uid: ADMIN, token })).answer, { error: 200025 });
    const ts = nowSeconds();
    assert.deepEqual((await auth({ pid: TEST_PID, uid: ADMIN, token: v2Token(TEST_PID, ADMIN, ts), ts, authv: 2 })).answer, {
      error: 200025,
    });
    // A bad token says nothing about who is an admin.
    assert.deepEqual((await auth({ pid: TEST_PID, uid: ADMIN, token: 'WRONG' })).answer, { ok: false });
  });
});

/** A store whose login-time lookup (the user's rooms) takes a while, as a store across a network may. */
class SlowRoomsStore extends SqliteStore {
  override async userRooms(pid: number, uid: bigint): Promise<bigint[]> {
    await new Promise((r) => setTimeout(r, 300));
    return super.userRooms(pid, uid);
  }
}

describe('client login: no push before the auth answer (client-api.md §2)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ pingIntervalMs: 100 }, { makeStore: (dataDir) => new SlowRoomsStore({ dataDir }) });
  });
  after(() => server.close());

  it('a message sent while the login is under way is pushed right after the answer, and no ping comes first', async () => {
    const backend = await RawClient.tcp(server.serverEndpoint);
    const client = await RawClient.tcp(server.clientEndpoint);
    try {
      const uid = BIG + 10n;
      const { token } = (await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET)) as { token: string };
      // Every frame the client receives, in wire order.
      const frames: string[] = [];
      const decoder = new FrameDecoder();
      client.socket.on('data', (chunk: Uint8Array) => {
        for (const f of decoder.push(chunk)) frames.push(f.kind === 'answer' ? 'answer' : f.method);
      });
      const answer = client.quest('auth', { pid: TEST_PID, uid, token });
      await new Promise((r) => setTimeout(r, 150)); // the login now waits for the user's rooms
      await backend.signed(
        'sendmsg',
        { from: BIG + 11n, to: uid, mid: 1n, mtype: 30, msg: 'during login', attrs: '' },
        TEST_PID,
        TEST_SECRET,
      );
      assert.deepEqual(await answer, { ok: true });
      await client.waitForPushes('pushmsg');
      assert.equal(frames[0], 'answer', frames.join(', '));
      assert.deepEqual(
        frames.filter((f) => f !== 'ping'),
        ['answer', 'pushmsg'],
      );
    } finally {
      client.close();
      backend.close();
    }
  });
});

describe('kickout by gate endpoint (ce), and one session per user (RTM_SINGLE_SESSION)', () => {
  const servers: TestServer[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });
  async function sessions(server: TestServer, uid: bigint, n: number): Promise<RawClient[]> {
    const backend = await RawClient.tcp(server.serverEndpoint);
    const { token } = (await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET)) as { token: string };
    backend.close();
    const out: RawClient[] = [];
    for (let i = 0; i < n; i++) {
      const c = await RawClient.websocket(server.clientEndpoint);
      assert.deepEqual(await c.quest('auth', { pid: TEST_PID, uid, token }), { ok: true });
      out.push(c);
    }
    return out;
  }

  it('a kicked-out socket stays open RTM_KICKOUT_CLOSE_MS for the client to close it (the browser SDK reads a frame a tick late), its session ended at once', async () => {
    const server = await startTestServer({ kickoutCloseMs: 1500 });
    servers.push(server);
    const uid = BIG + 23n;
    const [kicked, closing] = await sessions(server, uid, 2);
    const backend = await RawClient.tcp(server.serverEndpoint);
    try {
      // `closing` does what the SDKs do on kickout: closes its socket itself.
      void closing!.waitForPushes('kickout').then(() => closing!.close());
      const at = Date.now();
      assert.deepEqual(await backend.signed('kickout', { uid }, TEST_PID, TEST_SECRET), {});
      await kicked!.waitForPushes('kickout');
      await closing!.closed;
      assert.deepEqual(
        await backend.signed('getonlineusers', { uids: [uid] }, TEST_PID, TEST_SECRET),
        { uids: [] },
        'ended at the kickout',
      );
      const peer = BIG + 24n;
      await backend.signed(
        'sendmsg',
        { from: peer, to: uid, mid: 1n, mtype: 30, msg: 'after the kickout', attrs: '' },
        TEST_PID,
        TEST_SECRET,
      );
      const unanswered = await Promise.race([
        kicked!.quest('getservertime').then(
          () => 'answered',
          () => 'no answer',
        ),
        new Promise((resolve) => setTimeout(resolve, 500, 'no answer')),
      ]);
      assert.equal(unanswered, 'no answer', 'nothing is answered on a kicked-out connection');
      assert.equal(kicked!.isClosed, false, 'still open: the client may read its kickout and close it');
      await kicked!.closed;
      const waited = Date.now() - at;
      assert.ok(waited >= 1400 && waited < 4000, `closed by the server after ${waited} ms`);
      assert.deepEqual(
        kicked!.pushes.map((p) => p.method),
        ['kickout'],
        'no push after the kickout',
      );
    } finally {
      backend.close();
    }
  });

  it('kickout with ce kicks only the sessions at that client gate', async () => {
    const server = await startTestServer();
    servers.push(server);
    const uid = BIG + 20n;
    const [a, b] = await sessions(server, uid, 2);
    const backend = await RawClient.tcp(server.serverEndpoint);
    try {
      assert.deepEqual(await backend.signed('kickout', { uid, ce: '10.9.9.9:13321' }, TEST_PID, TEST_SECRET), {});
      assert.deepEqual(await a!.quest('getuserinfo'), { oinfo: '', pinfo: '' }, 'another gate: still logged in');
      // No gate's endpoint is longer than a host name (253) and a port: a longer ce is refused, not
      // carried to every node and kept in the store.
      await assert.rejects(
        backend.signed('kickout', { uid, ce: `${'h'.repeat(256)}:13321` }, TEST_PID, TEST_SECRET),
        (err: { code?: number }) => err.code === 200034,
      );
      assert.deepEqual(await a!.quest('getuserinfo'), { oinfo: '', pinfo: '' }, 'refused: still logged in');
      assert.deepEqual(await backend.signed('kickout', { uid, ce: server.clientEndpoint }, TEST_PID, TEST_SECRET), {});
      await within(Promise.all([a!.closed, b!.closed]), 'both sessions closed');
      for (const c of [a!, b!]) assert.deepEqual(c.pushes, [{ method: 'kickout', payload: {}, oneway: true }]);
    } finally {
      backend.close();
    }
  });

  it('RTM_CLIENT_HOST: the client gate alone on its own address, the server gate on RTM_HOST', async () => {
    // Linux answers on all of 127.0.0.0/8: 127.0.0.2 stands for a public interface here.
    const server = await startTestServer({ clientHost: '127.0.0.2' });
    servers.push(server);
    const port = (endpoint: string): number => Number(endpoint.split(':')[1]);
    const reachable = (host: string, p: number): Promise<boolean> =>
      new Promise((resolve) => {
        const s = connect(p, host, () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
    assert.equal(server.clientEndpoint, `127.0.0.2:${port(server.clientEndpoint)}`);
    assert.deepEqual(
      [
        await reachable('127.0.0.2', port(server.clientEndpoint)),
        await reachable('127.0.0.1', port(server.clientEndpoint)),
        await reachable('127.0.0.1', port(server.serverEndpoint)),
        await reachable('127.0.0.2', port(server.serverEndpoint)),
      ],
      [true, false, true, false],
      'client gate on 127.0.0.2 only, server gate on 127.0.0.1 only',
    );
  });

  it('the gate is known by RTM_CLIENT_ENDPOINT, by RTM_CLIENT_HOST, or by the host name when bound to a wildcard address: pushevent and ce', async () => {
    const advertised = await startTestServer({ clientEndpoint: 'chat-1.example.com:443' });
    const wildcard = await startTestServer({ host: '0.0.0.0' });
    const ownHost = await startTestServer({ clientHost: '127.0.0.2' });
    servers.push(advertised, wildcard, ownHost);
    for (const [server, endpoint] of [
      [advertised, 'chat-1.example.com:443'],
      [wildcard, `${hostname()}:${Number(wildcard.clientEndpoint.split(':')[1])}`],
      [ownHost, ownHost.clientEndpoint],
    ] as const) {
      const uid = BIG + 22n;
      const listener = await RawClient.tcp(server.serverEndpoint);
      const backend = await RawClient.tcp(server.serverEndpoint);
      try {
        await listener.signed('setlisten', { ev: true }, TEST_PID, TEST_SECRET);
        const [a] = await sessions(server, uid, 1);
        const [login] = await listener.waitForPushes('pushevent');
        assert.equal(login!['endpoint'], endpoint, 'pushevent endpoint');
        await backend.signed('kickout', { uid, ce: `0.0.0.0:${server.clientEndpoint.split(':')[1]}` }, TEST_PID, TEST_SECRET);
        assert.deepEqual(await a!.quest('getuserinfo'), { oinfo: '', pinfo: '' }, 'a ce of the bind address names no gate');
        await backend.signed('kickout', { uid, ce: endpoint }, TEST_PID, TEST_SECRET);
        await within(a!.closed, 'kicked by its advertised endpoint');
      } finally {
        listener.close();
        backend.close();
      }
    }
  });

  it('with RTM_SINGLE_SESSION a login kicks out the older sessions; without it both stay', async () => {
    const single = await startTestServer({ singleSession: true });
    servers.push(single);
    const uid = BIG + 21n;
    const [older] = await sessions(single, uid, 1);
    const [newer] = await sessions(single, uid, 1);
    await within(older!.closed, 'the older session closed');
    assert.deepEqual(older!.pushes, [{ method: 'kickout', payload: {}, oneway: true }]);
    assert.deepEqual(await newer!.quest('getuserinfo'), { oinfo: '', pinfo: '' });
    assert.equal(newer!.isClosed, false);
    newer!.close();

    const many = await startTestServer();
    servers.push(many);
    const both = await sessions(many, uid, 2);
    for (const c of both) assert.deepEqual(await c.quest('getuserinfo'), { oinfo: '', pinfo: '' });
    for (const c of both) c.close();
  });

  it('with RTM_SINGLE_SESSION the newer login stays even when the older one finishes last', async () => {
    let store!: HoldingStore;
    const server = await startTestServer({ singleSession: true }, { makeStore: (dataDir) => (store = new HoldingStore({ dataDir })) });
    servers.push(server);
    const uid = BIG + 22n;
    const backend = await RawClient.tcp(server.serverEndpoint);
    const { token } = (await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET)) as { token: string };
    backend.close();
    const auth = async () => {
      const client = await RawClient.websocket(server.clientEndpoint);
      const answer = client.quest('auth', { pid: TEST_PID, uid, token }).catch((err: { code?: number }) => ({ error: err.code ?? err }));
      return { client, answer };
    };
    // The older login waits at its token check; the newer one begins after it and waits once it
    // is a session (the user's rooms); the older one ends first, and its kickout comes now.
    const olderHeld = store.hold('getToken', uid);
    const older = await auth();
    await within(olderHeld.reached, 'the older login at its token check');
    const newerHeld = store.hold('userRooms', uid);
    const newer = await auth();
    await within(newerHeld.reached, 'the newer login a session');
    olderHeld.release();
    assert.deepEqual(await within(older.answer, 'the older login answered'), { ok: true });
    assert.equal(newer.client.isClosed, false, 'the kickout of the older login closed the newer session');
    newerHeld.release();
    assert.deepEqual(await within(newer.answer, 'the newer login answered'), { ok: true });
    await within(older.client.closed, 'the older session closed');
    assert.deepEqual(older.client.pushes, [{ method: 'kickout', payload: {}, oneway: true }]);
    assert.deepEqual(await newer.client.quest('getuserinfo'), { oinfo: '', pinfo: '' });
    assert.deepEqual(newer.client.pushes, []);
    newer.client.close();
  });

  it('logins are ordered by start time, then node id, then connection id (RTM_SINGLE_SESSION keeps the later)', () => {
    const a = { at: 1000, node: 'node-b', conn: 9 };
    assert.equal(loginBefore(a, { at: 1001, node: 'node-a', conn: 1 }), true, 'an earlier start first, whatever the node');
    assert.equal(loginBefore({ at: 1001, node: 'node-a', conn: 1 }, a), false);
    assert.equal(loginBefore({ at: 1000, node: 'node-a', conn: 50 }, a), true, 'the same ms: the smaller node id first');
    assert.equal(loginBefore(a, { at: 1000, node: 'node-a', conn: 50 }), false);
    assert.equal(loginBefore({ at: 1000, node: 'node-b', conn: 8 }, a), true, 'the same ms and node: the smaller connection id first');
    assert.equal(loginBefore(a, { ...a }), false, 'a login is not before itself');
  });
});

/** A store whose token check or room lookup (both steps of a login) of a user can be held by the test. */
const HoldingStore = withHeldLoginSteps(SqliteStore);
type HoldingStore = InstanceType<typeof HoldingStore>;

describe('client login: one auth per connection', () => {
  it('two auth quests in one write: the first logs in, the second gets 200023, and the connection stays the first user', async () => {
    const server = await startTestServer();
    const backend = await RawClient.tcp(server.serverEndpoint);
    const client = await RawClient.tcp(server.clientEndpoint);
    try {
      const [a, b] = [BIG + 30n, BIG + 31n];
      const token = async (uid: bigint) => ((await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET)) as { token: string }).token;
      const [ta, tb] = [await token(a), await token(b)];
      client.socket.cork();
      const answers = [
        client.quest('auth', { pid: TEST_PID, uid: a, token: ta }),
        client.quest('auth', { pid: TEST_PID, uid: b, token: tb }).catch((err: { code: number }) => ({ error: err.code })),
      ];
      client.socket.uncork();
      assert.deepEqual(await Promise.all(answers), [{ ok: true }, { error: 200023 }]);
      assert.deepEqual(await backend.signed('getonlineusers', { uids: [a, b] }, TEST_PID, TEST_SECRET), { uids: [a] });
    } finally {
      client.close();
      backend.close();
      await server.close();
    }
  });
});

describe('client logout: quests sent behind bye', () => {
  it('are refused with 200022: a message is neither stored nor pushed, a room not entered (client-api.md §2, §4)', async () => {
    const server = await startTestServer();
    const backend = await RawClient.tcp(server.serverEndpoint);
    const signed = (method: string, payload: Record<string, unknown>) => backend.signed(method, payload, TEST_PID, TEST_SECRET);
    const [a, b, room] = [BIG + 40n, BIG + 41n, BIG + 42n];
    const login = async (uid: bigint) => {
      const client = await RawClient.tcp(server.clientEndpoint);
      const { token } = (await signed('gettoken', { uid })) as { token: string };
      assert.deepEqual(await client.quest('auth', { pid: TEST_PID, uid, token }), { ok: true });
      return client;
    };
    const [clientA, clientB] = [await login(a), await login(b)];
    try {
      // The presence ends with the bye (logout time, rooms left, listeners told); the socket stays
      // open a moment after the answer, and what came behind the bye must not act as the user.
      clientA.socket.cork();
      const answers = [
        clientA.quest('bye', {}),
        clientA
          .quest('sendmsg', { to: b, mid: 1n, mtype: 30, msg: 'after bye', attrs: '' })
          .catch((err: { code: number }) => ({ error: err.code })),
        clientA.quest('enterroom', { rid: room }).catch((err: { code: number }) => ({ error: err.code })),
      ];
      clientA.socket.uncork();
      assert.deepEqual(await Promise.all(answers), [{}, { error: 200022 }, { error: 200022 }]);
      const history = (await signed('getp2pmsg', { uid: b, ouid: a, desc: true, num: 10 })) as { num: number };
      assert.equal(history.num, 0, 'nothing stored');
      assert.deepEqual(await signed('getroommembers', { rid: room }), { uids: [] });
      await clientB.quest('getuserinfo', {}); // B's connection has read whatever came before this answer
      assert.deepEqual(
        clientB.pushes.filter((p) => p.method === 'pushmsg'),
        [],
        'nothing pushed',
      );
    } finally {
      clientA.close();
      clientB.close();
      backend.close();
      await server.close();
    }
  });
});

/** A store whose logout write (the end of a presence: logout time, rooms) takes a while, as a store across a network may. */
class SlowLogoutStore extends SqliteStore {
  override async endPresence(
    pid: number,
    uid: bigint,
    version: bigint,
    endedAt: bigint,
    roomsThrough: bigint,
  ): Promise<bigint[] | undefined> {
    await new Promise((r) => setTimeout(r, 200));
    return super.endPresence(pid, uid, version, endedAt, roomsThrough);
  }
}

describe('client login: a login while the previous presence is ending', () => {
  it('keeps the new presence: no logout event after its login, its room kept', async () => {
    const server = await startTestServer({ logoutGraceMs: 0 }, { makeStore: (dataDir) => new SlowLogoutStore({ dataDir }) });
    const backend = await RawClient.tcp(server.serverEndpoint);
    const clients: RawClient[] = [];
    try {
      await backend.signed('setlisten', { ev: true }, TEST_PID, TEST_SECRET);
      const uid = BIG + 40n;
      const rid = BIG + 41n;
      const { token } = (await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET)) as { token: string };
      const first = await RawClient.tcp(server.clientEndpoint);
      clients.push(first);
      assert.deepEqual(await first.quest('auth', { pid: TEST_PID, uid, token }), { ok: true });
      first.close(); // the presence ends at once (no grace): its logout write takes 200 ms
      await new Promise((r) => setTimeout(r, 50));
      const second = await RawClient.tcp(server.clientEndpoint);
      clients.push(second);
      assert.deepEqual(await second.quest('auth', { pid: TEST_PID, uid, token }), { ok: true });
      await second.quest('enterroom', { rid });
      await new Promise((r) => setTimeout(r, 400));
      const events = backend.pushes.filter((p) => p.method === 'pushevent').map((p) => p.payload.event);
      assert.equal(events.at(-1), 'login', events.join(', '));
      assert.deepEqual(await second.quest('getuserrooms'), { rooms: [rid] });
    } finally {
      for (const c of clients) c.close();
      backend.close();
      await server.close();
    }
  });
});

describe('client logout: a room a backend adds the user to while their presence is ending', () => {
  it('stays; the rooms joined before the end are left', async () => {
    const server = await startTestServer({ logoutGraceMs: 0 }, { makeStore: (dataDir) => new SlowLogoutStore({ dataDir }) });
    const backend = await RawClient.tcp(server.serverEndpoint);
    const call = (method: string, payload: Record<string, unknown>) => backend.signed(method, payload, TEST_PID, TEST_SECRET);
    const client = await RawClient.tcp(server.clientEndpoint);
    try {
      const uid = BIG + 60n;
      const [before, during] = [BIG + 61n, BIG + 62n];
      const { token } = (await call('gettoken', { uid })) as { token: string };
      assert.deepEqual(await client.quest('auth', { pid: TEST_PID, uid, token }), { ok: true });
      await client.quest('enterroom', { rid: before });
      client.close(); // the presence ends at once (no grace): its logout write takes 200 ms
      await new Promise((r) => setTimeout(r, 50));
      await call('addroommember', { rid: during, uid });
      await new Promise((r) => setTimeout(r, 400));
      assert.deepEqual(await call('getroommembers', { rid: before }), { uids: [] });
      assert.deepEqual(await call('getroommembers', { rid: during }), { uids: [uid] });
    } finally {
      client.close();
      backend.close();
      await server.close();
    }
  });
});

/** A store whose join of a user's presence takes a while, as a store across a network may. */
class SlowJoinStore extends SqliteStore {
  override async joinPresence(pid: number, uid: bigint, node: string): Promise<PresenceJoin> {
    await new Promise((r) => setTimeout(r, 300));
    return super.joinPresence(pid, uid, node);
  }
}

describe('client login: a kickout before the login is a session', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({}, { makeStore: (dataDir) => new SlowJoinStore({ dataDir }) });
  });
  after(() => server.close());

  it('a kickout (or a blacklisting) while the login is under way ends it as a kickout would', async () => {
    // 150 ms in, the login waits for the store: does the user's presence go on?
    await kickedWhileLoggingIn(server, BIG + 12n, 150);
  });
});

/** Starts a login of `uid`, sends a kickout `afterMs` into it: the login must end as a kickout would. */
async function kickedWhileLoggingIn(server: TestServer, uid: bigint, afterMs: number): Promise<void> {
  const backend = await RawClient.tcp(server.serverEndpoint);
  const client = await RawClient.tcp(server.clientEndpoint);
  try {
    const { token } = (await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET)) as { token: string };
    const answer = client.quest('auth', { pid: TEST_PID, uid, token }).catch(() => 'no answer');
    await new Promise((r) => setTimeout(r, afterMs));
    await backend.signed('kickout', { uid }, TEST_PID, TEST_SECRET);
    await within(client.closed, 'the kicked login closed');
    assert.deepEqual(
      client.pushes.map((p) => p.method),
      ['kickout'],
    );
    assert.notDeepEqual(await answer, { ok: true });
    assert.deepEqual(await backend.signed('getonlineusers', { uids: [uid] }, TEST_PID, TEST_SECRET), { uids: [] });
  } finally {
    client.close();
    backend.close();
  }
}

/** A store whose token reads take a while, as a store across a network may. */
class SlowTokenStore extends SqliteStore {
  override async getToken(pid: number, uid: bigint): Promise<string | undefined> {
    await new Promise((r) => setTimeout(r, 200));
    return super.getToken(pid, uid);
  }
}

describe('client login: a kickout while the token is checked', () => {
  it('ends the login as a kickout would', async () => {
    const server = await startTestServer({}, { makeStore: (dataDir) => new SlowTokenStore({ dataDir }) });
    try {
      await kickedWhileLoggingIn(server, BIG + 13n, 50); // 50 ms in, the login waits for its token (200 ms)
    } finally {
      await server.close();
    }
  });
});

describe('client logout at a stop', () => {
  it("a bye's logout still being written when the server stops is written before the store closes", async () => {
    const server = await startTestServer({}, { keepData: true, makeStore: (dataDir) => new SlowLogoutStore({ dataDir }) });
    const dataDir = server.dataDir;
    const uid = BIG + 50n;
    try {
      const backend = await RawClient.tcp(server.serverEndpoint);
      const { token } = (await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET)) as { token: string };
      backend.close();
      const client = await RawClient.tcp(server.clientEndpoint);
      assert.deepEqual(await client.quest('auth', { pid: TEST_PID, uid, token }), { ok: true });
      await client.quest('bye'); // its logout write takes 200 ms: the stop comes first
    } finally {
      await server.close();
    }
    const store = new SqliteStore({ dataDir });
    try {
      await store.init();
      assert.equal(typeof (await store.getUnreadBaseline(TEST_PID, uid)).logoutTime, 'bigint');
    } finally {
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
