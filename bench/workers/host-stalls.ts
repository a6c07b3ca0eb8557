/**
 * How much CPU the machine itself takes away, measured right before a latency run: one busy thread
 * per core reads the clock in a tight loop for a while, and every gap between two reads longer
 * than `thresholdUs` is time its core was given to something else (other processes, the kernel, or
 * the hypervisor running another guest). On this kind of VM the host's share is invisible in
 * /proc/stat (no steal time), yet a vCPU stalled for 5 ms holds up every message in flight on it,
 * through any server. The latency bench prints this next to the figures, so a run's tail can be
 * read against the machine it ran on.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

export interface HostStalls {
  /** Busy threads, one per core. */
  threads: number;
  /** Gaps shorter than this are the loop itself, not a stall (ms). */
  thresholdMs: number;
  /** Stalled time per second of wall time, per thread (ms/s): what one core loses. */
  msPerSecond: number;
  /** Stalls per second, per thread. */
  perSecond: number;
  /** The longest stall seen (ms). */
  maxMs: number;
}

// Plain JS: runs in a worker thread without the TypeScript loader.
const SPIN = `
const { parentPort, workerData } = require('node:worker_threads');
const { ms, thresholdUs } = workerData;
const threshold = BigInt(thresholdUs) * 1000n;
const start = process.hrtime.bigint();
const end = start + BigInt(ms) * 1000000n;
let prev = start, stalled = 0n, count = 0, max = 0n;
for (;;) {
  const now = process.hrtime.bigint();
  const gap = now - prev;
  if (gap > threshold) { stalled += gap; count++; if (gap > max) max = gap; }
  prev = now;
  if (now >= end) break;
}
parentPort.postMessage({ stalledMs: Number(stalled) / 1e6, count, maxMs: Number(max) / 1e6, wallMs: Number(prev - start) / 1e6 });
`;

interface SpinResult {
  stalledMs: number;
  count: number;
  maxMs: number;
  wallMs: number;
}

/** Spins one thread per core for `ms` and sums the gaps over `thresholdUs` each one saw. */
export async function measureHostStalls(ms = 1000, thresholdUs = 100, threads = availableParallelism()): Promise<HostStalls> {
  const results = await Promise.all(
    Array.from(
      { length: threads },
      () =>
        new Promise<SpinResult>((resolve, reject) => {
          const w = new Worker(SPIN, { eval: true, workerData: { ms, thresholdUs } });
          w.once('message', (r: SpinResult) => resolve(r));
          w.once('error', reject);
          w.once('exit', (code) => reject(new Error(`host-stall thread exited (${code}) without its figures`)));
        }),
    ),
  );
  const wallS = results.reduce((s, r) => s + r.wallMs, 0) / 1000;
  return {
    threads,
    thresholdMs: thresholdUs / 1000,
    msPerSecond: +(results.reduce((s, r) => s + r.stalledMs, 0) / wallS).toFixed(1),
    perSecond: +(results.reduce((s, r) => s + r.count, 0) / wallS).toFixed(1),
    maxMs: +Math.max(...results.map((r) => r.maxMs)).toFixed(2),
  };
}

export const describeHostStalls = (s: HostStalls): string =>
  `${s.threads} busy threads lost ${s.msPerSecond} ms/s each to stalls over ${s.thresholdMs} ms (${s.perSecond}/s, longest ${s.maxMs} ms)`;
