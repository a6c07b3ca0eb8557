import { randomBytes } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { proxySources } from './transport/proxy-protocol.js';

/**
 * One typed configuration (STYLE.md 13): `DEFAULT_*` values, `resolveConfig()` validates the
 * environment (and an optional JSON config file) and returns a frozen object. A bad setting
 * fails at start-up with a message that names it.
 */

export interface ProjectConfig {
  /** Project id (int32). */
  readonly pid: number;
  /** Server-gate signing secret. */
  readonly secret: string;
  /**
   * Base64 key of "auth v2" tokens (client-api.md §2): a backend mints
   * base64(HMAC-SHA256(key, "<pid>:<uid>:<ts>")) itself instead of calling `gettoken`.
   * Absent: such logins are refused. @default none
   */
  readonly hmacSecret?: string;
  /** Accept the old signature without `ts` for this project (server-api.md §1). @default RTM_ALLOW_LEGACY_SIGN */
  readonly allowLegacySign?: boolean;
}

export interface Limits {
  /** Max bytes of a message body. @default 20480 */
  readonly maxMsgBytes: number;
  /** Max bytes of attrs. @default 2048 */
  readonly maxAttrsBytes: number;
  /** History page size cap; larger `num` is clamped. @default 20 */
  readonly historyMaxNum: number;
  /** Members/friends/blacks per add/del call, and ids per call where the spec says 100. @default 100 */
  readonly maxItemsPerCall: number;
  /**
   * Ids per read the spec sets no limit for (getp2punread, getgroupunread, getroomcount,
   * getgroupsopeninfo, getroomsopeninfo): enough for a user's 300 friends in one call. Also the
   * most conversations a conversation list answers (the newest). @default 1000
   */
  readonly maxQueryItems: number;
  /** uids per getonlineusers call. @default 200 */
  readonly maxOnlineQuery: number;
  /** Recipients per sendmsgs. @default 2000 */
  readonly maxRecipients: number;
  /** Members per group. @default 10000 */
  readonly maxGroupMembers: number;
  /**
   * Groups one project may hold (errors-and-limits.md §3), a group being a gid with at least one
   * member: an add that would create one more is refused (200034); adds to existing groups are
   * not. 0 = no limit. @default 10000 (RTM_MAX_GROUPS_PER_PROJECT)
   */
  readonly maxGroupsPerProject: number;
  /** Friends per user. @default 300 */
  readonly maxFriends: number;
  /** Rooms one user may be in. @default 10 */
  readonly maxRoomsPerUser: number;
  /** dataset key / value bytes. @default 128 / 65535 */
  readonly maxDataKeyBytes: number;
  readonly maxDataValBytes: number;
  /** oinfo / pinfo bytes. @default 65535 */
  readonly maxInfoBytes: number;
  /**
   * Ids and event names one server-gate connection listens to (addlisten / setlisten; the four
   * lists together): a listen state lives as long as its connection, so without a bound repeated
   * addlisten grew it without end. Over it: 200032. @default 100000 (RTM_MAX_LISTEN_ITEMS)
   */
  readonly maxListenItems: number;
}

export interface ServerConfig {
  readonly projects: readonly ProjectConfig[];
  /** Bind address of every listener (the client gate's: `clientHost`). @default 127.0.0.1 */
  readonly host: string;
  /**
   * Bind address of the client gate, where end users connect: a public interface while the server
   * gate and the admin port stay on a private one (`host`). @default host
   */
  readonly clientHost?: string;
  /** Server gate port (backends). 0 = ephemeral. @default 13315 */
  readonly serverPort: number;
  /** Client gate port (end users). 0 = ephemeral. @default 13321 */
  readonly clientPort: number;
  /**
   * The client gate as clients and backends know it, "host:port": `pushevent`'s `endpoint` and
   * what a kickout's `ce` names. @default RTM_CLIENT_HOST:port, a wildcard one (0.0.0.0, ::) replaced
   * by this machine's host name, so that the nodes of a cluster each have their own
   */
  readonly clientEndpoint?: string;
  /**
   * Client gate port speaking TLS (wss://, and FPNN over TLS), bound beside `clientPort` on the same
   * address when `tlsCertFile` and `tlsKeyFile` are set. 0 = ephemeral. @default 13322
   */
  readonly clientTlsPort: number;
  /** PEM certificate chain (leaf first) of the client gate's TLS port; reread on SIGHUP. */
  readonly tlsCertFile?: string;
  /** PEM private key of `tlsCertFile`. */
  readonly tlsKeyFile?: string;
  /**
   * How often the TLS files are checked for a change (a renewal written in place): reloaded once
   * they have not changed for one more check. 0 = only on SIGHUP. @default 60000
   */
  readonly tlsWatchMs: number;
  /**
   * Balancers in front of the client gate that open each connection with a PROXY protocol header
   * (HAProxy `send-proxy`/`send-proxy-v2`, nginx `proxy_protocol on`, AWS NLB): addresses and CIDR
   * ranges, comma-separated. Their connections must send one; the client it names is the peer.
   */
  readonly clientProxyProtocolFrom?: string;
  /** Admin HTTP port (/healthz, /metrics, /backup). 0 = ephemeral, -1 = off. @default 13380 */
  readonly adminPort: number;
  /**
   * Bearer token of the admin port's `GET /backup`, a copy of every message of every project. Set:
   * every peer must send `Authorization: Bearer <token>`; unset: only loopback peers are served.
   * @default none (RTM_ADMIN_TOKEN)
   */
  readonly adminToken?: string;
  /** Embedded store directory. @default ./data */
  readonly dataDir: string;
  /** `sqlite` or a `postgres://…` URL. @default sqlite */
  readonly store: string;
  /** `local` or a `nats://…` URL. @default local */
  readonly bus: string;
  /** NATS subject prefix: nodes of one cluster share it, two clusters on one NATS differ. @default rtm */
  readonly busPrefix: string;
  /** PostgreSQL schema of the store (created if missing). @default public */
  readonly storeSchema: string;
  /**
   * SQLite `synchronous` in WAL mode. NORMAL: an acknowledged message survives a process crash
   * (SIGKILL), not a power loss; FULL: fsync per group commit, survives both. @default NORMAL
   */
  readonly sqliteSynchronous: 'NORMAL' | 'FULL';
  /**
   * Checkpoint the SQLite WAL from a background thread every this many ms; 0: SQLite's automatic
   * checkpoints inside commits. Short intervals keep each checkpoint's fsync small. @default 100
   */
  readonly sqliteCheckpointMs: number;
  /** Commit message appends in a writer thread (worth it with ≥ 4 cores or a slow disk). @default false */
  readonly sqliteWriterThread: boolean;
  /**
   * Hold the SQLite database exclusively: fewer system calls per commit, and a second server on
   * the same data directory is refused at start; no other process (not even the `sqlite3` shell)
   * can open the database while the server runs. @default true
   */
  readonly sqliteExclusive: boolean;
  /**
   * SQLite page cache of each store connection, in MiB. More keeps more of a large store hot for
   * reads, but the commits that rebalance an index walk the whole cache. @default 16
   */
  readonly sqliteCacheMiB: number;
  /**
   * Let V8 scavenge (collect the young generation) with helper threads, its default. `rtm serve`
   * turns it off unless this is set: a messaging server's young generation is nearly all garbage
   * (≈ 90 KB of 13 MB survive a scavenge on the P2P latency bench), so the helpers have nothing to
   * share and waking them is most of the pause (1.2 → 0.7 ms median per scavenge). Only the
   * process that runs `rtm serve`: an embedding process keeps its own V8 flags. @default false
   */
  readonly parallelScavenge: boolean;
  /** Largest accepted FPNN frame, checked from the header. @default 8 MiB */
  readonly maxFrameBytes: number;
  /** Close a connection with no complete frame either way for this long. @default 60000 ms */
  readonly idleTimeoutMs: number;
  /** Interval of the server's `ping` to every connection. @default 20000 ms */
  readonly pingIntervalMs: number;
  /** How long the server waits for the answer to one of its quests. @default 5000 ms */
  readonly pushTimeoutMs: number;
  /** Bytes queued for one connection above which it is closed as a slow consumer. @default 4 MiB */
  readonly maxOutboundBytes: number;
  /**
   * Connections the client gate holds at once, over all its ports (plain and TLS), from accept to
   * close: FPNN, WebSocket and HTTP alike, logged in or not. One more is closed at once. 0 = no
   * limit. The default is 2.5 × the 20,000 of the capacity plan's node, and 50,000 idle ones take
   * ~0.38 GiB plain, 1.7 – 2.5 GiB over TLS: a flood stops there instead of at the end of the memory.
   * @default 50000
   */
  readonly maxClientConnections: number;
  /**
   * Connections the server gate holds at once, from accept to close: FPNN and HTTP bridge calls
   * alike, signed or not. One more is closed at once. 0 = no limit of its own: its share of what
   * the open-file limit leaves room for still bounds it (observability/open-files.ts). Backends
   * keep a few pooled connections each, so 1,000 is e.g. 150 app processes with a pool of 6; one
   * that leaks connections is stopped here, counted and logged, instead of at the open-file limit,
   * where both gates' new connections would be closed unseen. @default 1000
   */
  readonly maxServerConnections: number;
  /**
   * Connections the client gate holds at once from one client address (the one a PROXY header
   * names, from a balancer listed in `clientProxyProtocolFrom`). 0 = no limit: many users may
   * share an address (carrier-grade NAT, offices), and behind a proxy that sends no PROXY header
   * every connection has the proxy's. @default 0
   */
  readonly maxConnectionsPerAddress: number;
  /** Allowed |now − ts| of server-gate signatures. @default 300 s */
  readonly signWindowSeconds: number;
  /** How long an auth v2 (HMAC) token works after its `ts`. @default 86400 s */
  readonly hmacTokenTtlSeconds: number;
  /** Accept the old signature md5(pid:secret:salt) when `ts` is absent. @default false */
  readonly allowLegacySign: boolean;
  /** Server-gate group/room sends require `from` to be a member (old doc). @default true */
  readonly serverSendRequiresMembership: boolean;
  /**
   * uids allowed to broadcast through the server gate; empty = anyone. They are the backend's
   * identities: a client login as one of them is refused (200025). @default []
   */
  readonly broadcastAdminUids: readonly bigint[];
  /** Client-gate calls per second per user (token bucket refill); 0 = unlimited. @default 50 */
  readonly clientCallsPerSecond: number;
  /** Client-gate burst per user. @default 100 */
  readonly clientCallBurst: number;
  /** Server-gate calls per second per project; 0 = unlimited. @default 0 */
  readonly serverCallsPerSecond: number;
  /**
   * Push p2p, group and room messages to the sender's other sessions (devices) too; never to the
   * session that sent it. Off: they find their own messages in history (client-api.md §6). @default false
   */
  readonly pushToSenderDevices: boolean;
  /**
   * One session per user: a login sends oneway `kickout` to the user's other sessions, on every
   * node, and closes them (client-api.md §2). Off: any number of devices at once. @default false
   */
  readonly singleSession: boolean;
  /** A reconnect within this time after a user's last session ended is the same presence. @default 120000 ms */
  readonly logoutGraceMs: number;
  /**
   * How long a connection kicked out stays open after its oneway `kickout`, for the client to
   * close it itself, as the spec has it (client-api.md §6); then the server closes it. The session
   * ends at the kickout: nothing more is pushed or answered on it. The official browser SDK reads
   * its frames a timer tick after they arrive and forgets unread ones when the socket closes: a
   * kickout closed at once was lost, and the SDK logged in again. 0: closed at once. @default 5000 ms
   */
  readonly kickoutCloseMs: number;
  /**
   * A node that has not touched its row in the store for this long died without a stop: another
   * node (or the next process on the same data) ends the presences it held. @default 15000 ms
   */
  readonly nodeLeaseMs: number;
  /** Delete messages older than this many days; 0 = keep. @default 0 */
  readonly retentionDays: number;
  /** Keep at most this many messages per conversation; 0 = all. @default 0 */
  readonly retentionMaxPerConversation: number;
  /** Optional server private key for `*key` encryption (hex of 32 raw bytes, or a PEM path). @default none */
  readonly encryptionKey?: string;
  /** Curve of the encryption key. @default secp256k1 */
  readonly encryptionCurve: string;
  /** Log level (pino). @default info */
  readonly logLevel: string;
  readonly limits: Limits;
}

export const DEFAULT_LIMITS: Limits = Object.freeze({
  maxMsgBytes: 20480,
  maxAttrsBytes: 2048,
  historyMaxNum: 20,
  maxItemsPerCall: 100,
  maxQueryItems: 1000,
  maxOnlineQuery: 200,
  maxRecipients: 2000,
  maxGroupMembers: 10000,
  maxGroupsPerProject: 10000,
  maxFriends: 300,
  maxRoomsPerUser: 10,
  maxDataKeyBytes: 128,
  maxDataValBytes: 65535,
  maxInfoBytes: 65535,
  maxListenItems: 100_000,
});

export const DEFAULT_CONFIG: Omit<ServerConfig, 'projects'> = Object.freeze({
  host: '127.0.0.1',
  serverPort: 13315,
  clientPort: 13321,
  clientTlsPort: 13322,
  tlsWatchMs: 60_000,
  adminPort: 13380,
  dataDir: './data',
  store: 'sqlite',
  bus: 'local',
  busPrefix: 'rtm',
  storeSchema: 'public',
  sqliteSynchronous: 'NORMAL',
  sqliteCheckpointMs: 100,
  sqliteWriterThread: false,
  sqliteExclusive: true,
  sqliteCacheMiB: 16,
  parallelScavenge: false,
  maxFrameBytes: 8 * 1024 * 1024,
  idleTimeoutMs: 60_000,
  pingIntervalMs: 20_000,
  pushTimeoutMs: 5_000,
  maxOutboundBytes: 4 * 1024 * 1024,
  maxClientConnections: 50_000,
  maxServerConnections: 1_000,
  maxConnectionsPerAddress: 0,
  signWindowSeconds: 300,
  hmacTokenTtlSeconds: 86_400,
  allowLegacySign: false,
  serverSendRequiresMembership: true,
  broadcastAdminUids: [],
  clientCallsPerSecond: 50,
  clientCallBurst: 100,
  serverCallsPerSecond: 0,
  pushToSenderDevices: false,
  singleSession: false,
  logoutGraceMs: 120_000,
  kickoutCloseMs: 5_000,
  nodeLeaseMs: 15_000,
  retentionDays: 0,
  retentionMaxPerConversation: 0,
  encryptionCurve: 'secp256k1',
  logLevel: 'info',
  limits: DEFAULT_LIMITS,
});

export const DEV_PROJECT_ID = 1000001;

/** pino's levels, most to least severe; `silent` logs nothing. */
export const LOG_LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** RTM_LOG_LEVEL as resolveConfig reads it, not yet checked against LOG_LEVELS; the default when unset or empty. */
export const logLevelOf = (env: Record<string, string | undefined>): string =>
  env.RTM_LOG_LEVEL?.trim().toLowerCase() || DEFAULT_CONFIG.logLevel;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

/** `note` says what a value means where the range does not (`0 = no limit`): in the error, after the range. */
function int(env: Env, name: string, fallback: number, min: number, max: number, note?: string): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const meaning = note ? ` (${note})` : '';
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be an integer between ${min} and ${max}${meaning}, got '${raw}'`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}${meaning}, got ${n}`);
  return n;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true;
  if (['0', 'false', 'no', 'off'].includes(raw)) return false;
  throw new ConfigError(`${name} must be true or false, got '${env[name]}'`);
}

/**
 * RTM_ADMIN_TOKEN: sent in a header (`Authorization: Bearer …`), so visible ASCII without spaces;
 * at least 16 characters, for a token that guards a copy of every message cannot be short.
 */
function adminToken(raw: string): string {
  if (!/^[\x21-\x7e]{16,}$/.test(raw))
    throw new ConfigError(
      `RTM_ADMIN_TOKEN must be at least 16 visible ASCII characters without spaces (e.g. \`openssl rand -hex 32\`), got ${raw.length} characters`,
    );
  return raw;
}

function port(env: Env, name: string, fallback: number, allowOff = false): number {
  return int(env, name, fallback, allowOff ? -1 : 0, 65535);
}

/** Options that tests and embedders pass directly, overriding the environment. */
export type ConfigOverrides = Partial<Omit<ServerConfig, 'limits'>> & { limits?: Partial<Limits> };

/** The JSON file named by RTM_CONFIG: the projects served (every other setting is an environment variable). */
interface FileConfig {
  projects?: unknown[];
}

const PROJECT_KEYS = ['pid', 'secret', 'hmacSecret', 'allowLegacySign'];

/**
 * Edits between `a` and `b`: letters inserted, deleted or replaced, and two neighbours swapped
 * (optimal string alignment), the slips of a hand typing a name.
 */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i]!;
      row[j] = Math.min(d[i - 1]![j]! + 1, row[j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** Units at the end of variable names: a name that lacks only its unit is a near miss, however long the unit. */
const UNITS = ['_MS', '_SECONDS', '_BYTES', '_MIB'];

/**
 * The names of `known` that a misspelt `name` was likely meant as: the nearest (several when as
 * near), if at most a third of its letters are edited (one in a short name), letter case aside and
 * `prefix`, which every name has, left out of the count. None when none is that near: a far guess
 * would mislead more than no guess.
 */
function nearestNames(name: string, known: readonly string[], prefix = ''): string[] {
  const stem = (n: string): string => n.toUpperCase().slice(prefix.length);
  const misspelt = stem(name);
  const limit = Math.max(1, Math.floor(misspelt.length / 3));
  const distance = (candidate: string): number =>
    UNITS.some((unit) => stem(candidate) === misspelt + unit) ? 1 : editDistance(misspelt, stem(candidate));
  const near = known.map((candidate) => ({ candidate, distance: distance(candidate) })).filter((c) => c.distance <= limit);
  const nearest = Math.min(...near.map((c) => c.distance));
  return near.filter((c) => c.distance === nearest).map((c) => c.candidate);
}

/** `did you mean 'a'?` for an unknown key of the RTM_CONFIG file, undefined when no known key is near. */
function meantKey(key: string, known: readonly string[]): string | undefined {
  const near = nearestNames(key, known);
  return near.length > 0 ? `did you mean ${near.map((k) => `'${k}'`).join(' or ')}?` : undefined;
}

const jsonKind = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);

/**
 * Reads and checks the RTM_CONFIG file. Anything but `{"projects":[…]}` with at least one project is
 * an error that names the file and the problem: a typo must not fall back to the dev project.
 */
function readConfigFile(path: string): FileConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`RTM_CONFIG: cannot read ${path}: ${(err as Error).message}`);
  }
  // A byte order mark, which Windows editors (Notepad, Visual Studio) may write at the start of a
  // UTF-8 file: no character of the JSON, and JSON.parse would refuse the file for it.
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`RTM_CONFIG: ${path} is not valid JSON: ${(err as Error).message}`);
  }
  const where = `RTM_CONFIG (${path})`;
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new ConfigError(`${where} must be a JSON object {"projects":[{"pid":…,"secret":"…"}]}, got ${jsonKind(json)}`);
  for (const key of Object.keys(json)) {
    if (key === 'projects') continue;
    const meant = meantKey(key, ['projects']);
    const hint = key === 'dataDir' ? ' (set RTM_DATA_DIR instead)' : meant ? ` (${meant})` : '';
    throw new ConfigError(`${where}: unknown key '${key}'${hint}; the file has one key, 'projects'`);
  }
  const { projects } = json as { projects?: unknown };
  if (projects === undefined) throw new ConfigError(`${where} has no 'projects' list`);
  if (!Array.isArray(projects)) throw new ConfigError(`${where}: 'projects' must be an array of {pid, secret}, got ${jsonKind(projects)}`);
  if (projects.length === 0) throw new ConfigError(`${where}: 'projects' is empty; list at least one project`);
  projects.forEach((p, i) => {
    if (typeof p !== 'object' || p === null || Array.isArray(p))
      throw new ConfigError(`${where} projects[${i}] must be an object {pid, secret}, got ${jsonKind(p)}`);
    const unknown = Object.keys(p).find((k) => !PROJECT_KEYS.includes(k));
    if (unknown) {
      const meant = meantKey(unknown, PROJECT_KEYS);
      throw new ConfigError(
        `${where} projects[${i}]: unknown key '${unknown}'${meant ? `: ${meant}` : ''} (known: ${PROJECT_KEYS.join(', ')})`,
      );
    }
  });
  return { projects };
}

function validateProject(p: unknown, where: string): ProjectConfig {
  const o = p as { pid?: unknown; secret?: unknown; hmacSecret?: unknown; allowLegacySign?: unknown };
  if (typeof o?.pid !== 'number' || !Number.isInteger(o.pid) || o.pid <= 0 || o.pid > 0x7fffffff) {
    throw new ConfigError(`${where}: pid must be a positive int32`);
  }
  if (typeof o.secret !== 'string' || o.secret.length < 8)
    throw new ConfigError(`${where}: secret must be a string of at least 8 characters`);
  const project: { -readonly [K in keyof ProjectConfig]: ProjectConfig[K] } = { pid: o.pid, secret: o.secret };
  if (o.allowLegacySign !== undefined) {
    if (typeof o.allowLegacySign !== 'boolean') throw new ConfigError(`${where}: allowLegacySign must be true or false`);
    project.allowLegacySign = o.allowLegacySign;
  }
  if (o.hmacSecret !== undefined && o.hmacSecret !== '') {
    if (typeof o.hmacSecret !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(o.hmacSecret) || Buffer.from(o.hmacSecret, 'base64').length < 16)
      throw new ConfigError(`${where}: hmacSecret must be base64 of at least 16 bytes (e.g. \`openssl rand -base64 32\`)`);
    project.hmacSecret = o.hmacSecret;
  }
  return Object.freeze(project);
}

/** Why a file system call failed, in words (the code alone for an operator is cryptic). */
function why(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EACCES' || code === 'EPERM'
    ? 'permission denied'
    : code === 'EROFS'
      ? 'read-only file system'
      : code === 'ENOTDIR' || code === 'EEXIST'
        ? 'a file is in the way: not a directory'
        : code === 'EISDIR'
          ? 'it is a directory, not a file'
          : code === 'ENOSPC'
            ? 'no space left on the device'
            : (err as Error).message;
}

/**
 * Makes the data directory if missing and checks that the server may write in it: a
 * ConfigError naming RTM_DATA_DIR and the reason, rather than the store's or the secret file's
 * own error later (SQLite only says "unable to open database file").
 */
export function checkDataDir(dir: string): void {
  if (dir === ':memory:') return;
  try {
    // 0700: the directory holds the database (login tokens, messages) and the dev secret. Only
    // what the server creates; an existing directory keeps the mode its owner gave it.
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ConfigError(`RTM_DATA_DIR ${dir} cannot be created (${why(err)})`);
  }
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new ConfigError(`RTM_DATA_DIR ${dir} is not writable (${why(err)})`);
  }
}

/**
 * The secret of the dev project when RTM_PROJECT_SECRET is not set: generated once, saved in the
 * data dir, so a restart keeps working with the same backend configuration. Only with the SQLite
 * store: a PostgreSQL cluster has no data dir to keep it in, and each node would invent its own.
 */
function devSecret(dataDir: string, store: string): { secret: string; generated: boolean; file?: string } {
  if (store !== 'sqlite') {
    throw new ConfigError(
      "RTM_PROJECT_SECRET is not set and RTM_CONFIG lists no projects: with RTM_STORE=postgres the dev project's secret " +
        'cannot be generated (there is no data directory to keep it in, and every node would invent its own); ' +
        'set RTM_PROJECT_ID and RTM_PROJECT_SECRET, or list the projects in RTM_CONFIG',
    );
  }
  if (dataDir === ':memory:') return { secret: randomBytes(16).toString('hex'), generated: true };
  const file = join(dataDir, 'dev-project-secret');
  if (existsSync(file)) {
    // A bad file is named, with what to do: the operator never set RTM_PROJECT_SECRET.
    const remedy = `or remove the file to have a new secret generated (backends then need the new one), or set RTM_PROJECT_SECRET`;
    let secret: string;
    try {
      secret = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new ConfigError(`the dev project's secret file ${file} cannot be read (${why(err)}): fix it, ${remedy}`);
    }
    if (secret.length < 8)
      throw new ConfigError(
        `the dev project's secret file ${file} is ${secret ? 'too short (under 8 characters)' : 'empty'}: put the secret back in it, ${remedy}`,
      );
    return { secret, generated: false, file };
  }
  checkDataDir(dataDir);
  const secret = randomBytes(16).toString('hex');
  try {
    writeWhole(file, secret + '\n');
  } catch (err) {
    throw new ConfigError(`RTM_DATA_DIR ${dataDir}: the dev project's secret cannot be saved in ${file} (${why(err)})`);
  }
  return { secret, generated: true, file };
}

/**
 * Writes `file` whole or not at all (a temporary file synced, then renamed over it): a write cut
 * short by a full disk would leave an empty secret file that the next start refuses.
 */
function writeWhole(file: string, text: string): void {
  const temporary = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fd = openSync(temporary, 'wx', 0o600);
    try {
      writeFileSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, file);
  } catch (err) {
    rmSync(temporary, { force: true });
    throw err;
  }
}

/**
 * Each listener needs a port of its own: two on one port would fail the start as "in use" by
 * nobody the operator can find (the server itself). 0 (ephemeral) and -1 (off) clash with nothing.
 */
function checkPortsDiffer(config: Omit<ServerConfig, 'projects'>): void {
  const ports: [string, number][] = [
    ['RTM_SERVER_PORT', config.serverPort],
    ['RTM_CLIENT_PORT', config.clientPort],
    ['RTM_ADMIN_PORT', config.adminPort],
  ];
  if (config.tlsCertFile !== undefined) ports.push(['RTM_CLIENT_TLS_PORT', config.clientTlsPort]);
  for (let i = 0; i < ports.length; i++) {
    for (let j = i + 1; j < ports.length; j++) {
      const [a, portA] = ports[i]!;
      const [b, portB] = ports[j]!;
      if (portA > 0 && portA === portB) throw new ConfigError(`${b} and ${a} are both ${portA}: each listener needs a port of its own`);
    }
  }
}

export interface ResolvedConfig {
  config: ServerConfig;
  /** Set when a dev secret was generated: print it once. */
  generatedSecret?: string;
  /** The file the generated secret was saved in; undefined when it was not saved (RTM_DATA_DIR=:memory:). */
  generatedSecretFile?: string;
  /** The file the dev project's secret was read from or saved in; undefined when it is not the dev project's. */
  devSecretFile?: string;
  /** RTM_* variables of `env` that the server does not read (ENV_VARIABLES): warned about at start. */
  unknownVariables: string[];
}

/**
 * Every environment variable the server reads (resolveConfig below), and the CLI's RTM_ENDPOINT.
 * A variable added to resolveConfig goes here too (config.test.ts checks it): the others with the
 * RTM_ prefix are warned about at start, a misspelt one would otherwise be ignored silently.
 */
export const ENV_VARIABLES: readonly string[] = [
  'RTM_CONFIG',
  'RTM_PROJECT_ID',
  'RTM_PROJECT_SECRET',
  'RTM_PROJECT_HMAC_SECRET',
  'RTM_DATA_DIR',
  'RTM_STORE',
  'RTM_BUS',
  'RTM_MAX_MSG_BYTES',
  'RTM_MAX_ATTRS_BYTES',
  'RTM_HISTORY_MAX_NUM',
  'RTM_MAX_GROUPS_PER_PROJECT',
  'RTM_MAX_LISTEN_ITEMS',
  'RTM_BROADCAST_ADMIN_UIDS',
  'RTM_HOST',
  'RTM_CLIENT_HOST',
  'RTM_SERVER_PORT',
  'RTM_CLIENT_PORT',
  'RTM_CLIENT_ENDPOINT',
  'RTM_CLIENT_TLS_PORT',
  'RTM_TLS_CERT',
  'RTM_TLS_KEY',
  'RTM_TLS_WATCH_MS',
  'RTM_CLIENT_PROXY_PROTOCOL_FROM',
  'RTM_ADMIN_PORT',
  'RTM_ADMIN_TOKEN',
  'RTM_BUS_PREFIX',
  'RTM_STORE_SCHEMA',
  'RTM_SQLITE_SYNCHRONOUS',
  'RTM_SQLITE_CHECKPOINT_MS',
  'RTM_SQLITE_WRITER_THREAD',
  'RTM_SQLITE_EXCLUSIVE',
  'RTM_SQLITE_CACHE_MIB',
  'RTM_PARALLEL_SCAVENGE',
  'RTM_MAX_FRAME_BYTES',
  'RTM_IDLE_TIMEOUT_MS',
  'RTM_PING_INTERVAL_MS',
  'RTM_PUSH_TIMEOUT_MS',
  'RTM_MAX_OUTBOUND_BYTES',
  'RTM_MAX_CLIENT_CONNECTIONS',
  'RTM_MAX_SERVER_CONNECTIONS',
  'RTM_MAX_CONNECTIONS_PER_ADDRESS',
  'RTM_SIGN_WINDOW_SECONDS',
  'RTM_HMAC_TOKEN_TTL_SECONDS',
  'RTM_ALLOW_LEGACY_SIGN',
  'RTM_SERVER_SEND_REQUIRES_MEMBERSHIP',
  'RTM_CLIENT_CALLS_PER_SECOND',
  'RTM_CLIENT_CALL_BURST',
  'RTM_SERVER_CALLS_PER_SECOND',
  'RTM_PUSH_TO_SENDER_DEVICES',
  'RTM_SINGLE_SESSION',
  'RTM_LOGOUT_GRACE_MS',
  'RTM_KICKOUT_CLOSE_MS',
  'RTM_NODE_LEASE_MS',
  'RTM_RETENTION_DAYS',
  'RTM_RETENTION_MAX_PER_CONVERSATION',
  'RTM_ENCRYPTION_KEY',
  'RTM_ENCRYPTION_CURVE',
  'RTM_LOG_LEVEL',
  'RTM_ENDPOINT', // the CLI's target server (cli.ts)
];

/** Prefixes of variables that tests and benchmarks read, not the server: not warned about. */
const NOT_SERVER_PREFIXES = ['RTM_BENCH_', 'RTM_MODEL_', 'RTM_TEST_', 'RTM_STORE_CRASH_CHILD'];

/**
 * Names other servers use for what a variable of ours sets, which spelling cannot lead to
 * (`RTM_SERVER_HOST` is nearer `RTM_SERVER_PORT` than `RTM_HOST`): looked up before it.
 */
const OTHER_NAMES: Readonly<Record<string, string>> = {
  RTM_SERVER_HOST: 'RTM_HOST',
  RTM_BIND: 'RTM_HOST',
  RTM_BIND_HOST: 'RTM_HOST',
  RTM_BIND_ADDRESS: 'RTM_HOST',
  RTM_LISTEN: 'RTM_HOST',
  RTM_LISTEN_HOST: 'RTM_HOST',
  RTM_LISTEN_ADDRESS: 'RTM_HOST',
  RTM_ADDRESS: 'RTM_HOST',
  RTM_PORT: 'RTM_CLIENT_PORT or RTM_SERVER_PORT',
  RTM_METRICS_PORT: 'RTM_ADMIN_PORT',
  RTM_HEALTH_PORT: 'RTM_ADMIN_PORT',
  RTM_DB: 'RTM_STORE',
  RTM_DATABASE: 'RTM_STORE',
  RTM_DATABASE_URL: 'RTM_STORE',
  RTM_DB_URL: 'RTM_STORE',
  RTM_POSTGRES_URL: 'RTM_STORE',
  RTM_PG_URL: 'RTM_STORE',
  RTM_NATS: 'RTM_BUS',
  RTM_NATS_URL: 'RTM_BUS',
  RTM_SECRET: 'RTM_PROJECT_SECRET',
  RTM_PID: 'RTM_PROJECT_ID',
  RTM_DATA: 'RTM_DATA_DIR',
  RTM_DATA_PATH: 'RTM_DATA_DIR',
  RTM_TLS_CERT_FILE: 'RTM_TLS_CERT',
  RTM_TLS_KEY_FILE: 'RTM_TLS_KEY',
};

/**
 * The variable that a misspelt RTM_* one was likely meant as (`RTM_SEVER_PORT`: `RTM_SERVER_PORT`;
 * another server's name for it, `RTM_DATABASE_URL`: `RTM_STORE`), 'A or B' when two are as near;
 * undefined when none is near. Said in the warning at start.
 */
export function meantVariable(name: string): string | undefined {
  return OTHER_NAMES[name.toUpperCase()] ?? (nearestNames(name, ENV_VARIABLES, 'RTM_').join(' or ') || undefined);
}

/**
 * For a configuration error: the RTM_* variables set that the server does not read but that are
 * near one it does, as a sentence to add to the error ('' when none). The warning that names them
 * comes only once the configuration is good, and the misspelling may be the very cause.
 */
export function misspeltNote(env: Env): string {
  const near = Object.entries(nearMisses(unknownVariables(env))).map(([variable, meant]) => `${variable} (did you mean ${meant}?)`);
  return near.length > 0 ? `; also, not read by the server: ${near.join(', ')}` : '';
}

/** Of `variables` the server does not read, those near one it does, each with it (`meantVariable`). */
export function nearMisses(variables: readonly string[]): Record<string, string> {
  const near: Record<string, string> = {};
  for (const variable of variables) {
    const meant = meantVariable(variable);
    if (meant) near[variable] = meant;
  }
  return near;
}

function unknownVariables(env: Env): string[] {
  return Object.keys(env)
    .filter((k) => k.startsWith('RTM_') && !ENV_VARIABLES.includes(k) && !NOT_SERVER_PREFIXES.some((p) => k.startsWith(p)))
    .sort();
}

export function resolveConfig(env: Env = process.env, overrides: ConfigOverrides = {}): ResolvedConfig {
  const file: FileConfig = env.RTM_CONFIG ? readConfigFile(env.RTM_CONFIG) : {};
  const d = DEFAULT_CONFIG;
  const dataDir = overrides.dataDir ?? (env.RTM_DATA_DIR || d.dataDir);
  const store = overrides.store ?? (env.RTM_STORE || d.store);
  if (store !== 'sqlite' && !/^postgres(ql)?:\/\//.test(store))
    throw new ConfigError(`RTM_STORE must be 'sqlite' or a postgres:// URL, got '${store}'`);
  const bus = overrides.bus ?? (env.RTM_BUS || d.bus);
  if (bus !== 'local' && !/^nats:\/\//.test(bus)) throw new ConfigError(`RTM_BUS must be 'local' or a nats:// URL, got '${bus}'`);
  // A `?prefix=` on the URL wins over RTM_BUS_PREFIX (docs/cluster.md): checked here as NatsBus
  // would, so that a bad one is a configuration error naming RTM_BUS, not a failure inside the bus.
  for (const query of bus.split(',').flatMap((url) => (url.includes('?') ? [url.slice(url.indexOf('?') + 1)] : []))) {
    const prefix = new URLSearchParams(query).get('prefix');
    if (prefix !== null && !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(prefix))
      throw new ConfigError(
        `RTM_BUS: the ?prefix= of the URL must be letters, digits, _ or - (dot-separated tokens allowed), got '${prefix}'`,
      );
  }

  let projects: ProjectConfig[] | undefined;
  const projectFromEnv = (secret: string): ProjectConfig =>
    validateProject(
      { pid: int(env, 'RTM_PROJECT_ID', DEV_PROJECT_ID, 1, 0x7fffffff), secret, hmacSecret: env.RTM_PROJECT_HMAC_SECRET },
      'RTM_PROJECT_ID/RTM_PROJECT_SECRET/RTM_PROJECT_HMAC_SECRET',
    );
  if (overrides.projects) projects = overrides.projects.map((p, i) => validateProject(p, `projects[${i}]`));
  else if (file.projects) {
    // The file replaces the project variables (README); a key set beside it would be dropped silently.
    if (env.RTM_PROJECT_HMAC_SECRET)
      throw new ConfigError(
        `RTM_PROJECT_HMAC_SECRET is not read with RTM_CONFIG (${env.RTM_CONFIG}): put "hmacSecret" in the file's projects instead`,
      );
    projects = file.projects.map((p, i) => validateProject(p, `RTM_CONFIG projects[${i}]`));
  } else if (env.RTM_PROJECT_SECRET) projects = [projectFromEnv(env.RTM_PROJECT_SECRET)];
  // else: the dev project, whose secret is read or generated last, once every other setting is
  // known to be good (a start refused for a bad setting generates nothing).

  const limits: Limits = Object.freeze({
    ...DEFAULT_LIMITS,
    maxMsgBytes: int(env, 'RTM_MAX_MSG_BYTES', DEFAULT_LIMITS.maxMsgBytes, 1, 8 * 1024 * 1024),
    maxAttrsBytes: int(env, 'RTM_MAX_ATTRS_BYTES', DEFAULT_LIMITS.maxAttrsBytes, 0, 8 * 1024 * 1024),
    historyMaxNum: int(env, 'RTM_HISTORY_MAX_NUM', DEFAULT_LIMITS.historyMaxNum, 1, 1000),
    // A check counts up to that many groups (membership.ts): ~1 µs of SQLite each, ~5 µs of PostgreSQL.
    maxGroupsPerProject: int(env, 'RTM_MAX_GROUPS_PER_PROJECT', DEFAULT_LIMITS.maxGroupsPerProject, 0, 1_000_000),
    maxListenItems: int(env, 'RTM_MAX_LISTEN_ITEMS', DEFAULT_LIMITS.maxListenItems, 1, 100_000_000),
    ...overrides.limits,
  });

  const broadcastAdmins = (env.RTM_BROADCAST_ADMIN_UIDS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      if (!/^\d+$/.test(s)) throw new ConfigError(`RTM_BROADCAST_ADMIN_UIDS must be a comma-separated list of uids, got '${s}'`);
      return BigInt(s);
    });

  const config: Omit<ServerConfig, 'projects'> = {
    host: bareHost(env.RTM_HOST) || d.host,
    ...(bareHost(env.RTM_CLIENT_HOST) ? { clientHost: bareHost(env.RTM_CLIENT_HOST) } : {}),
    serverPort: port(env, 'RTM_SERVER_PORT', d.serverPort),
    clientPort: port(env, 'RTM_CLIENT_PORT', d.clientPort),
    ...(env.RTM_CLIENT_ENDPOINT?.trim() ? { clientEndpoint: env.RTM_CLIENT_ENDPOINT.trim() } : {}),
    clientTlsPort: port(env, 'RTM_CLIENT_TLS_PORT', d.clientTlsPort),
    ...(env.RTM_TLS_CERT?.trim() ? { tlsCertFile: env.RTM_TLS_CERT.trim() } : {}),
    ...(env.RTM_TLS_KEY?.trim() ? { tlsKeyFile: env.RTM_TLS_KEY.trim() } : {}),
    tlsWatchMs: int(env, 'RTM_TLS_WATCH_MS', d.tlsWatchMs, 0, 86_400_000),
    ...(env.RTM_CLIENT_PROXY_PROTOCOL_FROM?.trim() ? { clientProxyProtocolFrom: env.RTM_CLIENT_PROXY_PROTOCOL_FROM.trim() } : {}),
    adminPort: port(env, 'RTM_ADMIN_PORT', d.adminPort, true),
    ...(env.RTM_ADMIN_TOKEN ? { adminToken: adminToken(env.RTM_ADMIN_TOKEN) } : {}),
    dataDir,
    store,
    bus,
    busPrefix: env.RTM_BUS_PREFIX || d.busPrefix,
    storeSchema: env.RTM_STORE_SCHEMA || d.storeSchema,
    sqliteSynchronous: (env.RTM_SQLITE_SYNCHRONOUS || d.sqliteSynchronous).toUpperCase() as 'NORMAL' | 'FULL',
    sqliteCheckpointMs: int(env, 'RTM_SQLITE_CHECKPOINT_MS', d.sqliteCheckpointMs, 0, 3_600_000),
    sqliteWriterThread: bool(env, 'RTM_SQLITE_WRITER_THREAD', d.sqliteWriterThread),
    sqliteExclusive: bool(env, 'RTM_SQLITE_EXCLUSIVE', d.sqliteExclusive),
    sqliteCacheMiB: int(env, 'RTM_SQLITE_CACHE_MIB', d.sqliteCacheMiB, 1, 65_536),
    parallelScavenge: bool(env, 'RTM_PARALLEL_SCAVENGE', d.parallelScavenge),
    maxFrameBytes: int(env, 'RTM_MAX_FRAME_BYTES', d.maxFrameBytes, 1024, 64 * 1024 * 1024),
    idleTimeoutMs: int(env, 'RTM_IDLE_TIMEOUT_MS', d.idleTimeoutMs, 1000, 3_600_000),
    pingIntervalMs: int(env, 'RTM_PING_INTERVAL_MS', d.pingIntervalMs, 100, 3_600_000),
    pushTimeoutMs: int(env, 'RTM_PUSH_TIMEOUT_MS', d.pushTimeoutMs, 100, 600_000),
    maxOutboundBytes: int(env, 'RTM_MAX_OUTBOUND_BYTES', d.maxOutboundBytes, 64 * 1024, 1024 * 1024 * 1024),
    maxClientConnections: int(env, 'RTM_MAX_CLIENT_CONNECTIONS', d.maxClientConnections, 0, 10_000_000, '0 = no limit'),
    maxServerConnections: int(env, 'RTM_MAX_SERVER_CONNECTIONS', d.maxServerConnections, 0, 10_000_000, '0 = no limit'),
    maxConnectionsPerAddress: int(env, 'RTM_MAX_CONNECTIONS_PER_ADDRESS', d.maxConnectionsPerAddress, 0, 10_000_000, '0 = no limit'),
    signWindowSeconds: int(env, 'RTM_SIGN_WINDOW_SECONDS', d.signWindowSeconds, 1, 86_400),
    hmacTokenTtlSeconds: int(env, 'RTM_HMAC_TOKEN_TTL_SECONDS', d.hmacTokenTtlSeconds, 1, 10 * 365 * 86_400),
    allowLegacySign: bool(env, 'RTM_ALLOW_LEGACY_SIGN', d.allowLegacySign),
    serverSendRequiresMembership: bool(env, 'RTM_SERVER_SEND_REQUIRES_MEMBERSHIP', d.serverSendRequiresMembership),
    broadcastAdminUids: Object.freeze(broadcastAdmins),
    clientCallsPerSecond: int(env, 'RTM_CLIENT_CALLS_PER_SECOND', d.clientCallsPerSecond, 0, 1_000_000),
    clientCallBurst: int(env, 'RTM_CLIENT_CALL_BURST', d.clientCallBurst, 1, 1_000_000),
    serverCallsPerSecond: int(env, 'RTM_SERVER_CALLS_PER_SECOND', d.serverCallsPerSecond, 0, 10_000_000),
    pushToSenderDevices: bool(env, 'RTM_PUSH_TO_SENDER_DEVICES', d.pushToSenderDevices),
    singleSession: bool(env, 'RTM_SINGLE_SESSION', d.singleSession),
    logoutGraceMs: int(env, 'RTM_LOGOUT_GRACE_MS', d.logoutGraceMs, 0, 86_400_000),
    kickoutCloseMs: int(env, 'RTM_KICKOUT_CLOSE_MS', d.kickoutCloseMs, 0, 60_000),
    nodeLeaseMs: int(env, 'RTM_NODE_LEASE_MS', d.nodeLeaseMs, 300, 3_600_000),
    retentionDays: int(env, 'RTM_RETENTION_DAYS', d.retentionDays, 0, 100_000),
    retentionMaxPerConversation: int(env, 'RTM_RETENTION_MAX_PER_CONVERSATION', d.retentionMaxPerConversation, 0, 1_000_000_000),
    encryptionKey: env.RTM_ENCRYPTION_KEY || undefined,
    encryptionCurve: env.RTM_ENCRYPTION_CURVE || d.encryptionCurve,
    logLevel: logLevelOf(env),
    ...overrides,
    limits,
  } as Omit<ServerConfig, 'projects'>;
  if (config.sqliteSynchronous !== 'NORMAL' && config.sqliteSynchronous !== 'FULL') {
    throw new ConfigError(`RTM_SQLITE_SYNCHRONOUS must be NORMAL or FULL, got '${config.sqliteSynchronous}'`);
  }
  if (!/^[a-z_][a-z0-9_]*$/.test(config.storeSchema))
    throw new ConfigError(`RTM_STORE_SCHEMA must match [a-z_][a-z0-9_]*, got '${config.storeSchema}'`);
  if (config.clientEndpoint !== undefined && !isEndpoint(config.clientEndpoint))
    throw new ConfigError(`RTM_CLIENT_ENDPOINT must be 'host:port' (the client gate as clients know it), got '${config.clientEndpoint}'`);
  if ((config.tlsCertFile === undefined) !== (config.tlsKeyFile === undefined))
    throw new ConfigError(
      config.tlsCertFile === undefined
        ? `RTM_TLS_KEY is set but RTM_TLS_CERT is not: the client gate's TLS port needs both (PEM files)`
        : `RTM_TLS_CERT is set but RTM_TLS_KEY is not: the client gate's TLS port needs both (PEM files)`,
    );
  checkPortsDiffer(config);
  if (config.clientProxyProtocolFrom !== undefined) {
    try {
      proxySources(config.clientProxyProtocolFrom);
    } catch (err) {
      throw new ConfigError(
        `RTM_CLIENT_PROXY_PROTOCOL_FROM must list addresses or CIDR ranges of the balancers, comma-separated: ${(err as Error).message}`,
      );
    }
  }
  if (!/^[A-Za-z0-9_-]+$/.test(config.busPrefix))
    throw new ConfigError(`RTM_BUS_PREFIX must be letters, digits, _ or -, got '${config.busPrefix}'`);
  if (!LOG_LEVELS.includes(config.logLevel))
    throw new ConfigError(`RTM_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got '${config.logLevel}'`);
  if (!['secp256k1', 'prime256v1', 'secp256r1'].includes(config.encryptionCurve)) {
    throw new ConfigError(`RTM_ENCRYPTION_CURVE must be secp256k1 or secp256r1, got '${config.encryptionCurve}'`);
  }
  // The server pings a client every RTM_PING_INTERVAL_MS, and the client gate closes one that
  // sent no complete frame for RTM_IDLE_TIMEOUT_MS: with the ping as long as the timeout, healthy
  // clients that only answer pings are closed as idle.
  if (env.RTM_PING_INTERVAL_MS || env.RTM_IDLE_TIMEOUT_MS) {
    if (config.pingIntervalMs >= config.idleTimeoutMs)
      throw new ConfigError(
        `RTM_PING_INTERVAL_MS (${config.pingIntervalMs}) must be less than RTM_IDLE_TIMEOUT_MS (${config.idleTimeoutMs}): ` +
          'clients that answer every ping would be closed as idle between two pings',
      );
  }

  let generatedSecret: string | undefined;
  let generatedSecretFile: string | undefined;
  let devSecretFile: string | undefined;
  if (!projects) {
    const dev = devSecret(dataDir === ':memory:' ? dataDir : resolve(dataDir), store);
    projects = [projectFromEnv(dev.secret)];
    if (dev.generated) {
      generatedSecret = dev.secret;
      generatedSecretFile = dev.file;
    }
    devSecretFile = dev.file;
  }
  const pids = new Set<number>();
  for (const p of projects) {
    if (pids.has(p.pid)) throw new ConfigError(`project ${p.pid} is configured twice`);
    pids.add(p.pid);
  }
  return {
    config: Object.freeze({ ...config, projects: Object.freeze(projects) }),
    generatedSecret,
    generatedSecretFile,
    devSecretFile,
    unknownVariables: unknownVariables(env),
  };
}

/** A bind address as given, an IPv6 one also in brackets as in a URL (`[::1]`): the address itself. */
export function bareHost(value: string | undefined): string {
  const host = value?.trim() ?? '';
  return /^\[[0-9A-Fa-f:.]+\]$/.test(host) ? host.slice(1, -1) : host;
}

/** Where the client gate listens: RTM_CLIENT_HOST, else RTM_HOST as every other listener. */
export const clientHostOf = (config: Pick<ServerConfig, 'host' | 'clientHost'>): string => config.clientHost ?? config.host;

/** A bind address that names no one host: every interface (`0.0.0.0`, `::`). */
export const isWildcardHost = (host: string): boolean => host === '0.0.0.0' || host === '::' || host === '[::]';

/** `host:port` or `[ipv6]:port`, the port 1 – 65535: an endpoint as RTM_ENDPOINT and RTM_CLIENT_ENDPOINT give it. */
export function isEndpoint(value: string): boolean {
  const m = /^(\[[^\]\s]+\]|[^:\s[\]]+):(\d{1,5})$/.exec(value);
  return m !== null && Number(m[2]) >= 1 && Number(m[2]) <= 65535;
}

/** `host:port` with an IPv6 host in brackets, as endpoints and URLs write it. */
export const hostPort = (host: string, port: number | string): string =>
  `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
