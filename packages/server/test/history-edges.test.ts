import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { RTMClient, RtmError } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import { startTestServer, TEST_PID, TEST_SECRET, until, type TestServer } from '@rtm/testkit';
import { PostgresStore } from '../src/store/postgres.js';
import { SqliteStore } from '../src/store/sqlite.js';
import type { Store } from '../src/store/store.js';
import { dropSchema, freshSchema, PG_URL, postgresUnreachable } from './helpers/postgres.js';

// History, single messages, counts, deleted messages in lists and retention, end to end (real
// server, real sockets, both SDKs) on the embedded store and on PostgreSQL (when reachable, else
// skipped unless CI=true): the edges the model test (history-model.test.ts) does not draw.
// server-api.md §3, client-api.md §3.2–3.4, README "RTM_RETENTION_*".

const CI = process.env['CI'] === 'true';
const DAY = 86_400_000;
const INT64_MAX = 2n ** 63n - 1n;
const OTHER_PID = 11000002;
const OTHER_SECRET = 'other-project-secret';

/** Where a test's messages live: a data directory or a PostgreSQL schema, kept across restarts, removed by `cleanup`. */
interface Place {
  make(now: () => number): Store;
  cleanup(): Promise<void>;
}

interface StoreKind {
  name: string;
  skip?: string;
  place(): Promise<Place>;
}

const sqlite: StoreKind = {
  name: 'SQLite',
  async place() {
    const dir = await mkdtemp(join(tmpdir(), 'rtm-history-audit-'));
    return { make: (now) => new SqliteStore({ dataDir: dir, now }), cleanup: () => rm(dir, { recursive: true, force: true }) };
  },
};

const unreachable = await postgresUnreachable();
const postgres: StoreKind = {
  name: 'PostgreSQL',
  skip: unreachable && !CI ? unreachable : undefined,
  async place() {
    if (unreachable) assert.fail(`${unreachable} (required when CI=true)`);
    const schema = freshSchema('history_audit');
    return {
      make: (now) => new PostgresStore({ url: PG_URL, schema, poolSize: 4, now }),
      cleanup: () => dropSchema(schema),
    };
  },
};

/** A server on `place` (with the store clock `now`), its backend, and a way to log users in. */
async function open(place: Place, overrides: Parameters<typeof startTestServer>[0] = {}, now: () => number = Date.now) {
  const server: TestServer = await startTestServer(
    {
      clientCallsPerSecond: 0,
      projects: [
        { pid: TEST_PID, secret: TEST_SECRET },
        { pid: OTHER_PID, secret: OTHER_SECRET },
      ],
      ...overrides,
    },
    { makeStore: () => place.make(now) },
  );
  const backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
  await backend.connect();
  const clients: RTMClient[] = [];
  return {
    server,
    backend,
    async login(uid: bigint): Promise<RTMClient> {
      const client = new RTMClient({ endpoint: server.clientEndpoint, pid: TEST_PID, autoReconnect: false });
      assert.deepEqual(await client.login(uid, await backend.getToken(uid)), { ok: true });
      clients.push(client);
      return client;
    },
    async close() {
      for (const c of clients) c.close();
      await backend.close();
      await server.close();
    },
  };
}

async function refusedWith(promise: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof RtmError, `expected an RtmError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

for (const kind of [sqlite, postgres]) {
  describe(`history, counts, deletions and retention end to end (${kind.name})`, { skip: kind.skip }, () => {
    it('an unread time at the end of int64 counts nothing, and lists answer instead of failing (20001)', async () => {
      // client-api.md §3.3: `mtime` = count what came after it. Nothing comes after the largest
      // time; PostgreSQL looked for the first message at mtime + 1, outside bigint, and failed the call.
      const place = await kind.place();
      const s = await open(place);
      try {
        const me = 9001n;
        const peer = 9002n;
        const gid = 9100n;
        await s.backend.addGroupMembers(gid, [me, peer]);
        const client = await s.login(me);
        await s.backend.sendGroupMessage(30, peer, gid, 'g', '');
        await s.backend.sendMessage(30, peer, me, 'p', '');

        const groups = await client.getGroupUnreadMessageNum([gid], INT64_MAX);
        assert.equal(groups.group.size, 0);
        assert.equal((await client.getP2PUnreadMessageNum([peer], INT64_MAX)).p2p.size, 0);
        const list = await client.getGroupConversationList(INT64_MAX);
        assert.deepEqual(
          list.map((c) => [c.id, c.unread, c.lastMessage?.message]),
          [[gid, 0, 'g']],
        );
        assert.equal((await client.getGroupUnreadConversationList(INT64_MAX)).length, 0);
        const both = await client.getUnreadConversationList(false, INT64_MAX);
        assert.deepEqual([both.group.length, both.p2p.length], [0, 0]);
        // One millisecond before it is an ordinary time.
        assert.equal((await client.getGroupUnreadMessageNum([gid], 1n)).group.get(gid), 1);
      } finally {
        await s.close();
        await place.cleanup();
      }
    });

    it('a deleted message leaves history, getmsg, unread, counts and conversation lists; the one before shows instead', async () => {
      const place = await kind.place();
      const s = await open(place);
      try {
        const a = 9201n;
        const b = 9202n;
        const gid = 9300n;
        await s.backend.addGroupMembers(gid, [a, b]);
        const ca = await s.login(a);
        const cb = await s.login(b);
        const p1 = await ca.sendMessage(b, 30, 'p1', '');
        const p2 = await ca.sendMessage(b, 30, 'p2', '');
        const g1 = await ca.sendGroupMessage(gid, 30, 'g1', '');
        const g2 = await ca.sendGroupMessage(gid, 30, 'g2', '');

        await refusedWith(cb.deleteMessage(a, p2.mid, b, 1), 200021); // not b's to delete
        await ca.deleteMessage(a, p2.mid, b, 1);
        await s.backend.deleteGroupMessage(g2.mid, a, gid);
        await refusedWith(ca.deleteMessage(a, p2.mid, b, 1), 200070); // already gone

        // The receiver names a p2p message by the peer or by itself (client-api.md §3.4).
        await refusedWith(cb.getMessage(a, p2.mid, a, 1), 200070);
        await refusedWith(cb.getMessage(a, p2.mid, b, 1), 200070);
        await refusedWith(s.backend.getP2PMessageInfo(p2.mid, a, b), 200070);
        assert.equal((await cb.getMessage(a, p1.mid, a, 1)).message, 'p1');

        assert.deepEqual(
          (await cb.getP2PMessage(a, true, 10)).messages.map((m) => m.message),
          ['p1'],
        );
        assert.deepEqual(
          (await s.backend.getGroupMessage(b, gid, false, 10)).messages.map((m) => m.message),
          ['g1'],
        );
        assert.deepEqual(await s.backend.getMessageNum(2, gid), { sender: 1, num: 1 });
        assert.equal((await cb.getP2PUnreadMessageNum([a], 1n)).p2p.get(a), 1);
        assert.equal((await cb.getGroupUnreadMessageNum([gid], 1n)).group.get(gid), 1);
        const p2p = await cb.getP2PConversationList(1n);
        assert.deepEqual(
          p2p.map((c) => [c.id, c.unread, c.lastMessage?.message, c.lastMessage?.direction]),
          [[a, 1, 'p1', 2]],
        );
        const groups = await cb.getGroupConversationList(1n);
        assert.deepEqual(
          groups.map((c) => [c.id, c.unread, c.lastMessage?.message]),
          [[gid, 1, 'g1']],
        );

        // Deleting the rest empties the lists; getsession keeps only groups with a message left.
        await ca.deleteMessage(a, p1.mid, b, 1);
        await ca.deleteMessage(a, g1.mid, gid, 2);
        assert.deepEqual(await cb.getP2PConversationList(1n), []);
        assert.deepEqual(await cb.getGroupConversationList(1n), []);
        assert.deepEqual((await cb.getSession()).group, []);
        assert.deepEqual(await s.backend.getMessageNum(2, gid), { sender: 0, num: 0 });
        const overview = await cb.getUnreadMessage();
        assert.deepEqual([overview.p2p, overview.group], [[], []]);
      } finally {
        await s.close();
        await place.cleanup();
      }
    });

    it('projects do not see each other’s conversations, messages or counts', async () => {
      const place = await kind.place();
      const s = await open(place);
      const other = new RTMServerClient({ pid: OTHER_PID, secret: OTHER_SECRET, endpoint: s.server.serverEndpoint, autoReconnect: false });
      await other.connect();
      try {
        const gid = 9400n;
        await s.backend.addGroupMembers(gid, [1n, 2n]);
        await other.addGroupMembers(gid, [1n, 2n]);
        const mid = 77n;
        await s.backend.sendMessage(51, 1n, 2n, 'mine', '', { mid });
        await other.sendMessage(51, 1n, 2n, 'theirs', '', { mid }); // same key in another project: no collision
        await other.sendGroupMessage(51, 1n, gid, 'their group', '');
        assert.deepEqual(
          (await s.backend.getP2PMessage(1n, 2n, true, 10)).messages.map((m) => m.message),
          ['mine'],
        );
        assert.equal((await s.backend.getP2PMessageInfo(mid, 1n, 2n)).message, 'mine');
        assert.equal((await s.backend.getGroupMessage(1n, gid, true, 10)).num, 0);
        assert.deepEqual(await s.backend.getMessageNum(2, gid), { sender: 0, num: 0 });
        await s.backend.deleteP2PMessage(mid, 1n, 2n);
        assert.equal((await other.getP2PMessageInfo(mid, 1n, 2n)).message, 'theirs');
      } finally {
        await other.close();
        await s.close();
        await place.cleanup();
      }
    });

    it('RTM_RETENTION_DAYS: the sweep at start removes what is older, from history, getmsg and lists', async () => {
      const place = await kind.place();
      let s = await open(place, {}, () => Date.now() - 3 * DAY); // a store whose clock is 3 days behind
      try {
        const old = await s.backend.sendMessage(51, 1n, 2n, 'old', '');
        await s.backend.addGroupMembers(9500n, [1n, 2n]);
        await s.backend.sendGroupMessage(30, 1n, 9500n, 'old group', '');
        await s.close();

        s = await open(place, { retentionDays: 1 });
        const fresh = await s.backend.sendMessage(30, 2n, 1n, 'new', '');
        assert.ok(
          await until(async () => (await s.backend.getP2PMessage(1n, 2n, false, 20)).num === 1, 5000),
          'the sweep at start removes the 3-day-old message',
        );
        const page = await s.backend.getP2PMessage(1n, 2n, false, 20);
        assert.deepEqual(
          page.messages.map((m) => m.message),
          ['new'],
        );
        assert.equal(page.messages[0]!.mtime, fresh.mtime);
        await refusedWith(s.backend.getP2PMessageInfo(old.mid, 1n, 2n), 200070);
        assert.equal((await s.backend.getGroupMessage(1n, 9500n, true, 20)).num, 0);
        const client = await s.login(1n);
        assert.deepEqual(
          (await client.getP2PConversationList(1n)).map((c) => c.lastMessage?.message),
          ['new'],
        );
        assert.deepEqual(await client.getGroupConversationList(1n), []);
      } finally {
        await s.close();
        await place.cleanup();
      }
    });

    it('RTM_RETENTION_MAX_PER_CONVERSATION: each conversation keeps its newest, ids and pages go on after them', async () => {
      const place = await kind.place();
      let s = await open(place);
      try {
        await s.backend.addGroupMembers(9600n, [1n, 2n]);
        for (let i = 0; i < 5; i++) await s.backend.sendMessage(51, i % 2 ? 2n : 1n, i % 2 ? 1n : 2n, `p${i}`, '');
        for (let i = 0; i < 4; i++) await s.backend.sendGroupMessage(51, 1n, 9600n, `g${i}`, '');
        await s.backend.sendMessage(51, 3n, 4n, 'alone', '');
        const before = (await s.backend.getGroupMessage(1n, 9600n, true, 1)).messages[0]!.id;
        await s.close();

        s = await open(place, { retentionMaxPerConversation: 2 });
        assert.ok(await until(async () => (await s.backend.getGroupMessage(1n, 9600n, true, 20)).num === 2, 5000));
        const texts = async (desc: boolean) => {
          const out: string[] = [];
          let lastid: bigint | undefined;
          for (;;) {
            const page = await s.backend.getP2PMessage(1n, 2n, desc, 1, { lastid });
            if (page.num === 0) return out;
            out.push(...page.messages.map((m) => m.message as string));
            lastid = page.lastid;
          }
        };
        assert.deepEqual(await texts(true), ['p4', 'p3']);
        assert.deepEqual(await texts(false), ['p3', 'p4']);
        assert.deepEqual(
          (await s.backend.getGroupMessage(1n, 9600n, false, 20)).messages.map((m) => m.message),
          ['g2', 'g3'],
        );
        assert.equal((await s.backend.getP2PMessage(3n, 4n, true, 20)).num, 1);
        assert.deepEqual(await s.backend.getMessageNum(2, 9600n), { sender: 1, num: 2 });
        await s.backend.sendGroupMessage(51, 2n, 9600n, 'after', '');
        const after = (await s.backend.getGroupMessage(1n, 9600n, true, 20)).messages;
        assert.ok(after[0]!.id > before, 'ids go on above those removed');
        assert.deepEqual(
          after.map((m) => m.message),
          ['after', 'g3', 'g2'],
        );
      } finally {
        await s.close();
        await place.cleanup();
      }
    });
  });
}
