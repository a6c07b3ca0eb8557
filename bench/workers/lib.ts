/**
 * Helpers shared by the fan-out, latency and memory benches (the controlling process side): server
 * processes under test (ours through `spawnServer`, the baselines forked), their CPU and memory read
 * from /proc, load-generator worker processes with a small IPC protocol, and clean-up on any exit.
 */
import { execFileSync, fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnServer, TEST_PID, TEST_SECRET, TLS_FIXTURES, type SpawnedServer } from '@rtm/testkit';

export const PROBE = fileURLToPath(new URL('./probe.mjs', import.meta.url));
const TSX_ARGV = ['--conditions=rtm-source', '--import', 'tsx'];

/**
 * V8 flags of the load generators: this controlling process and its worker processes (never a
 * server under test, which runs as its users would run it).
 *
 * Why: V8's memory reducer runs full garbage collections in a process whose allocation rate has
 * dropped, 8 s after its last one, and marks on helper threads. In the controlling process (idle
 * while the workers run) and its TypeScript loader thread, each such collection took both cores for
 * about 10 ms: a scheduler trace of the latency bench showed it behind 5 of its 9 biggest slow
 * episodes (≈ 30 messages each), for whichever server was under test. Load generators stand in for
 * clients on other machines; they should not take the cores from the server in bursts.
 * `NODE_OPTIONS` does not take the flag, and it must be set before an isolate starts: hence
 * `relaunchWithLoadGeneratorFlags`.
 */
export const LOAD_GENERATOR_V8_FLAGS: readonly string[] = ['--no-memory-reducer'];

/**
 * Worker processes also collect garbage on their own thread only. They scavenge a few times a
 * second; a parallel scavenge waits for helper threads that compete with the server for the two
 * cores. On the latency bench their pauses went from p50 0.9–1.0 / p90 2.4 / max 8.5 ms to
 * 0.75–0.83 / 1.2–1.4 / 5–6 ms, and their total GC time by a third.
 */
const WORKER_V8_FLAGS: readonly string[] = [...LOAD_GENERATOR_V8_FLAGS, '--single-threaded-gc'];

/**
 * Runs this bench again in a child process with `LOAD_GENERATOR_V8_FLAGS` unless it already has
 * them, and exits with its status; returns when this process is the one to go on.
 */
export function relaunchWithLoadGeneratorFlags(): void {
  if (LOAD_GENERATOR_V8_FLAGS.every((flag) => process.execArgv.includes(flag))) return;
  const r = spawnSync(process.execPath, [...process.execArgv, ...LOAD_GENERATOR_V8_FLAGS, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

let clkTck = 100;
try {
  clkTck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
} catch {
  /* Linux default */
}

/** CPU time (user + system) of a process in µs, from /proc/<pid>/stat (utime, stime: fields 14, 15). */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14 → index 11, stime 15 → index 12.
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / clkTck;
}

/**
 * Read- and write-type system calls a process (all its threads) has made, from /proc/<pid>/io
 * (syscr + syscw: read, pread, recv…; write, pwrite, send…). Other calls (epoll, fcntl) are not
 * counted. Where a system call is dear, as on a VM, this explains much of a server's CPU.
 */
export function ioCalls(pid: number): number {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? NaN);
  return field('syscr') + field('syscw');
}

/** Resident set size of a process in bytes, from /proc/<pid>/status. */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

export interface ProbeFigures {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  user: number;
  system: number;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------------
// Processes to clean up on every exit path.

const children = new Set<ChildProcess>();
let hooked = false;
function track(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
  if (hooked) return;
  hooked = true;
  const killAll = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  };
  process.once('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      killAll();
      process.exit(130);
    });
  }
  process.once('uncaughtException', (err) => {
    killAll();
    console.error(err);
    process.exit(1);
  });
}

// ------------------------------------------------------------------------------------------------
// Servers under test.

/** `rtm-tls`: ours with its clients on wss:// (the client gate's TLS port, the test certificate). */
export type ServerKind = 'rtm' | 'rtm-tls' | 'socketio' | 'ws';
export const SERVER_LABEL: Record<ServerKind, string> = {
  rtm: 'our RTM server',
  'rtm-tls': 'ours over wss://',
  socketio: 'Socket.IO',
  ws: 'bare ws (ceiling)',
};

export interface ServerUnderTest {
  /** `fpnn`: the latency bench's protocol floor (bench/baselines/fpnn-relay.ts). */
  kind: ServerKind | 'fpnn';
  pid: number;
  /** Client-facing port (RTM: the client gate). */
  clientPort: number;
  /** RTM only: the server gate. */
  serverPort?: number;
  /** RTM only: the client gate's TLS port, when started with RTM_TLS_CERT / RTM_TLS_KEY. */
  clientTlsPort?: number;
  /** RTM only: the admin HTTP port (/metrics), when asked for with RTM_ADMIN_PORT. */
  adminPort?: number;
  /** Memory figures from inside the process (after a forced GC). */
  probe(): Promise<ProbeFigures>;
  /** Baselines only: asks the server something over IPC. */
  ask?(msg: Record<string, unknown>): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

function probeOn(child: ChildProcess): () => Promise<ProbeFigures> {
  let buffered = '';
  const waiters: ((f: ProbeFigures) => void)[] = [];
  child.stderr!.on('data', (d: Buffer) => {
    buffered += d.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.startsWith('@@probe ')) {
        const figures = JSON.parse(line.slice(8)) as ProbeFigures;
        for (const w of waiters.splice(0)) w(figures);
      } else if (line.trim() && !line.includes('ExperimentalWarning') && !line.includes('--trace-warnings'))
        process.stderr.write(`[server ${child.pid}] ${line}\n`);
    }
  });
  return () =>
    new Promise<ProbeFigures>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('server did not answer the memory probe')), 10_000);
      waiters.push((f) => {
        clearTimeout(timer);
        resolve(f);
      });
      child.kill('SIGUSR2');
    });
}

export interface RtmServerOptions {
  env?: Record<string, string>;
  /** Extra NODE_OPTIONS for the server child (e.g. --cpu-prof). */
  nodeOptions?: string;
}

/** Our server, as `npm start` runs it, in a child process with a fresh data directory. */
export async function startRtmServer(options: RtmServerOptions = {}): Promise<ServerUnderTest> {
  const dataDir = await mkdtemp(join(tmpdir(), 'rtm-bench-'));
  const nodeOptions = [`--import=${PROBE}`, '--expose-gc', options.nodeOptions ?? '', process.env.RTM_BENCH_SERVER_NODE_OPTIONS ?? '']
    .join(' ')
    .trim();
  let server: SpawnedServer;
  try {
    server = await spawnServer(
      {
        RTM_DATA_DIR: dataDir,
        RTM_PROJECT_ID: String(TEST_PID),
        RTM_PROJECT_SECRET: TEST_SECRET,
        RTM_CLIENT_CALLS_PER_SECOND: '0',
        RTM_LOG_LEVEL: 'info',
        NODE_OPTIONS: nodeOptions,
        ...options.env,
      },
      20_000,
      // Node flags that NODE_OPTIONS refuses (e.g. --min-semi-space-size), for the server's command line.
      extraNodeArgs('RTM_BENCH_SERVER_NODE_ARGS'),
    );
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  track(server.child);
  const probe = probeOn(server.child);
  // With RTM_BENCH_SERVER_STDOUT=<file>: everything the server prints to stdout (its JSON log and,
  // with RTM_BENCH_V8_FLAGS=--trace-gc-nvp, V8's GC trace) is appended to that file.
  if (process.env.RTM_BENCH_SERVER_STDOUT)
    server.child.stdout!.pipe(createWriteStream(process.env.RTM_BENCH_SERVER_STDOUT, { flags: 'a' }));
  return {
    kind: 'rtm',
    pid: server.child.pid!,
    clientPort: server.clientPort,
    serverPort: server.serverPort,
    clientTlsPort: server.clientTlsPort,
    adminPort: server.adminPort,
    probe,
    async stop() {
      await server.kill('SIGTERM');
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

const BASELINE_SCRIPTS = { socketio: 'socketio-server.ts', ws: 'ws-server.ts', fpnn: 'fpnn-relay.ts' } as const;

/** A baseline server (bench/baselines/, `BASELINE_SCRIPTS`) forked with an IPC channel. */
export async function startBaseline(
  kind: keyof typeof BASELINE_SCRIPTS,
  nodeOptions = '',
  env: Record<string, string> = {},
): Promise<ServerUnderTest> {
  const script = fileURLToPath(new URL(`../baselines/${BASELINE_SCRIPTS[kind]}`, import.meta.url));
  const child = fork(script, [], {
    execArgv: [...TSX_ARGV, `--import=${PROBE}`, '--expose-gc', ...nodeOptions.split(' ').filter(Boolean)],
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    env: { ...process.env, ...env },
  });
  track(child);
  const probe = probeOn(child);
  let nextId = 1;
  const pending = new Map<number, (m: Record<string, unknown>) => void>();
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${kind} baseline exited early (${code})`)));
    child.on('message', (m: Record<string, unknown>) => {
      if (m.type === 'listening') resolve(m.port as number);
      else if (typeof m.id === 'number') pending.get(m.id)?.(m);
    });
  });
  return {
    kind,
    pid: child.pid!,
    clientPort: port,
    probe,
    ask(msg) {
      const id = nextId++;
      return new Promise((resolve) => {
        pending.set(id, (m) => {
          pending.delete(id);
          resolve(m);
        });
        child.send({ ...msg, id });
      });
    },
    stop: () => stopChild(child),
  };
}

export async function startServerUnderTest(kind: ServerKind, rtm: RtmServerOptions = {}): Promise<ServerUnderTest> {
  if (kind === 'rtm') return startRtmServer(rtm);
  if (kind === 'rtm-tls') {
    const tls = { RTM_TLS_CERT: TLS_FIXTURES.a.certFile, RTM_TLS_KEY: TLS_FIXTURES.a.keyFile };
    return { ...(await startRtmServer({ ...rtm, env: { ...rtm.env, ...tls } })), kind };
  }
  return startBaseline(kind, rtm.nodeOptions, rtm.env);
}

/** What a clients worker's `connect` needs to reach `server`'s client side (wss:// for `rtm-tls`). */
export function clientTarget(server: ServerUnderTest): {
  kind: 'rtm' | 'fpnn' | 'socketio' | 'ws';
  clientEndpoint: string;
  tlsCa?: string;
} {
  if (server.kind === 'rtm-tls')
    return { kind: 'rtm', clientEndpoint: `localhost:${server.clientTlsPort}`, tlsCa: TLS_FIXTURES.a.cert.toString() };
  return { kind: server.kind, clientEndpoint: `127.0.0.1:${server.clientPort}` };
}

// ------------------------------------------------------------------------------------------------
// Load-generator workers: child processes with an IPC channel; every message carries `type`.

export interface Worker {
  child: ChildProcess;
  /** Sends a command and resolves with the worker's answer of type `${type}:done`. */
  call<T = Record<string, unknown>>(type: string, data?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  on(type: string, listener: (m: Record<string, unknown>) => void): void;
  stop(): Promise<void>;
}

/**
 * Extra Node flags from an environment variable, space-separated: RTM_BENCH_SERVER_NODE_ARGS for
 * our server's command line (flags NODE_OPTIONS refuses, e.g. --min-semi-space-size),
 * RTM_BENCH_WORKER_NODE_ARGS for the load generators (e.g. --trace-gc, --cpu-prof).
 */
function extraNodeArgs(name: 'RTM_BENCH_SERVER_NODE_ARGS' | 'RTM_BENCH_WORKER_NODE_ARGS'): string[] {
  return (process.env[name] ?? '').split(' ').filter(Boolean);
}

/**
 * Worker processes run as SCHED_BATCH (through util-linux's `chrt`, where it runs): the kernel then
 * never lets one preempt the running server when a frame wakes it; it waits for the server to
 * block or use up its slice. They still get their fair share of the cores. Load generators stand in
 * for clients on other machines, so they should not cut into the server's turns. With them as
 * normal tasks, the server's main thread waited runnable 188 ms for every 399 ms it ran
 * (schedstat), and a worker woken by one of its writes may take its core. Latency bench, 4
 * alternating pairs on a noisy day, P2P p99 as batch / as normal: ours 6.08 / 6.68, 5.24 / 9.80,
 * 7.19 / 9.25, 7.31 / 7.61 ms; the bare relay 2.96 / 3.66, 2.49 / 3.47, 2.67 / 2.97, 3.31 / 3.12.
 * The fan-out: no systematic change in 3 alternating pairs (ours ÷ bare ws 0.35 – 0.42 either way).
 * RTM_BENCH_WORKER_SCHED=normal runs them as normal tasks, to compare.
 */
let asBatch: boolean | undefined;
function workersAsBatch(): boolean {
  if (asBatch === undefined) {
    const wanted = process.env.RTM_BENCH_WORKER_SCHED !== 'normal';
    asBatch = wanted && spawnSync('chrt', ['-b', '0', 'true']).status === 0;
    if (wanted && !asBatch) console.error('note: chrt is missing or refused SCHED_BATCH; load generators run as normal tasks');
  }
  return asBatch;
}

export function startWorker(script: string): Worker {
  const argv = [
    ...TSX_ARGV,
    ...WORKER_V8_FLAGS,
    ...extraNodeArgs('RTM_BENCH_WORKER_NODE_ARGS'),
    fileURLToPath(new URL(script, import.meta.url)),
  ];
  const stdio: ['ignore', 'inherit', 'inherit', 'ipc'] = ['ignore', 'inherit', 'inherit', 'ipc'];
  // chrt execs node in place: same pid, and the IPC channel's descriptor and variable pass through.
  const child = workersAsBatch()
    ? spawn('chrt', ['-b', '0', process.execPath, ...argv], { stdio })
    : spawn(process.execPath, argv, { stdio });
  track(child);
  const listeners = new Map<string, ((m: Record<string, unknown>) => void)[]>();
  let exitError: Error | undefined;
  const failures: ((e: Error) => void)[] = [];
  child.on('message', (m: Record<string, unknown>) => {
    if (m.type === 'error') {
      const err = new Error(`worker ${child.pid}: ${m.message as string}`);
      for (const f of failures.splice(0)) f(err);
      return;
    }
    for (const l of listeners.get(m.type as string) ?? []) l(m);
  });
  child.once('exit', (code, signal) => {
    exitError = new Error(`worker ${child.pid} exited (${code ?? signal})`);
    for (const f of failures.splice(0)) f(exitError);
  });
  const on = (type: string, l: (m: Record<string, unknown>) => void): void => {
    listeners.set(type, [...(listeners.get(type) ?? []), l]);
  };
  return {
    child,
    on,
    call<T>(type: string, data: Record<string, unknown> = {}, timeoutMs = 120_000): Promise<T> {
      if (exitError) return Promise.reject(exitError);
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`worker ${child.pid}: '${type}' timed out`)), timeoutMs);
        const done = (m: Record<string, unknown>): void => {
          clearTimeout(timer);
          listeners.set(
            `${type}:done`,
            (listeners.get(`${type}:done`) ?? []).filter((l) => l !== done),
          );
          resolve(m as T);
        };
        on(`${type}:done`, done);
        failures.push((e) => {
          clearTimeout(timer);
          reject(e);
        });
        child.send({ ...data, type });
      });
    },
    stop: () => stopChild(child),
  };
}

export const percentile = (sorted: ArrayLike<number>, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;

/** The middle value (the mean of the two middle ones for an even count); 0 for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Slow messages that came close together: one stretch in which the system fell behind. */
export interface SlowEpisode {
  /** Send time of its first and last slow message (ms, on the clock the samples share). */
  fromMs: number;
  toMs: number;
  count: number;
  maxMs: number;
}

/**
 * Groups the messages slower than `thresholdMs` into episodes: slow messages sent within `gapMs`
 * of the previous slow one belong to the same episode. A tail made of a few long episodes is the
 * system falling behind for tens of ms (a machine whose CPUs come and go, a long pause); one spread
 * over many single slow messages is per-message work (a scavenge, a commit, a preemption).
 * Episodes come back biggest first.
 */
export function slowEpisodes(samples: readonly { sentAtMs: number; latencyMs: number }[], thresholdMs: number, gapMs = 5): SlowEpisode[] {
  const slow = samples.filter((s) => s.latencyMs > thresholdMs).sort((a, b) => a.sentAtMs - b.sentAtMs);
  const episodes: SlowEpisode[] = [];
  for (const s of slow) {
    const last = episodes[episodes.length - 1];
    if (last && s.sentAtMs - last.toMs <= gapMs) {
      last.toMs = s.sentAtMs;
      last.count++;
      last.maxMs = Math.max(last.maxMs, s.latencyMs);
    } else episodes.push({ fromMs: s.sentAtMs, toMs: s.sentAtMs, count: 1, maxMs: s.latencyMs });
  }
  return episodes.sort((a, b) => b.count - a.count || a.fromMs - b.fromMs);
}

export const fmt = (n: number, digits = 0): string =>
  n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** SIGTERM, then SIGKILL after 3 s; resolves once the child has exited. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

/** Cumulative counts of one gate's `rtm_quest_duration_seconds` histogram, by upper bound (s). */
export async function questDurations(adminPort: number, gate: 'client' | 'server'): Promise<Map<number, number>> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const buckets = new Map<number, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('rtm_quest_duration_seconds_bucket{') || !line.includes(`gate="${gate}"`)) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    if (le) buckets.set(le === '+Inf' ? Infinity : Number(le), Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return buckets;
}

/**
 * Percentile (ms) of the observations between two snapshots of a cumulative histogram, linearly
 * interpolated inside its bucket as Prometheus' histogram_quantile does (so: an estimate).
 */
export function histogramPercentileMs(before: Map<number, number>, after: Map<number, number>, p: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const counts = bounds.map((le) => (after.get(le) ?? 0) - (before.get(le) ?? 0));
  const total = counts[counts.length - 1] ?? 0;
  if (total === 0) return 0;
  const rank = (total * p) / 100;
  for (let i = 0; i < bounds.length; i++) {
    if (counts[i]! < rank) continue;
    const lo = i === 0 ? 0 : bounds[i - 1]!;
    const hi = bounds[i]!;
    if (hi === Infinity) return lo * 1000;
    const below = i === 0 ? 0 : counts[i - 1]!;
    return (lo + ((hi - lo) * (rank - below)) / Math.max(1, counts[i]! - below)) * 1000;
  }
  return 0;
}
