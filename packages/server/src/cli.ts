#!/usr/bin/env node
/**
 * rtm — run and poke the RTM server.
 *
 *   rtm serve                         start both gates with the RTM_* environment (see README)
 *   rtm token <uid>                   print a login token for a user
 *   rtm send <from> <to> <text>       send a p2p chat message   (or <from> <text> --group <gid> | --room <rid> | --broadcast; --mtype N)
 *   rtm history <uid> <ouid>          print a p2p conversation  (or <uid> --group <gid> | --room <rid> | --broadcast; --num N, --asc)
 *   rtm keygen                        a new server key for `*key` encryption: private (RTM_ENCRYPTION_KEY) and public forms
 *   rtm backup <file>                 a consistent copy of a running server's embedded store, from its admin port
 *   rtm restore <file>                put such a copy in place of the store in RTM_DATA_DIR (the server stopped)
 *   rtm help, rtm version             the usage, the server's version
 *
 * Exit codes: 0 done; 1 failed (server unreachable, an error answer, a start-up failure); 2 a bad
 * command line or configuration (checked before anything starts or connects).
 *
 * The client commands use our server SDK against RTM_ENDPOINT (default RTM_HOST:RTM_SERVER_PORT, a
 * wildcard RTM_HOST on loopback)
 * with RTM_PROJECT_ID / RTM_PROJECT_SECRET; for the dev project the generated secret is read from
 * RTM_DATA_DIR. `rtm backup` calls the admin port at RTM_HOST:RTM_ADMIN_PORT (a wildcard RTM_HOST on
 * loopback) and sends RTM_ADMIN_TOKEN when it is set; `rtm restore` works on RTM_DATA_DIR alone.
 */
import { readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import {
  bareHost,
  DEFAULT_CONFIG,
  DEV_PROJECT_ID,
  ConfigError,
  clientHostOf,
  hostPort,
  isEndpoint,
  isWildcardHost,
  LOG_LEVELS,
  logLevelOf,
  misspeltNote,
  resolveConfig,
} from './config.js';
import type { Logger } from './observability/logger.js';

const USAGE = `usage:
  rtm serve                  start the server with the RTM_* environment (the default command)
  rtm token <uid>
  rtm send <from> <to> <text> [--mtype 30]
  rtm send <from> <text> (--group <gid> | --room <rid> | --broadcast) [--mtype 30]
  rtm history <uid> <ouid> [--num 10] [--asc]
  rtm history <uid> (--group <gid> | --room <rid> | --broadcast) [--num 10] [--asc]
  rtm keygen [--curve secp256k1|secp256r1]
  rtm backup <file>          a running server's store (SQLite), from its admin port, checked
  rtm restore <file>         put a backup in place of the store in RTM_DATA_DIR (the server stopped)
  rtm help | --help | -h
  rtm version | --version | -v
exit codes: 0 done, 1 failed (server unreachable, error answer, start-up failure), 2 bad command line or configuration`;

/**
 * The longest a graceful stop may take before the process exits anyway (code 1). Its steps are
 * bounded when the peers misbehave (in-flight quests 5 s, connections 3 s, admin connections
 * 1 s), but not when a dependency is dead: flushing presences to an unreachable store, or draining
 * a bus that does not answer, could wait forever, and a rolling restart (docs/cluster.md) waits
 * for the process to end. Under the 30 s a supervisor (Kubernetes, systemd) usually waits before
 * SIGKILL, so that the log says why.
 */
const STOP_TIMEOUT_MS = 20_000;
/** A signal repeated sooner than this is the same request delivered twice (see `stop`), not a second one. */
const REPEAT_SIGNAL_MS = 1000;

/**
 * Ends `rtm serve` when the start failed: `line` on stderr and `exitCode`, and the same as one JSON
 * log line at fatal, for an operator who ships stdout's log lines and reads nothing else. Not when
 * stdout and stderr are one terminal: the operator there would read the message twice, once as JSON.
 */
function startFailed(log: Logger, line: string, exitCode: number, err?: unknown): never {
  if (!(process.stdout.isTTY && process.stderr.isTTY)) log.fatal({ exitCode, ...(err === undefined ? {} : { err }) }, line);
  console.error(line);
  process.exit(exitCode);
}

async function serve(): Promise<void> {
  const { startResolved, StartupError } = await import('./main.js');
  const { createLogger } = await import('./observability/logger.js');
  // Made before the configuration is read, so that a configuration error reaches the log stream
  // too: at RTM_LOG_LEVEL, or at the default level when that is what is wrong.
  const level = logLevelOf(process.env);
  const log = createLogger(LOG_LEVELS.includes(level) ? level : DEFAULT_CONFIG.logLevel);
  let server;
  try {
    const resolved = resolveConfig(process.env);
    // Printed as soon as it is generated (and saved): a start that fails after this (a port in
    // use) must not lose it, the next start does not generate it again.
    if (resolved.generatedSecret) {
      console.error(
        `\n  Dev project ${resolved.config.projects[0]!.pid}: a secret was generated` +
          (resolved.generatedSecretFile ? ` and saved in ${resolved.generatedSecretFile}\n` : ' (not saved: RTM_DATA_DIR is :memory:)\n') +
          `  RTM_PROJECT_SECRET=${resolved.generatedSecret}\n`,
      );
    }
    server = await startResolved(resolved, { logger: log });
  } catch (err) {
    if (err instanceof ConfigError) startFailed(log, `configuration error: ${err.message}${misspeltNote(process.env)}`, 2);
    if (err instanceof StartupError) startFailed(log, `start-up failed: ${err.message}`, 1);
    // Not foreseen (a bug): on stderr as any other failure of the CLI, its stack in the log.
    startFailed(log, err instanceof Error ? err.message : String(err), 1, err);
  }
  const { config } = server;
  // Read by V8 at each scavenge, so it takes effect from here on (see ServerConfig.parallelScavenge).
  if (!config.parallelScavenge) setFlagsFromString('--no-parallel-scavenge');
  if (server.devSecretFile !== undefined || server.generatedSecret) {
    // Every start of the dev project says where its secret is (printed itself only when generated, above).
    console.error(
      (server.generatedSecret || !server.devSecretFile
        ? ''
        : `\n  Dev project ${config.projects[0]!.pid}: secret (RTM_PROJECT_SECRET) in ${server.devSecretFile}`) +
        `\n  Server gate: ${hostPort(config.host, server.serverPort)}   Client gate: ws://${hostPort(clientHostOf(config), server.clientPort)}/service/websocket` +
        (server.clientTlsPort === undefined ? '' : `   wss://${hostPort(clientHostOf(config), server.clientTlsPort)}/service/websocket`) +
        (server.adminPort === undefined ? '' : `\n  Admin: http://${hostPort(config.host, server.adminPort)}/healthz, /metrics`) +
        '\n',
    );
  }
  let stoppingSince: number | undefined;
  const stop = (signal: 'SIGTERM' | 'SIGINT'): void => {
    if (stoppingSince !== undefined) {
      // The same Ctrl-C twice: the terminal signals the process group, and `npm start` forwards
      // what it got to its child, milliseconds apart. Not an operator who does not want to wait.
      if (Date.now() - stoppingSince < REPEAT_SIGNAL_MS) {
        server.services.log.info({ signal }, 'signal received again at once (from npm or the process group): the graceful stop goes on');
        return;
      }
      // A second signal during the graceful stop: the operator does not want to wait for it.
      server.services.log.warn({ signal }, 'second signal during the graceful stop: forced exit');
      process.exit(128 + osConstants.signals[signal]);
    }
    stoppingSince = Date.now();
    server.services.log.info({ signal }, 'signal received');
    setTimeout(() => {
      server.services.log.error(
        { signal, timeoutMs: STOP_TIMEOUT_MS },
        'graceful stop did not finish in time (a store or bus that does not answer?): forced exit',
      );
      process.exit(1);
    }, STOP_TIMEOUT_MS); // not unref'd: a stop stuck with nothing else pending must end too
    server.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  // SIGHUP: read the TLS certificate and key again (a renewal); the reload logs what it did.
  process.on('SIGHUP', () => {
    if (server.clientTlsPort === undefined) server.services.log.info('SIGHUP: nothing to reload (no TLS port: RTM_TLS_CERT is not set)');
    else server.reloadTls();
  });
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

function projectFromEnv(): { pid: number; secret: string; endpoint: string } {
  const env = process.env;
  const pid = Number(env.RTM_PROJECT_ID || DEV_PROJECT_ID);
  if (!Number.isInteger(pid) || pid <= 0 || pid > 0x7fffffff)
    throw new ConfigError(`RTM_PROJECT_ID must be a positive int32, got '${env.RTM_PROJECT_ID}'`);
  let secret = env.RTM_PROJECT_SECRET;
  // Only the embedded store's dev project has a generated secret to read; on a cluster node's
  // environment a file left in the data directory by an earlier trial is no project's secret.
  if (!secret && env.RTM_STORE && env.RTM_STORE.trim() !== 'sqlite')
    throw new ConfigError(
      'RTM_PROJECT_SECRET is not set: with RTM_STORE=postgres no dev secret is generated; ' +
        "set RTM_PROJECT_ID and RTM_PROJECT_SECRET to the project's, as on the nodes",
    );
  if (!secret && env.RTM_CONFIG)
    throw new ConfigError(
      `RTM_PROJECT_SECRET is not set: the client commands do not read RTM_CONFIG (${env.RTM_CONFIG}); ` +
        'set RTM_PROJECT_ID and RTM_PROJECT_SECRET to those of one of its projects',
    );
  if (!secret) {
    const file = join(env.RTM_DATA_DIR || DEFAULT_CONFIG.dataDir, 'dev-project-secret');
    try {
      secret = readFileSync(file, 'utf8').trim();
    } catch {
      throw new ConfigError(`RTM_PROJECT_SECRET is not set and ${file} does not exist (start the server once, or set it)`);
    }
  }
  return { pid, secret, endpoint: serverGateEndpoint(env) };
}

/**
 * The server gate the client commands call: RTM_ENDPOINT, else RTM_HOST:RTM_SERVER_PORT as the
 * server binds them, a wildcard RTM_HOST (0.0.0.0, ::) reached on loopback. A value that cannot
 * be one is a configuration error naming the variable (exit code 2), before anything connects.
 */
function serverGateEndpoint(env: NodeJS.ProcessEnv): string {
  const endpoint = env.RTM_ENDPOINT?.trim();
  if (endpoint) {
    if (!isEndpoint(endpoint))
      throw new ConfigError(`RTM_ENDPOINT must be 'host:port' or '[ipv6]:port' (the server gate), got '${env.RTM_ENDPOINT}'`);
    return endpoint;
  }
  const rawPort = env.RTM_SERVER_PORT?.trim() || String(DEFAULT_CONFIG.serverPort);
  if (!/^\d{1,5}$/.test(rawPort) || Number(rawPort) < 1 || Number(rawPort) > 65535)
    throw new ConfigError(
      `RTM_SERVER_PORT must be a port from 1 to 65535 for the client commands, got '${env.RTM_SERVER_PORT}' ` +
        '(for a server on an ephemeral port, set RTM_ENDPOINT to its host:port)',
    );
  let host = bareHost(env.RTM_HOST) || DEFAULT_CONFIG.host;
  if (isWildcardHost(host)) host = host === '0.0.0.0' ? '127.0.0.1' : '::1';
  if (/[\s/]/.test(host)) throw new ConfigError(`RTM_HOST must be a host name or an address, got '${env.RTM_HOST}'`);
  return hostPort(host, rawPort);
}

/**
 * The admin port `rtm backup` calls: RTM_HOST:RTM_ADMIN_PORT as the server binds them, a wildcard
 * RTM_HOST reached on loopback (a backup is served to loopback peers without RTM_ADMIN_TOKEN).
 */
function adminEndpoint(env: NodeJS.ProcessEnv): { host: string; port: number } {
  const rawPort = env.RTM_ADMIN_PORT?.trim() || String(DEFAULT_CONFIG.adminPort);
  if (rawPort === '-1') throw new ConfigError('RTM_ADMIN_PORT is -1: the admin port is off, and rtm backup fetches the backup from it');
  if (!/^\d{1,5}$/.test(rawPort) || Number(rawPort) < 1 || Number(rawPort) > 65535)
    throw new ConfigError(`RTM_ADMIN_PORT must be the server's admin port, from 1 to 65535, for rtm backup, got '${env.RTM_ADMIN_PORT}'`);
  let host = bareHost(env.RTM_HOST) || DEFAULT_CONFIG.host;
  if (isWildcardHost(host)) host = host === '0.0.0.0' ? '127.0.0.1' : '::1';
  if (/[\s/]/.test(host)) throw new ConfigError(`RTM_HOST must be a host name or an address, got '${env.RTM_HOST}'`);
  return { host, port: Number(rawPort) };
}

/** The embedded store's database file that `rtm restore` replaces: in RTM_DATA_DIR, with RTM_STORE sqlite. */
function restoreTarget(env: NodeJS.ProcessEnv): string {
  if (env.RTM_STORE && env.RTM_STORE.trim() !== 'sqlite')
    throw new ConfigError(
      'rtm restore restores the embedded store (RTM_STORE=sqlite); a PostgreSQL store is restored with pg_restore (docs/cluster.md)',
    );
  const dataDir = env.RTM_DATA_DIR || DEFAULT_CONFIG.dataDir;
  if (dataDir === ':memory:') throw new ConfigError('RTM_DATA_DIR is :memory:: an in-memory store has nothing to restore into');
  return join(dataDir, 'rtm.sqlite');
}

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

const show = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x instanceof Uint8Array ? `<${x.length} bytes>` : x));

async function withClient(fn: (client: import('@rtm/server-sdk').RTMServerClient) => Promise<void>): Promise<void> {
  const { RTMServerClient } = await import('@rtm/server-sdk');
  const client = new RTMServerClient({ ...projectFromEnv(), autoReconnect: false });
  try {
    await client.connect();
    await fn(client);
  } finally {
    await client.close();
  }
}

/** A bad command line: printed with the usage, exit code 2 (as configuration errors). */
class UsageError extends Error {
  override readonly name = 'UsageError';
}

const INT64_MAX = (1n << 63n) - 1n;

async function main(argv: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        mtype: { type: 'string', default: '30' },
        group: { type: 'string' },
        room: { type: 'string' },
        broadcast: { type: 'boolean', default: false },
        num: { type: 'string', default: '10' },
        asc: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'v', default: false },
        curve: { type: 'string', default: 'secp256k1' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const [command = 'serve', ...args] = positionals;
  if (values.help || command === 'help') return void console.log(USAGE);
  if (values.version || command === 'version') return void console.log((await import('./version.js')).VERSION);

  // Every argument is checked before anything is started or connected.
  // Users are 1 and up (the server refuses a login or a token for 0); groups and rooms may be 0.
  const id = (s: string | undefined, what: string): bigint => {
    if (s === undefined) throw new UsageError(`missing <${what}>`);
    const min = what === 'gid' || what === 'rid' ? 0n : 1n;
    if (!/^\d+$/.test(s) || BigInt(s) < min || BigInt(s) > INT64_MAX)
      throw new UsageError(`${what} must be an integer from ${min} to 2^63-1, got '${s}'`);
    return BigInt(s);
  };
  const int = (s: string, what: string, min: number, max: number): number => {
    const n = Number(s);
    if (!/^\d+$/.test(s) || n < min || n > max) throw new UsageError(`${what} must be an integer from ${min} to ${max}, got '${s}'`);
    return n;
  };
  const text = (s: string | undefined): string => {
    if (s === undefined) throw new UsageError('missing <text>');
    return s;
  };
  /** The positionals after the command: `count` of them, no more (a missing one is caught where it is read). */
  const expect = (count: number): void => {
    if (args.length > count) throw new UsageError(`unexpected argument '${args[count]}' for '${command}'`);
  };
  const target = (): 'group' | 'room' | 'broadcast' | 'p2p' => {
    const chosen = [values.group !== undefined && 'group', values.room !== undefined && 'room', values.broadcast && 'broadcast'].filter(
      (x): x is 'group' | 'room' | 'broadcast' => typeof x === 'string',
    );
    if (chosen.length > 1) throw new UsageError(`choose one of --group, --room and --broadcast, not ${chosen.join(' and ')}`);
    return chosen[0] ?? 'p2p';
  };

  switch (command) {
    case 'serve':
      expect(0);
      return serve();
    case 'token': {
      expect(1);
      const uid = id(args[0], 'uid');
      return withClient(async (c) => console.log(await c.getToken(uid)));
    }
    case 'send': {
      const mtype = int(values.mtype, '--mtype', 1, 127);
      const from = id(args[0], 'from');
      const kind = target();
      if (kind === 'p2p') {
        expect(3);
        const to = id(args[1], 'to');
        const msg = text(args[2]);
        return withClient(async (c) => console.log(show(await c.sendMessage(mtype, from, to, msg))));
      }
      expect(2);
      const msg = text(args[1]);
      if (kind === 'group') {
        const gid = id(values.group, 'gid');
        return withClient(async (c) => console.log(show(await c.sendGroupMessage(mtype, from, gid, msg))));
      }
      if (kind === 'room') {
        const rid = id(values.room, 'rid');
        return withClient(async (c) => console.log(show(await c.sendRoomMessage(mtype, from, rid, msg))));
      }
      return withClient(async (c) => console.log(show(await c.broadcastMessage(mtype, from, msg))));
    }
    case 'history': {
      const uid = id(args[0], 'uid');
      const desc = !values.asc;
      const num = int(values.num, '--num', 1, 1000);
      const kind = target();
      expect(kind === 'p2p' ? 2 : 1);
      const gid = kind === 'group' ? id(values.group, 'gid') : 0n;
      const rid = kind === 'room' ? id(values.room, 'rid') : 0n;
      const ouid = kind === 'p2p' ? id(args[1], 'ouid') : 0n;
      return withClient(async (c) => {
        const page =
          kind === 'group'
            ? await c.getGroupMessage(uid, gid, desc, num)
            : kind === 'room'
              ? await c.getRoomMessage(uid, rid, desc, num)
              : kind === 'broadcast'
                ? await c.getBroadcastMessage(uid, desc, num)
                : await c.getP2PMessage(uid, ouid, desc, num);
        for (const m of page.messages) console.log(show(m));
        console.log(show({ num: page.num, lastid: page.lastid, begin: page.begin, end: page.end }));
      });
    }
    case 'keygen': {
      expect(0);
      if (!['secp256k1', 'secp256r1', 'prime256v1'].includes(values.curve))
        throw new UsageError(`--curve must be secp256k1 or secp256r1, got '${values.curve}'`);
      const { randomBytes } = await import('node:crypto');
      const { derivePublicKeyFormats } = await import('@rtm/fpnn/crypto');
      const privateKey = randomBytes(32).toString('hex');
      const pub = derivePublicKeyFormats(privateKey, values.curve as 'secp256k1');
      const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
      console.log(`RTM_ENCRYPTION_KEY=${privateKey}\nRTM_ENCRYPTION_CURVE=${values.curve}\n`);
      // The Node server SDK hands its key file to ECDH's computeSecret, which takes a point with its
      // prefix byte only: given the raw 64 bytes or the PEM it fails, and the SDK goes on unencrypted.
      console.log(`# public key for the SDKs: Python and Go read this PEM file\n${pub.pem}`);
      console.log(
        `# Node: a file of the compressed or the uncompressed bytes (xxd -r -p), not the raw ones nor the PEM\n` +
          `compressed (33 bytes):      ${hex(pub.compressed)}\nuncompressed (65 bytes):    ${hex(pub.uncompressed)}\n` +
          `raw (X||Y, 64 bytes):       ${hex(pub.raw)}`,
      );
      return;
    }
    case 'backup': {
      expect(1);
      const file = args[0];
      if (!file) throw new UsageError('missing <file>');
      const target = { ...adminEndpoint(process.env), ...(process.env.RTM_ADMIN_TOKEN ? { token: process.env.RTM_ADMIN_TOKEN } : {}) };
      const { downloadBackup } = await import('./admin/backup-download.js');
      const r = await downloadBackup(target, file);
      console.log(
        `backup written to ${r.file}: ${mib(r.bytes)}, schema version ${r.schemaVersion}, ` +
          `messages up to id ${r.newestMessageId}, integrity ok, in ${(r.ms / 1000).toFixed(1)} s`,
      );
      return;
    }
    case 'restore': {
      expect(1);
      const file = args[0];
      if (!file) throw new UsageError('missing <file>');
      const database = restoreTarget(process.env);
      const { restoreDatabase } = await import('./store/sqlite-restore.js');
      const r = restoreDatabase(file, database);
      console.log(
        `restored ${file} (${mib(r.bytes)}, schema version ${r.schemaVersion}, messages up to id ${r.newestMessageId}) into ${r.database}`,
      );
      console.log(
        r.aside
          ? `the database that was there is kept in ${r.aside.directory} (${r.aside.files.join(', ')}): remove it once the restore is confirmed`
          : 'there was no database there before',
      );
      console.log(
        r.schemaVersion < r.knownVersion
          ? `start the server (rtm serve): it upgrades the schema from version ${r.schemaVersion} to ${r.knownVersion}`
          : 'start the server (rtm serve)',
      );
      return;
    }
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

// `rtm keygen | head -1`: the reader may be gone before the output is written. Like other Unix
// tools, stop quietly instead of printing an EPIPE stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    console.error(`${err.message}\n${USAGE}`);
    process.exit(2);
  }
  if (err instanceof ConfigError) {
    console.error(`configuration error: ${err.message}`);
    process.exit(2);
  }
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
