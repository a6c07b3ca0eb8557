import { clientAddress, LimitRefusal } from '../transport/connection-limits.js';
import { withoutPort } from '../transport/transport.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { RepeatFilter } from './repeats.js';

/** What a listener calls when it refuses a connection (`ListenerOptions.onRefused`). */
export type OnRefused = (remote: string, reason: string, detail?: string) => void;

/**
 * Refusals an operator must hear of: a balancer's bad PROXY header (a configuration to mend), and
 * clients turned away by a connection limit. The rest (scanners, TLS on the plain port) at info.
 */
const WARNINGS: ReadonlySet<string> = new Set(['bad PROXY header', LimitRefusal.total, LimitRefusal.perAddress]);

/**
 * The refusals of connections before they speak, per gate. A port on the internet meets scanners
 * all day: every refusal is counted (`rtm_disconnects_total{gate,reason="refused: …"}`), and logged
 * once a minute per gate and reason (with how many were left out). Over the per-address limit,
 * once a minute per client address instead: the addresses are what an operator looks into, and
 * no more of them than RTM_MAX_CLIENT_CONNECTIONS ÷ RTM_MAX_CONNECTIONS_PER_ADDRESS can be at
 * their limit at once. `hint` may add what to do about one.
 */
export function connectionRefusals(
  log: Logger,
  metrics: Metrics,
  hint: (gate: string, reason: string) => string | undefined,
): (gate: string) => OnRefused {
  const refusals = new RepeatFilter(60_000);
  // Its own filter: many addresses at their limit must not push the other reasons out of `refusals`.
  const addresses = new RepeatFilter(60_000);
  return (gate) => (remote, reason, detail) => {
    metrics.disconnects.inc({ gate, reason: `refused: ${reason}` });
    const admitted =
      reason === LimitRefusal.perAddress
        ? addresses.admit(`${gate} ${clientAddress(withoutPort(remote))}`)
        : refusals.admit(`${gate} ${reason}`);
    if (!admitted.log) return;
    const advice = hint(gate, reason);
    const fields = {
      gate,
      remote,
      reason,
      ...(detail ? { detail } : {}),
      ...(advice ? { hint: advice } : {}),
      ...(admitted.repeats ? { repeats: admitted.repeats } : {}),
    };
    if (WARNINGS.has(reason)) log.warn(fields, 'connection refused');
    else log.info(fields, 'connection refused');
  };
}
