import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RTMClient } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import type { Payload } from '@rtm/fpnn';
import { RawClient, signFields, startTestServer, TEST_PID, TEST_SECRET, uniqueSalt, until, type TestServer } from '@rtm/testkit';
import { SqliteStore } from '../src/store/sqlite.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('server gate: tokens issued once, per-project call rate (real server, raw frames)', () => {
  const OTHER_PID = 11000002;
  const OTHER_SECRET = 'other-project-secret';
  let server: TestServer;
  before(async () => {
    server = await startTestServer({
      projects: [
        { pid: TEST_PID, secret: TEST_SECRET },
        { pid: OTHER_PID, secret: OTHER_SECRET },
      ],
      serverCallsPerSecond: 5,
    });
  });
  after(() => server.close());

  it('two gettoken quests for a new user in one TCP write get the same token, and it logs in', async () => {
    await sleep(1100); // a full bucket: the other test may have run first
    const raw = await RawClient.tcp(server.serverEndpoint);
    try {
      const uid = 1_000_000_000_000_000_123n;
      // One write: the server starts both handlers before either has stored a token.
      raw.socket.cork();
      const both = [raw.signed('gettoken', { uid }, TEST_PID, TEST_SECRET), raw.signed('gettoken', { uid }, TEST_PID, TEST_SECRET)];
      raw.socket.uncork();
      const [first, second] = (await Promise.all(both)) as { token: string }[];
      assert.match(first!.token, /^[0-9A-F]{32}$/);
      assert.equal(second!.token, first!.token);
      const client = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID, autoReconnect: false });
      try {
        assert.deepEqual(await client.login(uid, first!.token), { ok: true });
      } finally {
        client.close();
      }
    } finally {
      raw.close();
    }
  });

  it('over RTM_SERVER_CALLS_PER_SECOND a project gets 200010; other projects do not, and a refused quest may be sent again', async () => {
    await sleep(1100);
    const raw = await RawClient.tcp(server.serverEndpoint);
    try {
      const call = () =>
        raw.quest('getonlineusers', { ...signFields('getonlineusers', TEST_PID, TEST_SECRET, uniqueSalt()), uids: [1n] }).then(
          () => 'ok',
          (err: { code: number }) => err.code,
        );
      const burst = await Promise.all(Array.from({ length: 12 }, call));
      assert.deepEqual(burst, [...Array(5).fill('ok'), ...Array(7).fill(200010)]);
      const other = await RawClient.tcp(server.serverEndpoint); // a connection serves one project
      try {
        await other.signed('getonlineusers', { uids: [1n] }, OTHER_PID, OTHER_SECRET); // each project has its own budget
      } finally {
        other.close();
      }

      // The very quest refused for the rate is not a replay once the budget refills.
      const salt = uniqueSalt();
      const fields = signFields('getonlineusers', TEST_PID, TEST_SECRET, salt);
      const again = () =>
        raw.quest('getonlineusers', { ...fields, uids: [2n] }).then(
          () => 'ok',
          (err: { code: number }) => err.code,
        );
      assert.equal(await again(), 200010);
      await sleep(300);
      assert.equal(await again(), 'ok');
      await sleep(300);
      assert.equal(await again(), 200006, 'an exact replay of an accepted quest is still refused');
    } finally {
      raw.close();
    }
  });
});

describe('server gate: group sends when the membership check is off', () => {
  let server: TestServer;
  let sdk: RTMServerClient;
  before(async () => {
    server = await startTestServer({ serverSendRequiresMembership: false });
    sdk = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    await sdk.connect();
  });
  after(async () => {
    await sdk.close();
    await server.close();
  });

  it('a group without members is still 200046; a non-member may send to a group with members', async () => {
    const gid = 1n << 61n;
    await assert.rejects(sdk.sendGroupMessage(30, 1n, gid, 'nobody home', ''), { code: 200046 });
    assert.equal((await sdk.getGroupMessage(1n, gid, true, 10)).num, 0);
    await sdk.addGroupMembers(gid, [2n, 3n]);
    await sdk.sendGroupMessage(30, 1n, gid, 'from outside', '');
    assert.deepEqual(
      (await sdk.getGroupMessage(2n, gid, true, 10)).messages.map((m) => m.message),
      ['from outside'],
    );
  });
});

describe('server gate: the legacy signature per project', () => {
  it("a project's allowLegacySign accepts md5(pid:secret:salt) without ts for it alone", async () => {
    const [legacy, modern] = [
      { pid: 11000005, secret: 'legacy-secret' },
      { pid: 11000006, secret: 'modern-secret' },
    ];
    const server = await startTestServer({ projects: [{ ...legacy, allowLegacySign: true }, modern] });
    const quest = async (p: { pid: number; secret: string }) => {
      const raw = await RawClient.tcp(server.serverEndpoint);
      try {
        const salt = uniqueSalt();
        const sign = createHash('md5').update(`${p.pid}:${p.secret}:${salt}`).digest('hex').toUpperCase();
        return await raw.quest('getonlineusers', { pid: p.pid, salt, sign, uids: [1n] }).catch((err: { code: number }) => err.code);
      } finally {
        raw.close();
      }
    };
    try {
      assert.deepEqual(await quest(legacy), { uids: [] });
      assert.equal(await quest(modern), 200002);
    } finally {
      await server.close();
    }
  });
});

describe('server gate: limits hold when changes of one group, user or project arrive together', () => {
  it('two pipelined adds cannot both pass a limit: group members (200042), rooms per user (200047), friends (200048)', async () => {
    const server = await startTestServer({ limits: { maxGroupMembers: 5, maxRoomsPerUser: 2, maxFriends: 3 } });
    const raw = await RawClient.tcp(server.serverEndpoint);
    // Both quests in one TCP write: the server starts the second before the first has written.
    const both = async (method: string, a: Record<string, unknown>, b: Record<string, unknown>) => {
      raw.socket.cork();
      const answers = [a, b].map((p) =>
        raw.signed(method, p as Payload, TEST_PID, TEST_SECRET).then(
          () => 'ok',
          (err: { code: number }) => err.code,
        ),
      );
      raw.socket.uncork();
      return (await Promise.all(answers)).sort();
    };
    const call = (method: string, p: Record<string, unknown>) => raw.signed(method, p as Payload, TEST_PID, TEST_SECRET);
    try {
      const gid = 1n << 62n;
      assert.deepEqual(await both('addgroupmembers', { gid, uids: [1n, 2n, 3n] }, { gid, uids: [4n, 5n, 6n] }), [200042, 'ok']);
      assert.equal((await call('getgroupcount', { gid })).cn, 3);

      const uid = 77n;
      assert.deepEqual(await both('adduserrooms', { uid, rids: [1n, 2n] }, { uid, rids: [3n, 4n] }), [200047, 'ok']);
      const counts = (await call('getroomcount', { rids: [1n, 2n, 3n, 4n] })).cn as Record<string, number>;
      assert.equal(
        Object.values(counts).reduce((a, b) => a + b, 0),
        2,
        JSON.stringify(counts),
      );

      assert.deepEqual(await both('addfriends', { uid: 10n, friends: [11n, 12n] }, { uid: 10n, friends: [13n, 14n] }), [200048, 'ok']);
      assert.equal(((await call('getfriends', { uid: 10n })).uids as unknown[]).length, 2);
    } finally {
      raw.close();
      await server.close();
    }
  });
});

/** A store whose appends take a while: longer than the listeners' own 3 s wait at a stop. */
class SlowAppendStore extends SqliteStore {
  /** A send got as far as the store. */
  appending = false;
  override async append(batch: Parameters<SqliteStore['append']>[0]) {
    this.appending = true;
    await new Promise((r) => setTimeout(r, 3500));
    return super.append(batch);
  }
}

describe('server gate: a graceful stop', () => {
  it('waits for an FPNN-over-HTTP send in flight, which is answered', async () => {
    let store: SlowAppendStore | undefined;
    const server = await startTestServer({}, { makeStore: (dataDir) => (store = new SlowAppendStore({ dataDir })) });
    const f = signFields('sendmsg', TEST_PID, TEST_SECRET, uniqueSalt());
    const body = `{"pid":${f.pid},"salt":${f.salt},"ts":${f.ts},"sign":"${f.sign}","from":1,"to":2,"mid":3,"mtype":30,"msg":"in flight","attrs":""}`;
    const sent = fetch(`http://${server.serverEndpoint}/service/sendmsg`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
    // In flight once it reached the store (on a loaded machine, the request may take a while to get there).
    assert.ok(await until(() => store?.appending === true), 'the send reached the store');
    const stopped = server.close();
    const res = await sent;
    assert.equal(res.status, 200);
    assert.equal(typeof ((await res.json()) as { mtime: unknown }).mtime, 'number');
    await stopped;
  });

  it('does not wait for connections with nothing under way: a socket that never sent a byte, an idle HTTP keep-alive one', async () => {
    const server = await startTestServer();
    const silent = connect(server.serverPort, '127.0.0.1');
    silent.on('error', () => undefined);
    await new Promise((r) => silent.once('connect', r));
    const keepAlive = new http.Agent({ keepAlive: true });
    const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http.get(`http://${server.serverEndpoint}/service/*status`, { agent: keepAlive }, resolve).on('error', reject),
    );
    res.resume();
    await new Promise((r) => res.once('end', r));
    const t = Date.now();
    await server.close();
    keepAlive.destroy();
    silent.destroy();
    assert.ok(Date.now() - t < 1500, `stopped in ${Date.now() - t} ms (the sniff and keep-alive timeouts are 3 s and more)`);
  });
});
