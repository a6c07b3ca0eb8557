import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { RepeatFilter } from './repeats.js';

/** What a listener calls when it refuses a connection (`ListenerOptions.onRefused`). */
export type OnRefused = (remote: string, reason: string, detail?: string) => void;

/**
 * The refusals of connections before they speak, per gate. A port on the internet meets scanners
 * all day: every refusal is counted (`rtm_disconnects_total{reason="refused: …"}`), and logged
 * once a minute per gate and reason (with how many were left out), at info but for a balancer's
 * bad PROXY header (a configuration to mend). `hint` may add what to do about one.
 */
export function connectionRefusals(
  log: Logger,
  metrics: Metrics,
  hint: (gate: string, reason: string) => string | undefined,
): (gate: string) => OnRefused {
  const refusals = new RepeatFilter(60_000);
  return (gate) => (remote, reason, detail) => {
    metrics.disconnects.inc({ reason: `refused: ${reason}` });
    const admitted = refusals.admit(`${gate} ${reason}`);
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
    if (reason === 'bad PROXY header') log.warn(fields, 'connection refused');
    else log.info(fields, 'connection refused');
  };
}
