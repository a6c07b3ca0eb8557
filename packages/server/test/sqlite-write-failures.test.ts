/**
 * The embedded SQLite store when it cannot write, driven over the server's sockets:
 *
 * - full (`PRAGMA max_page_count` at the file's size: SQLITE_FULL, as a full disk answers), with
 *   commits in the event loop: sends are answered 20001, nothing is pushed, /healthz says 503
 *   "store cannot write" with the reason, the failure is logged once per kind; once there is room
 *   again /healthz says ok by itself (a probe write) and sends are stored, without a restart;
 * - writes refused by the system (RLIMIT_FSIZE lowered on a running server with prlimit(1)) with
 *   the writer thread on: the same, from a server process of its own;
 * - a writer thread that dies and cannot start again (its data directory is gone for a moment):
 *   sends are answered 20001 at once, /healthz says why, new threads are tried with back-off, and
 *   once one starts sends are stored again.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { Worker } from 'node:worker_threads';
import type Database from 'better-sqlite3';
import { RawClient, spawnServer, startTestServer, TEST_PID, TEST_SECRET, until, type SpawnedServer, prlimitMissing } from '@rtm/testkit';
import { createLogger } from '../src/observability/logger.js';
import { SqliteStore } from '../src/store/sqlite.js';
import { MessageKind } from '../src/store/store.js';

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => {});
});

/** What a quest got: ok, or the error code and text. */
async function answer(quest: Promise<unknown>): Promise<{ ok: boolean; code?: number; ex?: string }> {
  try {
    await quest;
    return { ok: true };
  } catch (err) {
    return { ok: false, code: (err as { code?: number }).code, ex: (err as Error).message };
  }
}

/** A message big enough to need pages of its own (overflow pages): a full file cannot take it. */
const BODY = 'x'.repeat(12_000);

const sendmsg = (backend: RawClient, from: bigint, to: bigint, mid: bigint) =>
  backend.signed('sendmsg', { from, to, mid, mtype: 30, msg: BODY, attrs: '' }, TEST_PID, TEST_SECRET);

async function p2pMids(backend: RawClient, uid: bigint, ouid: bigint): Promise<bigint[]> {
  const page = await backend.signed('getp2pmsg', { uid, ouid, desc: false, num: 100, lastid: 0n }, TEST_PID, TEST_SECRET);
  return (page['msgs'] as unknown[][]).map((m) => BigInt(m[3] as bigint));
}

async function healthz(adminPort: number): Promise<{ code: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
  return { code: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Ten sends (mids 10–19 from 1 to 2), each answered 20001, then /healthz 503 "store cannot write": its body. */
async function sendsRefused(backend: RawClient, adminPort: number): Promise<Record<string, unknown>> {
  const during = [];
  for (let mid = 10n; mid < 20n; mid++) during.push(await answer(sendmsg(backend, 1n, 2n, mid)));
  for (const a of during) assert.equal(a.code, 20001, `answered ${JSON.stringify(a)}`);
  const health = await healthz(adminPort);
  assert.equal(health.code, 503, JSON.stringify(health.body));
  assert.equal(health.body.status, 'store cannot write');
  return health.body;
}

/** The server's log lines, kept as objects. */
function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger('info', { write: (s: string) => void lines.push(JSON.parse(s)) } as unknown as NodeJS.WritableStream);
  return { logger, lines };
}

/** The store's failures and recoveries to the server's log, as the server wires its own store (main.ts). */
const logTo = (logger: ReturnType<typeof createLogger>) => ({
  onError: (m: string) => logger.error({ store: 'sqlite' }, m),
  onRecovery: (m: string) => logger.info({ store: 'sqlite' }, m),
});

/** How many log lines say this. */
const said = (lines: readonly Record<string, unknown>[], what: RegExp): number => lines.filter((l) => what.test(String(l['msg']))).length;

/** The store's own connection (commits run on it without the writer thread). */
const connectionOf = (store: SqliteStore): Database.Database => (store as unknown as { db: Database.Database }).db;

describe('SQLite cannot write', () => {
  it('full file, commits in the event loop: 20001, nothing pushed, /healthz 503 with the reason, logged once; writes again without a restart', async () => {
    let store: SqliteStore | undefined;
    const { logger, lines } = capturingLogger();
    const server = await startTestServer({}, { logger, makeStore: (dataDir) => (store = new SqliteStore({ dataDir, ...logTo(logger) })) });
    cleanups.push(() => server.close());
    const backend = await RawClient.tcp(server.serverEndpoint);
    cleanups.push(() => backend.close());
    const bob = await RawClient.loggedIn(server.clientEndpoint, backend, 2n);
    cleanups.push(() => bob.close());
    assert.ok((await answer(sendmsg(backend, 1n, 2n, 1n))).ok);
    await bob.waitForPushes('pushmsg', 1);

    const db = connectionOf(store!);
    const pages = Number(db.pragma('page_count', { simple: true }));
    db.pragma(`max_page_count = ${pages}`); // the file may not grow: a full disk

    assert.match(String((await sendsRefused(backend, server.adminPort!)).reason), /full/);
    // Still failing: the probe /healthz makes does not clear it.
    let health = await healthz(server.adminPort!);
    assert.equal(health.code, 503);

    await new Promise((r) => setTimeout(r, 100));
    assert.equal(bob.pushes.filter((p) => p.method === 'pushmsg').length, 1, 'no push of a message that was not stored');
    const failures = lines.filter((l) => l['level'] === 50 && l['method'] === 'sendmsg');
    assert.equal(failures.length, 1, `one 'handler failed' line for 10 failed sends: ${JSON.stringify(failures)}`);
    assert.equal(said(lines, /^SQLite cannot write \(database or disk is full\)/), 1, 'the store says it once');
    assert.equal(said(lines, /^health: the store cannot write/), 1, 'the health check says it once');

    db.pragma('max_page_count = 1073741823'); // room again
    health = await healthz(server.adminPort!);
    assert.equal(health.code, 200, `ok again before any send: ${JSON.stringify(health.body)}`);
    assert.equal(health.body.status, 'ok');
    assert.ok((await answer(sendmsg(backend, 1n, 2n, 30n))).ok);
    await bob.waitForPushes('pushmsg', 2);
    assert.deepEqual(await p2pMids(backend, 1n, 2n), [1n, 30n]);
    assert.equal(said(lines, /^SQLite writes work again/), 1, 'the recovery is logged');
    assert.equal(said(lines, /^health: the store can write again/), 1);
  });

  it('a writer thread that keeps dying soon after its start is started again with back-off, not in a loop, and logged once', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'rtm-wf-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const failures: string[] = [];
    const store = new SqliteStore({ dataDir, writerThread: true, onError: (m) => failures.push(m) });
    await store.init();
    cleanups.push(() => store.close());
    const writer = (store as unknown as { writer: { worker: Worker | undefined; problem: string | undefined } }).writer;
    let mid = 1n;
    const stored = async (): Promise<boolean> => {
      try {
        await store.append([{ pid: 1, kind: MessageKind.P2P, from: 1n, to: 2n, mid: mid++, mtype: 30, msg: 'x', attrs: '' }]);
        return true;
      } catch {
        return false;
      }
    };
    // Five threads die, each as soon as it has stored a message: a crash at every commit.
    const gaps: number[] = [];
    let killedAt: number | undefined;
    for (let i = 0; i < 6; i++) {
      assert.ok(await until(stored, 10_000), `thread ${i + 1} stores`);
      if (killedAt !== undefined) gaps.push(Date.now() - killedAt);
      if (i === 5) break;
      await writer.worker!.terminate();
      killedAt = Date.now();
      if (i === 0) continue; // the first exit: a new thread at once
      assert.match(
        writer.problem ?? '',
        /^SqliteStore: the writer thread exited \d+ ms after its start, as the one before it: exit code 1$/,
      );
      assert.equal(await stored(), false, 'appends fail at once meanwhile');
    }
    // The first replaced at once; then back-off 100, 200, 400, 800 ms (plus each thread's own start).
    for (let i = 1; i < gaps.length; i++)
      assert.ok(gaps[i]! >= 100 * 2 ** (i - 1), `start ${i + 2}: ${gaps[i]} ms after the exit (${gaps.join(', ')})`);
    const own = failures.filter((m) => m.startsWith('SqliteStore: the writer thread') || m.startsWith('the SQLite writer thread'));
    assert.equal(own.length, 2, own.join('\n'));
    assert.match(own[0]!, /^the SQLite writer thread exited \(exit code 1\); starting a new one$/);
    assert.match(own[1]!, /as the one before it: exit code 1; appends fail until one starts \(1 failed starts, the next in 100 ms\)$/);
  });

  it('a writer thread that dies and cannot start again: 20001 at once, /healthz says why, retried with back-off; stores again once one starts', async () => {
    let store: SqliteStore | undefined;
    const { logger, lines } = capturingLogger();
    const base = await mkdtemp(join(tmpdir(), 'rtm-wf-'));
    cleanups.push(() => rm(base, { recursive: true, force: true }));
    const dataDir = join(base, 'data');
    const server = await startTestServer(
      {},
      {
        logger,
        dataDir,
        makeStore: (dir) => (store = new SqliteStore({ dataDir: dir, writerThread: true, ...logTo(logger) })),
      },
    );
    cleanups.push(() => server.close());
    const backend = await RawClient.tcp(server.serverEndpoint);
    cleanups.push(() => backend.close());
    assert.ok((await answer(sendmsg(backend, 1n, 2n, 1n))).ok);

    // The data directory is gone (a new thread cannot open the database), and the thread dies.
    await rename(dataDir, `${dataDir}.away`);
    cleanups.push(() => rename(`${dataDir}.away`, dataDir).catch(() => {}));
    const writer = (store as unknown as { writer: { worker: Worker } }).writer;
    await writer.worker.terminate();

    const started = Date.now();
    const during = await answer(sendmsg(backend, 1n, 2n, 2n));
    assert.equal(during.code, 20001, JSON.stringify(during));
    assert.ok(Date.now() - started < 2000, 'answered at once, not after a timeout');
    assert.ok(
      await until(async () => (await healthz(server.adminPort!)).code === 503, 3000),
      '/healthz says the node cannot store messages',
    );
    const health = await healthz(server.adminPort!);
    assert.equal(health.body.status, 'store cannot write');
    assert.match(String(health.body.reason), /writer thread/);

    await rename(`${dataDir}.away`, dataDir);
    assert.ok(
      await until(async () => (await answer(sendmsg(backend, 1n, 2n, 3n))).ok, 10_000),
      'a new thread starts: sends are stored again',
    );
    assert.ok(await until(async () => (await healthz(server.adminPort!)).code === 200, 3000), '/healthz ok again');
    assert.deepEqual(await p2pMids(backend, 1n, 2n), [1n, 3n]);
    assert.ok(said(lines, /^SqliteStore: the writer thread cannot start/) <= 2, 'the failed starts are not logged one by one');
    assert.equal(said(lines, /^the SQLite writer thread runs again/), 1, 'the recovery is logged');
  });
});

describe('SQLite cannot write: a server process of its own', { skip: prlimitMissing() }, () => {
  it('writes refused by the system, writer thread on: 20001, nothing pushed, /healthz 503, logged once; writes again once they are allowed', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'rtm-wf-'));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const server: SpawnedServer = await spawnServer({
      RTM_DATA_DIR: dataDir,
      RTM_PROJECT_ID: String(TEST_PID),
      RTM_PROJECT_SECRET: TEST_SECRET,
      RTM_ADMIN_PORT: '0',
      RTM_SQLITE_WRITER_THREAD: 'true',
    });
    cleanups.push(() => server.kill('SIGKILL'));
    const backend = await RawClient.tcp(`127.0.0.1:${server.serverPort}`);
    cleanups.push(() => backend.close());
    const bob = await RawClient.loggedIn(`127.0.0.1:${server.clientPort}`, backend, 2n);
    cleanups.push(() => bob.close());
    assert.ok((await answer(sendmsg(backend, 1n, 2n, 1n))).ok);
    await bob.waitForPushes('pushmsg', 1);

    const limit = (fsize: string) => execFileSync('prlimit', ['--pid', String(server.child.pid), `--fsize=${fsize}:`]);
    limit('1'); // no file of the process may grow past its first byte: every SQLite write fails
    assert.equal(typeof (await sendsRefused(backend, server.adminPort!)).reason, 'string');

    await new Promise((r) => setTimeout(r, 100));
    assert.equal(bob.pushes.filter((p) => p.method === 'pushmsg').length, 1, 'no push of a message that was not stored');
    const failures = server.logs.filter((l) => l['level'] === 50 && l['method'] === 'sendmsg');
    assert.equal(failures.length, 1, `one 'handler failed' line for 10 failed sends: ${JSON.stringify(failures)}`);
    assert.equal(said(server.logs, /^SQLite cannot write/), 1, 'the store says it once');

    limit('unlimited');
    assert.ok(await until(async () => (await healthz(server.adminPort!)).code === 200, 3000), '/healthz ok again before any send');
    assert.ok((await answer(sendmsg(backend, 1n, 2n, 30n))).ok);
    await bob.waitForPushes('pushmsg', 2);
    assert.deepEqual(await p2pMids(backend, 1n, 2n), [1n, 30n]);
    assert.equal(said(server.logs, /^SQLite writes work again/), 1, 'the recovery is logged');
    assert.equal(server.child.exitCode, null, 'the server runs');
    await server.kill('SIGTERM');
    assert.equal((await server.exited).code, 0);
  });
});
