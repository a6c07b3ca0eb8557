/**
 * A real cluster for tests and benches: N `rtm serve` child processes on ephemeral ports sharing
 * one PostgreSQL database (created for the run, dropped afterwards) and one NATS subject prefix
 * (random per run, carried in RTM_BUS as `nats://…?prefix=…`).
 *
 * Services: RTM_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test; the database
 * in it is only used to create and drop the run's own database) and RTM_TEST_NATS_URL (default
 * nats://127.0.0.1:4222).
 */
import { randomBytes } from 'node:crypto';
import { connect as natsConnect } from 'nats';
import pg from 'pg';
import { spawnServer, type SpawnedServer } from '@rtm/testkit';

export const POSTGRES_URL = process.env['RTM_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
export const NATS_URL = process.env['RTM_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222';

/** undefined when PostgreSQL and NATS both answer; otherwise why not. */
export async function clusterServicesUnavailable(): Promise<string | undefined> {
  const problems: string[] = [];
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (err) {
    problems.push(`PostgreSQL unreachable at ${POSTGRES_URL} (${(err as Error).message}); set RTM_TEST_POSTGRES_URL`);
  } finally {
    await client.end().catch(() => {});
  }
  try {
    const nc = await natsConnect({ servers: NATS_URL, timeout: 2000, reconnect: false });
    await nc.close();
  } catch (err) {
    problems.push(`NATS unreachable at ${NATS_URL} (${(err as Error).message}); set RTM_TEST_NATS_URL`);
  }
  return problems.length ? problems.join('; ') : undefined;
}

/** Runs `fn` on a connection of its own to POSTGRES_URL (creating and dropping test databases and schemas). */
export async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  client.on('error', () => {});
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Children still running, killed if the test process exits without cleaning up. */
const live = new Set<SpawnedServer>();
let exitHook = false;
function track(node: SpawnedServer): void {
  live.add(node);
  void node.exited.then(() => live.delete(node));
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const n of live) n.child.kill('SIGKILL');
    });
  }
}

export interface ClusterOptions {
  /** Number of nodes. @default 3 */
  nodes?: number;
  pid?: number;
  secret?: string;
  /** Extra RTM_* settings for every node. */
  env?: Record<string, string>;
}

export interface Cluster {
  readonly pid: number;
  readonly secret: string;
  /** The run's database URL and bus URL (with its subject prefix). */
  readonly storeUrl: string;
  readonly busUrl: string;
  /** Running nodes by index; undefined after `kill`. */
  readonly nodes: (SpawnedServer | undefined)[];
  node(i: number): SpawnedServer;
  serverEndpoint(i: number): string;
  clientEndpoint(i: number): string;
  /** Starts (or restarts) node i with the cluster's environment. */
  start(i: number): Promise<SpawnedServer>;
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Kills every node (SIGKILL after 5 s of SIGTERM) and drops the database. */
  close(): Promise<void>;
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const run = randomBytes(6).toString('hex');
  const database = `rtm_cluster_${run}`;
  const pid = options.pid ?? 11000001;
  const secret = options.secret ?? 'cluster-secret';
  await admin((c) => c.query(`CREATE DATABASE ${database}`));
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${database}`;
  const storeUrl = url.toString();
  const busUrl = `${NATS_URL}?prefix=rtmcluster_${run}`;
  const env = {
    RTM_STORE: storeUrl,
    RTM_BUS: busUrl,
    RTM_PROJECT_ID: String(pid),
    RTM_PROJECT_SECRET: secret,
    RTM_LOGOUT_GRACE_MS: '0',
    ...options.env,
  };
  const nodes: (SpawnedServer | undefined)[] = [];
  const kill = async (i: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const node = nodes[i];
    nodes[i] = undefined;
    if (!node) return;
    const hard = setTimeout(() => node.child.kill('SIGKILL'), 5000);
    await node.kill(signal);
    clearTimeout(hard);
  };
  const cluster: Cluster = {
    pid,
    secret,
    storeUrl,
    busUrl,
    nodes,
    node(i) {
      const n = nodes[i];
      if (!n) throw new Error(`node ${i} is not running`);
      return n;
    },
    serverEndpoint: (i) => `127.0.0.1:${cluster.node(i).serverPort}`,
    clientEndpoint: (i) => `127.0.0.1:${cluster.node(i).clientPort}`,
    async start(i) {
      await kill(i);
      const node = await spawnServer(env, 30_000);
      track(node);
      nodes[i] = node;
      return node;
    },
    kill,
    async close() {
      await Promise.all(nodes.map((_, i) => kill(i)));
      await admin((c) => c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)).catch(() => {});
    },
  };
  try {
    // All at once against the empty database: the migration lock must sort it out.
    await Promise.all(Array.from({ length: options.nodes ?? 3 }, (_, i) => cluster.start(i)));
  } catch (err) {
    await cluster.close();
    throw err;
  }
  return cluster;
}
