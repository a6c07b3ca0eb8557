/**
 * P2P send → push latency at a steady rate through our server (a child process; every message is
 * persisted, as always). Senders are logged-in clients sending `sendmsg` on the client gate
 * (WebSocket); receivers are other logged-in clients; each pair lives in the same worker process,
 * so latency = push received − send time on one clock (the send time travels as the body).
 * Client rate limit off (RTM_CLIENT_CALLS_PER_SECOND=0).
 *
 * Beside it, the same clients and rate through two bare relays that store nothing:
 * - the protocol's floor (`fpnn`, bench/baselines/fpnn-relay.ts): the same FPNN quests, answers
 *   and pushes as ours, two frames read and two written per message, no checks, no commit: what
 *   any server speaking this protocol pays on this machine;
 * - the relay floor (`ws`, bench/baselines/ws-server.ts): JSON in, the same bytes out to the
 *   receiver, one read and one write: what this machine's processes, sockets and scheduling put
 *   under any send → push latency.
 *
 * With `--rounds N` the servers take turns N times and the medians close the output, with our p99
 * ÷ each floor's: on a shared 2-core machine one run's p99 moves 2–3× with the neighbours.
 *
 * Each run also prints the tail's shape: the share of messages over the 1.5 ms target, grouped into
 * episodes (slow sends at most 5 ms apart; see `slowEpisodes`), with the three biggest. Many short
 * episodes point at per-message stalls; a few long ones at the whole system falling behind.
 *
 *   node --no-memory-reducer --conditions=rtm-source --import tsx bench/latency.ts [--rate 5000] [--seconds 10] [--warmup 2]
 *     [--workers 2] [--pairs 200] [--servers rtm,fpnn,ws[,rtm-tls]] [--rounds 1] [--profile <dir>]   (server CPU profile; see bench/workers/cpuprofile-top.ts)
 *     [--trace]   (where our slow messages waited: before the server took them, inside it, after; bench/workers/send-trace.ts)
 *
 * Before each run, a second of one busy thread per core measures what the machine itself takes away
 * (bench/workers/host-stalls.ts): on a shared VM that, more than the server, sets the tail.
 *
 * With RTM_BENCH_RELAY_BURN_US=<µs> the JSON relay spins that long per message: set its CPU per
 * message to ours (printed with each run) to see how much of our tail this host's queueing alone
 * explains.
 *
 * Load generators run without V8's memory reducer (see `LOAD_GENERATOR_V8_FLAGS`); started without
 * the flag, the bench starts itself again with it.
 */
import { readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  clientTarget,
  cpuMicros,
  ioCalls,
  fmt,
  histogramPercentileMs,
  median,
  percentile,
  questDurations,
  slowEpisodes,
  sleep,
  startBaseline,
  startServerUnderTest,
  relaunchWithLoadGeneratorFlags,
  startWorker,
  type ServerUnderTest,
  type Worker,
} from './workers/lib.js';
import { describeHostStalls, measureHostStalls, type HostStalls } from './workers/host-stalls.js';
import { sendParts, summariseParts, type PartsSummary, type ServerTimes } from './workers/send-trace.js';

export type LatencyServer = 'rtm' | 'rtm-tls' | 'fpnn' | 'ws';
const LATENCY_SERVERS: readonly LatencyServer[] = ['rtm', 'rtm-tls', 'fpnn', 'ws'];
/** What runs without `--servers`: ours over wss:// (`rtm-tls`) is asked for. */
const DEFAULT_SERVERS: readonly LatencyServer[] = ['rtm', 'fpnn', 'ws'];
/** Each server's name (the medians line them up) and what it is. */
const LABEL: Record<LatencyServer, { name: string; role?: string }> = {
  rtm: { name: 'our RTM server' },
  'rtm-tls': { name: 'ours over wss://', role: 'the same, its clients on the TLS port' },
  fpnn: { name: 'bare FPNN relay', role: 'the protocol floor: answers and pushes, checks and stores nothing' },
  ws: { name: 'bare ws relay', role: 'the floor: JSON relayed, nothing answered' },
};
const NAME_WIDTH = Math.max(...Object.values(LABEL).map((l) => l.name.length));

export interface LatencyOptions {
  rate?: number;
  seconds?: number;
  warmupSeconds?: number;
  workers?: number;
  /** Sender/receiver pairs in all (each sender sends rate / pairs messages/s). */
  pairs?: number;
  /** Directory for a CPU profile (.cpuprofile) of the server. */
  profileDir?: string;
  /** Our server (`rtm`), the protocol floor (`fpnn`), the relay floor (`ws`). @default ['rtm', 'fpnn', 'ws'] */
  servers?: LatencyServer[];
  /** Trace our server's send path to split the slow messages' time (`LatencyFigures.slowParts`). */
  trace?: boolean;
}

export interface LatencyFigures {
  server: LatencyServer;
  /** Messages per second actually sent over the measured run. */
  rate: number;
  sent: number;
  received: number;
  errors: number;
  /** Send → push latency, messages sent after the warm-up. */
  samples: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** Send → answer (mtime; ours: after persistence) round trip (FPNN servers only). */
  answerP50Ms?: number;
  answerP99Ms?: number;
  /**
   * Inside the server: a client-gate quest decoded → its answer written (the push goes out just
   * before the answer), from the server's own histogram (bucket-interpolated estimates). What the
   * server adds, apart from waiting for the CPU before it reads the frame (our server only).
   */
  serverP50Ms?: number;
  serverP99Ms?: number;
  /**
   * The tail's shape: messages over the 1.5 ms target, grouped into episodes (slow sends at most
   * 5 ms apart, see `slowEpisodes`). A few long episodes holding most of them: the system fell
   * behind for a while (on a shared machine, usually CPU taken away); many single ones: per-message
   * stalls.
   */
  slow: {
    /** % of the timed messages. */
    sharePct: number;
    episodes: number;
    /** % of the slow messages in the 10 biggest episodes. */
    inBiggest10Pct: number;
    /** The 3 biggest: length (ms), slow messages, worst latency (ms). */
    biggest: { lengthMs: number; count: number; maxMs: number }[];
  };
  /** Server CPU time / wall time over the run. */
  serverCores: number;
  /** Server CPU time per message sent over the run, µs. */
  serverCpuUsPerMsg: number;
  /** The server's read- and write-type system calls per message sent (`ioCalls`). */
  serverIoCallsPerMsg: number;
  /** Client worker processes' CPU time / wall time. */
  clientCores: number;
  /** What the machine took from busy threads just before this run (bench/workers/host-stalls.ts). */
  hostStalls: HostStalls;
  /**
   * With `trace` (our server only): where the messages over the target spent their time, before
   * the server took them, inside it (until stored) and after (bench/workers/send-trace.ts).
   */
  slowParts?: PartsSummary;
}

export async function runLatencyBench(options: LatencyOptions = {}): Promise<LatencyFigures[]> {
  const out: LatencyFigures[] = [];
  for (const kind of options.servers ?? DEFAULT_SERVERS) out.push(await runOne(kind, options));
  return out;
}

/** The target: what counts as a slow message in the tail's shape. */
const SLOW_MS = 1.5;

async function runOne(kind: LatencyServer, options: LatencyOptions): Promise<LatencyFigures> {
  const rate = options.rate ?? 5000;
  const seconds = options.seconds ?? 10;
  const warmupSeconds = options.warmupSeconds ?? 2;
  const nWorkers = options.workers ?? 2;
  const pairs = options.pairs ?? 200;
  const hostStalls = await measureHostStalls();
  const traceFile = kind === 'rtm' && options.trace ? join(tmpdir(), `rtm-send-trace-${process.pid}-${Date.now()}.json`) : undefined;
  const server: ServerUnderTest =
    kind === 'rtm' || kind === 'rtm-tls'
      ? await startServerUnderTest(kind, {
          env: {
            RTM_ADMIN_PORT: '0',
            ...(options.profileDir ? { RTM_BENCH_CPU_PROF_DIR: options.profileDir } : {}),
            ...(traceFile ? { RTM_BENCH_SEND_TRACE: traceFile } : {}),
          },
        })
      : await startBaseline(kind);
  const workers: Worker[] = [];
  let figures: LatencyFigures;
  let samples: { latencyMs: number; sentAtMs: number }[];
  try {
    const perWorker = Math.ceil(pairs / nWorkers);
    for (let w = 0; w < nWorkers; w++) workers.push(startWorker('./latency-worker.ts'));
    await Promise.all(
      workers.map((worker, w) => {
        const senders = Array.from({ length: perWorker }, (_, i) => String(2_000_000 + w * perWorker + i));
        const receivers = senders.map((s) => String(BigInt(s) + 1_000_000n));
        return worker.call(
          'connect',
          { ...clientTarget(server), serverEndpoint: `127.0.0.1:${server.serverPort}`, senders, receivers },
          120_000,
        );
      }),
    );
    const admin = server.adminPort;
    // Twice before the run: the first fetch() of a process loads and compiles undici (30 ms of CPU
    // here), the second still takes 7 ms; the one at the end of the warm-up would otherwise stall
    // the start of the measured seconds.
    if (admin) for (let i = 0; i < 2; i++) await questDurations(admin, 'client');
    await sleep(500);
    const cpu0 = cpuMicros(server.pid);
    const io0 = ioCalls(server.pid);
    const wcpu0 = workers.reduce((s, w) => s + cpuMicros(w.child.pid!), 0);
    const t0 = performance.now();
    // The server's histogram from the end of the warm-up on, as the clients' samples.
    const histogram0 = admin ? sleep(warmupSeconds * 1000).then(() => questDurations(admin, 'client')) : undefined;
    const results = await Promise.all(
      workers.map((w) =>
        w.call<{
          sent: number;
          received: number;
          errors: number;
          firstError?: string;
          latencies: number[];
          sentAtMs: number[];
          answerMs: number[];
        }>('run', { rate: rate / nWorkers, seconds, warmupSeconds }, (seconds + warmupSeconds + 30) * 1000),
      ),
    );
    const cpu1 = cpuMicros(server.pid);
    const io1 = ioCalls(server.pid);
    const wcpu1 = workers.reduce((s, w) => s + cpuMicros(w.child.pid!), 0);
    const wall = (performance.now() - t0) / 1000;
    const [warm, histogram1] = admin ? [await histogram0!, await questDurations(admin, 'client')] : [];
    const lat = Float64Array.from(results.flatMap((r) => r.latencies)).sort();
    const ans = Float64Array.from(results.flatMap((r) => r.answerMs)).sort();
    const sum = (k: 'sent' | 'received' | 'errors'): number => results.reduce((s, r) => s + r[k], 0);
    const firstError = results.find((r) => r.firstError)?.firstError;
    if (firstError) console.error(`send errors, first: ${firstError}`);
    const ms = (v: number): number => +v.toFixed(3);
    samples = results.flatMap((r) => r.latencies.map((latencyMs, i) => ({ latencyMs, sentAtMs: r.sentAtMs[i]! })));
    const episodes = slowEpisodes(samples, SLOW_MS);
    const slowCount = episodes.reduce((n, e) => n + e.count, 0);
    const pct = (part: number, whole: number): number => (whole === 0 ? 0 : +((100 * part) / whole).toFixed(2));
    figures = {
      server: kind,
      rate: Math.round(sum('sent') / (seconds + warmupSeconds)),
      sent: sum('sent'),
      received: sum('received'),
      errors: sum('errors'),
      samples: lat.length,
      p50Ms: ms(percentile(lat, 50)),
      p99Ms: ms(percentile(lat, 99)),
      p999Ms: ms(percentile(lat, 99.9)),
      maxMs: ms(lat[lat.length - 1] ?? 0),
      ...(kind !== 'ws' && { answerP50Ms: ms(percentile(ans, 50)), answerP99Ms: ms(percentile(ans, 99)) }),
      ...(warm &&
        histogram1 && {
          serverP50Ms: ms(histogramPercentileMs(warm, histogram1, 50)),
          serverP99Ms: ms(histogramPercentileMs(warm, histogram1, 99)),
        }),
      slow: {
        sharePct: pct(slowCount, lat.length),
        episodes: episodes.length,
        inBiggest10Pct: pct(
          episodes.slice(0, 10).reduce((n, e) => n + e.count, 0),
          slowCount,
        ),
        biggest: episodes.slice(0, 3).map((e) => ({ lengthMs: +(e.toMs - e.fromMs).toFixed(1), count: e.count, maxMs: ms(e.maxMs) })),
      },
      serverCores: +((cpu1 - cpu0) / 1e6 / wall).toFixed(2),
      serverCpuUsPerMsg: +((cpu1 - cpu0) / sum('sent')).toFixed(1),
      serverIoCallsPerMsg: +((io1 - io0) / sum('sent')).toFixed(2),
      clientCores: +((wcpu1 - wcpu0) / 1e6 / wall).toFixed(2),
      hostStalls,
    };
  } finally {
    await Promise.all(workers.map((w) => w.call('close', {}, 10_000).catch(() => undefined)));
    await Promise.all(workers.map((w) => w.stop()));
    await server.stop();
  }
  if (traceFile) {
    // Written by the server's probe as it exits.
    const times = JSON.parse(await readFile(traceFile, 'utf8')) as ServerTimes;
    await rm(traceFile, { force: true });
    figures.slowParts = summariseParts(sendParts(samples, times, SLOW_MS), TRACE_LONG_MS);
  }
  return figures;
}

/** A part of a slow message's time counts as long over this (`--trace`). */
const TRACE_LONG_MS = 0.5;

if (import.meta.url === `file://${process.argv[1]}`) {
  relaunchWithLoadGeneratorFlags();
  const { values } = parseArgs({
    options: {
      rate: { type: 'string', default: '5000' },
      seconds: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      workers: { type: 'string', default: '2' },
      pairs: { type: 'string', default: '200' },
      servers: { type: 'string', default: DEFAULT_SERVERS.join(',') },
      rounds: { type: 'string', default: '1' },
      profile: { type: 'string' },
      trace: { type: 'boolean', default: false },
    },
  });
  const servers = values.servers.split(',');
  if (servers.some((s) => !LATENCY_SERVERS.includes(s as LatencyServer)))
    throw new Error(`--servers takes some of ${LATENCY_SERVERS.join(', ')}, not ${values.servers}`);
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds takes a whole number ≥ 1, not ${values.rounds}`);
  console.log(
    `p2p send → push latency: clients send 'sendmsg' on the client gate (WebSocket) at ${values.rate} msgs/s for ${values.seconds} s after ${values.warmup} s warm-up, ` +
      `${values.pairs} sender/receiver pairs in ${values.workers} worker processes, every message persisted (SQLite), ${availableParallelism()} cores; ` +
      `then the same through two bare relays that store nothing (the floors)${rounds > 1 ? `; ${rounds} rounds, taking turns` : ''}`,
  );
  const all: LatencyFigures[] = [];
  for (let round = 1; round <= rounds; round++) {
    if (rounds > 1) console.log(`\n--- round ${round} of ${rounds}`);
    const figures = await runLatencyBench({
      rate: Number(values.rate),
      seconds: Number(values.seconds),
      warmupSeconds: Number(values.warmup),
      workers: Number(values.workers),
      pairs: Number(values.pairs),
      profileDir: values.profile,
      servers: servers as LatencyServer[],
      trace: values.trace,
    });
    for (const f of figures) printFigures(f);
    all.push(...figures);
  }
  if (rounds > 1) printMedians(all);
}

function printFigures(f: LatencyFigures): void {
  const { name, role } = LABEL[f.server];
  console.log(`\n${name}${role ? ` (${role})` : ''}:`);
  console.log(
    `sent ${fmt(f.sent)} (${fmt(f.rate)}/s), pushes received ${fmt(f.received)}, errors ${f.errors}, ${fmt(f.samples)} timed after warm-up; server ${f.serverCores} cores busy ` +
      `(${f.serverCpuUsPerMsg} µs and ${f.serverIoCallsPerMsg} read/write system calls per message), client workers ${f.clientCores}`,
  );
  console.log(`send → push latency: p50 ${f.p50Ms} ms, p99 ${f.p99Ms} ms (target ≤ 1.5 ms), p99.9 ${f.p999Ms} ms, max ${f.maxMs} ms`);
  const { slow } = f;
  if (slow.episodes > 0)
    console.log(
      `over ${SLOW_MS} ms: ${slow.sharePct} % of the messages, in ${fmt(slow.episodes)} episodes (slow sends ≤ 5 ms apart); ` +
        `the 10 biggest hold ${slow.inBiggest10Pct} % of them: ` +
        slow.biggest.map((e) => `${e.lengthMs} ms with ${e.count} (worst ${e.maxMs} ms)`).join(', '),
    );
  if (f.answerP50Ms !== undefined)
    console.log(
      `send → answer (mtime back${f.server.startsWith('rtm') ? ', persisted' : ''}): p50 ${f.answerP50Ms} ms, p99 ${f.answerP99Ms} ms`,
    );
  if (f.serverP50Ms !== undefined)
    console.log(`inside the server (quest decoded → answer written, after the push): p50 ≈ ${f.serverP50Ms} ms, p99 ≈ ${f.serverP99Ms} ms`);
  if (f.slowParts) {
    const { median: m, longPct: l, longMs } = f.slowParts;
    console.log(
      `where the ${fmt(f.slowParts.messages)} messages over ${SLOW_MS} ms waited (medians): before the server took them ${m.beforeMs} ms, ` +
        `inside it until stored ${m.insideMs} ms, after (push out → received) ${m.afterMs} ms; ` +
        `share with that part over ${longMs} ms: ${l.beforeMs} / ${l.insideMs} / ${l.afterMs} %`,
    );
  }
  console.log(`the machine just before: ${describeHostStalls(f.hostStalls)}`);
}

/** Medians over the rounds, per server, and our p99 ÷ each floor's. */
function printMedians(all: LatencyFigures[]): void {
  const med = (values: number[]): number => +median(values).toFixed(3);
  console.log('\nmedians over the rounds:');
  const p99: Partial<Record<LatencyServer, number>> = {};
  for (const server of LATENCY_SERVERS) {
    const runs = all.filter((f) => f.server === server);
    if (runs.length === 0) continue;
    p99[server] = med(runs.map((f) => f.p99Ms));
    console.log(
      `${LABEL[server].name.padEnd(NAME_WIDTH)}: p50 ${med(runs.map((f) => f.p50Ms))} ms, p99 ${p99[server]} ms ` +
        `(each round: ${runs.map((f) => f.p99Ms).join(' / ')}), p99.9 ${med(runs.map((f) => f.p999Ms))} ms, server ${med(runs.map((f) => f.serverCores))} cores; ` +
        `over ${SLOW_MS} ms ${med(runs.map((f) => f.slow.sharePct))} %, of which ${med(runs.map((f) => f.slow.inBiggest10Pct))} % in the 10 biggest episodes; ` +
        `machine stalls before the runs ${med(runs.map((f) => f.hostStalls.msPerSecond))} ms/s per core`,
    );
  }
  if (p99.rtm !== undefined && p99.fpnn) console.log(`our p99 ÷ the protocol floor's: ${(p99.rtm / p99.fpnn).toFixed(1)}`);
  if (p99.rtm !== undefined && p99.ws) console.log(`our p99 ÷ the relay floor's: ${(p99.rtm / p99.ws).toFixed(1)}`);
  if (p99.rtm !== undefined && p99['rtm-tls'] !== undefined)
    console.log(`our p99 over wss:// ÷ over ws://: ${(p99['rtm-tls'] / p99.rtm).toFixed(1)}`);
  // A relay that stores nothing and answers nothing over the target: no server could meet it here now.
  if (p99.ws !== undefined && p99.ws > SLOW_MS)
    console.log(`the relay floor itself is over the ${SLOW_MS} ms target: this machine, as it is now, cannot show whether ours meets it`);
  // One that only speaks the protocol: no server speaking it could.
  else if (p99.fpnn !== undefined && p99.fpnn > SLOW_MS)
    console.log(
      `the protocol floor is over the ${SLOW_MS} ms target: on this machine, as it is now, no server speaking FPNN could show it`,
    );
}
