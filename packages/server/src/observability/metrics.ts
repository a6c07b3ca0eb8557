import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics of one server instance (own registry, so several servers can live in one
 * process, as they do in tests).
 */
export class Metrics {
  readonly registry = new Registry();
  readonly connections = new Gauge({
    name: 'rtm_connections',
    help: 'Open connections by gate and transport',
    labelNames: ['gate', 'transport'] as const,
    registers: [this.registry],
  });
  readonly quests = new Counter({
    name: 'rtm_quests_total',
    help: 'Quests answered, by gate, method and outcome (ok or the error code)',
    labelNames: ['gate', 'method', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly questSeconds = new Histogram({
    name: 'rtm_quest_duration_seconds',
    help: 'Time from a quest frame decoded to its answer written',
    labelNames: ['gate'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });
  /**
   * Bytes in and out, per gate, counted with plain additions on the hot path (a labelled
   * prom-client inc per frame costs more than the write itself) and folded into the counters
   * when Prometheus scrapes.
   */
  readonly traffic: Record<'server' | 'client', { in: number; out: number }> = { server: { in: 0, out: 0 }, client: { in: 0, out: 0 } };
  readonly bytesIn = trafficCounter(this.registry, this.traffic, 'in', 'rtm_bytes_in_total', 'Bytes received');
  readonly bytesOut = trafficCounter(this.registry, this.traffic, 'out', 'rtm_bytes_out_total', 'Bytes sent');
  readonly pushes = new Counter({
    name: 'rtm_pushes_total',
    help: 'Pushes written, by method',
    labelNames: ['method'] as const,
    registers: [this.registry],
  });
  readonly disconnects = new Counter({
    name: 'rtm_disconnects_total',
    help: 'Connections closed by the server, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly messages = new Counter({
    name: 'rtm_messages_stored_total',
    help: 'Messages persisted, by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  constructor(defaultMetrics = false) {
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }

  private readonly children = new Map<Counter<string>, Map<string, Counter.Internal>>();

  /**
   * Adds `n` to a one-label counter through a child bound once per label value: a labelled `inc`
   * hashes its labels object on every call, which shows on the per-message path.
   */
  add(counter: Counter<string>, label: string, n = 1): void {
    let byLabel = this.children.get(counter);
    if (!byLabel) this.children.set(counter, (byLabel = new Map()));
    let child = byLabel.get(label);
    if (!child) byLabel.set(label, (child = counter.labels(label)));
    child.inc(n);
  }
}

function trafficCounter(
  registry: Registry,
  traffic: Record<'server' | 'client', { in: number; out: number }>,
  way: 'in' | 'out',
  name: string,
  help: string,
): Counter<'gate'> {
  return new Counter({
    name,
    help,
    labelNames: ['gate'] as const,
    registers: [registry],
    collect() {
      for (const gate of ['server', 'client'] as const) {
        const n = traffic[gate][way];
        if (n > 0) {
          this.inc({ gate }, n);
          traffic[gate][way] = 0;
        }
      }
    },
  });
}
