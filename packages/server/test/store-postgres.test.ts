/**
 * PostgresStore: the shared Store conformance suite against a real PostgreSQL, each test in a fresh
 * schema (`rtm_test_<random>`, dropped afterwards), plus concurrent start-up and multi-node appends.
 *
 * URL: env RTM_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test.
 * Unreachable → the tests are skipped with a message, except when CI=true (then they fail).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import pg from 'pg';
import { startFaultyProxy, storeConformance, whenAvailable } from '@rtm/testkit';
import { PostgresStore } from '../src/store/postgres.js';
import { POSTGRES_MIGRATIONS } from '../src/store/postgres-migrations.js';
import { MessageKind, type StoredMessage, type UpgradeEvent } from '../src/store/store.js';
import { dropSchema, freshSchema, PG_URL, postgresUnreachable } from './helpers/postgres.js';

const URL = PG_URL;

const unreachable = await postgresUnreachable();

describe('PostgresStore.describe', () => {
  it('names the server, the schema and the pool, never the credentials (no connection needed)', () => {
    const store = new PostgresStore({ url: 'postgres://rtm:s3cret-pw@db.example:5433/chat?sslmode=require', schema: 'rtm_a', poolSize: 7 });
    const described = store.describe();
    assert.deepEqual(described, { store: 'postgres', server: 'db.example:5433/chat', schema: 'rtm_a', poolSize: 7 });
    assert.doesNotMatch(JSON.stringify(described), /s3cret|rtm:/);
  });
});

whenAvailable(unreachable, 'PostgresStore', 'runs against a real PostgreSQL', () => {
  storeConformance('postgres', async () => {
    const schema = freshSchema();
    return { store: new PostgresStore({ url: URL, schema, poolSize: 4 }), cleanup: () => dropSchema(schema) };
  });

  describe('PostgresStore specifics', () => {
    it('three nodes starting at once against an empty schema migrate exactly once', async () => {
      const schema = freshSchema();
      const stores = [0, 1, 2].map(() => new PostgresStore({ url: URL, schema, poolSize: 2 }));
      try {
        await Promise.all(stores.map((s) => s.init()));
        for (const s of stores)
          assert.deepEqual(
            await s.schemaVersions(),
            POSTGRES_MIGRATIONS.map((m) => m.version),
          );
        const [r] = await stores[0]!.append([
          { pid: 1, kind: MessageKind.GROUP, from: 1n, to: 2n, mid: 3n, mtype: 30, msg: 'x', attrs: '' },
        ]);
        assert.equal(r?.status, 'stored');
        assert.equal((await stores[2]!.getMessage({ pid: 1, kind: MessageKind.GROUP, from: 1n, to: 2n, mid: 3n }))?.msg, 'x');
      } finally {
        await Promise.all(stores.map((s) => s.close()));
        await dropSchema(schema);
      }
    });

    it('nodes appending concurrently get distinct ids, mtime non-decreasing with id, one winner per key', async () => {
      const schema = freshSchema();
      const stores = [0, 1, 2].map(() => new PostgresStore({ url: URL, schema, poolSize: 2 }));
      try {
        for (const s of stores) await s.init();
        const results = await Promise.all(
          stores.flatMap((s, n) =>
            Array.from({ length: 100 }, (_, i) =>
              // mid i is sent by every node: the same key, different content → one stored, others collide.
              s.append([{ pid: 1, kind: MessageKind.GROUP, from: 7n, to: 8n, mid: BigInt(i), mtype: 30, msg: `node ${n}`, attrs: '' }]),
            ),
          ),
        );
        const stored = results.flat().filter((r): r is { status: 'stored'; message: StoredMessage } => r.status === 'stored');
        assert.equal(stored.length, 100, 'one winner per mid');
        assert.equal(results.flat().filter((r) => r.status === 'collision').length, 200);
        const byId = stored.map((r) => r.message).sort((a, b) => (a.id < b.id ? -1 : 1));
        assert.equal(new Set(byId.map((m) => m.id)).size, 100);
        for (let i = 1; i < byId.length; i++) assert.ok(byId[i]!.mtime >= byId[i - 1]!.mtime);
        const page = await stores[1]!.history({ conversation: { pid: 1, kind: MessageKind.GROUP, to: 8n }, desc: false, num: 200 });
        assert.deepEqual(
          page.map((m) => m.id),
          byId.map((m) => m.id),
        );
      } finally {
        await Promise.all(stores.map((s) => s.close()));
        await dropSchema(schema);
      }
    });

    it('parses int8 as bigint on its own pool only (pg global parsers untouched)', async () => {
      const schema = freshSchema();
      const store = new PostgresStore({ url: URL, schema, poolSize: 1 });
      try {
        await store.init();
        assert.equal(await store.groupMemberCount(1, 1n), 0);
        assert.equal(typeof pg.types.getTypeParser(20, 'text')('9007199254740993'), 'string');
        const client = new pg.Client({ connectionString: URL });
        await client.connect();
        const r = await client.query<{ v: unknown }>('SELECT 9007199254740993::bigint AS v');
        await client.end();
        assert.equal(r.rows[0]!.v, '9007199254740993');
      } finally {
        await store.close();
        await dropSchema(schema);
      }
    });

    it('a connection lost or gone silent in the middle of a group commit fails those sends, and only those', async () => {
      // A partition holds every byte from the store; a restart cuts the connections.
      const target = new globalThis.URL(URL);
      const proxy = await startFaultyProxy(target.hostname, Number(target.port || 5432));
      const via = URL.replace(/@[^/]+\//, `@127.0.0.1:${proxy.port}/`);
      const schema = freshSchema();
      const store = new PostgresStore({ url: via, schema, poolSize: 2, transactionTimeoutMs: 1000 });
      const message = (mid: bigint) => ({ pid: 1, kind: MessageKind.P2P, from: 1n, to: 2n, mid, mtype: 30, msg: 'm', attrs: '' });
      try {
        await store.init();
        assert.equal((await store.append([message(1n)]))[0]!.status, 'stored');

        // Silent: the commit is abandoned after transactionTimeoutMs, not after TCP's minutes.
        proxy.holdRequests = true;
        const started = Date.now();
        await assert.rejects(store.append([message(2n)]), /unfinished after 1000 ms/);
        assert.ok(Date.now() - started < 5000);
        proxy.holdRequests = false;
        assert.equal((await store.append([message(3n)]))[0]!.status, 'stored', 'the next commit gets a new connection');

        // Lost: every connection cut while a commit waits for its answer. The process lives on.
        proxy.holdRequests = true;
        const lost = store.append([message(4n)]);
        await new Promise((r) => setTimeout(r, 200));
        proxy.cut();
        proxy.holdRequests = false;
        await assert.rejects(lost);
        assert.equal((await store.append([message(5n)]))[0]!.status, 'stored');
        const page = await store.history({ conversation: { pid: 1, kind: MessageKind.P2P, uid: 1n, peer: 2n }, desc: false, num: 10 });
        assert.deepEqual(
          page.map((m) => m.mid),
          [1n, 3n, 5n],
        );
      } finally {
        await store.close();
        proxy.close();
        await dropSchema(schema);
      }
    });

    it('a retention sweep over a connection gone silent is abandoned after its bound, and frees its slot of the pool', async () => {
      const target = new globalThis.URL(URL);
      const proxy = await startFaultyProxy(target.hostname, Number(target.port || 5432));
      const via = URL.replace(/@[^/]+\//, `@127.0.0.1:${proxy.port}/`);
      const schema = freshSchema();
      const store = new PostgresStore({ url: via, schema, poolSize: 1, retentionStatementTimeoutMs: 1000 });
      const message = (mid: bigint) => ({ pid: 1, kind: MessageKind.P2P, from: 1n, to: 2n, mid, mtype: 30, msg: 'm', attrs: '' });
      try {
        await store.init();
        await store.append([message(1n), message(2n), message(3n)]);
        proxy.holdRequests = true;
        const started = Date.now();
        await assert.rejects(
          store.sweepRetention({ maxPerConversation: 1 }, BigInt(Date.now())),
          /retention statement unfinished after 1000 ms/,
        );
        assert.ok(Date.now() - started < 5000, `abandoned after ${Date.now() - started} ms`);
        proxy.holdRequests = false;
        assert.equal((await store.append([message(4n)]))[0]!.status, 'stored', 'the one slot of the pool is free');
        assert.equal(await store.sweepRetention({ maxPerConversation: 1 }, BigInt(Date.now())), 3, 'the next sweep does the work');
      } finally {
        await store.close();
        proxy.close();
        await dropSchema(schema);
      }
    });

    it('a new schema reports its upgrade as it begins and once committed; a schema up to date reports none', async () => {
      const schema = freshSchema();
      const events: UpgradeEvent[] = [];
      const open = async (): Promise<void> => {
        const store = new PostgresStore({ url: URL, schema, poolSize: 1, onUpgrade: (e) => events.push(e) });
        await store.init();
        await store.close();
      };
      try {
        await open();
        const newest = Math.max(...POSTGRES_MIGRATIONS.map((m) => m.version));
        const steps = POSTGRES_MIGRATIONS.length;
        assert.equal(events.length, 2);
        assert.deepEqual(events[0], { from: 0, to: newest, migrations: steps });
        assert.deepEqual({ ...events[1], ms: 0 }, { from: 0, to: newest, migrations: steps, ms: 0 });
        assert.equal(typeof events[1]!.ms, 'number');
        await open();
        assert.equal(events.length, 2, 'nothing to upgrade: no event');
      } finally {
        await dropSchema(schema);
      }
    });

    it('a server that answers but refuses writes (read-only) is a write problem until a probe write succeeds', async () => {
      const schema = freshSchema();
      const store = new PostgresStore({ url: URL, schema, poolSize: 1 });
      const message = (mid: bigint) => ({ pid: 1, kind: MessageKind.P2P, from: 1n, to: 2n, mid, mtype: 30, msg: 'm', attrs: '' });
      // The pool's one connection, as a standby or a read-only role would be: reads answer, writes fail.
      const session = (sql: string) => (store as unknown as { pool: pg.Pool }).pool.query(sql);
      try {
        await store.init();
        assert.equal(await store.writeProblem(), undefined, 'healthy: no probe');
        await session('SET SESSION default_transaction_read_only = on');
        await assert.rejects(store.append([message(1n)]), /read-only transaction/);
        await store.ping();
        assert.match((await store.writeProblem()) ?? '', /read-only transaction/, 'answers, cannot write');
        assert.match((await store.writeProblem()) ?? '', /read-only transaction/, 'the probe decides each time');
        await session('SET SESSION default_transaction_read_only = off');
        assert.equal(await store.writeProblem(), undefined, 'the probe wrote: writes work again, without a send');
        assert.equal((await store.append([message(2n)]))[0]!.status, 'stored');
      } finally {
        await store.close();
        await dropSchema(schema);
      }
    });

    it('a schema migrated further by a newer server is refused, and left as it was', async () => {
      const schema = freshSchema();
      const store = new PostgresStore({ url: URL, schema, poolSize: 1 });
      await store.init();
      const newest = Math.max(...(await store.schemaVersions()));
      await store.close();
      const client = new pg.Client({ connectionString: URL });
      await client.connect();
      try {
        await client.query(`INSERT INTO ${schema}.schema_migrations (version, name, applied_at) VALUES ($1, 'from the future', 0)`, [
          newest + 1,
        ]);
        const older = new PostgresStore({ url: URL, schema, poolSize: 1 });
        await assert.rejects(
          older.init(),
          new RegExp(`version ${newest + 1}, newer than this server knows \\(${newest}\\): run the newer server`),
        );
        await older.close();
        const versions = await client.query(`SELECT version FROM ${schema}.schema_migrations ORDER BY version`);
        assert.equal(versions.rows.at(-1).version, newest + 1);
      } finally {
        await client.end();
        await dropSchema(schema);
      }
    });

    it('starts as a role that owns its schema but may not create schemas in the database (a DBA made the schema)', async () => {
      const schema = freshSchema();
      const role = `rtm_role_${randomBytes(6).toString('hex')}`;
      const password = randomBytes(12).toString('hex');
      const admin = new pg.Client({ connectionString: URL });
      await admin.connect();
      try {
        await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
        await admin.query(`CREATE SCHEMA ${schema} AUTHORIZATION ${role}`);
        const asRole = new globalThis.URL(URL);
        asRole.username = role;
        asRole.password = password;
        const store = new PostgresStore({ url: asRole.href, schema, poolSize: 1 });
        try {
          await store.init();
          assert.deepEqual(
            await store.schemaVersions(),
            POSTGRES_MIGRATIONS.map((m) => m.version),
          );
        } finally {
          await store.close();
        }
      } finally {
        await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        await admin.query(`DROP ROLE IF EXISTS ${role}`);
        await admin.end();
      }
    });

    it('rejects bad options', () => {
      assert.throws(() => new PostgresStore({ url: URL, schema: 'bad-name; drop' }), /schema/);
      assert.throws(() => new PostgresStore({ url: URL, poolSize: 0 }), /poolSize/);
      assert.throws(() => new PostgresStore({ url: '' }), /url/);
    });
  });
});
