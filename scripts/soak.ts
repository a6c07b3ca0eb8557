#!/usr/bin/env node
/**
 * Churn soak: looks for memory that grows with churn (anything kept per user, connection, room,
 * group, mid, salt or key after its reason ended). Not part of the test suite (the fast checks are
 * packages/server/test/churn-memory.test.ts); one run takes a few minutes.
 *
 *   node --conditions=rtm-source --import tsx scripts/soak.ts
 *
 * Options:
 *   --cycles 10000 --first 2000 --warmup 1000   the three measures: after the warm-up (JIT, caches),
 *                   after `first` cycles, after `cycles`; bytes/cycle between them
 *   --concurrency 16  workers, each running cycles one after another
 *   --grace 300     the logout grace period (RTM_LOGOUT_GRACE_MS), ms: presences end during the run
 *   --quiet 65      seconds of quiet before each measure, past the time windows below (then one
 *                   kickout per node and its signature prune what waits for a next one): the heap
 *                   then holds no windowed state, and what grows between measures is a leak
 *   --snapshots     heap snapshots after the last two measures, compared by type and constructor
 *   --snapshot-dir <dir>  where to write them, kept (default: a temporary directory, removed)
 *   --timings       mean time of each step of a cycle
 *   --single-session          RTM_SINGLE_SESSION on: every login kicks the user's earlier sessions out
 *   --sqlite-writer-thread    RTM_SQLITE_WRITER_THREAD on: commits in flight across event-loop turns
 *   --cluster       two nodes on PostgreSQL and NATS (RTM_TEST_POSTGRES_URL, RTM_TEST_NATS_URL, with
 *                   the cluster tests' defaults; a fresh schema and subject prefix, dropped at the end)
 *
 * The server runs in a child process of its own (`--expose-gc`; SQLite in a temporary directory,
 * ephemeral ports, a signature window of 5 s), so that its heap holds nothing of the load. The
 * workers here drive cycles, each with ids never used before (uids, rids, gids, mids, salts,
 * connections): a backend hands out tokens; two users log in (WebSocket and TCP; in a cluster on
 * different nodes), enter a room, send p2p, room and group messages, set data, info, attributes
 * and blacklists, read unread counts and conversations; backends listen to the cycle's ids and are
 * replaced every 25 cycles (TCP and WebSocket, sockets dropped); HTTP bridge calls, well and badly
 * signed; a bare TCP connect-and-close (a health check) every cycle and other bad input (garbage,
 * a bad header, half a frame, garbage over WebSocket, a quest before login) every fifth; /healthz
 * and /metrics. One rarer path per cycle: refused logins (bad token, project blacklist), a login
 * abandoned half-way, rooms changed by the backend for online users, history reads, pipelined
 * quests around `auth` and `bye`, the server and client SDKs, a client that never answers its
 * pushes, friends and blacklists made and undone. Each session ends its own way: `bye`, a dropped
 * socket back within the grace period (on the other node, in a cluster) then dropped for good, a
 * server-API kickout, `leaveroom` then a drop, a second device's client `kickout`. What a cycle
 * creates that is meant to last is undone (group deleted or emptied, blacklists cleared).
 *
 * At each measure every client and backend is gone: the server process waits until it holds no
 * connection, no session, no grace period and no presence end under way, forces GCs, and reports
 * its heap and the sizes of its per-key structures, and the store rows that must go when their
 * reason ends (room memberships, presence records). A leak shows as heap growth roughly
 * proportional to the cycles between measures, and as a structure or a row count that follows the
 * cycle count. Bounded by a time window, and so holding about the last window's worth whatever the
 * cycle count (without --quiet): the replay guard (the signature window, at most 3 windows), the
 * kickouts remembered for logins under way (60 s, pruned at the next kickout), the client
 * rate-limit buckets (dropped by a sweep every 60 s once full again); the JIT's code grows for a
 * while too (`code:` in the snapshot comparison).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import WebSocket from 'ws';
import { RTMClient } from '@rtm/client-sdk';
import { RTMServerClient } from '@rtm/server-sdk';
import { RawClient, signFields, TEST_PID, TEST_SECRET, uniqueSalt } from '@rtm/testkit';

const argv = process.argv.slice(2);
const flag = (name: string): boolean => argv.includes(`--${name}`);
const num = (name: string, dflt: number): number => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? Number(argv[i + 1]) : dflt;
};
const CYCLES = num('cycles', 10_000);
const FIRST = num('first', 2_000);
const WARMUP = num('warmup', 1_000);
const CONCURRENCY = num('concurrency', 16);
const GRACE_MS = num('grace', 300);
const SNAPSHOT_DIR = argv[argv.indexOf('--snapshot-dir') + 1];
const SNAPSHOTS = flag('snapshots') || argv.includes('--snapshot-dir');
const TIMINGS = flag('timings');
/** Seconds of quiet before each measure, so that the time-bounded structures have emptied (≥ 63). */
const QUIET_S = num('quiet', 0);
/** RTM_SINGLE_SESSION: every login kicks the user's earlier sessions out. */
const SINGLE_SESSION = flag('single-session');
/** RTM_SQLITE_WRITER_THREAD: SQLite commits on a thread of their own (in flight across turns). */
const WRITER_THREAD = flag('sqlite-writer-thread');
/** Two nodes on PostgreSQL and NATS instead of one on SQLite. */
const CLUSTER = flag('cluster');
const POSTGRES_URL = process.env['RTM_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const NATS_URL = process.env['RTM_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222';
/** A worker's backend connection is replaced after this many of its cycles. */
const BACKEND_EVERY = 25;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const mb = (b: number) => `${(b / 1048576).toFixed(2)} MB`;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

/** What the server process reports after a phase. */
interface Measure {
  used: number;
  external: number;
  census: Record<string, number>;
  quietMs: number;
  snapshot?: string;
}

// =====================================================================================================
// The server process
// =====================================================================================================

async function serverProcess(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc!;
  const { startTestServer } = await import('@rtm/testkit');
  type TestServer = Awaited<ReturnType<typeof startTestServer>>;
  const { Gate } = await import('../packages/server/src/gate/gate.js');
  const { RateLimiter } = await import('../packages/server/src/gate/rate-limit.js');
  const { ReplayGuard } = await import('../packages/server/src/gate/signature.js');
  const { KeyedSerial } = await import('../packages/server/src/methods/serial.js');
  const { RepeatFilter } = await import('../packages/server/src/observability/repeats.js');
  const { Listener } = await import('../packages/server/src/transport/listener.js');

  // Instances the services object does not reach (gates, listeners, rate limiters, the replay
  // guard, the serial queues, repeat filters) are caught as they first run: wrappers on their
  // prototypes, the server's code unchanged.
  const seen = {
    gates: new Set<Any>(),
    listeners: new Set<Any>(),
    limiters: new Set<Any>(),
    replayGuards: new Set<Any>(),
    serials: new Set<Any>(),
    repeats: new Set<Any>(),
  };
  const capture = (proto: Any, method: string, into: Set<Any>): void => {
    const original = proto[method] as (...args: unknown[]) => unknown;
    proto[method] = function (this: Any, ...args: unknown[]) {
      into.add(this);
      return original.apply(this, args);
    };
  };
  capture(Gate.prototype, 'accept', seen.gates);
  capture(Listener.prototype, 'listen', seen.listeners);
  capture(RateLimiter.prototype, 'take', seen.limiters);
  capture(ReplayGuard.prototype, 'seen', seen.replayGuards);
  capture(KeyedSerial.prototype, 'run', seen.serials);
  capture(RepeatFilter.prototype, 'admit', seen.repeats);

  const settings = { logoutGraceMs: GRACE_MS, signWindowSeconds: 5, singleSession: SINGLE_SESSION, sqliteWriterThread: WRITER_THREAD };
  const servers: TestServer[] = [];
  // Data directories of our own, removed by `stop` whatever happens to the servers' stops.
  const dataDirs: string[] = [];
  const start = async (options: Parameters<typeof startTestServer>[1] = {}): Promise<void> => {
    const dataDir = await mkdtemp(join(tmpdir(), 'rtm-soak-'));
    dataDirs.push(dataDir);
    servers.push(await startTestServer(settings, { ...options, dataDir }));
  };
  let dropCluster = async (): Promise<void> => {};
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      const closed = await Promise.allSettled(servers.map((x) => x.close()));
      await dropCluster().catch((err: unknown) => console.error('could not drop the soak schema:', err));
      await Promise.all(dataDirs.map((d) => rm(d, { recursive: true, force: true })));
      for (const c of closed) if (c.status === 'rejected') console.error('a server did not stop cleanly:', c.reason);
    })());
  try {
    if (CLUSTER) {
      // Two nodes in this process on one fresh PostgreSQL schema and one fresh NATS subject prefix.
      const { NatsBus } = await import('../packages/server/src/bus/nats.js');
      const { PostgresStore } = await import('../packages/server/src/store/postgres.js');
      const pg = (await import('pg')).default;
      const tag = randomBytes(6).toString('hex');
      const schema = `rtm_soak_${tag}`;
      dropCluster = async () => {
        const c = new pg.Client({ connectionString: POSTGRES_URL });
        await c.connect();
        await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).finally(() => c.end());
      };
      for (let i = 0; i < 2; i++) {
        const store = new PostgresStore({ url: POSTGRES_URL, schema, poolSize: 4 });
        const bus = new NatsBus({ url: NATS_URL, subjectPrefix: `rtmsoak_${tag}`, discoveryMs: 50 });
        await start({ store, bus });
      }
    } else await start();
  } catch (err) {
    await stop();
    throw err;
  }

  const sizeOf = (m: Any): number => (m === undefined || m === null ? 0 : typeof m.size === 'number' ? m.size : m.length);
  /** Entries of a pid → id → value map (LocalPresence's ByProject). */
  const byProject = (b: Any): number => [...(b.projects as Map<number, Map<unknown, unknown>>).values()].reduce((n, m) => n + m.size, 0);
  const rows = async (store: Any, table: string): Promise<number> =>
    store.conn
      ? Number(store.conn.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get().n)
      : Number((await store.pool.query(`SELECT COUNT(*) AS n FROM ${table}`)).rows[0].n);

  /** The size of every per-key structure of the server(s), by name. */
  const census = async (): Promise<Record<string, number>> => {
    const out: Record<string, number> = {};
    for (const [n, server] of servers.entries()) {
      const s = server.services as Any;
      const at = CLUSTER ? `n${n}.` : '';
      Object.assign(out, {
        [`${at}presence.sessions`]: byProject(s.presence.sessions),
        [`${at}presence.roomMembers`]: byProject(s.presence.roomMembers),
        [`${at}presence.userRooms`]: byProject(s.presence.userRooms),
        [`${at}presence.roomConns`]: byProject(s.presence.roomConns),
        [`${at}sessions.grace`]: sizeOf(s.sessions.grace),
        [`${at}sessions.epochs`]: sizeOf(s.sessions.epochs),
        [`${at}sessions.ending`]: sizeOf(s.sessions.ending),
        [`${at}sessions.resuming`]: sizeOf(s.sessions.resuming),
        [`${at}sessions.joining`]: sizeOf(s.sessions.joining),
        [`${at}sessions.closing`]: sizeOf(s.sessions.closing),
        [`${at}sessions.records.changes`]: sizeOf(s.sessions.records.changes),
        [`${at}delivery.kicks (60 s)`]: sizeOf(s.delivery.kicks),
        [`${at}groups.cached (LRU, 1M ids)`]: sizeOf(s.groups.cached),
        [`${at}groups.loading`]: sizeOf(s.groups.loading),
        [`${at}listeners.byProject`]: [...(s.listeners.byProject as Map<number, Set<unknown>>).values()].reduce(
          (k, set) => k + set.size,
          0,
        ),
        [`${at}store.pending`]: sizeOf(s.store.pending),
        [`${at}store.clock.inFlight`]: sizeOf(s.store.clock?.inFlight),
      });
      if (s.store.shapedStmts) out[`${at}store.shapedStmts`] = sizeOf(s.store.shapedStmts);
      if (s.store.blockedCount) out[`${at}store.blockedCount`] = sizeOf(s.store.blockedCount);
      if (s.bus.peers) {
        out[`${at}bus.peers`] = sizeOf(s.bus.peers);
        out[`${at}bus.pending`] = sizeOf(s.bus.pending);
        out[`${at}bus.queue`] = sizeOf(s.bus.queue);
      }
      // Rows that must go when their reason ends (the others are the users' durable data).
      if (n === 0)
        for (const table of [
          'room_members',
          'node_presences',
          'presence_ends',
          'presences WHERE live (claims going on)',
          'kickouts (a day)',
          'nodes',
        ]) {
          out[`rows ${table}`] = await rows(s.store, table.split(' (')[0]!);
        }
      if (n === 0 && process.env['SOAK_DEBUG'] && out['rows room_members']! > 0) {
        const sample = s.store.conn
          ? s.store.conn.prepare('SELECT * FROM room_members LIMIT 10').all()
          : (await s.store.pool.query('SELECT * FROM room_members LIMIT 10')).rows;
        for (const r of sample.slice(0, 3)) {
          const q = `SELECT * FROM unread_baselines WHERE uid = ${String(r.uid)}`;
          console.error('baseline:', s.store.conn ? s.store.conn.prepare(q).all() : (await s.store.pool.query(q)).rows);
        }
        console.error(
          'room_members left:',
          sample.map((r: Any) => ({
            ...r,
            uid: String(r.uid),
            rid: String(r.rid),
            joined_at: String(r.joined_at),
            uidRole: Number((BigInt(r.uid) - (7n << 50n)) % 8n),
            ridRole: Number((BigInt(r.rid) - (7n << 50n)) % 8n),
          })),
        );
      }
    }
    let i = 0;
    for (const g of seen.gates) {
      const name = `${g.options.name as string}Gate${i++}`;
      out[`${name}.connections`] = sizeOf(g.connections);
      out[`${name}.questTallies`] = sizeOf(g.questTallies);
      if (g.authWarnedHttp) out[`${name}.authWarnedHttp (10k cap)`] = sizeOf(g.authWarnedHttp);
    }
    i = 0;
    for (const l of seen.listeners) {
      const name = `listener${i++}`;
      out[`${name}.sockets`] = sizeOf(l.sockets);
      out[`${name}.sniffing`] = sizeOf(l.sniffing);
      out[`${name}.httpSockets`] = sizeOf(l.httpSockets);
      out[`${name}.httpDeadlines`] = sizeOf(l.httpDeadlines);
      out[`${name}.wss.clients`] = sizeOf(l.wss.clients);
    }
    i = 0;
    for (const l of seen.limiters) out[`rateLimiter${i++}.buckets (60 s)`] = sizeOf(l.buckets);
    i = 0;
    for (const r of seen.replayGuards) out[`replayGuard${i++}.remembered (sign window)`] = r.remembered as number;
    i = 0;
    for (const k of seen.serials) out[`keyedSerial${i++}.tails`] = sizeOf(k.tails);
    i = 0;
    for (const r of seen.repeats) out[`repeatFilter${i++}.seen (1000 cap)`] = sizeOf(r.seen);
    return out;
  };

  /** Waits until no connection, session, grace period or presence end is left, then a little more. */
  const settle = async (): Promise<number> => {
    const t0 = Date.now();
    const quiet = () =>
      [...seen.gates].every((g) => g.connections.size === 0) &&
      servers.every(({ services: s }: Any) => s.presence.sessionCount === 0 && s.sessions.grace.size === 0 && s.sessions.ending.size === 0);
    while (!quiet() && Date.now() - t0 < 30_000) await sleep(50);
    const quietMs = Date.now() - t0;
    // Transports the server closed are terminated 2 s later; HTTP keep-alive sockets idle out.
    await sleep(Math.max(2500, GRACE_MS + 500));
    return quiet() ? quietMs : -1;
  };

  const measure = async (snapshotPath?: string): Promise<Measure> => {
    const quietMs = await settle();
    if (QUIET_S > 0) {
      // Past every time window: the rate limiter's sweep (every 60 s) finds its buckets full
      // again; then one kickout (of nobody online) per node prunes the kickouts remembered for
      // logins under way, and its signature the replay guard's old buckets, as the next ones would.
      await sleep(QUIET_S * 1000);
      for (const server of servers) {
        const b = await RawClient.tcp(server.serverEndpoint);
        await b.signed('kickout', { uid: 1n }, TEST_PID, TEST_SECRET);
        await b.drop();
      }
      await settle();
    }
    for (let i = 0; i < 4; i++) {
      gc();
      await sleep(20);
    }
    const m = process.memoryUsage();
    const out: Measure = { used: v8.getHeapStatistics().used_heap_size, external: m.external, census: await census(), quietMs };
    if (snapshotPath) out.snapshot = v8.writeHeapSnapshot(snapshotPath);
    return out;
  };

  process.on('message', (msg: { cmd: string; snapshot?: string }) => {
    if (msg.cmd === 'measure') void measure(msg.snapshot).then((m) => process.send!({ measure: m }));
    if (msg.cmd === 'stop') void stop().then(() => process.exit(0));
  });
  // The driver gone (killed, crashed): no server left behind.
  process.on('disconnect', () => void stop().finally(() => process.exit(0)));
  process.send!({
    ready: {
      serverEndpoints: servers.map((x) => x.serverEndpoint),
      clientEndpoints: servers.map((x) => x.clientEndpoint),
      adminEndpoints: servers.map((x) => `127.0.0.1:${x.adminPort}`),
    },
  });
}

// =====================================================================================================
// The driver
// =====================================================================================================

let serverEndpoints: string[] = [];
let clientEndpoints: string[] = [];
let adminEndpoints: string[] = [];
/** Node `i`'s gates (modulo the node count: any number picks a node). */
const srv = (i: number): string => serverEndpoints[i % serverEndpoints.length]!;
const cli = (i: number): string => clientEndpoints[i % clientEndpoints.length]!;
/** Every id of the soak is new: base + 8 × cycle + k. */
const ID_BASE = 7n << 50n;
const ids = (n: number) => {
  const b = ID_BASE + BigInt(n) * 8n;
  return { uid: b, buddy: b + 1n, rid: b + 2n, gid: b + 3n, mid: b + 4n };
};
const errors = new Map<string, number>();
const note = (err: unknown) => {
  const key = String((err as { code?: number }).code ?? (err as Error).message ?? err);
  errors.set(key, (errors.get(key) ?? 0) + 1);
};

const timings = new Map<string, { n: number; ms: number }>();
async function timed<T>(name: string, work: Promise<T>): Promise<T> {
  if (!TIMINGS) return work;
  const t0 = performance.now();
  try {
    return await work;
  } finally {
    const t = timings.get(name) ?? { n: 0, ms: 0 };
    t.n++;
    t.ms += performance.now() - t0;
    timings.set(name, t);
  }
}
if (TIMINGS) {
  const questOf = RawClient.prototype.quest;
  RawClient.prototype.quest = function (this: RawClient, method, payload, flag) {
    return timed(`quest ${method}`, questOf.call(this, method, payload, flag));
  };
}

/** A client of `uid` logged in at node `node`'s client gate, over TCP or WebSocket. */
async function loggedIn(backend: RawClient, uid: bigint, tcp: boolean, node: number): Promise<RawClient> {
  if (!tcp) return RawClient.loggedIn(cli(node), backend, uid);
  const { token } = await backend.signed('gettoken', { uid }, TEST_PID, TEST_SECRET);
  const client = await RawClient.tcp(cli(node));
  const answer = await client.quest('auth', { pid: TEST_PID, uid, token, version: 'soak', attrs: { device: 'tcp' } });
  if (answer['ok'] !== true) throw new Error(`auth answered ${JSON.stringify(answer)}`);
  return client;
}

/** A signed call over the HTTP bridge; `badSign` sends a wrong signature (refused, logged once per remote). */
async function http(node: number, method: string, payload: Record<string, bigint | bigint[]>, badSign = false): Promise<number> {
  const f = signFields(method, TEST_PID, TEST_SECRET, uniqueSalt()) as Record<string, unknown>;
  if (badSign) f['sign'] = '0'.repeat(32);
  const body = Object.entries({ ...f, ...payload })
    .map(([k, v]) => `"${k}":${Array.isArray(v) ? `[${v.join(',')}]` : typeof v === 'string' ? JSON.stringify(v) : String(v)}`)
    .join(',');
  const res = await fetch(`http://${srv(node)}/service/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: `{${body}}`,
  });
  await res.arrayBuffer();
  return res.status;
}

/** Bad input of six kinds (5: a health check), each on a connection of its own to node `node`'s client gate. */
async function badFrames(kind: number, node: number): Promise<void> {
  const clientEndpoint = cli(node);
  const at = clientEndpoint.lastIndexOf(':');
  const [host, port] = [clientEndpoint.slice(0, at), Number(clientEndpoint.slice(at + 1))];
  const raw = (bytes: Buffer, closeAfterMs: number) =>
    new Promise<void>((resolve) => {
      const s = connect(port, host, () => {
        s.write(bytes);
        setTimeout(() => s.destroy(), closeAfterMs);
      });
      s.on('error', () => undefined);
      s.on('close', () => resolve());
    });
  switch (kind) {
    case 5: // a TCP health check: connected, closed without a byte
      return raw(Buffer.alloc(0), 0);
    case 0: // neither FPNN nor HTTP
      return raw(Buffer.from('\x00\x01\x02\x03garbage'), 200);
    case 1: // an FPNN header that makes no sense
      return raw(Buffer.concat([Buffer.from('FPNN'), Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0])]), 200);
    case 2: // half a frame, then gone
      return raw(Buffer.from('FPNN\x01\x40\x00'), 20);
    case 3: {
      // garbage over WebSocket
      const ws = new WebSocket(`ws://${clientEndpoint}/service/websocket`);
      await new Promise<void>((resolve) => {
        ws.on('open', () => ws.send(Buffer.from('not an fpnn frame at all')));
        ws.on('error', () => resolve());
        ws.on('close', () => resolve());
        setTimeout(() => (ws.terminate(), resolve()), 1000);
      });
      return;
    }
    default: {
      // a quest before any login, then gone
      const c = await RawClient.websocket(clientEndpoint);
      await c.quest('getunread', {}).catch(() => undefined);
      await c.drop();
    }
  }
}

class Worker {
  private backend: RawClient | undefined;
  private backendCycles = 0;

  /** `backends`: how many backends it had so far; the next one goes to that node (the workers start on different nodes). */
  constructor(private backends: number) {}

  private async getBackend(n: number): Promise<RawClient> {
    if (this.backend && this.backendCycles++ < BACKEND_EVERY) return this.backend;
    const old = this.backend;
    this.backendCycles = 0;
    const at = srv(this.backends);
    const b = this.backends++ % 2 === 0 ? await RawClient.tcp(at) : await RawClient.websocket(at);
    // A backend that listens to everything of one kind, and to the events.
    await b.signed(
      'setlisten',
      { p2p: n % 3 === 0, group: n % 3 === 1, room: n % 3 === 2, events: ['login', 'logout'] },
      TEST_PID,
      TEST_SECRET,
    );
    this.backend = b;
    old?.close(); // its socket destroyed, without a word
    return b;
  }

  async cycle(n: number): Promise<void> {
    const { uid, buddy, rid, gid, mid } = ids(n);
    const backend = await timed('backend', this.getBackend(n));
    const sign = (method: string, payload: Record<string, unknown>) => backend.signed(method, payload as never, TEST_PID, TEST_SECRET);
    // The user on node n, the buddy on the next one (the same node when there is only one).
    const a = await timed('login', loggedIn(backend, uid, n % 2 === 1, n));
    const b = await timed('login', loggedIn(backend, buddy, n % 3 === 1, n + 1));
    try {
      await sign('addlisten', { uids: [uid], rids: [rid], gids: [gid] });
      await a.quest('enterroom', { rid });
      await b.quest('enterroom', { rid });
      await sign('addgroupmembers', { gid, uids: [uid, buddy] });
      await a.quest('sendmsg', { to: buddy, mid, mtype: 30, msg: `p2p ${n}`, attrs: '' });
      await a.quest('sendroommsg', { rid, mid: mid + 1n, mtype: 30, msg: `room ${n}`, attrs: '' });
      await a.quest('sendgroupmsg', { gid, mid: mid + 2n, mtype: 30, msg: `group ${n}`, attrs: '' });
      await b.quest('sendmsg', { to: uid, mid: mid + 3n, mtype: 31, msg: new Uint8Array([1, 2, 3]), attrs: '' });
      await a.quest('dataset', { key: `k${n % 7}`, val: 'v' });
      await a.quest('setuserinfo', { oinfo: `o${n}` });
      await a.quest('addattrs', { attrs: { n: String(n) } });
      await a.quest('addblacks', { blacks: [buddy + 8n] });
      await b.quest('getunread', {});
      await b.quest('getunreadconversationlist', {});
      await sign('sendroommsg', { from: buddy, rid, mid: mid + 5n, mtype: 30, msg: 'from the backend', attrs: '' });
      await sign('removelisten', { uids: [uid], rids: [rid], gids: [gid] });
      await sign(n % 4 === 0 ? 'delgroupmembers' : 'delgroup', n % 4 === 0 ? { gid, uids: [uid, buddy] } : { gid });
      await a.quest('delblacks', { blacks: [buddy + 8n] });
      await timed(`extra ${n % 8}`, this.extra(n, a, b, sign));
      // The HTTP bridge: a good call, sometimes a badly signed one.
      const status = await timed('http', http(n, 'getonlineusers', { uids: [uid, buddy] }));
      if (status !== 200) throw new Error(`HTTP getonlineusers: ${status}`);
      if (n % 10 === 0) await timed('http bad sign', http(n + 1, 'gettoken', { uid: buddy }, true));
      // A TCP health check (connected, closed without a byte) every cycle; other bad input every fifth.
      await timed('health check', badFrames(5, n));
      if (n % 5 === 0) await timed(`bad frame ${(n / 5) % 5}`, badFrames((n / 5) % 5, n / 5));
      if (n % 20 === 0) {
        // What a balancer and Prometheus ask the admin port.
        const admin = adminEndpoints[n % adminEndpoints.length]!;
        for (const path of ['/healthz', '/metrics']) await (await fetch(`http://${admin}${path}`)).arrayBuffer();
      }
      // How the session ends.
      const end = async (): Promise<void> => {
        switch (n % 5) {
          case 0:
            return a.bye();
          case 1: {
            // Dropped, back within the grace period (on the other node, if any), dropped for good.
            await a.drop();
            const back = await loggedIn(backend, uid, n % 4 === 1, n + 1);
            await back.quest('getunread', {});
            return back.drop();
          }
          case 2:
            await sign('kickout', { uid });
            return a.closed;
          case 3:
            await a.quest('leaveroom', { rid });
            return a.drop();
          default: {
            // A second device kicks the first out (client `kickout`), then says bye.
            const second = await loggedIn(backend, uid, n % 2 === 0, n + 1);
            await second.quest('kickout', {});
            await a.closed;
            return second.bye();
          }
        }
      };
      await timed(`end ${n % 5}`, end());
      if (n % 2 === 0) await b.bye();
      else await b.drop();
    } finally {
      a.close();
      b.close();
      backend.pushes.length = 0;
    }
  }

  /** One of eight rarer paths per cycle, each with ids of its own (base + 5, 6, 7). */
  private async extra(n: number, a: RawClient, b: RawClient, sign: (method: string, payload: Record<string, unknown>) => Promise<unknown>) {
    const { uid, buddy, rid, gid, mid } = ids(n);
    const [other, rid2, uid3] = [uid + 5n, uid + 6n, uid + 7n];
    const refused = (work: Promise<unknown>) =>
      work.then(
        () => {
          throw new Error('expected a refusal');
        },
        () => undefined,
      );
    switch (n % 8) {
      case 0: {
        // Refused logins: no token, then a blacklisted user.
        const c = await RawClient.websocket(cli(n));
        try {
          const answer = await c.quest('auth', { pid: TEST_PID, uid: other, token: 'not-a-token' });
          if (answer['ok'] !== false) throw new Error('a bad token logged in');
          await sign('addprojectblack', { uid: uid3, btime: 60 });
          await refused(loggedIn(this.backend!, uid3, false, n + 1));
          await sign('removeprojectblack', { uid: uid3 });
        } finally {
          c.close();
        }
        return;
      }
      case 1: {
        // A login abandoned half-way: auth sent, the socket gone before the answer.
        const { token } = (await sign('gettoken', { uid: other })) as { token: string };
        const c = await RawClient.tcp(cli(n));
        void c.quest('auth', { pid: TEST_PID, uid: other, token }).catch(() => undefined);
        await sleep(n % 3);
        c.close();
        return;
      }
      case 2:
        // Rooms changed by the backend while the users are online.
        await sign('adduserrooms', { uid, rids: [rid2] });
        await sign('addroommembers', { rid: rid2, uids: [buddy] });
        await b.quest('sendroommsg', { rid: rid2, mid: mid + 6n, mtype: 30, msg: 'x', attrs: '' });
        await sign(n % 16 === 2 ? 'deleteuserrooms' : 'delroommember', n % 16 === 2 ? { uid, rids: [rid2] } : { rid: rid2, uid });
        return;
      case 3:
        // History and unread reads.
        await a.quest('getroommsg', { rid, desc: true, num: 10 });
        await a.quest('getp2pmsg', { ouid: buddy, desc: true, num: 10 });
        await b.quest('getp2punread', { uids: [uid] });
        await b.quest('getgroupunread', { gids: [gid] });
        await b.quest('getsession', {});
        await b.quest('removesession', { to: uid });
        await a.quest('cleanunread', {});
        return;
      case 4: {
        // Pipelined: auth and quests sent together, a second auth among them, quests after bye.
        const { token } = (await sign('gettoken', { uid: other })) as { token: string };
        const c = await RawClient.websocket(cli(n + 1));
        try {
          const all = Promise.allSettled([
            c.quest('auth', { pid: TEST_PID, uid: other, token }),
            c.quest('auth', { pid: TEST_PID, uid: other, token }),
            c.quest('enterroom', { rid }),
            c.quest('getservertime', {}),
          ]);
          await all;
          await c.quest('enterroom', { rid: rid2 });
          await Promise.allSettled([
            c.quest('bye'),
            c.quest('sendroommsg', { rid, mid: mid + 7n, mtype: 30, msg: 'after bye', attrs: '' }),
          ]);
          await c.closed;
        } finally {
          c.close();
        }
        return;
      }
      case 5: {
        // The SDKs: a backend (server SDK) that listens, a client (client SDK) that logs in, sends, leaves.
        const backend = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: srv(n + 1), autoReconnect: false });
        const client = new RTMClient({ endpoint: cli(n), pid: TEST_PID, autoReconnect: false });
        try {
          await backend.connect();
          await backend.setListen({ uids: [other], events: ['login', 'logout'] });
          await client.login(other, await backend.getToken(other));
          await client.enterRoom(rid);
          await client.sendMessage(uid, 30, 'from the client SDK');
          await client.sendRoomMessage(rid, 30, 'room, from the client SDK');
          await backend.sendMessage(30, uid, other, 'from the server SDK');
          if (n % 16 === 5) await client.logout();
        } finally {
          client.close();
          await backend.close();
        }
        return;
      }
      case 6: {
        // A client that never answers its pushes (a device whose network died), then drops.
        const { token } = (await sign('gettoken', { uid: other })) as { token: string };
        const silent = await RawClient.websocket(cli(n));
        try {
          if ((await silent.quest('auth', { pid: TEST_PID, uid: other, token }))['ok'] !== true) throw new Error('login failed');
          silent.ws.removeAllListeners('message'); // reads nothing more, answers nothing
          await b.quest('sendmsg', { to: other, mid: mid + 6n, mtype: 30, msg: 'never answered', attrs: '' });
          await sleep(5);
        } finally {
          silent.close();
        }
        return;
      }
      default:
        // Friends and blacklists, made and undone.
        await sign('addfriends', { uid, friends: [buddy, other] });
        await a.quest('delfriends', { friends: [buddy, other] });
        await b.quest('addblacks', { blacks: [uid] });
        await refused(a.quest('sendmsg', { to: buddy, mid: mid + 7n, mtype: 30, msg: 'blocked', attrs: '' }));
        await b.quest('delblacks', { blacks: [uid] });
        await a.quest('datadel', { key: `k${n % 7}` });
    }
  }

  async done(): Promise<void> {
    this.backend?.close();
    await this.backend?.closed;
    this.backend = undefined;
  }
}

let nextCycle = 0;
async function runTo(total: number): Promise<number> {
  const t0 = performance.now();
  const start = nextCycle;
  const workers = Array.from({ length: CONCURRENCY }, (_, i) => new Worker(i));
  await Promise.all(
    workers.map(async (w) => {
      for (let n = nextCycle++; n < total; n = nextCycle++) {
        try {
          await w.cycle(n);
        } catch (err) {
          note(err);
        }
      }
      await w.done();
    }),
  );
  nextCycle = total;
  return (total - start) / ((performance.now() - t0) / 1000);
}

interface Snapshot {
  nodes: number[];
  edges: number[];
  strings: string[];
  /** Field offsets and sizes, type names. */
  nf: number;
  ef: number;
  types: string[];
  edgeTypes: string[];
  at: Record<'type' | 'name' | 'id' | 'size' | 'edges' | 'edgeType' | 'edgeName' | 'to', number>;
}

async function readSnapshot(path: string): Promise<Snapshot> {
  const raw = JSON.parse(await readFile(path, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } };
    nodes: number[];
    edges: number[];
    strings: string[];
  };
  const { node_fields: nodeFields, edge_fields: edgeFields, node_types: nodeTypes, edge_types: edgeTypes } = raw.snapshot.meta;
  const n = (f: string) => nodeFields.indexOf(f);
  const e = (f: string) => edgeFields.indexOf(f);
  return {
    nodes: raw.nodes,
    edges: raw.edges,
    strings: raw.strings,
    nf: nodeFields.length,
    ef: edgeFields.length,
    types: nodeTypes[0],
    edgeTypes: edgeTypes[0],
    at: {
      type: n('type'),
      name: n('name'),
      id: n('id'),
      size: n('self_size'),
      edges: n('edge_count'),
      edgeType: e('type'),
      edgeName: e('name_or_index'),
      to: e('to_node'),
    },
  };
}

/** "type:constructor" of node `i` (strings, numbers and arrays by type only: their name is their value). */
function label(s: Snapshot, i: number): string {
  const type = s.types[s.nodes[i * s.nf + s.at.type]!]!;
  return `${type}:${/string|number|hidden|code|array/.test(type) ? '' : s.strings[s.nodes[i * s.nf + s.at.name]!]!.slice(0, 48)}`;
}

/** Node counts and self sizes by type:constructor. */
function countsOf(s: Snapshot): Map<string, { count: number; size: number }> {
  const out = new Map<string, { count: number; size: number }>();
  for (let i = 0; i < s.nodes.length / s.nf; i++) {
    const e = out.get(label(s, i)) ?? { count: 0, size: 0 };
    e.count++;
    e.size += s.nodes[i * s.nf + s.at.size]!;
    out.set(label(s, i), e);
  }
  return out;
}

/**
 * What holds the objects of `b` that `a` did not have (snapshot ids are stable within a process):
 * each is walked up its retainers, through other new objects, to the first old one, and the new
 * objects are grouped by that old holder, named by its own retainer path.
 */
function holdersOfNew(a: Snapshot, b: Snapshot, top: number): string[] {
  const old = new Set<number>();
  for (let i = 0; i < a.nodes.length / a.nf; i++) old.add(a.nodes[i * a.nf + a.at.id]!);
  const count = b.nodes.length / b.nf;
  const retainers: [number, string][][] = Array.from({ length: count }, () => []);
  for (let i = 0, e = 0; i < count; i++) {
    for (let k = 0; k < b.nodes[i * b.nf + b.at.edges]!; k++, e += b.ef) {
      const type = b.edgeTypes[b.edges[e + b.at.edgeType]!]!;
      if (type === 'weak' || type === 'shortcut') continue;
      const name = type === 'element' || type === 'hidden' ? '[]' : b.strings[b.edges[e + b.at.edgeName]!]!;
      retainers[b.edges[e + b.at.to]! / b.nf]!.push([i, type === 'property' ? `.${name}` : `${type}:${name}`]);
    }
  }
  const isNew = (i: number) => !old.has(b.nodes[i * b.nf + b.at.id]!);
  const groups = new Map<number, { count: number; size: number }>();
  for (let i = 0; i < count; i++) {
    if (!isNew(i) || b.types[b.nodes[i * b.nf + b.at.type]!] === 'code') continue;
    let holder = -1;
    const seen = new Set([i]);
    for (let cur = i, depth = 0; depth < 30; depth++) {
      const up = retainers[cur]!.find(([r]) => !seen.has(r));
      if (!up) break;
      seen.add(up[0]);
      if (!isNew(up[0])) {
        holder = up[0];
        break;
      }
      cur = up[0];
    }
    const g = groups.get(holder) ?? { count: 0, size: 0 };
    g.count++;
    g.size += b.nodes[i * b.nf + b.at.size]!;
    groups.set(holder, g);
  }
  const path = (i: number): string => {
    if (i < 0) return '(no old holder)';
    const parts = [label(b, i)];
    const seen = new Set([i]);
    for (let cur = i, depth = 0; depth < 4; depth++) {
      const up = retainers[cur]!.find(([r]) => !seen.has(r) && !b.types[b.nodes[r * b.nf + b.at.type]!]!.startsWith('synthetic'));
      if (!up) break;
      seen.add(up[0]);
      parts.push(`${up[1]} <- ${label(b, up[0])}`);
      cur = up[0];
    }
    return parts.join('  ');
  };
  return [...groups]
    .sort((x, y) => y[1].size - x[1].size)
    .slice(0, top)
    .map(([holder, g]) => `${String(g.count).padStart(8)} objects ${String(g.size).padStart(10)} bytes  held by ${path(holder)}`);
}

async function driver(): Promise<void> {
  const child: ChildProcess = fork(process.argv[1]!, ['--role-server', ...argv], {
    execArgv: ['--expose-gc', '--conditions=rtm-source', '--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const next = <T>(key: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const onMessage = (m: Record<string, T>) => {
        if (!(key in m)) return;
        child.off('message', onMessage);
        resolve(m[key]!);
      };
      child.on('message', onMessage);
      void exited.then(() => reject(new Error('the server process exited')));
    });
  const snapDir = !SNAPSHOTS ? undefined : argv.includes('--snapshot-dir') ? SNAPSHOT_DIR : await mkdtemp(join(tmpdir(), 'rtm-soak-'));
  try {
    ({ serverEndpoints, clientEndpoints, adminEndpoints } =
      await next<Record<'serverEndpoints' | 'clientEndpoints' | 'adminEndpoints', string[]>>('ready'));
    console.log(
      `soak: warm-up ${WARMUP} cycles, then to ${FIRST}, then to ${CYCLES}; ${CONCURRENCY} workers; grace ${GRACE_MS} ms; ` +
        (CLUSTER ? 'two nodes (PostgreSQL, NATS)' : 'one node (SQLite)') +
        (SINGLE_SESSION ? '; single session' : '') +
        (WRITER_THREAD ? '; SQLite writer thread' : ''),
    );
    const phases: (Measure & { cycles: number })[] = [];
    for (const target of [WARMUP, FIRST, CYCLES]) {
      const rate = await runTo(target);
      child.send({ cmd: 'measure', snapshot: snapDir && target !== WARMUP ? join(snapDir, `after-${target}.heapsnapshot`) : undefined });
      const m = await next<Measure>('measure');
      const prev = phases.at(-1);
      phases.push({ ...m, cycles: target });
      const perCycle = prev ? (m.used - prev.used) / (target - prev.cycles) : undefined;
      console.log(
        `\nafter ${target} cycles (${rate.toFixed(0)} cycles/s; quiet ${m.quietMs} ms after the last): heap used ${mb(m.used)}, external ${mb(m.external)}` +
          (perCycle === undefined ? '' : `; ${perCycle >= 0 ? '+' : ''}${perCycle.toFixed(1)} bytes/cycle since ${prev!.cycles}`),
      );
      const before = prev?.census ?? {};
      console.log(
        Object.entries(m.census)
          .map(([k, v]) => `  ${k.padEnd(44)} ${String(v).padStart(7)}${prev && before[k] !== v ? `   (was ${before[k] ?? '-'})` : ''}`)
          .join('\n'),
      );
    }
    if (TIMINGS) for (const [k, t] of timings) console.log(`  ${k.padEnd(36)} ${t.n} × ${(t.ms / t.n).toFixed(1)} ms`);
    console.log(errors.size > 0 ? `\nerrors (count by code or message): ${JSON.stringify(Object.fromEntries(errors))}` : '\nno errors');
    const snaps = phases.map((p) => p.snapshot).filter((p): p is string => p !== undefined);
    if (snaps.length === 2) {
      const [a, b] = [await readSnapshot(snaps[0]!), await readSnapshot(snaps[1]!)];
      const [before, after] = [countsOf(a), countsOf(b)];
      const rows = [...after]
        .map(([k, v]) => ({ k, count: v.count - (before.get(k)?.count ?? 0), size: v.size - (before.get(k)?.size ?? 0) }))
        .filter((r) => r.size !== 0 || r.count !== 0)
        .sort((x, y) => y.size - x.size)
        .slice(0, 20);
      console.log(`\nheap snapshot growth from ${FIRST} to ${CYCLES} cycles, by type:constructor (top 20 by bytes):`);
      for (const r of rows) console.log(`  ${r.k.padEnd(64)} ${String(r.count).padStart(8)} objects ${String(r.size).padStart(10)} bytes`);
      console.log(`\nobjects new since ${FIRST} cycles, by the older object that holds them (top 12):`);
      for (const line of holdersOfNew(a, b, 12)) console.log(`  ${line}`);
    }
  } finally {
    child.send({ cmd: 'stop' });
    await Promise.race([exited, sleep(30_000)]);
    if (child.exitCode === null) child.kill('SIGKILL');
    if (snapDir && !argv.includes('--snapshot-dir')) await rm(snapDir, { recursive: true, force: true });
  }
}

if (argv.includes('--role-server')) await serverProcess();
else await driver();
