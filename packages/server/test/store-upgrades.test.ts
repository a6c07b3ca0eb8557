/**
 * Upgrades: a store written by an older release, in that release's schema, opened by this one.
 * Each test applies the migrations up to an early version, writes the rows that release wrote
 * (raw SQL, as it did: ids above 2^53, str and bin bodies, a deleted message, groups, rooms,
 * tokens, unread baselines…), then opens the store normally (migrating it to the latest version)
 * and checks through the Store API that everything reads back exactly and behaves as before.
 * Also: a migration that fails half-way leaves the data as it was and the start refuses.
 *
 * The PostgreSQL half needs a server (see helpers/postgres.ts): skipped with a message when
 * unreachable, except when CI=true (then it fails).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { PostgresStore } from '../src/store/postgres.js';
import { POSTGRES_MIGRATIONS } from '../src/store/postgres-migrations.js';
import { migrate, SqliteStore } from '../src/store/sqlite.js';
import { SQLITE_MIGRATIONS } from '../src/store/sqlite-migrations.js';
import { MessageKind, type MessageKey, type Store, type StoredMessage } from '../src/store/store.js';
import { dropSchema, freshSchema, PG_URL, postgresUnreachable } from './helpers/postgres.js';
import { whenAvailable } from '@rtm/testkit';

// --- what an older release stored ----------------------------------------------------------------

const PID = 1;
const T0 = 1_700_000_000_000n;
// Ids above 2^53: a number would round them.
const U1 = 2n ** 60n + 1n;
const U2 = 2n ** 60n + 2n;
const U3 = 2n ** 60n + 3n;
const G = 2n ** 62n + 5n;
const R = 2n ** 61n + 9n;
const INT64_MAX = 2n ** 63n - 1n;

interface OldMessage extends StoredMessage {
  deleted: boolean;
}

const msg = (
  id: bigint,
  kind: MessageKind,
  from: bigint,
  to: bigint,
  mid: bigint,
  body: string | Uint8Array,
  mtime: bigint,
  extra: Partial<OldMessage> = {},
): OldMessage => ({ id, pid: PID, kind, from, to, mid, mtype: 30, msg: body, attrs: '', mtime, deleted: false, ...extra });

/** Ids grow with mtime (the stores' invariant); id 10 was given out and then removed by retention. */
const MESSAGES: readonly OldMessage[] = [
  msg(1n, MessageKind.P2P, U1, U2, 1n, 'hello', T0),
  msg(2n, MessageKind.P2P, U2, U1, INT64_MAX, new Uint8Array([0, 1, 2, 255]), T0 + 10n, { mtype: 31 }),
  msg(3n, MessageKind.GROUP, U1, G, 3n, 'g-old', T0 + 1_000n),
  msg(4n, MessageKind.GROUP, U2, G, 4n, new Uint8Array([9]), T0 + 2_000n, { deleted: true }),
  msg(5n, MessageKind.GROUP, U2, G, 5n, 'g-new ✓', T0 + 2_600n, { attrs: '{"k":"v"}' }),
  msg(6n, MessageKind.ROOM, U3, R, 6n, 'r', T0 + 2_700n),
  msg(7n, MessageKind.BROADCAST, 0n, 0n, 7n, new Uint8Array(0), T0 + 2_800n),
  // Both sides had removed this conversation from their lists: no p2p session row for it.
  msg(8n, MessageKind.P2P, U3, U1, 8n, 'lost pair', T0 + 3_000n),
  msg(9n, MessageKind.P2P, U1, U2, -5n, '', T0 + 4_000n, { mtype: 0 }),
];
const LAST_ID = 10n;
const LAST_MTIME = T0 + 4_000n;

/** The conversation key columns of a message (as conversation.ts computes them). */
function conv(m: OldMessage): [lo: bigint, hi: bigint] {
  if (m.kind === MessageKind.P2P) return m.from < m.to ? [m.from, m.to] : [m.to, m.from];
  if (m.kind === MessageKind.BROADCAST) return [0n, 0n];
  return [m.to, 0n];
}

/** p2p conversation lists as the v1 schemas keep them (uid, peer, last id): U1 and U3 removed theirs. */
const P2P_SESSIONS: readonly [bigint, bigint, bigint][] = [
  [U1, U2, 9n],
  [U2, U1, 9n],
];

const keyOf = (m: OldMessage): MessageKey => ({ pid: m.pid, kind: m.kind, from: m.from, to: m.to, mid: m.mid });
const stored = (m: OldMessage): StoredMessage => {
  const { deleted: _deleted, ...rest } = m;
  return rest;
};
const ids = (ms: readonly StoredMessage[]): bigint[] => ms.map((m) => m.id);

/**
 * What every older release answers from the rows above, asked of the upgraded store; then that it
 * goes on from them (ids, unread, deletes, joins).
 */
async function checkUpgraded(store: Store): Promise<void> {
  // Every message by key, exactly (bodies of both kinds, ids above 2^53); the deleted one is gone.
  for (const m of MESSAGES) {
    const got = await store.getMessage(keyOf(m));
    if (m.deleted) assert.equal(got, undefined, `message ${m.id} was deleted`);
    else assert.deepEqual(got, stored(m), `message ${m.id}`);
  }

  // History, paged newest first with the lastid cursor, and in time windows.
  const p2p = { pid: PID, kind: MessageKind.P2P, uid: U2, peer: U1 } as const;
  const pages: bigint[][] = [];
  let lastid: bigint | undefined;
  for (let i = 0; i < 4; i++) {
    const page = await store.history({ conversation: p2p, desc: true, num: 1, lastid });
    pages.push(ids(page));
    lastid = page.at(-1)?.id ?? lastid;
  }
  assert.deepEqual(pages, [[9n], [2n], [1n], []]);
  assert.deepEqual(ids(await store.history({ conversation: p2p, desc: false, num: 10, begin: T0 + 5n, end: T0 + 3_999n })), [2n]);
  assert.deepEqual(ids(await store.history({ conversation: p2p, desc: false, num: 10, mtypes: [31] })), [2n]);
  const group = { pid: PID, kind: MessageKind.GROUP, to: G } as const;
  assert.deepEqual(await store.history({ conversation: group, desc: false, num: 10 }), [stored(MESSAGES[2]!), stored(MESSAGES[4]!)]);
  assert.deepEqual(ids(await store.history({ conversation: group, desc: true, num: 10, begin: T0 + 1_500n })), [5n]);
  assert.deepEqual(ids(await store.history({ conversation: { pid: PID, kind: MessageKind.ROOM, to: R }, desc: true, num: 10 })), [6n]);
  assert.deepEqual(ids(await store.history({ conversation: { pid: PID, kind: MessageKind.BROADCAST, to: 0n }, desc: true, num: 10 })), [
    7n,
  ]);
  assert.deepEqual(await store.countMessages({ pid: PID, kind: MessageKind.GROUP, to: G }), { sender: 2, num: 2 });

  // Unread baselines, and the counts from them.
  assert.deepEqual(await store.getUnreadBaseline(PID, U1), { logoutTime: T0 + 500n });
  assert.deepEqual(await store.getUnreadBaseline(PID, U2), { logoutTime: T0 + 1_200n, clearTime: T0 + 1_500n });
  assert.deepEqual(await store.getUnreadBaseline(PID, U3), {});
  assert.deepEqual(
    await store.unreadP2P({ pid: PID, uid: U1, since: T0 + 500n }),
    new Map([[U3, { count: 1, ltime: T0 + 3_000n }]]),
    'a conversation both sides had removed from their lists still counts as unread',
  );
  assert.deepEqual(await store.unreadP2P({ pid: PID, uid: U2, since: T0 + 1_500n }), new Map([[U1, { count: 1, ltime: T0 + 4_000n }]]));
  assert.deepEqual(
    await store.unreadP2P({ pid: PID, uid: U1, since: 0n }),
    new Map([
      [U2, { count: 1, ltime: T0 + 10n }],
      [U3, { count: 1, ltime: T0 + 3_000n }],
    ]),
  );
  assert.deepEqual(
    await store.unreadGroups({ pid: PID, uid: U1, since: T0 + 500n, gids: [G] }),
    new Map([[G, { count: 1, ltime: T0 + 2_600n }]]),
  );
  assert.deepEqual(await store.unreadGroups({ pid: PID, uid: U2, since: 0n, gids: [G] }), new Map([[G, { count: 1, ltime: T0 + 1_000n }]]));

  // Conversation lists.
  assert.deepEqual(await store.p2pPeers(PID, U1), [U2]);
  assert.deepEqual(await store.p2pPeers(PID, U2), [U1]);
  assert.deepEqual(await store.p2pPeers(PID, U3), []);

  // Everything else a user or project had.
  assert.equal(await store.getToken(PID, U1), 'tok-1');
  assert.equal(await store.issueToken(PID, U1, 'other'), 'tok-1', 'the token of the old release stays valid');
  assert.deepEqual(await store.groupMembers(PID, G), [U1, U2]);
  assert.equal(await store.groupMemberCount(PID, G), 2);
  assert.equal(await store.isGroupMember(PID, G, U2), true);
  assert.deepEqual(await store.userGroups(PID, U1), [G]);
  assert.equal(await store.countGroups(PID), 1);
  assert.deepEqual(await store.roomMembers(PID, R), [U3]);
  assert.deepEqual(await store.userRooms(PID, U3), [R]);
  assert.equal(await store.isBanned(PID, 'group', G, U3, T0), true);
  assert.equal(await store.isBanned(PID, 'room', R, U1, T0), true, 'a ban from every room (target 0)');
  assert.equal(await store.isBanned(PID, 'room', R, U1, T0 + 2_000_000n), false, 'until it ran out');
  assert.equal(await store.isProjectBlack(PID, U3, T0), true);
  assert.equal(await store.isProjectBlack(PID, U2, T0), false);
  assert.deepEqual(await store.friends(PID, U1), [U2]);
  assert.deepEqual(await store.filterFriends(PID, U2, [U1, U3]), [U1]);
  assert.deepEqual(await store.blacks(PID, U2), [U3]);
  assert.deepEqual(await store.blockedBy(PID, U3, [U1, U2]), [U2]);
  assert.deepEqual(await store.getInfo(PID, 'user', U1), { oinfo: 'open', pinfo: 'private' });
  assert.deepEqual(await store.getOpenInfos(PID, 'group', [G, U1]), new Map([[G, 'group open']]));
  assert.equal(await store.dataGet(PID, U1, 'k'), 'v ✓');

  // It goes on from there: ids after every id given out, a new message unread after the old ones,
  // the conversation back in both lists, deletes of old rows, joins counted from the join.
  const [next] = await store.append([{ pid: PID, kind: MessageKind.P2P, from: U3, to: U1, mid: 11n, mtype: 30, msg: 'again', attrs: '' }]);
  assert.equal(next?.status, 'stored');
  assert.equal(next.message.id, LAST_ID + 1n);
  assert.ok(next.message.mtime >= LAST_MTIME);
  const [resend] = await store.append([{ ...stored(MESSAGES[8]!) }]);
  assert.equal(resend?.status === 'duplicate' && resend.message.id, 9n, 'a resend of an old message is recognised');
  assert.deepEqual(
    await store.unreadP2P({ pid: PID, uid: U1, since: T0 + 500n }),
    new Map([[U3, { count: 2, ltime: next.message.mtime }]]),
  );
  assert.deepEqual(await store.p2pPeers(PID, U1), [U3, U2]);
  assert.deepEqual(await store.p2pPeers(PID, U3), [U1]);
  assert.equal(await store.deleteMessage(keyOf(MESSAGES[0]!)), true);
  assert.equal(await store.getMessage(keyOf(MESSAGES[0]!)), undefined);
  await store.addGroupMembers(PID, G, [U3]);
  assert.deepEqual(await store.unreadGroups({ pid: PID, uid: U3, since: 0n, gids: [G] }), new Map(), 'joined after every message');
  const { version } = await store.joinPresence(PID, U3, 'upgraded-node');
  assert.deepEqual(
    await store.endPresence(PID, U3, version, T0 + 600n, store.roomsCut()),
    [R],
    'rooms of the old release end with the presence',
  );
  await store.dropNode('upgraded-node');
}

// --- SQLite --------------------------------------------------------------------------------------

/** A database file at schema `version`, migrated by this release's own steps 1 – version. */
function sqliteAtVersion(path: string, version: number): Database.Database {
  const db = new Database(path);
  migrate(
    db,
    SQLITE_MIGRATIONS.filter((m) => m.version <= version),
    () => {},
  );
  return db;
}

const sqliteBody = (b: string | Uint8Array): string | Buffer => (typeof b === 'string' ? b : Buffer.from(b));

/** The rows every SQLite release kept alike (their tables are as step 1 made them, or got a column). */
function writeSqliteCommon(db: Database.Database): void {
  const ins = db.prepare(
    `INSERT INTO messages (id, pid, kind, conv_lo, conv_hi, from_id, to_id, mid, mtype, msg, attrs, mtime, deleted)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  for (const m of MESSAGES) {
    ins.run(m.id, m.pid, m.kind, ...conv(m), m.from, m.to, m.mid, m.mtype, sqliteBody(m.msg), m.attrs, m.mtime, m.deleted ? 1 : 0);
  }
  const run = (sql: string, ...params: unknown[]): void => void db.prepare(sql).run(...params);
  run('INSERT INTO unread_baselines (pid, uid, logout_time, clear_time) VALUES (?, ?, ?, NULL)', PID, U1, T0 + 500n);
  run('INSERT INTO unread_baselines (pid, uid, logout_time, clear_time) VALUES (?, ?, ?, ?)', PID, U2, T0 + 1_200n, T0 + 1_500n);
  run('INSERT INTO tokens (pid, uid, token) VALUES (?, ?, ?)', PID, U1, 'tok-1');
  run('INSERT INTO bans (pid, scope, uid, target, until) VALUES (?, ?, ?, ?, NULL)', PID, 'group', U3, G);
  run('INSERT INTO bans (pid, scope, uid, target, until) VALUES (?, ?, ?, 0, ?)', PID, 'room', U1, T0 + 1_000_000n);
  run('INSERT INTO project_blacks (pid, uid, until) VALUES (?, ?, NULL)', PID, U3);
  run('INSERT INTO friends (pid, uid, friend) VALUES (?, ?, ?), (?, ?, ?)', PID, U1, U2, PID, U2, U1);
  run('INSERT INTO blacks (pid, uid, black) VALUES (?, ?, ?)', PID, U2, U3);
  run('INSERT INTO infos (pid, kind, id, oinfo, pinfo) VALUES (?, ?, ?, ?, ?)', PID, 'user', U1, 'open', 'private');
  run('INSERT INTO infos (pid, kind, id, oinfo, pinfo) VALUES (?, ?, ?, ?, ?)', PID, 'group', G, 'group open', '');
  run('INSERT INTO user_data (pid, uid, key, val) VALUES (?, ?, ?, ?)', PID, U1, 'k', 'v ✓');
}

/** As release 1 wrote: `counters`, `p2p_sessions` (a removed conversation's row deleted), no join times. */
function writeSqliteV1(db: Database.Database): void {
  writeSqliteCommon(db);
  db.prepare("UPDATE counters SET last_id = ?, last_mtime = ? WHERE name = 'messages'").run(LAST_ID, LAST_MTIME);
  const session = db.prepare('INSERT INTO p2p_sessions (pid, uid, peer, last_id) VALUES (?, ?, ?, ?)');
  for (const [uid, peer, lastId] of P2P_SESSIONS) session.run(PID, uid, peer, lastId);
  db.prepare('INSERT INTO group_members (pid, gid, uid) VALUES (?, ?, ?), (?, ?, ?)').run(PID, G, U1, PID, G, U2);
  db.prepare('INSERT INTO room_members (pid, rid, uid) VALUES (?, ?, ?)').run(PID, R, U3);
}

/**
 * As release 6 wrote: `seconds` (one row per second; retention made the newest one hold the
 * removed id 10), `p2p_pairs`, rooms with join times, groups without. The pair of 10 and 30 has
 * no row, as step 2 left it from release 1 (both sides had removed it) and as a bulk import by
 * release 1 or 2 left a pair (neither wrote `p2p_pairs` rows).
 */
function writeSqliteV6(db: Database.Database): void {
  writeSqliteCommon(db);
  const second = db.prepare(
    `INSERT INTO seconds (sec, last_id, last_mtime) VALUES (?, ?, ?)
     ON CONFLICT (sec) DO UPDATE SET last_id = excluded.last_id, last_mtime = excluded.last_mtime`,
  );
  for (const m of MESSAGES) second.run(m.mtime / 1000n, m.id, m.mtime);
  second.run(LAST_MTIME / 1000n, LAST_ID, LAST_MTIME);
  const pair = db.prepare('INSERT INTO p2p_pairs (pid, lo, hi, last_id, hidden_lo, hidden_hi) VALUES (?, ?, ?, ?, ?, ?)');
  pair.run(PID, U1, U2, 9n, 0, 0);
  db.prepare('INSERT INTO group_members (pid, gid, uid) VALUES (?, ?, ?), (?, ?, ?)').run(PID, G, U1, PID, G, U2);
  db.prepare('INSERT INTO room_members (pid, rid, uid, joined_at) VALUES (?, ?, ?, ?)').run(PID, R, U3, T0 + 100n);
}

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'rtm-upgrade-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function upgradeSqlite(version: number, write: (db: Database.Database) => void): Promise<void> {
  await inTempDir(async (dir) => {
    const db = sqliteAtVersion(join(dir, 'rtm.sqlite'), version);
    db.defaultSafeIntegers(true);
    write(db);
    db.close();
    const applied: number[] = [];
    const store = new SqliteStore({ dataDir: dir, onMigration: (e) => e.ms !== undefined && applied.push(e.version) });
    await store.init();
    try {
      const newer = SQLITE_MIGRATIONS.filter((m) => m.version > version).map((m) => m.version);
      assert.deepEqual(applied, newer);
      assert.deepEqual(
        store.schemaVersions(),
        SQLITE_MIGRATIONS.map((m) => m.version),
      );
      await checkUpgraded(store);
    } finally {
      await store.close();
    }
    // And once more after a restart on the latest schema.
    const again = new SqliteStore({ dataDir: dir, onMigration: () => assert.fail('nothing left to migrate') });
    await again.init();
    try {
      assert.equal((await again.getMessage(keyOf(MESSAGES[1]!)))?.mid, INT64_MAX);
      assert.deepEqual(
        ids(await again.history({ conversation: { pid: PID, kind: MessageKind.P2P, uid: U1, peer: U3 }, desc: true, num: 10 })),
        [11n, 8n],
      );
    } finally {
      await again.close();
    }
  });
}

/**
 * The claims of presences (step 13 of SQLite, 7 of PostgreSQL): the presences going on at the
 * upgrade, held by a node (U1, on two) or handed over at a stop (U2), go on: the next login joins
 * them and begins nothing, and their end is claimed once. A user with neither (U3) begins one.
 */
async function checkPresencesGoOn(store: Store): Promise<void> {
  assert.deepEqual(await store.presenceClaim(PID, U1), { version: 1n, live: true });
  assert.deepEqual(await store.joinPresence(PID, U1, 'upgraded-node'), { version: 2n, began: false }, 'held by a node: goes on');
  assert.deepEqual(await store.joinPresence(PID, U2, 'upgraded-node'), { version: 2n, began: false }, 'handed over: goes on');
  assert.deepEqual(await store.presenceClaim(PID, U3), { version: 0n, live: false });
  assert.deepEqual(await store.joinPresence(PID, U3, 'upgraded-node'), { version: 1n, began: true }, 'none went on: begins');
  assert.deepEqual(await store.endPresence(PID, U1, 2n, T0 + 700n, store.roomsCut()), []);
  assert.equal(await store.endPresence(PID, U1, 2n, T0 + 700n, store.roomsCut()), undefined, 'ended once');
}

/** What the nodes of a release before the claims recorded of the presences going on. */
const PRESENCE_ROWS = [
  'INSERT INTO nodes (node, seen_at, mark) VALUES ($n1, 1, 1), ($n2, 1, 1)',
  'INSERT INTO node_presences (node, pid, uid, ended_at) VALUES ($n1, $pid, $u1, NULL), ($n2, $pid, $u1, 5)',
  'INSERT INTO presence_ends (pid, uid, ended_at, deadline) VALUES ($pid, $u2, 5, 10)',
];

/** The values of the `$name` parameters `sql` uses, in the order they first appear. */
function presenceParams(sql: string, as: (v: string | number | bigint) => unknown): Record<string, unknown> {
  const values: Record<string, string | number | bigint> = { n1: 'a', n2: 'b', pid: PID, u1: U1, u2: U2 };
  const out: Record<string, unknown> = {};
  for (const [, name] of sql.matchAll(/\$(\w+)/g)) out[name!] = as(values[name!]!);
  return out;
}

describe('SqliteStore upgrades', () => {
  it('from version 1: every row reads back and behaves', () => upgradeSqlite(1, writeSqliteV1));

  it('from version 12: the presences going on go on', () =>
    inTempDir(async (dir) => {
      const db = sqliteAtVersion(join(dir, 'rtm.sqlite'), 12);
      for (const sql of PRESENCE_ROWS) db.prepare(sql).run(presenceParams(sql, (v) => v));
      db.close();
      const store = new SqliteStore({ dataDir: dir });
      await store.init();
      try {
        await checkPresencesGoOn(store);
      } finally {
        await store.close();
      }
    }));

  it('from version 6: every row reads back and behaves', () => upgradeSqlite(6, writeSqliteV6));

  it('a migration that fails half-way applies none of the steps of that start, and the start refuses', () =>
    inTempDir(async (dir) => {
      const path = join(dir, 'rtm.sqlite');
      const db = sqliteAtVersion(path, 5);
      db.defaultSafeIntegers(true);
      writeSqliteCommon(db);
      // Steps 6 and 7 then apply; step 8 fails on a table in its way.
      db.exec('CREATE TABLE presence_ends (x INTEGER)');
      db.close();

      const store = new SqliteStore({ dataDir: dir });
      await assert.rejects(store.init(), (err: Error & { code?: string }) => {
        assert.match(
          err.message,
          /^schema migration 8 \(presence_ends: grace periods outlive a restart\) failed, none of this start's migrations applied: .*presence_ends/,
        );
        assert.equal(err.code, 'SQLITE_ERROR');
        return true;
      });
      const raw = new Database(path, { readonly: true });
      try {
        const versions = raw.prepare('SELECT version FROM schema_migrations ORDER BY version').pluck().all();
        assert.deepEqual(versions, [1, 2, 3, 4, 5]);
        const roomColumns = raw.prepare("SELECT name FROM pragma_table_info('room_members')").pluck().all();
        assert.deepEqual(roomColumns, ['pid', 'rid', 'uid'], 'step 6 is rolled back with the step that failed');
        assert.equal(raw.prepare('SELECT COUNT(*) FROM messages').pluck().get(), MESSAGES.length);
      } finally {
        raw.close();
      }

      // With the obstacle gone the same start migrates it all.
      const fix = new Database(path);
      fix.exec('DROP TABLE presence_ends');
      fix.close();
      const retry = new SqliteStore({ dataDir: dir });
      await retry.init();
      try {
        assert.deepEqual(
          retry.schemaVersions(),
          SQLITE_MIGRATIONS.map((m) => m.version),
        );
        assert.deepEqual(await retry.getMessage(keyOf(MESSAGES[1]!)), stored(MESSAGES[1]!));
      } finally {
        await retry.close();
      }
    }));
});

// --- PostgreSQL ----------------------------------------------------------------------------------

const unreachable = await postgresUnreachable();

/** A client whose queries run in `schema`, at schema `version` (this release's steps 1 – version). */
async function postgresAtVersion(schema: string, version: number): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  await client.query(`CREATE SCHEMA ${schema}`);
  await client.query(`SET search_path TO ${schema}`);
  await client.query('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)');
  for (const m of POSTGRES_MIGRATIONS.filter((m) => m.version <= version)) {
    await client.query(m.sql);
    await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, 0)', [m.version, m.name]);
  }
  return client;
}

/** int8 parameters as text: exact above 2^53. */
const s = (v: bigint | null): string | null => (v === null ? null : v.toString());

/** As every PostgreSQL release wrote (the tables step 1 made): `counters`, `p2p_sessions`, bytes + msg_bin. */
async function writePostgresCommon(c: pg.Client): Promise<void> {
  for (const m of MESSAGES) {
    const bin = typeof m.msg !== 'string';
    const bytes = bin ? Buffer.from(m.msg as Uint8Array) : Buffer.from(m.msg as string, 'utf8');
    await c.query(
      `INSERT INTO messages (id, pid, kind, conv_lo, conv_hi, from_id, to_id, mid, mtype, msg, msg_bin, attrs, mtime, deleted)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
      [s(m.id), m.pid, m.kind, ...conv(m).map(s), s(m.from), s(m.to), s(m.mid), m.mtype, bytes, bin, m.attrs, s(m.mtime), m.deleted],
    );
  }
  await c.query("UPDATE counters SET last_id = $1, last_mtime = $2 WHERE name = 'messages'", [s(LAST_ID), s(LAST_MTIME)]);
  for (const [uid, peer, lastId] of P2P_SESSIONS) {
    await c.query('INSERT INTO p2p_sessions (pid, uid, peer, last_id) VALUES ($1, $2, $3, $4)', [PID, s(uid), s(peer), s(lastId)]);
  }
  const q = (sql: string, ...params: unknown[]) =>
    c.query(
      sql,
      params.map((p) => (typeof p === 'bigint' ? s(p) : p)),
    );
  await q('INSERT INTO unread_baselines (pid, uid, logout_time, clear_time) VALUES ($1, $2, $3, NULL)', PID, U1, T0 + 500n);
  await q('INSERT INTO unread_baselines (pid, uid, logout_time, clear_time) VALUES ($1, $2, $3, $4)', PID, U2, T0 + 1_200n, T0 + 1_500n);
  await q('INSERT INTO tokens (pid, uid, token) VALUES ($1, $2, $3)', PID, U1, 'tok-1');
  await q('INSERT INTO bans (pid, scope, uid, target, until) VALUES ($1, $2, $3, $4, NULL)', PID, 'group', U3, G);
  await q('INSERT INTO bans (pid, scope, uid, target, until) VALUES ($1, $2, $3, 0, $4)', PID, 'room', U1, T0 + 1_000_000n);
  await q('INSERT INTO project_blacks (pid, uid, until) VALUES ($1, $2, NULL)', PID, U3);
  await q('INSERT INTO friends (pid, uid, friend) VALUES ($1, $2, $3), ($1, $3, $2)', PID, U1, U2);
  await q('INSERT INTO blacks (pid, uid, black) VALUES ($1, $2, $3)', PID, U2, U3);
  await q('INSERT INTO infos (pid, kind, id, oinfo, pinfo) VALUES ($1, $2, $3, $4, $5)', PID, 'user', U1, 'open', 'private');
  await q('INSERT INTO infos (pid, kind, id, oinfo, pinfo) VALUES ($1, $2, $3, $4, $5)', PID, 'group', G, 'group open', '');
  await q('INSERT INTO user_data (pid, uid, key, val) VALUES ($1, $2, $3, $4)', PID, U1, 'k', 'v ✓');
}

async function writePostgresV1(c: pg.Client): Promise<void> {
  await writePostgresCommon(c);
  await c.query('INSERT INTO group_members (pid, gid, uid) VALUES ($1, $2, $3), ($1, $2, $4)', [PID, s(G), s(U1), s(U2)]);
  await c.query('INSERT INTO room_members (pid, rid, uid) VALUES ($1, $2, $3)', [PID, s(R), s(U3)]);
}

/** As release 3 wrote: join times of rooms and groups (marks of that release's clock, before every message). */
async function writePostgresV3(c: pg.Client): Promise<void> {
  await writePostgresCommon(c);
  await c.query('INSERT INTO group_members (pid, gid, uid, joined_at) VALUES ($1, $2, $3, $5), ($1, $2, $4, $5)', [
    PID,
    s(G),
    s(U1),
    s(U2),
    s(T0 - 1n),
  ]);
  await c.query('INSERT INTO room_members (pid, rid, uid, joined_at) VALUES ($1, $2, $3, $4)', [PID, s(R), s(U3), s(T0 + 100n)]);
}

async function upgradePostgres(version: number, write: (c: pg.Client) => Promise<void>): Promise<void> {
  const schema = freshSchema('upgrade');
  try {
    const client = await postgresAtVersion(schema, version);
    try {
      await write(client);
    } finally {
      await client.end();
    }
    const store = new PostgresStore({ url: PG_URL, schema, poolSize: 2 });
    await store.init();
    try {
      assert.deepEqual(
        await store.schemaVersions(),
        POSTGRES_MIGRATIONS.map((m) => m.version),
      );
      await checkUpgraded(store);
    } finally {
      await store.close();
    }
  } finally {
    await dropSchema(schema);
  }
}

whenAvailable(unreachable, 'PostgresStore upgrades', 'runs against a real PostgreSQL', () => {
  describe('PostgresStore upgrades', () => {
    it('from version 1: every row reads back and behaves', () => upgradePostgres(1, writePostgresV1));

    it('from version 6: the presences going on go on', async () => {
      const schema = freshSchema('upgrade');
      try {
        const client = await postgresAtVersion(schema, 6);
        try {
          for (const sql of PRESENCE_ROWS) {
            const params = presenceParams(sql, (v) => (typeof v === 'bigint' ? s(v) : v));
            const names = Object.keys(params);
            await client.query(
              sql.replace(/\$(\w+)/g, (_, name: string) => `$${names.indexOf(name) + 1}`),
              Object.values(params),
            );
          }
        } finally {
          await client.end();
        }
        const store = new PostgresStore({ url: PG_URL, schema, poolSize: 2 });
        await store.init();
        try {
          await checkPresencesGoOn(store);
        } finally {
          await store.close();
        }
      } finally {
        await dropSchema(schema);
      }
    });

    it('from version 3: every row reads back and behaves', () => upgradePostgres(3, writePostgresV3));

    it('a migration that fails half-way applies none of the steps of that start, and the start refuses', async () => {
      const schema = freshSchema('upgrade');
      try {
        const client = await postgresAtVersion(schema, 1);
        try {
          await writePostgresV1(client);
          // Steps 2 and 3 then apply; step 4 fails on a table in its way.
          await client.query('CREATE TABLE presence_ends (x INTEGER)');
          const store = new PostgresStore({ url: PG_URL, schema, poolSize: 1 });
          // The server answered: main.ts says the store refused the start (the error keeps its severity).
          await assert.rejects(store.init(), (err: Error & { severity?: string }) => {
            assert.match(
              err.message,
              /^schema migration 4 \(presence_ends: grace periods outlive a restart\) failed, none of this start's migrations applied: .*presence_ends/,
            );
            assert.equal(err.severity, 'ERROR');
            return true;
          });
          await store.close();
          const versions = await client.query('SELECT version FROM schema_migrations ORDER BY version');
          assert.deepEqual(
            versions.rows.map((r) => r.version),
            [1],
          );
          const columns = await client.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'room_members' ORDER BY ordinal_position",
            [schema],
          );
          assert.deepEqual(
            columns.rows.map((r) => r.column_name),
            ['pid', 'rid', 'uid'],
            'step 2 is rolled back with the step that failed',
          );
          await client.query('DROP TABLE presence_ends');
        } finally {
          await client.end();
        }
        const retry = new PostgresStore({ url: PG_URL, schema, poolSize: 2 });
        await retry.init();
        try {
          await checkUpgraded(retry);
        } finally {
          await retry.close();
        }
      } finally {
        await dropSchema(schema);
      }
    });
  });
});
