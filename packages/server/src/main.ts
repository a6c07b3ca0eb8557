import { existsSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { hostname } from 'node:os';
import { parseServerPrivateKey, serverKeyExchange, type CurveName, type KeyQuestPayload } from '@rtm/fpnn/crypto';
import type { ConnectionCipher } from './gate/connection.js';
import { checkDataDir, ConfigError, DEFAULT_CONFIG } from './config.js';
import type { Bus } from './bus/bus.js';
import { LocalBus } from './bus/local.js';
import { BackupEndpoint } from './admin/backup-endpoint.js';
import { ClientTls, type TlsReload } from './client-tls.js';
import {
  clientHostOf,
  hostPort,
  isWildcardHost,
  nearMisses,
  resolveConfig,
  type ConfigOverrides,
  type ResolvedConfig,
  type ServerConfig,
} from './config.js';
import { ClientGate } from './gate/client-gate.js';
import type { GateOptions } from './gate/gate.js';
import { ServerGate } from './gate/server-gate.js';
import { SignatureVerifier } from './gate/signature.js';
import { clientMethods } from './methods/client/index.js';
import { serverMethods } from './methods/server/index.js';
import { createLogger, type Logger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { connectionCaps, openFileCount, openFileLimit } from './observability/open-files.js';
import { connectionRefusals } from './observability/refusals.js';
import { Delivery } from './services/delivery.js';
import { History } from './services/history.js';
import type { Services } from './services/index.js';
import { ListenRegistry } from './services/listen.js';
import { Messaging } from './services/messaging.js';
import { LocalPresence } from './services/presence.js';
import { Sessions } from './services/sessions.js';
import { GroupMembers } from './services/group-members.js';
import { BusResync } from './services/resync.js';
import { StoreRefusal, type Store, type UpgradeEvent } from './store/store.js';
import { ConnectionLimits, LimitRefusal } from './transport/connection-limits.js';
import { Listener } from './transport/listener.js';
import { proxySources } from './transport/proxy-protocol.js';
import type { Transport } from './transport/transport.js';
import { VERSION } from './version.js';

export interface RunningServer {
  readonly config: ServerConfig;
  readonly serverPort: number;
  readonly clientPort: number;
  /** The client gate's TLS port; undefined without RTM_TLS_CERT / RTM_TLS_KEY. */
  readonly clientTlsPort: number | undefined;
  /** undefined when the admin listener is off. */
  readonly adminPort: number | undefined;
  readonly services: Services;
  /** Reads the TLS certificate and key again (SIGHUP); an error when there is no TLS port or they cannot be served. */
  reloadTls(): TlsReload;
  /** Graceful stop: refuse new work, finish in-flight quests, close connections, flush, close the store. */
  stop(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  /** Inject a store or bus (tests, embedders); otherwise chosen by config.store / config.bus. */
  store?: Store;
  bus?: Bus;
}

/**
 * A backing service or a port that keeps the server from starting. The message names the part and
 * the setting (never a password); `rtm serve` prints it as one line (and logs it, cli.ts) and exits with code 1.
 */
export class StartupError extends Error {
  override readonly name = 'StartupError';
}

/** A service URL for a message: scheme, hosts and path; no user, password or query (it may hold one). */
function withoutCredentials(url: string, keepQuery: boolean): string {
  return url
    .split(',')
    .map((part) => {
      const bare = part.trim().replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/]*@/i, '$1');
      return keepQuery ? bare : bare.replace(/\?.*$/, '');
    })
    .join(',');
}

/** `err`'s message, with the URL's password blanked should the driver have echoed it. */
function messageOf(err: unknown, url: string): string {
  let message = err instanceof Error ? err.message || err.name : String(err);
  for (const part of url.split(',')) {
    try {
      const { password } = new URL(part.trim());
      if (password) message = message.split(password).join('***').split(decodeURIComponent(password)).join('***');
    } catch {
      // not a URL: nothing to blank
    }
  }
  return message;
}

function storeFailure(config: ServerConfig, err: unknown): Error {
  if (err instanceof ConfigError) return err;
  if (config.store === 'sqlite')
    return new StartupError(`store (RTM_STORE=sqlite, RTM_DATA_DIR=${config.dataDir}) cannot be opened: ${messageOf(err, '')}`);
  const where = `store (RTM_STORE=${withoutCredentials(config.store, false)})`;
  // An error with a severity came from the PostgreSQL server itself: it answered, and refused; a
  // StoreRefusal, from the store once it had read what the database holds.
  const answered = typeof (err as { severity?: unknown })?.severity === 'string' || err instanceof StoreRefusal;
  return new StartupError(`${where} ${answered ? 'refused the start' : 'unreachable'}: ${messageOf(err, config.store)}`);
}

function busFailure(config: ServerConfig, err: unknown): Error {
  return new StartupError(`bus (RTM_BUS=${withoutCredentials(config.bus, true)}) unreachable: ${messageOf(err, config.bus)}`);
}

function bindFailure(err: unknown, port: number, variable: string, host: string, hostVariable = 'RTM_HOST'): Error {
  const code = (err as NodeJS.ErrnoException)?.code;
  return new StartupError(
    code === 'EADDRINUSE'
      ? `port ${port} (${variable}) is in use on ${host}`
      : code === 'EACCES'
        ? `port ${port} (${variable}) cannot be bound on ${host}: permission denied (ports below 1024 need privileges)`
        : code === 'EADDRNOTAVAIL'
          ? `${hostVariable} ${host} is not an address of this machine (binding ${variable} ${port})`
          : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
            ? `${hostVariable} ${host} cannot be resolved`
            : `port ${port} (${variable}) cannot be bound on ${host}: ${messageOf(err, '')}`,
  );
}

/**
 * A schema upgrade at start, in one line once applied. An existing database gets one more as it
 * begins: its steps may take a while (migration 4 rebuilds an index, ≈ 0.4 s per million
 * messages), and the pause needs a reason; a new database's take milliseconds.
 */
function logUpgrade(log: Logger, { from, to, migrations, ms }: UpgradeEvent): void {
  const steps = `${migrations} migration${migrations === 1 ? '' : 's'}`;
  if (ms !== undefined) log.info({ from, to, migrations, ms }, `schema upgraded from version ${from} to ${to}: ${steps} in ${ms} ms`);
  else if (from > 0) log.info({ from, to, migrations }, `upgrading schema from version ${from} to ${to}: ${steps}`);
}

async function openStore(config: ServerConfig, log: Logger): Promise<Store> {
  if (config.store === 'sqlite') {
    checkDataDir(config.dataDir);
    const { SqliteStore } = await import('./store/sqlite.js');
    return new SqliteStore({
      dataDir: config.dataDir,
      synchronous: config.sqliteSynchronous,
      checkpointEveryMs: config.sqliteCheckpointMs,
      writerThread: config.sqliteWriterThread,
      exclusive: config.sqliteExclusive,
      cacheSizeKiB: config.sqliteCacheMiB * 1024,
      onError: (message) => log.error({ store: 'sqlite' }, message),
      onRecovery: (message) => log.info({ store: 'sqlite' }, message),
      // Each step at debug, the upgrade as a whole at info: a new database has a dozen steps.
      onMigration: ({ version, name, ms }) =>
        ms === undefined
          ? log.debug({ store: 'sqlite', version, name }, 'applying schema migration')
          : log.debug({ store: 'sqlite', version, name, ms }, 'schema migration applied'),
      onUpgrade: (event) => logUpgrade(log.child({ store: 'sqlite' }), event),
    });
  }
  const { PostgresStore } = await import('./store/postgres.js');
  return new PostgresStore({
    url: config.store,
    schema: config.storeSchema,
    onUpgrade: (event) => logUpgrade(log.child({ store: 'postgres', schema: config.storeSchema }), event),
  });
}

async function openBus(config: ServerConfig, log: Logger): Promise<Bus> {
  if (config.bus === 'local') return new LocalBus();
  const { NatsBus } = await import('./bus/nats.js');
  // A prefix in the URL (?prefix=) wins over RTM_BUS_PREFIX, as NatsBus documents.
  const inUrl = /[?&]prefix=/.test(config.bus);
  return new NatsBus({
    url: config.bus,
    subjectPrefix: inUrl ? undefined : config.busPrefix,
    onError: (err, context) => log.warn({ err, context }, 'bus error'),
  });
}

/**
 * `*key` encryption (spec/fpnn.md §6), off unless RTM_ENCRYPTION_KEY is set: hex of the raw 32-byte
 * private key, PEM text, or the path of a PEM file.
 */
function keyExchangeFor(config: ServerConfig): ((payload: Record<string, unknown>) => ConnectionCipher) | undefined {
  if (!config.encryptionKey) return undefined;
  const value = config.encryptionKey.trim();
  let input: string | Uint8Array = value;
  let where = 'RTM_ENCRYPTION_KEY';
  // Hex or PEM text is the key itself; anything else is the path of a key file: PEM or hex text,
  // or binary, as the reference server keeps it (32 raw bytes, or DER).
  if (existsSync(value) || !(value.includes('-----BEGIN') || /^(?:0x)?[0-9a-fA-F]+$/.test(value))) {
    try {
      input = new Uint8Array(readFileSync(value));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new ConfigError(
        code === 'ENOENT'
          ? `RTM_ENCRYPTION_KEY: file not found: ${value} (the value is the private key in hex, PEM text, or the path of a key file)`
          : code === 'EISDIR'
            ? `RTM_ENCRYPTION_KEY: cannot read ${value}: it is a directory, not a key file`
            : code === 'EACCES' || code === 'EPERM'
              ? `RTM_ENCRYPTION_KEY: cannot read ${value} (permission denied)`
              : `RTM_ENCRYPTION_KEY: cannot read ${value}: ${(err as Error).message}`,
      );
    }
    where = `RTM_ENCRYPTION_KEY (${value})`;
  }
  let key;
  try {
    key = parseServerPrivateKey(typeof input === 'string' ? input.trim() : input, config.encryptionCurve as CurveName);
  } catch (err) {
    throw new ConfigError(`${where}: ${(err as Error).message}`);
  }
  return (payload) => serverKeyExchange(key, payload as unknown as KeyQuestPayload).createCipher({ maxFrameBytes: config.maxFrameBytes });
}

/**
 * The client gate as clients and backends know it (`pushevent`'s endpoint, kickout's `ce`):
 * RTM_CLIENT_ENDPOINT, else the bind address and port; a wildcard bind address names no one (every
 * node of a cluster would be "0.0.0.0:13321", and a `ce` would kick on all), so the host name.
 */
function advertisedEndpoint(config: ServerConfig, port: number): string {
  if (config.clientEndpoint) return config.clientEndpoint;
  const host = clientHostOf(config);
  return hostPort(isWildcardHost(host) ? hostname() : host, port);
}

/** How long /healthz waits for the store's ping before it answers 503. */
const HEALTH_STORE_TIMEOUT_MS = 2000;

/** How long a graceful stop lets admin (/healthz, /metrics) connections finish before destroying them. */
const ADMIN_CLOSE_GRACE_MS = 1000;

/** The composition root: config → store → bus → services → gates → listeners. */
export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<RunningServer> {
  const log = options.logger ?? createLogger(config.logLevel);
  const keyExchange = keyExchangeFor(config); // a bad key fails before anything is opened
  const metrics = new Metrics(true);
  // So does a certificate that cannot be served.
  const tls =
    config.tlsCertFile !== undefined && config.tlsKeyFile !== undefined
      ? new ClientTls({ cert: config.tlsCertFile, key: config.tlsKeyFile }, log.child({ gate: 'client' }), metrics, config.tlsWatchMs)
      : undefined;
  // What is open so far, closed again (last first) when a later step fails: nothing is left behind.
  const undo: (() => unknown)[] = [];
  if (tls) undo.push(() => tls.stop());
  const abort = async (err: unknown): Promise<never> => {
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch {
        // the start has failed already; that error is the one to report
      }
    }
    throw err;
  };
  const store = options.store ?? (await openStore(config, log).catch((err: unknown) => abort(storeFailure(config, err))));
  await store.init().catch((err: unknown) => abort(storeFailure(config, err)));
  undo.push(() => store.close());
  log.info(store.describe(), 'store opened');
  const bus = options.bus ?? (await openBus(config, log).catch(abort));

  const presence = new LocalPresence();
  const listeners = new ListenRegistry();
  let clientEndpoint = advertisedEndpoint(config, config.clientPort);
  const endpoint = (): string => clientEndpoint; // the port is known once the listener is bound
  const groups = new GroupMembers(store, bus);
  const delivery = new Delivery(bus, presence, listeners, metrics, groups, {
    pushToSenderDevices: config.pushToSenderDevices,
    endpoint,
    kickedOut: (pid, uid) => services.sessions.kickedOut(pid, uid),
    kickoutCloseMs: config.kickoutCloseMs,
  });
  const services: Services = {
    config,
    log,
    metrics,
    store,
    bus,
    presence,
    listeners,
    delivery,
    groups,
    messaging: new Messaging(config, store, bus, presence, metrics, groups),
    history: new History(config, store),
    sessions: new Sessions(config, store, bus, presence, log, metrics, endpoint),
    clientEndpoint: endpoint,
  };
  // After a bus outage, what this node derives from other nodes' events is read from the store again.
  const resync = new BusResync(store, presence, groups, log, delivery.handle);
  metrics.busQueue = () => bus.queueStats;
  await bus
    .start(delivery.handle, (pid, uids) => presence.onlineOf(pid, uids), resync.reconnected)
    .catch((err: unknown) => abort(busFailure(config, err)));
  undo.push(() => bus.close());
  await services.sessions.start();
  undo.push(() => services.sessions.flush());

  const startedAt = Date.now();
  const infos = () => ({
    server: 'rtm-server',
    version: VERSION,
    node: bus.nodeId,
    endpoint: clientEndpoint,
    uptimeSeconds: Math.floor((Date.now() - startedAt) / 1000),
    store: config.store === 'sqlite' ? 'sqlite' : 'postgres',
    bus: config.bus === 'local' ? 'local' : 'nats',
    busConnected: bus.connected ?? true,
    connections: { server: serverGate.connectionCount, client: clientGate.connectionCount },
    sessions: presence.sessionCount,
  });
  // A cluster bus orders events across nodes: answers wait for it (bus.ts, causal order).
  const published = bus.sentMark && bus.sent ? (bus as Required<Pick<Bus, 'sentMark' | 'sent'>>) : undefined;
  const gateOptions = (name: 'server' | 'client'): GateOptions => ({
    name,
    log: log.child({ gate: name }),
    metrics,
    maxFrameBytes: config.maxFrameBytes,
    maxOutboundBytes: config.maxOutboundBytes,
    pushTimeoutMs: config.pushTimeoutMs,
    pingIntervalMs: config.pingIntervalMs,
    idleTimeoutMs: config.idleTimeoutMs,
    idleCountsOutbound: name === 'server',
    published,
    infos,
    keyExchange,
  });
  const signatures = new SignatureVerifier({
    projects: new Map(config.projects.map((p) => [p.pid, p])),
    windowSeconds: config.signWindowSeconds,
    allowLegacySign: config.allowLegacySign,
  });
  const serverGate = new ServerGate(gateOptions('server'), services, serverMethods, signatures);
  const clientGate = new ClientGate(gateOptions('client'), services, clientMethods);
  undo.push(() => Promise.all([serverGate.stop(0), clientGate.stop(0)]));

  // One count per gate, for all its ports (the client gate's plain and TLS ones): the limits are
  // the gate's, per node. Together never more than the open-file limit leaves room for: past it
  // the OS refuses, and libuv closes the connections of both gates without a word to node, so no
  // log line or metric would tell. The server gate's share first, the client gate the rest.
  const fileLimit = openFileLimit();
  const openFiles = openFileCount();
  const caps = connectionCaps({ server: config.maxServerConnections, client: config.maxClientConnections }, fileLimit, openFiles);
  const maxServerConnections = caps.server.cap;
  const maxClientConnections = caps.client.cap;
  const files = { openFileLimit: fileLimit, openFiles, maxServerConnections, maxClientConnections };
  // A warning when it matters: a gate left fewer than `enough` connections (the client gate 10,000,
  // a node's worth; the server gate its default), or a limit set and not kept.
  const level = (cap: number, configured: number, byDefault: number, enough: number): 'warn' | 'info' =>
    cap < enough || configured !== byDefault ? 'warn' : 'info';
  const serverDefault = DEFAULT_CONFIG.maxServerConnections;
  if (caps.server.lowered)
    log[level(maxServerConnections, config.maxServerConnections, serverDefault, serverDefault)](
      { ...files, configured: config.maxServerConnections },
      `the open-file limit leaves room for ${maxServerConnections} server-gate connections, its share of the ${caps.room} files left for connections: the server gate holds no more (RTM_MAX_SERVER_CONNECTIONS is ${config.maxServerConnections || 'no limit'}); raise the limit (ulimit -n, systemd LimitNOFILE=) for more`,
    );
  if (caps.client.lowered)
    log[level(maxClientConnections, config.maxClientConnections, DEFAULT_CONFIG.maxClientConnections, 10_000)](
      { ...files, configured: config.maxClientConnections },
      `the open-file limit leaves room for ${maxClientConnections} client connections beside the server gate's ${maxServerConnections}: the client gate holds no more (RTM_MAX_CLIENT_CONNECTIONS is ${config.maxClientConnections || 'no limit'}); raise the limit (ulimit -n, systemd LimitNOFILE=) for more`,
    );
  const clientLimits = new ConnectionLimits({ maxConnections: maxClientConnections, maxPerAddress: config.maxConnectionsPerAddress });
  metrics.clientSockets = () => ({ connections: clientLimits.connections, busiestAddress: clientLimits.busiestAddress() });
  // The server gate's own count: backends are few, known and pooled, so one that leaks connections
  // (or more app processes than planned) is stopped here, counted and logged, before the node runs
  // out of files. No per-address limit: many backends may come through one NAT or proxy.
  const serverLimits = new ConnectionLimits({ maxConnections: maxServerConnections, maxPerAddress: 0 });
  metrics.serverSockets = () => serverLimits.connections;
  const refused = connectionRefusals(log, metrics, (gate, reason) => {
    if (gate === 'server')
      return reason !== LimitRefusal.total
        ? undefined
        : caps.server.lowered
          ? `RTM_MAX_SERVER_CONNECTIONS (${config.maxServerConnections || 'no limit'}) is lowered to ${maxServerConnections} by the open-file limit (${fileLimit}), and that many connections are open on the server gate: a backend may be leaking connections (rtm_server_sockets); raise the open-file limit (ulimit -n, systemd LimitNOFILE=) if the backends need more`
          : `RTM_MAX_SERVER_CONNECTIONS (${maxServerConnections}) connections are open on the server gate: a backend may be leaking connections (rtm_server_sockets); raise it if the backends need that many`;
    if (gate !== 'client') return undefined;
    if (reason === LimitRefusal.total)
      return caps.client.lowered
        ? `the client gate holds ${maxClientConnections} connections, all the open-file limit (${fileLimit}) leaves room for beside the server gate's ${maxServerConnections}: raise it (ulimit -n, systemd LimitNOFILE=), or add nodes`
        : `RTM_MAX_CLIENT_CONNECTIONS (${maxClientConnections}) connections are open on the client gate: raise it if the node has the memory for more (docs/capacity-plan.md), or add nodes`;
    if (reason === LimitRefusal.perAddress)
      return `RTM_MAX_CONNECTIONS_PER_ADDRESS (${config.maxConnectionsPerAddress}) connections are open from this address`;
    if (reason !== 'TLS on a plain port') return undefined;
    return clientTlsPort !== undefined
      ? `wss:// clients belong on the TLS port (RTM_CLIENT_TLS_PORT, ${clientTlsPort})`
      : 'this server has no TLS port: set RTM_TLS_CERT and RTM_TLS_KEY, or end TLS at a proxy';
  });
  const serverListener = new Listener({
    host: config.host,
    port: config.serverPort,
    maxFrameBytes: config.maxFrameBytes,
    sniffTimeoutMs: config.idleTimeoutMs,
    httpRequestTimeoutMs: config.idleTimeoutMs,
    onTransport: (t) => serverGate.accept(t),
    onHttpQuest: serverGate.handleHttp,
    onRefused: refused('server'),
    limits: serverLimits,
  });
  const clientHost = clientHostOf(config);
  const clientListenerOptions = {
    host: clientHost,
    port: config.clientPort,
    maxFrameBytes: config.maxFrameBytes,
    sniffTimeoutMs: config.idleTimeoutMs,
    httpRequestTimeoutMs: config.idleTimeoutMs,
    onTransport: (t: Transport) => clientGate.accept(t),
    // Refused before the body is read: a peer nobody knows may not have megabytes buffered here.
    onHttpQuest: { refusal: { code: 20013, ex: 'the client gate serves FPNN over WebSocket or TCP, not HTTP calls' } },
    onRefused: refused('client'),
    limits: clientLimits,
    ...(config.clientProxyProtocolFrom === undefined ? {} : { proxyFrom: proxySources(config.clientProxyProtocolFrom) }),
  };
  const clientListener = new Listener(clientListenerOptions);
  // The same gate behind TLS, on a port of its own (wss://; spec client-api.md §1).
  const clientTlsListener = tls && new Listener({ ...clientListenerOptions, port: config.clientTlsPort, tls: tls.listenerOption() });
  const portListeners = [serverListener, clientListener, ...(clientTlsListener ? [clientTlsListener] : [])];
  const listen = async (listener: Listener, port: number, variable: string, host: string, hostVariable: string): Promise<number> => {
    const bound = await listener.listen().catch((err: unknown) => abort(bindFailure(err, port, variable, host, hostVariable)));
    undo.push(() => {
      listener.destroyAll();
      return listener.stopAccepting();
    });
    return bound;
  };
  const serverPort = await listen(serverListener, config.serverPort, 'RTM_SERVER_PORT', config.host, 'RTM_HOST');
  const clientHostVariable = config.clientHost === undefined ? 'RTM_HOST' : 'RTM_CLIENT_HOST';
  const clientPort = await listen(clientListener, config.clientPort, 'RTM_CLIENT_PORT', clientHost, clientHostVariable);
  let clientTlsPort: number | undefined;
  if (tls && clientTlsListener) {
    clientTlsPort = await listen(clientTlsListener, config.clientTlsPort, 'RTM_CLIENT_TLS_PORT', clientHost, clientHostVariable);
    tls.serving(clientTlsListener, clientTlsPort);
  }
  clientEndpoint = advertisedEndpoint(config, clientPort);

  let stopping: Promise<void> | undefined;
  // /healthz: 'ok', or what fails — 'stopping', 'bus disconnected', 'store unreachable', 'store
  // cannot write' (it answers, but cannot store messages: a full disk…), the last two with the
  // store's reason. One store check at a time, however many balancers ask; its failures are logged
  // when the state changes.
  type StoreHealth = { status: 'ok' } | { status: 'store unreachable' | 'store cannot write'; reason: string };
  let storeCheck: Promise<StoreHealth> | undefined;
  let storeWas: StoreHealth['status'] = 'ok';
  const checkStore = (): Promise<StoreHealth> =>
    (storeCheck ??= (async (): Promise<StoreHealth> => {
      let timer: NodeJS.Timeout | undefined;
      let health: StoreHealth;
      try {
        // One timeout for both: a probe write can wait on a disk as a ping can.
        const cannotWrite = await Promise.race([
          store.ping().then(() => store.writeProblem?.()),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${HEALTH_STORE_TIMEOUT_MS} ms`)), HEALTH_STORE_TIMEOUT_MS);
          }),
        ]);
        health = cannotWrite === undefined ? { status: 'ok' } : { status: 'store cannot write', reason: cannotWrite };
      } catch (err) {
        health = { status: 'store unreachable', reason: (err as Error).message };
      } finally {
        clearTimeout(timer);
        storeCheck = undefined;
      }
      if (health.status !== storeWas) {
        if (health.status === 'ok')
          log.info(storeWas === 'store unreachable' ? 'health: the store answers again' : 'health: the store can write again');
        else if (health.status === 'store unreachable') log.warn({ reason: health.reason }, 'health: the store does not answer');
        else log.warn({ reason: health.reason }, 'health: the store cannot write');
      }
      storeWas = health.status;
      return health;
    })());
  const health = async (): Promise<{ status: string; reason?: string }> => {
    if (stopping) return { status: 'stopping' };
    if (bus.connected === false) return { status: 'bus disconnected' };
    const ofStore = await checkStore();
    if (ofStore.status !== 'ok') return ofStore;
    return { status: stopping ? 'stopping' : 'ok' };
  };

  let admin: HttpServer | undefined;
  let adminPort: number | undefined;
  let backups: BackupEndpoint | undefined;
  if (config.adminPort >= 0) {
    backups = new BackupEndpoint(config, store, log.child({ admin: 'backup' }), metrics);
    admin = createHttpServer((req, res) => {
      // The path alone: probes add queries of their own (`/healthz?probe=lb`).
      const path = req.url?.split('?', 1)[0];
      if (path === '/healthz') {
        void health().then(({ status, reason }) => {
          res.writeHead(status === 'ok' ? 200 : 503, { 'Content-Type': 'application/json' });
          res.end(
            JSON.stringify({
              status,
              ...(reason === undefined ? {} : { reason }),
              node: bus.nodeId,
              connections: { server: serverGate.connectionCount, client: clientGate.connectionCount },
              sessions: presence.sessionCount,
            }),
          );
        });
      } else if (path === '/metrics') {
        metrics.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
            res.end(text);
          },
          () => res.writeHead(500).end(),
        );
      } else if (path === '/backup') backups!.handle(req, res);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve, reject) => {
      admin!.once('error', reject);
      admin!.listen(config.adminPort, config.host, () => resolve());
    }).catch((err: unknown) => abort(bindFailure(err, config.adminPort, 'RTM_ADMIN_PORT', config.host)));
    const a = admin.address();
    adminPort = typeof a === 'object' && a ? a.port : config.adminPort;
  }

  // Retention sweep (off by default).
  let retentionTimer: NodeJS.Timeout | undefined;
  if (config.retentionDays > 0 || config.retentionMaxPerConversation > 0) {
    // One sweep at a time: one that outlasts the hour (a huge first sweep, a store that hangs)
    // must not be joined by another on the same rows, and another, each holding a connection.
    let sweeping = false;
    const sweep = (): void => {
      if (sweeping) {
        log.warn('retention sweep still running after an hour: this one is skipped');
        return;
      }
      sweeping = true;
      store
        .sweepRetention(
          {
            maxAgeMs: config.retentionDays > 0 ? config.retentionDays * 86_400_000 : undefined,
            maxPerConversation: config.retentionMaxPerConversation || undefined,
          },
          BigInt(Date.now()),
        )
        .then((n) => n > 0 && log.info({ removed: n }, 'retention sweep'))
        .catch((err: unknown) => log.error({ err }, 'retention sweep failed'))
        .finally(() => (sweeping = false));
    };
    retentionTimer = setInterval(sweep, 3_600_000);
    retentionTimer.unref();
    sweep();
  }

  // What the nodes of a cluster must agree on (the bus's subject prefix; the store's schema is in
  // 'store opened') and what each must have of its own (node id, advertised client gate), side by
  // side: nodes on different prefixes serve each alone, with nothing else to tell.
  log.info(
    {
      version: VERSION,
      pid: process.pid,
      node: bus.nodeId,
      host: config.host,
      ...(clientHost !== config.host ? { clientHost } : {}),
      serverPort,
      clientPort,
      ...(clientTlsPort === undefined ? {} : { clientTlsPort }),
      adminPort,
      store: config.store === 'sqlite' ? `sqlite:${config.dataDir}` : 'postgres',
      bus: config.bus === 'local' ? 'local' : 'nats',
      ...(bus.subjectPrefix === undefined ? {} : { busPrefix: bus.subjectPrefix }),
      clientEndpoint,
      maxClientConnections,
      maxServerConnections,
      ...(fileLimit === undefined ? {} : { openFileLimit: fileLimit }),
      projects: config.projects.map((p) => p.pid),
    },
    'RTM server started',
  );

  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      log.info('stopping: no new connections, finishing in-flight quests');
      if (retentionTimer) clearInterval(retentionTimer);
      tls?.stop();
      const closed = Promise.all(portListeners.map((l) => l.stopAccepting()));
      services.sessions.beginStop();
      await Promise.all([serverGate.stop(), clientGate.stop()]);
      await services.sessions.flush();
      for (const l of portListeners) l.closeIdle();
      await Promise.race([closed, new Promise((r) => setTimeout(r, 3000).unref())]);
      for (const l of portListeners) l.destroyAll();
      // A backup running now is abandoned (its copy removed) before the store closes under it.
      await backups?.stop();
      if (admin) {
        // close() waits for every connection that is not idle: a scraper or TCP health check that
        // left a request unfinished (or sent none) would hold the stop forever. Idle ones close at
        // once; the rest get a short grace to finish their answer, then are destroyed.
        const closed = new Promise<void>((r) => admin!.close(() => r()));
        admin.closeIdleConnections();
        await Promise.race([closed, new Promise((r) => setTimeout(r, ADMIN_CLOSE_GRACE_MS).unref())]);
        admin.closeAllConnections();
        await closed;
      }
      await bus.close();
      await store.close();
      log.info('stopped');
    })());

  const reloadTls = (): TlsReload =>
    tls ? tls.reload() : { ok: false, error: 'the client gate has no TLS port (RTM_TLS_CERT and RTM_TLS_KEY are not set)' };
  return { config, serverPort, clientPort, clientTlsPort, adminPort, services, stop, reloadTls };
}

/** Resolves the configuration from the environment (and overrides) and starts. */
export async function startFromEnv(
  env: Record<string, string | undefined> = process.env,
  overrides: ConfigOverrides = {},
  options: StartOptions = {},
): Promise<RunningServer & { generatedSecret?: string; generatedSecretFile?: string; devSecretFile?: string }> {
  return startResolved(resolveConfig(env, overrides), options);
}

/**
 * Starts with a configuration resolved before (`rtm serve` prints a generated dev secret in
 * between, so that a start that fails does not lose it), first warning once of RTM_* variables
 * that the server does not read: a misspelt one would otherwise be ignored silently.
 */
export async function startResolved(
  resolved: ResolvedConfig,
  options: StartOptions = {},
): Promise<RunningServer & { generatedSecret?: string; generatedSecretFile?: string; devSecretFile?: string }> {
  const { config, generatedSecret, generatedSecretFile, devSecretFile, unknownVariables } = resolved;
  const logger = options.logger ?? createLogger(config.logLevel);
  if (unknownVariables.length > 0) {
    // Each near miss with the variable it was likely meant as: the fix, not only the symptom.
    const didYouMean = nearMisses(unknownVariables);
    logger.warn(
      { variables: unknownVariables, ...(Object.keys(didYouMean).length > 0 ? { didYouMean } : {}) },
      'ignored: RTM_* environment variables that the server does not read (misspelt?)',
    );
  }
  const server = await startServer(config, { ...options, logger });
  return { ...server, generatedSecret, generatedSecretFile, devSecretFile };
}
