import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { BusQueueStats } from '../bus/bus.js';

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
  readonly quests = new TalliedCounter(this.registry, {
    name: 'rtm_quests_total',
    help: 'Quests answered, by gate, method and outcome (ok or the error code)',
    labelNames: ['gate', 'method', 'outcome'],
  });
  readonly questSeconds = new TalliedHistogram(this.registry, {
    name: 'rtm_quest_duration_seconds',
    help: 'Time from a quest frame decoded to its answer written',
    labelNames: ['gate'],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
  });
  /**
   * Bytes in and out, per gate, counted with plain additions on the hot path (a labelled
   * prom-client inc per frame costs more than the write itself) and folded into the counters
   * when Prometheus scrapes.
   */
  readonly traffic: Record<'server' | 'client', { in: number; out: number }> = { server: { in: 0, out: 0 }, client: { in: 0, out: 0 } };
  readonly bytesIn = trafficCounter(this.registry, this.traffic, 'in', 'rtm_bytes_in_total', 'Bytes received');
  readonly bytesOut = trafficCounter(this.registry, this.traffic, 'out', 'rtm_bytes_out_total', 'Bytes sent');
  readonly pushes = new TalliedCounter(this.registry, {
    name: 'rtm_pushes_total',
    help: 'Pushes written, by method',
    labelNames: ['method'],
  });
  readonly disconnects = new Counter({
    name: 'rtm_disconnects_total',
    help: "Connections closed by the server, by gate and reason ('refused: …': closed as they were accepted, before they spoke)",
    labelNames: ['gate', 'reason'] as const,
    registers: [this.registry],
  });
  /**
   * What the client gate's connection limits count (main sets it), read when Prometheus scrapes:
   * rtm_connections counts only the connections that speak FPNN, these every socket from accept to
   * close, which is what RTM_MAX_CLIENT_CONNECTIONS and RTM_MAX_CONNECTIONS_PER_ADDRESS limit.
   */
  clientSockets: () => { connections: number; busiestAddress: number } = () => ({ connections: 0, busiestAddress: 0 });
  readonly clientSocketsOpen: Gauge = new Gauge({
    name: 'rtm_client_sockets',
    help: "Connections open on the client gate's ports, from accept to close, whatever they speak and logged in or not (what RTM_MAX_CLIENT_CONNECTIONS limits)",
    registers: [this.registry],
    collect: (): void => this.clientSocketsOpen.set(this.clientSockets().connections),
  });
  readonly clientSocketsBusiestAddress: Gauge = new Gauge({
    name: 'rtm_client_sockets_busiest_address',
    help: 'Connections open on the client gate from the one client address that has the most (what RTM_MAX_CONNECTIONS_PER_ADDRESS limits)',
    registers: [this.registry],
    collect: (): void => this.clientSocketsBusiestAddress.set(this.clientSockets().busiestAddress),
  });
  /**
   * What the server gate's connection limit counts (main sets it): every socket of its port from
   * accept to close, FPNN or HTTP bridge, which is what RTM_MAX_SERVER_CONNECTIONS limits.
   */
  serverSockets: () => number = () => 0;
  readonly serverSocketsOpen: Gauge = new Gauge({
    name: 'rtm_server_sockets',
    help: "Connections open on the server gate's port, from accept to close, whatever they speak: FPNN or HTTP bridge calls (what RTM_MAX_SERVER_CONNECTIONS limits)",
    registers: [this.registry],
    collect: (): void => this.serverSocketsOpen.set(this.serverSockets()),
  });
  readonly tlsHandshakeFailures = new Counter({
    name: 'rtm_tls_handshake_failures_total',
    help: "TLS handshakes of the client gate's TLS port that failed, by reason (e.g. a client that does not trust the certificate: 'sslv3 alert certificate unknown')",
    labelNames: ['reason'] as const,
    registers: [], // see `servesTls`
  });
  readonly tlsCertificateExpiry = new Gauge({
    name: 'rtm_tls_certificate_expiry_timestamp_seconds',
    help: "When the certificate served on the client gate's TLS port expires (Unix time, seconds)",
    registers: [], // see `servesTls`
  });
  readonly presenceEnds = new Counter({
    name: 'rtm_presence_ends_total',
    help: "Presences ended (users logged out), by what ended them: bye (the last session's bye or kickout), grace (the grace period ran out here), other_node (left by a node that stopped in the grace period or died)",
    labelNames: ['by'] as const,
    registers: [this.registry],
  });
  readonly backups = new Counter({
    name: 'rtm_backups_total',
    help: 'Backups asked for on the admin port (GET /backup), by result: ok (sent whole), failed (the copy could not be made or read), aborted (the client went away or stalled, or the server stopped), refused (403, 405, 409, 501 or 503)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly messages = new TalliedCounter(this.registry, {
    name: 'rtm_messages_stored_total',
    help: 'Messages persisted, by kind',
    labelNames: ['kind'],
  });

  /**
   * The client gate has a TLS port: its metrics are shown. Not before: an expiry of 0 would read
   * as a certificate expired in 1970.
   */
  servesTls(): void {
    this.registry.registerMetric(this.tlsHandshakeFailures);
    this.registry.registerMetric(this.tlsCertificateExpiry);
  }

  /** The bus's outage queue (NatsBus; main sets it), read when Prometheus scrapes. */
  busQueue: () => BusQueueStats | undefined = () => undefined;
  readonly busQueuedEvents: Gauge = new Gauge({
    name: 'rtm_bus_queued_events',
    help: 'Events published while the bus (NATS) is unreachable, waiting for the reconnect',
    registers: [this.registry],
    collect: (): void => this.busQueuedEvents.set(this.busQueue()?.queuedEvents ?? 0),
  });
  readonly busQueuedBytes: Gauge = new Gauge({
    name: 'rtm_bus_queued_bytes',
    help: 'Bytes of the events waiting for the bus (NATS) to reconnect (bounded: 8 MiB)',
    registers: [this.registry],
    collect: (): void => this.busQueuedBytes.set(this.busQueue()?.queuedBytes ?? 0),
  });
  readonly busUnheardNodes: Gauge = new Gauge({
    name: 'rtm_bus_unheard_nodes',
    help: 'Nodes alive in the store that this node has not heard on the bus for 15 s or more (another RTM_BUS_PREFIX or NATS, or a partition)',
    registers: [this.registry],
  });
  private readonly busCounted = { resent: 0, dropped: 0, reconnects: 0 };
  readonly busOutageEvents: Counter<'outcome'> = new Counter({
    name: 'rtm_bus_outage_events_total',
    help: 'Events published while the bus (NATS) was unreachable, by outcome: resent on reconnect, or dropped (the queue was full; they reached this node only)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
    collect: (): void => {
      const q = this.busQueue();
      if (!q) return;
      this.busOutageEvents.inc({ outcome: 'resent' }, q.resentEvents - this.busCounted.resent);
      this.busOutageEvents.inc({ outcome: 'dropped' }, q.droppedEvents - this.busCounted.dropped);
      this.busCounted.resent = q.resentEvents;
      this.busCounted.dropped = q.droppedEvents;
    },
  });
  readonly busReconnects: Counter = new Counter({
    name: 'rtm_bus_reconnects_total',
    help: 'Reconnects of the bus (NATS) after an outage, each followed by a resync from the store',
    registers: [this.registry],
    collect: (): void => {
      const q = this.busQueue();
      if (!q) return;
      this.busReconnects.inc(q.reconnects - this.busCounted.reconnects);
      this.busCounted.reconnects = q.reconnects;
    },
  });

  constructor(defaultMetrics = false) {
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }
}

/**
 * Map key of a series: its label values. One value is its own key (~30 ns a lookup); with several,
 * callers on the hot path keep the series they get (the gate: ~300 ns otherwise).
 */
function seriesKey(values: readonly string[]): string {
  return values.length === 1 ? values[0]! : values.join('\u0000');
}

function labelsOf(names: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  names.forEach((name, i) => (labels[name] = values[i] ?? ''));
  return labels;
}

/** One series of a tallied metric: the hot path adds to `n` (or observes) with plain arithmetic. */
export interface Tally {
  n: number;
}

interface TalliedConfig {
  name: string;
  help: string;
  labelNames: readonly string[];
}

/**
 * A counter for the per-quest and per-message paths: each series is a plain number the caller
 * keeps a handle to (`tally(...)`, made once per label values), folded into the prom-client
 * counter when Prometheus scrapes. prom-client hashes and validates the labels on every `inc`,
 * even through a bound child: ~0.4 µs a call, a few per quest.
 */
export class TalliedCounter {
  private readonly series = new Map<string, { labels: Record<string, string>; tally: Tally }>();
  private readonly labelNames: readonly string[];
  readonly counter: Counter<string>;

  constructor(registry: Registry, config: TalliedConfig) {
    this.labelNames = config.labelNames;
    const series = this.series;
    this.counter = new Counter({
      name: config.name,
      help: config.help,
      labelNames: config.labelNames,
      registers: [registry],
      collect() {
        for (const { labels, tally } of series.values()) {
          if (tally.n === 0) continue;
          this.inc(labels, tally.n);
          tally.n = 0;
        }
      },
    });
  }

  /** The series of these label values (in `labelNames` order), made on first use; add to its `n`. */
  tally(...values: string[]): Tally {
    const key = seriesKey(values);
    let entry = this.series.get(key);
    if (!entry) {
      this.series.set(key, (entry = { labels: labelsOf(this.labelNames, values), tally: { n: 0 } }));
    }
    return entry.tally;
  }
}

interface HistogramValue {
  labels: Record<string, string | number>;
  value: number;
  metricName: string;
}

/** One series of a tallied histogram. */
export class HistogramSeries {
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    private readonly bounds: readonly number[],
    readonly labels: Record<string, string>,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

/**
 * A histogram counted with plain additions (see TalliedCounter), exported in prom-client's format
 * for the same registry: `<name>_bucket{le}` cumulative, `_sum`, `_count`.
 */
export class TalliedHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  private readonly series = new Map<string, HistogramSeries>();

  constructor(
    registry: Registry,
    private readonly config: TalliedConfig & { buckets: readonly number[] },
  ) {
    this.name = config.name;
    this.help = config.help;
    // prom-client's registry takes any metric that answers get() in its format.
    registry.registerMetric(this as unknown as Metric<string>);
  }

  /** The series of these label values (in `labelNames` order), made on first use; observe into it. */
  tally(...values: string[]): HistogramSeries {
    const key = seriesKey(values);
    let series = this.series.get(key);
    if (!series) {
      this.series.set(key, (series = new HistogramSeries(this.config.buckets, labelsOf(this.config.labelNames, values))));
    }
    return series;
  }

  /** prom-client's export format (its typings say `type` is an enum; at runtime it is this string). */
  get(): Promise<{ name: string; help: string; type: 'histogram'; values: HistogramValue[]; aggregator: 'sum' }> {
    const values: HistogramValue[] = [];
    for (const s of this.series.values()) {
      let cumulative = 0;
      this.config.buckets.forEach((le, i) => {
        cumulative += s.counts[i]!;
        values.push({ labels: { ...s.labels, le }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { ...s.labels, le: '+Inf' }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator });
  }

  reset(): void {
    this.series.clear();
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
