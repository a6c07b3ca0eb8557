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
  readonly bytesIn = new Counter({ name: 'rtm_bytes_in_total', help: 'Bytes received', labelNames: ['gate'] as const, registers: [this.registry] });
  readonly bytesOut = new Counter({ name: 'rtm_bytes_out_total', help: 'Bytes sent', labelNames: ['gate'] as const, registers: [this.registry] });
  readonly pushes = new Counter({ name: 'rtm_pushes_total', help: 'Pushes written, by method', labelNames: ['method'] as const, registers: [this.registry] });
  readonly disconnects = new Counter({
    name: 'rtm_disconnects_total',
    help: 'Connections closed by the server, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly messages = new Counter({ name: 'rtm_messages_stored_total', help: 'Messages persisted, by kind', labelNames: ['kind'] as const, registers: [this.registry] });

  constructor(defaultMetrics = false) {
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }
}
