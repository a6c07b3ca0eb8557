import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { type FaultyProxy, RawClient, startTestServer, TEST_PID, TEST_SECRET, until, type TestServer } from '@rtm/testkit';
import { NatsBus } from '../../packages/server/src/bus/nats.js';
import { createLogger } from '../../packages/server/src/observability/logger.js';
import { PostgresStore } from '../../packages/server/src/store/postgres.js';
import { admin, NATS_URL, POSTGRES_URL } from './cluster.js';

let idSeq = 2n ** 53n + BigInt(Date.now() % 1_000_000) * 1000n;
/** Ids above 2^53, unique within the test process. */
export const nextId = (): bigint => ++idSeq;

export interface InProcessNode<S extends PostgresStore = PostgresStore> {
  server: TestServer;
  store: S;
  bus: NatsBus;
  /** A server-gate connection to this node. */
  backend: RawClient;
}

export interface InProcessOptions<S extends PostgresStore> {
  /** Server settings of every node (logoutGraceMs defaults to 0). */
  settings?: Parameters<typeof startTestServer>[0];
  /** Node i's NATS URL (a faulty proxy in front of NATS for one node). @default NATS_URL */
  natsUrl?: (i: number) => string;
  /** Node i's PostgreSQL URL. @default POSTGRES_URL */
  pgUrl?: (i: number) => string;
  /** Node i's store on `url` and `schema`. @default a PostgresStore */
  makeStore?: (url: string, schema: string) => S;
  /** Node i's bus (benchmarks: one without the order across nodes). @default the NatsBus made here */
  adaptBus?: (i: number, bus: NatsBus) => NatsBus;
  /** Node i's NATS subject prefix (a node misconfigured onto a bus of its own). @default the fresh prefix all share */
  subjectPrefix?: (i: number, shared: string) => string;
  /** Where node i's log lines go (JSON, one per line). @default nowhere */
  logLines?: (i: number) => string[];
}

/**
 * `n` nodes in this process on one fresh PostgreSQL schema and one fresh NATS subject prefix, with
 * helpers to call their server gates and log users in on their client gates; `close` stops them
 * and drops the schema.
 */
export async function startInProcessNodes<S extends PostgresStore = PostgresStore>(n: number, options: InProcessOptions<S> = {}) {
  const schema = `rtm_nodes_${randomBytes(6).toString('hex')}`;
  const subjectPrefix = `rtmnodes_${randomBytes(6).toString('hex')}`;
  const makeStore = options.makeStore ?? ((url, schema) => new PostgresStore({ url, schema, poolSize: 4 }) as S);
  const nodes: InProcessNode<S>[] = [];
  const clients: RawClient[] = [];
  for (let i = 0; i < n; i++) {
    const prefix = options.subjectPrefix?.(i, subjectPrefix) ?? subjectPrefix;
    const made = new NatsBus({ url: options.natsUrl?.(i) ?? NATS_URL, subjectPrefix: prefix, discoveryMs: 50 });
    const bus = options.adaptBus?.(i, made) ?? made;
    const store = makeStore(options.pgUrl?.(i) ?? POSTGRES_URL, schema);
    const lines = options.logLines?.(i);
    const logger = lines && createLogger('info', { write: (l: string) => lines.push(l) } as unknown as NodeJS.WritableStream);
    const server = await startTestServer({ logoutGraceMs: 0, ...options.settings }, { store, bus, logger });
    const backend = await RawClient.tcp(server.serverEndpoint);
    clients.push(backend);
    nodes.push({ server, store, bus, backend });
  }
  const call = (i: number, method: string, payload: Record<string, unknown>) =>
    nodes[i]!.backend.signed(method, payload, TEST_PID, TEST_SECRET);
  const token = async (i: number, uid: bigint): Promise<unknown> => (await call(i, 'gettoken', { uid }))['token'];
  /** A connection to node i's client gate, and its `auth` of `uid` (sent now, answered or refused later). */
  const auth = async (i: number, uid: bigint, token: unknown) => {
    const client = await RawClient.websocket(nodes[i]!.server.clientEndpoint);
    clients.push(client);
    const answer = client.quest('auth', { pid: TEST_PID, uid, token }).catch((err: { code?: number }) => ({ error: err.code ?? err }));
    return { client, answer };
  };
  const login = async (i: number, uid: bigint): Promise<RawClient> => {
    const { client, answer } = await auth(i, uid, await token(i, uid));
    assert.deepEqual(await answer, { ok: true });
    return client;
  };
  /** Waits until node `to` handled what node `from` published so far (a p2p marker through the bus). */
  const settle = async (from: number, to: number): Promise<void> => {
    const probe = nextId();
    const c = await login(to, probe);
    const mid = nextId();
    await call(from, 'sendmsg', { from: probe + 1n, to: probe, mid, mtype: 51, msg: 'marker', attrs: '' });
    assert.ok(await until(() => c.pushes.some((p) => p.payload['mid'] === mid), 10_000), `marker from node ${from} to node ${to}`);
    c.close();
  };
  const close = async (): Promise<void> => {
    for (const c of clients) c.close();
    await Promise.all(nodes.map((nd) => nd.server.close().catch(() => {})));
    await admin((c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
  };
  return { nodes, call, token, auth, login, settle, close, clients };
}

/**
 * `startInProcessNodes`, with node 0's backend listening to login and logout events: `events(uid)`
 * says what it heard of `uid`, in order ('login', 'logout').
 */
export async function startListeningNodes<S extends PostgresStore = PostgresStore>(n: number, options: InProcessOptions<S> = {}) {
  const c = await startInProcessNodes(n, options);
  const listener = c.nodes[0]!.backend;
  await listener.signed('setlisten', { events: ['login', 'logout'] }, TEST_PID, TEST_SECRET);
  const events = (uid: bigint): string[] =>
    listener.pushes.filter((p) => p.method === 'pushevent' && p.payload['uid'] === uid).map((p) => p.payload['event'] as string);
  return { ...c, events };
}

/** The pushes of `method` for message `mid` that `c` received. */
export const pushesOf = (c: RawClient, method: string, mid: bigint) =>
  c.pushes.filter((p) => p.method === method && p.payload['mid'] === mid);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A node's NATS connection, through `proxy` (@rtm/testkit `startFaultyProxy`), drops and stays
 * down while `during` runs; then it comes back.
 */
export async function natsOutage(proxy: FaultyProxy, bus: NatsBus, during: () => Promise<void>): Promise<void> {
  proxy.refuse = true;
  proxy.cut();
  assert.ok(await until(() => !bus.connected, 5000), 'node lost NATS');
  try {
    await during();
    await sleep(200);
  } finally {
    proxy.refuse = false;
  }
  assert.ok(await until(() => bus.connected, 10_000), 'node got NATS back');
}
