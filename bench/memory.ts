/**
 * Server memory per idle connection: RSS (from /proc) and V8 heap used (from inside the process,
 * after a forced GC, through the bench/workers/probe.mjs preload) before and after N idle
 * WebSocket clients (ours logged in with `gettoken` + `auth`; Socket.IO and bare ws connected),
 * divided by N; our server beside the Socket.IO and bare ws baselines in the same run. The clients
 * are spread over worker processes. `rtm-tls` in `--servers`: ours again, its clients on wss://
 * (the client gate's TLS port, with the test certificate): what TLS adds per connection.
 *
 *   node --conditions=rtm-source --import tsx bench/memory.ts [--connections 10000] [--workers 4]
 *     [--idle 3] [--servers rtm,socketio,ws[,rtm-tls]] [--heap-snapshots <dir>]
 */
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import {
  clientTarget,
  cpuMicros,
  fmt,
  rssBytes,
  SERVER_LABEL,
  sleep,
  startServerUnderTest,
  startWorker,
  type ServerKind,
  type Worker,
} from './workers/lib.js';

export interface MemoryOptions {
  connections?: number;
  workers?: number;
  /** Seconds the connections stay idle before the measurement. */
  idleSeconds?: number;
  servers?: ServerKind[];
  /**
   * Directory for heap snapshots (before and after) of every server; summarise with
   * bench/workers/heap-top.ts. Diagnosis only: writing a snapshot inflates the RSS figures.
   */
  heapSnapshotDir?: string;
  log?: (line: string) => void;
}

export interface MemoryResult {
  server: ServerKind;
  connections: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  heapBeforeBytes: number;
  heapAfterBytes: number;
  rssPerConnectionKiB: number;
  heapPerConnectionKiB: number;
  /** Server CPU while the clients connected, per connection (ours: its token, login and, over wss://, handshake). */
  cpuPerConnectionMicros: number;
}

export interface MemoryFigures {
  results: MemoryResult[];
  /** Our RSS per connection / Socket.IO's and / bare ws's. */
  rssVsSocketIo?: number;
  rssVsWs?: number;
  /** Ours over wss:// ÷ ours over ws://. */
  tlsVsPlain?: number;
}

async function measure(
  kind: ServerKind,
  n: number,
  nWorkers: number,
  idleSeconds: number,
  log: (l: string) => void,
  snapshotDir?: string,
): Promise<MemoryResult> {
  const server = await startServerUnderTest(kind, snapshotDir ? { env: { RTM_BENCH_HEAP_SNAPSHOT_DIR: `${snapshotDir}/${kind}` } } : {});
  const workers: Worker[] = [];
  try {
    await sleep(1000);
    const before = await server.probe(); // forces a GC first
    const rssBefore = rssBytes(server.pid);
    const per = Math.ceil(n / nWorkers);
    const started = performance.now();
    const cpuBefore = cpuMicros(server.pid);
    for (let w = 0; w < nWorkers; w++) workers.push(startWorker('./clients-worker.ts'));
    await Promise.all(
      workers.map((worker, w) =>
        worker.call(
          'connect',
          {
            ...clientTarget(server),
            serverEndpoint: server.serverPort ? `127.0.0.1:${server.serverPort}` : undefined,
            uids: Array.from({ length: Math.max(0, Math.min(per, n - w * per)) }, (_, i) => String(3_000_000 + w * per + i)),
            rooms: [],
            offset: w * per,
          },
          600_000,
        ),
      ),
    );
    const cpuPerConnectionMicros = +((cpuMicros(server.pid) - cpuBefore) / n).toFixed(1);
    log(
      `  ${SERVER_LABEL[kind]}: ${fmt(n)} clients connected${kind.startsWith('rtm') ? ' and logged in' : ''} in ${fmt((performance.now() - started) / 1000, 1)} s, ` +
        `server CPU ${cpuPerConnectionMicros} µs per connection`,
    );
    await sleep(idleSeconds * 1000);
    const after = await server.probe();
    const rssAfter = rssBytes(server.pid);
    const r: MemoryResult = {
      server: kind,
      connections: n,
      rssBeforeBytes: rssBefore,
      rssAfterBytes: rssAfter,
      heapBeforeBytes: before.heapUsed,
      heapAfterBytes: after.heapUsed,
      rssPerConnectionKiB: +((rssAfter - rssBefore) / n / 1024).toFixed(2),
      heapPerConnectionKiB: +((after.heapUsed - before.heapUsed) / n / 1024).toFixed(2),
      cpuPerConnectionMicros,
    };
    log(
      `  ${SERVER_LABEL[kind].padEnd(18)} RSS ${fmt(rssBefore / 2 ** 20, 1)} → ${fmt(rssAfter / 2 ** 20, 1)} MiB = ${r.rssPerConnectionKiB} KiB/connection; ` +
        `heap used ${fmt(before.heapUsed / 2 ** 20, 1)} → ${fmt(after.heapUsed / 2 ** 20, 1)} MiB = ${r.heapPerConnectionKiB} KiB/connection`,
    );
    return r;
  } finally {
    await Promise.all(workers.map((w) => w.call('close', {}, 20_000).catch(() => undefined)));
    await Promise.all(workers.map((w) => w.stop()));
    await server.stop();
  }
}

export async function runMemoryBench(options: MemoryOptions = {}): Promise<MemoryFigures> {
  const n = options.connections ?? 10_000;
  const nWorkers = options.workers ?? 4;
  const log = options.log ?? (() => undefined);
  // Each server holds n sockets, each worker n / workers: check the descriptor limit (inherited by children).
  let limit = Infinity;
  try {
    limit = Number(execFileSync('sh', ['-c', 'ulimit -n']).toString().trim());
  } catch {
    /* unknown: try anyway */
  }
  if (limit < n + 1000) throw new Error(`the open-file limit is ${limit}: raise it (ulimit -n ${n + 5000}) to hold ${n} connections`);
  const results: MemoryResult[] = [];
  for (const kind of options.servers ?? (['rtm', 'socketio', 'ws'] as ServerKind[]))
    results.push(await measure(kind, n, nWorkers, options.idleSeconds ?? 3, log, options.heapSnapshotDir));
  const of = (k: ServerKind) => results.find((r) => r.server === k)?.rssPerConnectionKiB;
  const ratio = (a?: number, b?: number) => (a !== undefined && b ? +(a / b).toFixed(2) : undefined);
  return {
    results,
    rssVsSocketIo: ratio(of('rtm'), of('socketio')),
    rssVsWs: ratio(of('rtm'), of('ws')),
    tlsVsPlain: ratio(of('rtm-tls'), of('rtm')),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      connections: { type: 'string', default: '10000' },
      workers: { type: 'string', default: '4' },
      idle: { type: 'string', default: '3' },
      servers: { type: 'string', default: 'rtm,socketio,ws' },
      'heap-snapshots': { type: 'string' },
    },
  });
  const log = (line: string): void => console.log(line);
  log(
    `server memory per idle WebSocket connection: ${values.connections} connections over ${values.workers} worker processes, idle ${values.idle} s`,
  );
  const f = await runMemoryBench({
    connections: Number(values.connections),
    workers: Number(values.workers),
    idleSeconds: Number(values.idle),
    servers: values.servers.split(',') as ServerKind[],
    heapSnapshotDir: values['heap-snapshots'],
    log,
  });
  log('');
  log('server               RSS KiB/conn   heap KiB/conn');
  for (const r of f.results)
    log(
      `${SERVER_LABEL[r.server].padEnd(18)} ${r.rssPerConnectionKiB.toFixed(2).padStart(14)} ${r.heapPerConnectionKiB.toFixed(2).padStart(15)}`,
    );
  log('');
  const ours = f.results.find((r) => r.server === 'rtm');
  if (ours) log(`our RSS per idle connection: ${ours.rssPerConnectionKiB} KiB (target ≤ 10 KiB)`);
  if (f.rssVsSocketIo !== undefined) log(`ours ÷ Socket.IO: ${f.rssVsSocketIo}`);
  if (f.rssVsWs !== undefined) log(`ours ÷ bare ws: ${f.rssVsWs}`);
  if (f.tlsVsPlain !== undefined) log(`ours over wss:// ÷ over ws://: ${f.tlsVsPlain}`);
}
