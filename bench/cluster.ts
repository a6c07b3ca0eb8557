/**
 * What a second node costs: cross-node p2p latency and room fan-out on a 2-node cluster
 * (PostgreSQL + NATS, child processes), against one single-node server (SQLite, local bus) in the
 * same run.
 *
 *   node --conditions=rtm-source --import tsx bench/cluster.ts [--p2p 1000] [--receivers 200] [--room 200] [--burst 200]
 *
 * p2p: a client sends `sendmsg` through its client gate, one at a time; the figure is the time
 *   from the send to the peer's `pushmsg` (includes the store commit). Three placements: single
 *   node; cluster, both clients on node A (the store differs, no bus hop); cluster, sender on node
 *   A and receiver on node B (store + NATS hop).
 * room: `receivers` TCP clients in one room (cluster: half on each node), a client on node A sends
 *   `sendroommsg`; latency = until the LAST receiver has the push. Then `burst` messages pipelined:
 *   delivered pushes per second.
 *
 * Needs RTM_TEST_POSTGRES_URL / RTM_TEST_NATS_URL (defaults: local services); skips with a message
 * when either is unreachable. The client load generator runs in this process: it, not the
 * servers, may be the limit of the fan-out figures on a small machine.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { RawClient, signFields, spawnServer, type SpawnedServer } from '@rtm/testkit';
import { clusterServicesUnavailable, startCluster } from '../test/cluster/cluster.js';

export interface LatencyFigures {
  samples: number;
  p50Ms: number;
  p99Ms: number;
}

export interface ClusterBenchFigures {
  p2p: { singleNode: LatencyFigures; clusterSameNode: LatencyFigures; clusterCrossNode: LatencyFigures };
  room: {
    receivers: number;
    singleNode: LatencyFigures & { pushesPerSecond: number };
    cluster: LatencyFigures & { pushesPerSecond: number };
  };
  /** cluster ÷ single node. */
  ratios: {
    p2pCrossNodeP50: number;
    p2pCrossNodeP99: number;
    p2pSameNodeP50: number;
    roomP50: number;
    roomP99: number;
    roomThroughput: number;
  };
}

export interface ClusterBenchOptions {
  /** p2p round trips measured per placement. @default 1000 */
  p2pSamples?: number;
  /** Clients in the room. @default 200 */
  receivers?: number;
  /** Room messages measured one at a time. @default 200 */
  roomSamples?: number;
  /** Room messages pipelined for the throughput figure. @default 200 */
  burst?: number;
}

const PID = 11000001;
const SECRET = 'cluster-bench-secret';
const BIG = 2n ** 53n;
/** No client rate limit: the bench sends faster than a person. */
const ENV = { RTM_CLIENT_CALLS_PER_SECOND: '0', RTM_LOG_LEVEL: 'info', RTM_LOGOUT_GRACE_MS: '0' };

interface Node {
  server: string;
  client: string;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function figures(samples: number[]): LatencyFigures {
  const s = [...samples].sort((a, b) => a - b);
  return { samples: s.length, p50Ms: round(percentile(s, 50)), p99Ms: round(percentile(s, 99)) };
}

const round = (x: number, digits = 3): number => Number(x.toFixed(digits));

/** Calls `fn` for every push the client gets (RawClient records pushes in an array). */
function onPush(client: RawClient, fn: (method: string, payload: Record<string, unknown>) => void): void {
  client.pushes.push = (...items) => {
    for (const p of items) fn(p.method, p.payload);
    return 0;
  };
}

let midSeq = BIG * 8n;

class Users {
  private readonly backends = new Map<string, RawClient>();
  readonly all: RawClient[] = [];

  private async backend(node: Node): Promise<RawClient> {
    let b = this.backends.get(node.server);
    if (!b) {
      b = await RawClient.tcp(node.server);
      this.backends.set(node.server, b);
      this.all.push(b);
    }
    return b;
  }

  async login(node: Node, uid: bigint, transport: 'ws' | 'tcp'): Promise<RawClient> {
    const b = await this.backend(node);
    const { token } = await b.quest('gettoken', { ...signFields('gettoken', PID, SECRET, ++midSeq), uid });
    const c = transport === 'ws' ? await RawClient.websocket(node.client) : await RawClient.tcp(node.client);
    this.all.push(c);
    const answer = await c.quest('auth', { pid: PID, uid, token });
    if (answer['ok'] !== true) throw new Error(`login of ${uid} failed`);
    return c;
  }

  close(): void {
    for (const c of this.all) c.close();
  }
}

/** Sequential p2p sends from `from` (on node a) to `to` (on node b). */
async function p2pLatency(a: Node, b: Node, samples: number, uidBase: bigint): Promise<LatencyFigures> {
  const users = new Users();
  try {
    const sender = await users.login(a, uidBase + 1n, 'ws');
    const receiver = await users.login(b, uidBase + 2n, 'ws');
    let waiting: { mid: bigint; resolve: () => void } | undefined;
    onPush(receiver, (method, payload) => {
      if (method === 'pushmsg' && waiting && payload['mid'] === waiting.mid) waiting.resolve();
    });
    const out: number[] = [];
    const warmup = Math.min(100, samples);
    for (let i = 0; i < samples + warmup; i++) {
      const mid = ++midSeq;
      const arrived = new Promise<void>((resolve) => (waiting = { mid, resolve }));
      const t0 = performance.now();
      await sender.quest('sendmsg', { to: uidBase + 2n, mid, mtype: 51, msg: 'ping', attrs: '' });
      await arrived;
      if (i >= warmup) out.push(performance.now() - t0);
    }
    return figures(out);
  } finally {
    users.close();
  }
}

/** A room with `receivers` clients spread over `nodes`; the sender is on nodes[0]. */
async function roomFanout(
  nodes: Node[],
  receivers: number,
  samples: number,
  burst: number,
  uidBase: bigint,
): Promise<LatencyFigures & { pushesPerSecond: number }> {
  const users = new Users();
  const rid = uidBase + 999_999n;
  try {
    const sender = await users.login(nodes[0]!, uidBase, 'ws');
    await sender.quest('enterroom', { rid });
    const got = new Map<bigint, number>();
    let waiting: { mid: bigint; resolve: () => void } | undefined;
    let burstLeft = 0;
    let burstDone: (() => void) | undefined;
    const clients = await Promise.all(
      Array.from({ length: receivers }, (_, i) => users.login(nodes[i % nodes.length]!, uidBase + 1n + BigInt(i), 'tcp')),
    );
    for (const c of clients) {
      onPush(c, (method, payload) => {
        if (method !== 'pushroommsg') return;
        const mid = payload['mid'] as bigint;
        const n = (got.get(mid) ?? 0) + 1;
        got.set(mid, n);
        if (n === receivers) {
          got.delete(mid);
          if (waiting?.mid === mid) waiting.resolve();
          if (burstLeft > 0 && --burstLeft === 0) burstDone?.();
        }
      });
      await c.quest('enterroom', { rid });
    }
    const send = (mid: bigint) => sender.quest('sendroommsg', { rid, mid, mtype: 51, msg: 'fan-out', attrs: '' });

    const out: number[] = [];
    const warmup = Math.min(20, samples);
    for (let i = 0; i < samples + warmup; i++) {
      const mid = ++midSeq;
      const arrived = new Promise<void>((resolve) => (waiting = { mid, resolve }));
      const t0 = performance.now();
      await send(mid);
      await arrived;
      if (i >= warmup) out.push(performance.now() - t0);
    }
    waiting = undefined;

    burstLeft = burst;
    const done = new Promise<void>((resolve) => (burstDone = resolve));
    const t0 = performance.now();
    await Promise.all(Array.from({ length: burst }, () => send(++midSeq)));
    await done;
    const seconds = (performance.now() - t0) / 1000;
    return { ...figures(out), pushesPerSecond: Math.round((burst * receivers) / seconds) };
  } finally {
    users.close();
  }
}

/** Runs the bench; undefined (with a message on stderr) when PostgreSQL or NATS is absent. */
export async function runClusterBench(options: ClusterBenchOptions = {}): Promise<ClusterBenchFigures | undefined> {
  const p2pSamples = options.p2pSamples ?? 1000;
  const receivers = options.receivers ?? 200;
  const roomSamples = options.roomSamples ?? 200;
  const burst = options.burst ?? 200;
  const unavailable = await clusterServicesUnavailable();
  if (unavailable) {
    console.error(`bench/cluster skipped: ${unavailable}`);
    return undefined;
  }

  const dataDir = await mkdtemp(join(tmpdir(), 'rtm-bench-cluster-'));
  let single: SpawnedServer | undefined;
  const cluster = await startCluster({ nodes: 2, pid: PID, secret: SECRET, env: ENV });
  try {
    single = await spawnServer({ ...ENV, RTM_DATA_DIR: dataDir, RTM_PROJECT_ID: String(PID), RTM_PROJECT_SECRET: SECRET }, 30_000);
    const one: Node = { server: `127.0.0.1:${single.serverPort}`, client: `127.0.0.1:${single.clientPort}` };
    const a: Node = { server: cluster.serverEndpoint(0), client: cluster.clientEndpoint(0) };
    const b: Node = { server: cluster.serverEndpoint(1), client: cluster.clientEndpoint(1) };

    const singleP2p = await p2pLatency(one, one, p2pSamples, 1000n);
    const sameNode = await p2pLatency(a, a, p2pSamples, 2000n);
    const crossNode = await p2pLatency(a, b, p2pSamples, 3000n);
    const singleRoom = await roomFanout([one], receivers, roomSamples, burst, 10_000n);
    const clusterRoom = await roomFanout([a, b], receivers, roomSamples, burst, 20_000n);
    return {
      p2p: { singleNode: singleP2p, clusterSameNode: sameNode, clusterCrossNode: crossNode },
      room: { receivers, singleNode: singleRoom, cluster: clusterRoom },
      ratios: {
        p2pCrossNodeP50: round(crossNode.p50Ms / singleP2p.p50Ms, 2),
        p2pCrossNodeP99: round(crossNode.p99Ms / singleP2p.p99Ms, 2),
        p2pSameNodeP50: round(sameNode.p50Ms / singleP2p.p50Ms, 2),
        roomP50: round(clusterRoom.p50Ms / singleRoom.p50Ms, 2),
        roomP99: round(clusterRoom.p99Ms / singleRoom.p99Ms, 2),
        roomThroughput: round(clusterRoom.pushesPerSecond / singleRoom.pushesPerSecond, 2),
      },
    };
  } finally {
    await single?.kill();
    await cluster.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      p2p: { type: 'string', default: '1000' },
      receivers: { type: 'string', default: '200' },
      room: { type: 'string', default: '200' },
      burst: { type: 'string', default: '200' },
    },
  });
  const f = await runClusterBench({
    p2pSamples: Number(values.p2p),
    receivers: Number(values.receivers),
    roomSamples: Number(values.room),
    burst: Number(values.burst),
  });
  if (f) {
    const line = (name: string, l: LatencyFigures, extra = ''): void =>
      console.log(`${name.padEnd(34)} p50 ${l.p50Ms.toFixed(2).padStart(7)} ms   p99 ${l.p99Ms.toFixed(2).padStart(7)} ms${extra}`);
    console.log(`p2p send → push (${f.p2p.singleNode.samples} sequential sends)`);
    line('  single node (SQLite, local bus)', f.p2p.singleNode);
    line('  cluster, same node (PG, NATS)', f.p2p.clusterSameNode);
    line('  cluster, node A → node B', f.p2p.clusterCrossNode);
    console.log(`room fan-out to ${f.room.receivers} receivers (send → last push; then a pipelined burst)`);
    line('  single node', f.room.singleNode, `   ${f.room.singleNode.pushesPerSecond.toLocaleString('en')} pushes/s`);
    line('  cluster, receivers on A and B', f.room.cluster, `   ${f.room.cluster.pushesPerSecond.toLocaleString('en')} pushes/s`);
    const r = f.ratios;
    console.log(
      `ratios cluster/single: p2p cross-node p50 ×${r.p2pCrossNodeP50} p99 ×${r.p2pCrossNodeP99}; p2p same-node p50 ×${r.p2pSameNodeP50}; room p50 ×${r.roomP50} p99 ×${r.roomP99}; room throughput ×${r.roomThroughput}`,
    );
  }
}
