/**
 * Where the latency bench's messages spent their time, from two clocks of one machine: the client
 * workers' (sent, pushed back) and the server's send-path channels (taken, stored), written by the
 * probe (RTM_BENCH_SEND_TRACE, probe.mjs), all in ms since the epoch. Each message falls into:
 * - before: sent → the server took it (the sender's write, the kernel, the server waking up or busy
 *   with earlier work, reading and decoding);
 * - inside: taken → stored (checks, the group commit and the wait for it);
 * - after: stored → received by the receiver (the push's encoding and write, the kernel, the
 *   receiving worker waking up or busy).
 */
import { median } from './lib.js';

/** One message's three parts, in ms. */
export interface SendParts {
  beforeMs: number;
  insideMs: number;
  afterMs: number;
}

/** Summary of a set of messages' parts: medians, and how many had each part over `longMs`. */
export interface PartsSummary {
  messages: number;
  median: SendParts;
  /** % of the messages with that part over `longMs`. */
  longPct: SendParts;
  longMs: number;
}

/** The server's times by message body: [taken, stored]. */
export type ServerTimes = Record<string, [number, number]>;

/**
 * The parts of each sample the server's trace knows (by its body, the send time as a string), for
 * the samples whose latency is over `overMs`.
 */
export function sendParts(samples: readonly { sentAtMs: number; latencyMs: number }[], server: ServerTimes, overMs: number): SendParts[] {
  const out: SendParts[] = [];
  for (const s of samples) {
    if (!(s.latencyMs > overMs)) continue;
    const times = server[String(s.sentAtMs)];
    if (!times) continue;
    const [taken, stored] = times;
    out.push({ beforeMs: taken - s.sentAtMs, insideMs: stored - taken, afterMs: s.sentAtMs + s.latencyMs - stored });
  }
  return out;
}

export function summariseParts(parts: readonly SendParts[], longMs: number): PartsSummary {
  const med = (k: keyof SendParts): number => median(parts.map((p) => p[k]));
  const pct = (k: keyof SendParts): number => (parts.length === 0 ? 0 : (100 * parts.filter((p) => p[k] > longMs).length) / parts.length);
  const round = (v: number): number => +v.toFixed(3);
  return {
    messages: parts.length,
    median: { beforeMs: round(med('beforeMs')), insideMs: round(med('insideMs')), afterMs: round(med('afterMs')) },
    longPct: { beforeMs: +pct('beforeMs').toFixed(1), insideMs: +pct('insideMs').toFixed(1), afterMs: +pct('afterMs').toFixed(1) },
    longMs,
  };
}
