/**
 * Storage that fails under a running server, or at its start, driven over the server's sockets:
 *
 * - PostgreSQL ends a connection in the very read that completed it (a backend terminated as it
 *   started, a restart): the quest fails, the process lives on;
 * - PostgreSQL goes silent (a failover that leaves the old primary's address dead: no answer, no
 *   reset): the quests waiting on it are answered 20001 within the store's timeout, however many
 *   there are, and the node serves again as soon as the database answers;
 * - a PostgreSQL schema that a newer server migrated: the start says it was refused, not that the
 *   database is unreachable;
 * - SQLite on a disk that takes no more writes past a point (RLIMIT_FSIZE, lowered and raised on
 *   the running server with prlimit(1)): WAL checkpoints that fail at every tick are logged once.
 *
 * PostgreSQL: RTM_TEST_POSTGRES_URL (default the local service), a fresh schema per test, dropped
 * afterwards; skipped with a message when unreachable. The SQLite test needs Linux and prlimit(1).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import {
  RawClient,
  spawnServer,
  startTestServer,
  TEST_PID,
  TEST_SECRET,
  type SpawnedServer,
  type TestServer,
  prlimitMissing,
} from '@rtm/testkit';
import { PostgresStore } from '../src/store/postgres.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { MessageKind } from '../src/store/store.js';
import { dropSchema, freshSchema, PG_URL, postgresUnreachable } from './helpers/postgres.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a quest got: ok, or the error code; and how long its answer took. */
interface Answer {
  ok: boolean;
  code?: number;
  ms: number;
}

async function answer(quest: Promise<unknown>): Promise<Answer> {
  const started = Date.now();
  try {
    await quest;
    return { ok: true, ms: Date.now() - started };
  } catch (err) {
    return { ok: false, code: (err as { code?: number }).code, ms: Date.now() - started };
  }
}

const sendmsg = (backend: RawClient, from: bigint, to: bigint, mid: bigint) =>
  backend.signed('sendmsg', { from, to, mid, mtype: 30, msg: `m${mid}`, attrs: '' }, TEST_PID, TEST_SECRET);

/** Every mid of the p2p conversation of `uid` and `ouid`, oldest first. */
async function p2pMids(backend: RawClient, uid: bigint, ouid: bigint): Promise<bigint[]> {
  const mids: bigint[] = [];
  for (let lastid = 0n; ;) {
    const page = await backend.signed('getp2pmsg', { uid, ouid, desc: false, num: 20, lastid }, TEST_PID, TEST_SECRET);
    const msgs = page['msgs'] as unknown[][];
    if (msgs.length === 0) return mids;
    for (const m of msgs) mids.push(BigInt(m[3] as bigint));
    lastid = BigInt(page['lastid'] as bigint);
  }
}

/**
 * A TCP proxy in front of PostgreSQL. `silent`: what the server sends to PostgreSQL is dropped (a
 * partition: no answer, no reset), from the first chunk holding `silentFrom` on if that is set.
 * `holding`: what PostgreSQL says is kept, and `release()` hands each connection's over in one
 * write, so that the server reads it at once; it returns the message types it handed over.
 */
interface PgProxy {
  readonly port: number;
  silent: boolean;
  silentFrom: string | undefined;
  /** Like `silentFrom`, for the one connection that sent it: the others go on. */
  silentLinkFrom: string | undefined;
  holding: boolean;
  release(): string[];
  close(): void;
}

async function startPgProxy(): Promise<PgProxy> {
  const target = new URL(PG_URL);
  const links = new Set<{ down: Socket; up: Socket; held: Buffer[]; ended: boolean }>();
  const server = createServer((down) => {
    const up = connect(Number(target.port || 5432), target.hostname);
    const link = { down, up, held: [] as Buffer[], ended: false, silent: false };
    links.add(link);
    down.on('data', (d: Buffer) => {
      if (proxy.silentFrom !== undefined && d.includes(proxy.silentFrom)) proxy.silent = true;
      if (proxy.silentLinkFrom !== undefined && d.includes(proxy.silentLinkFrom)) link.silent = true;
      if (!proxy.silent && !link.silent) up.write(d);
    });
    up.on('data', (d: Buffer) => void (proxy.holding ? link.held.push(d) : down.write(d)));
    up.on('end', () => void (proxy.holding ? (link.ended = true) : down.end()));
    up.on('error', () => down.destroy());
    down.on('error', () => up.destroy());
    down.on('close', () => {
      up.destroy();
      links.delete(link);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxy: PgProxy = {
    port: (server.address() as AddressInfo).port,
    silent: false,
    silentFrom: undefined,
    silentLinkFrom: undefined,
    holding: false,
    release() {
      proxy.holding = false;
      const handed: string[] = [];
      for (const link of links) {
        const bytes = Buffer.concat(link.held.splice(0));
        let types = '';
        for (let at = 0; at + 5 <= bytes.length; at += 1 + bytes.readUInt32BE(at + 1)) types += String.fromCharCode(bytes[at]!);
        if (bytes.length > 0) link.down.write(bytes);
        if (link.ended) link.down.end();
        if (types) handed.push(types);
      }
      return handed;
    },
    close() {
      server.close();
      for (const { down, up } of links) {
        down.destroy();
        up.destroy();
      }
    },
  };
  return proxy;
}

/** A statement on a connection of the test's own (not through the proxy). */
async function admin<T extends pg.QueryResultRow>(sql: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

/** Waits (≤ 5 s) until the server's PostgreSQL connections (by application_name) match `ready`. */
async function backends(app: string, ready: (states: string[]) => boolean): Promise<void> {
  for (const until = Date.now() + 5000; Date.now() < until; await sleep(10)) {
    const rows = await admin<{ state: string | null }>('SELECT state FROM pg_stat_activity WHERE application_name = $1', [app]);
    if (ready(rows.map((r) => r.state ?? ''))) return;
  }
  assert.fail(`the connections of ${app} never got ready`);
}

const terminate = (app: string) => admin('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [app]);

const pgUnreachable = await postgresUnreachable();

describe('storage failures: PostgreSQL', { skip: pgUnreachable }, () => {
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => {});
  });

  /** A server on a PostgresStore of the test's making, reached through a proxy; sweeps rare (every 5 s). */
  async function serverThroughProxy(options: { poolSize: number; transactionTimeoutMs?: number; connectTimeoutMs?: number }) {
    const schema = freshSchema('sf');
    cleanups.push(() => dropSchema(schema));
    const proxy = await startPgProxy();
    const app = `rtm_sf_${randomBytes(4).toString('hex')}`;
    const url = `${PG_URL.replace(/@[^/]+\//, `@127.0.0.1:${proxy.port}/`)}?application_name=${app}`;
    const store = new PostgresStore({ url, schema, ...options });
    const server: TestServer = await startTestServer({ logoutGraceMs: 60_000, nodeLeaseMs: 60_000 }, { store }).catch((err: unknown) => {
      proxy.close();
      throw err;
    });
    cleanups.push(() => server.close());
    // Closed before the server stops: a stop must not wait on a proxy that a failed test left silent.
    cleanups.push(() => proxy.close());
    const backend = await RawClient.tcp(server.serverEndpoint);
    cleanups.push(() => backend.close());
    await sleep(100); // the start's sweep is over
    return { proxy, app, server, backend };
  }

  it('PostgreSQL ends a new connection in the read that completed it: the quest fails, the process lives on', async () => {
    // One connection, so that each quest below needs a new one.
    const { proxy, app, backend } = await serverThroughProxy({ poolSize: 1 });
    const signed = (method: string, payload: Record<string, unknown>) => backend.signed(method, payload, TEST_PID, TEST_SECRET);
    assert.deepEqual(await signed('addgroupmembers', { gid: 5n, uids: [1n, 2n] }), {});

    // The connection's start-up and the FATAL of its termination reach the server in one read:
    // pg emits 'error' for it at once, before a promise of the pool's could resolve.
    const cutAtStart = async (quest: () => Promise<unknown>): Promise<Answer> => {
      await terminate(app);
      await backends(app, (states) => states.length === 0);
      await sleep(50); // the pool has dropped its idle client
      proxy.holding = true;
      const answered = answer(quest());
      await backends(app, (states) => states.includes('idle'));
      await terminate(app);
      await backends(app, (states) => states.length === 0);
      const handed = proxy.release();
      assert.ok(
        handed.some((types) => types.endsWith('ZE')),
        `a start-up then the FATAL in one write: ${handed.join(', ')}`,
      );
      return answered;
    };
    // A transaction (delgroup), a single statement (getgroupmembers).
    const deleted = await cutAtStart(() => signed('delgroup', { gid: 5n }));
    assert.equal(deleted.code, 20001);
    const read = await cutAtStart(() => signed('getgroupmembers', { gid: 5n }));
    assert.equal(read.code, 20001);

    assert.deepEqual(await signed('getgroupmembers', { gid: 5n }), { uids: [1n, 2n] });
    assert.deepEqual(await signed('delgroup', { gid: 5n }), {});
    assert.deepEqual(await signed('getgroupmembers', { gid: 5n }), { uids: [] });
  });

  it('PostgreSQL gone silent: the quests waiting on it get 20001 within the timeout, and the node serves again once it answers', async () => {
    const { proxy, backend } = await serverThroughProxy({ poolSize: 2, transactionTimeoutMs: 500, connectTimeoutMs: 300 });
    const [alice, bob] = [101n, 102n];
    const acked: bigint[] = [];
    for (const mid of [1n, 2n]) {
      await sendmsg(backend, alice, bob, mid);
      acked.push(mid);
    }

    // More quests than the pool has connections: reads, and sends (which read before they commit).
    proxy.silent = true;
    const during = await Promise.all([
      ...[1, 2, 3].map(() => answer(p2pMids(backend, alice, bob))),
      ...[10n, 11n, 12n].map((mid) => answer(sendmsg(backend, alice, bob, mid))),
    ]);
    for (const a of during) {
      assert.equal(a.code, 20001, `answered ${JSON.stringify(a)}`);
      assert.ok(a.ms < 2000, `answered after ${a.ms} ms`);
    }

    // No connection of the outage is left holding a slot of the pool.
    proxy.silent = false;
    const send = await answer(sendmsg(backend, alice, bob, 20n));
    assert.ok(send.ok && send.ms < 1000, `send after the outage: ${JSON.stringify(send)}`);
    acked.push(20n);
    assert.deepEqual(await p2pMids(backend, alice, bob), acked);
  });

  it('a logout while PostgreSQL is silent is recorded once it answers: its rooms are left', async () => {
    const { proxy, server, backend } = await serverThroughProxy({ poolSize: 4, transactionTimeoutMs: 500, connectTimeoutMs: 300 });
    const [uid, rid] = [201n, 9201n];
    const client = await RawClient.loggedIn(server.clientEndpoint, backend, uid);
    cleanups.push(() => client.close());
    await client.quest('enterroom', { rid });
    const members = async () => ((await backend.signed('getroommembers', { rid }, TEST_PID, TEST_SECRET))['uids'] as bigint[]).map(BigInt);
    assert.deepEqual(await members(), [uid]);

    proxy.silent = true;
    await client.quest('bye', {}).catch(() => undefined);
    client.close();
    await sleep(1500); // the end's store writes time out
    proxy.silent = false;
    // The sweep (every 5 s here) tries the end again.
    const deadline = Date.now() + 12_000;
    while ((await members().catch(() => [uid])).length > 0 && Date.now() < deadline) await sleep(250);
    assert.deepEqual(await members(), [], 'the room left once the store answered');
  });

  it('PostgreSQL gone silent during a group commit: all its sends fail within two timeouts, not one after the other', async () => {
    // Connections enough for every send's reads: the sends all reach the group commit.
    const { proxy, backend } = await serverThroughProxy({ poolSize: 30, transactionTimeoutMs: 400, connectTimeoutMs: 300 });
    const [alice, bob] = [201n, 202n];
    // A send of this warm-up may outlast the short timeout on a busy machine: sent again (a resend
    // of the same mid is answered as the first), the warm-up stores exactly these 15.
    const warm = async (mid: bigint): Promise<void> => {
      for (let attempt = 1; !(await answer(sendmsg(backend, alice, bob, mid))).ok; attempt++) {
        assert.ok(attempt < 5, `warm-up send ${mid} failed ${attempt} times`);
      }
    };
    await Promise.all(Array.from({ length: 15 }, (_, i) => warm(BigInt(i + 1))));

    proxy.silentFrom = 'BEGIN'; // from the first commit on
    const during = await Promise.all(Array.from({ length: 15 }, (_, i) => answer(sendmsg(backend, alice, bob, BigInt(i + 100)))));
    for (const a of during) assert.equal(a.code, 20001, `answered ${JSON.stringify(a)}`);
    // Each commit of a group that failed, and of the next, waits once (400 ms), not once per send.
    const slowest = Math.max(...during.map((a) => a.ms));
    assert.ok(slowest < 2500, `the last send was answered after ${slowest} ms`);

    proxy.silentFrom = undefined;
    proxy.silent = false;
    assert.ok((await answer(sendmsg(backend, alice, bob, 1000n))).ok);
    assert.equal((await p2pMids(backend, alice, bob)).length, 16);
  });

  it('sends queued behind a commit that PostgreSQL left unanswered fail with it, not after a wait of their own', async () => {
    const { proxy, backend } = await serverThroughProxy({ poolSize: 30, transactionTimeoutMs: 600, connectTimeoutMs: 300 });
    const [alice, bob] = [301n, 302n];
    for (let attempt = 1; !(await answer(sendmsg(backend, alice, bob, 1n))).ok; attempt++) assert.ok(attempt < 5);

    // The first commit goes unanswered on its connection; the next sends read on others and queue
    // their appends behind it; then PostgreSQL goes silent altogether.
    proxy.silentLinkFrom = 'BEGIN';
    const first = answer(sendmsg(backend, alice, bob, 100n));
    await sleep(100);
    proxy.silentLinkFrom = undefined;
    const queued = Promise.all([101n, 102n, 103n].map((mid) => answer(sendmsg(backend, alice, bob, mid))));
    await sleep(150);
    proxy.silent = true;
    assert.equal((await first).code, 20001);
    for (const a of await queued) {
      assert.equal(a.code, 20001, `answered ${JSON.stringify(a)}`);
      // With the commit they waited behind (600 ms from the first send), not after waits of their own.
      assert.ok(a.ms < 800, `a queued send was answered after ${a.ms} ms`);
    }
    proxy.silent = false;
    assert.ok((await answer(sendmsg(backend, alice, bob, 1000n))).ok);
  });

  it('a schema that a newer server migrated: the start is refused, and says so (not "unreachable")', async () => {
    const schema = freshSchema('sf');
    cleanups.push(() => dropSchema(schema));
    await admin(`CREATE SCHEMA ${schema}`);
    await admin(`CREATE TABLE ${schema}.schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
    await admin(`INSERT INTO ${schema}.schema_migrations VALUES (999, 'from the future', 0)`);
    await assert.rejects(startTestServer({ store: PG_URL, storeSchema: schema }), (err: Error) => {
      assert.equal(err.name, 'StartupError');
      assert.match(err.message, /^store \(RTM_STORE=postgres:\/\/[^)]*\) refused the start: .*version 999, newer than this server knows/);
      return true;
    });
  });
});

describe('storage failures: SQLite', { skip: prlimitMissing() }, () => {
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => {});
  });

  /** A server on `dataDir` in a process of its own, a backend on its server gate, and its file size limit to set. */
  async function spawnOn(dataDir: string) {
    const server: SpawnedServer = await spawnServer({
      RTM_DATA_DIR: dataDir,
      RTM_PROJECT_ID: String(TEST_PID),
      RTM_PROJECT_SECRET: TEST_SECRET,
    });
    cleanups.push(() => server.kill('SIGKILL'));
    const backend = await RawClient.tcp(`127.0.0.1:${server.serverPort}`);
    cleanups.push(() => backend.close());
    const limit = (fsize: string) => execFileSync('prlimit', ['--pid', String(server.child.pid), `--fsize=${fsize}:`]);
    return { server, backend, limit };
  }

  it('gettoken on a disk that takes no writes: 20001, never a token that was not stored', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'rtm-sf-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const { server, backend, limit } = await spawnOn(dataDir);
    const gettoken = (uid: bigint): Promise<string | number> =>
      backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET).then(
        (a) => a.token as string,
        (err: { code: number }) => err.code,
      );

    limit('1'); // every write past the first byte of a file fails (EFBIG): the WAL's frames
    assert.deepEqual([await gettoken(41n), await gettoken(41n)], [20001, 20001]);
    limit('unlimited');
    const token = await gettoken(41n);
    assert.equal(typeof token, 'string');
    assert.equal(await gettoken(41n), token, 'the same token to every caller, as stored');
    await server.kill('SIGTERM');
    assert.equal((await server.exited).code, 0);
  });

  it('WAL checkpoints failing at every tick (writes past 1 MiB refused) are logged once, and acknowledged sends stay', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'rtm-sf-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    // A database of 3 MiB, its WAL checkpointed away: the server's first commits append to a new,
    // small WAL (below the limit), and checkpointing them writes the database's last pages (above it).
    const seed = new SqliteStore({ dataDir, checkpointEveryMs: 0 });
    await seed.init();
    const body = 'x'.repeat(8000);
    seed.bulkInsert(
      Array.from({ length: 400 }, (_, i) => ({
        pid: TEST_PID,
        kind: MessageKind.P2P,
        from: 7n,
        to: 8n,
        mid: BigInt(i + 1),
        mtype: 30,
        msg: body,
        attrs: '',
      })),
    );
    await seed.close();

    const { server, backend, limit } = await spawnOn(dataDir);

    limit(String(1 << 20));
    const acked: bigint[] = [];
    for (let mid = 1001n; mid <= 1005n; mid++) {
      const a = await answer(sendmsg(backend, 7n, 8n, mid));
      if (a.ok) acked.push(mid);
      else assert.equal(a.code, 20001);
    }
    await sleep(1000); // 10 ticks of the checkpointer
    const checkpointErrors = server.logs.filter((l) => String(l['msg']).startsWith('WAL checkpoint'));
    assert.ok(checkpointErrors.length >= 1, 'the failing checkpoints are reported');
    assert.ok(checkpointErrors.length <= 2, `${checkpointErrors.length} log lines for the same failure in 1 s`);

    limit('unlimited');
    // And once they work again, the log says so.
    await sleep(500);
    const recovered = server.logs.filter((l) => String(l['msg']).startsWith('WAL checkpoints work again'));
    assert.equal(recovered.length, 1, JSON.stringify(server.logs.slice(-5)));
    const later = await answer(sendmsg(backend, 7n, 8n, 2000n));
    assert.ok(later.ok, `a send once writes work again: ${JSON.stringify(later)}`);
    acked.push(2000n);
    const stored = new Set(await p2pMids(backend, 7n, 8n));
    assert.deepEqual(
      acked.filter((mid) => !stored.has(mid)),
      [],
    );
    assert.equal(server.child.exitCode, null, 'the server runs');
    await server.kill('SIGTERM');
    assert.equal((await server.exited).code, 0);
  });
});
