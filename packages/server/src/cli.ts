#!/usr/bin/env node
/**
 * rtm — run and poke the RTM server.
 *
 *   rtm serve                         start both gates with the RTM_* environment (see README)
 *   rtm token <uid>                   print a login token for a user
 *   rtm send <from> <to> <text>       send a p2p chat message   (--group <gid> | --room <rid> | --broadcast, --mtype N)
 *   rtm history <uid> <ouid>          print a p2p conversation  (--group <gid> | --room <rid> | --broadcast, --num N, --asc)
 *   rtm keygen                        a new server key for `*key` encryption: private (RTM_ENCRYPTION_KEY) and public forms
 *
 * The client commands use our server SDK against RTM_ENDPOINT (default RTM_HOST:RTM_SERVER_PORT)
 * with RTM_PROJECT_ID / RTM_PROJECT_SECRET; for the dev project the generated secret is read from
 * RTM_DATA_DIR.
 */
import { readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { DEFAULT_CONFIG, DEV_PROJECT_ID, ConfigError } from './config.js';

const USAGE = `usage:
  rtm serve
  rtm token <uid>
  rtm send <from> <to> <text> [--mtype 30] [--group <gid> | --room <rid> | --broadcast]
  rtm history <uid> <ouid> [--num 10] [--asc] [--group <gid> | --room <rid> | --broadcast]
  rtm keygen [--curve secp256k1|secp256r1]`;

async function serve(): Promise<void> {
  const { startFromEnv, StartupError } = await import('./main.js');
  let server;
  try {
    server = await startFromEnv();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`configuration error: ${err.message}`);
      process.exit(2);
    }
    if (err instanceof StartupError) {
      console.error(`start-up failed: ${err.message}`);
      process.exit(1);
    }
    throw err;
  }
  const { config } = server;
  // Read by V8 at each scavenge, so it takes effect from here on (see ServerConfig.parallelScavenge).
  if (!config.parallelScavenge) setFlagsFromString('--no-parallel-scavenge');
  if (server.generatedSecret) {
    console.error(
      `\n  Dev project ${config.projects[0]!.pid}: a secret was generated` +
        (server.generatedSecretFile ? ` and saved in ${server.generatedSecretFile}\n` : ' (not saved: RTM_DATA_DIR is :memory:)\n') +
        `  RTM_PROJECT_SECRET=${server.generatedSecret}\n` +
        `  Server gate: ${config.host}:${server.serverPort}   Client gate: ws://${config.host}:${server.clientPort}/service/websocket\n`,
    );
  }
  let stopping = false;
  const stop = (signal: 'SIGTERM' | 'SIGINT'): void => {
    if (stopping) {
      // A second signal during the graceful stop: the operator does not want to wait for it.
      server.services.log.warn({ signal }, 'second signal during the graceful stop: forced exit');
      process.exit(128 + osConstants.signals[signal]);
    }
    stopping = true;
    server.services.log.info({ signal }, 'signal received');
    server.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

function projectFromEnv(): { pid: number; secret: string; endpoint: string } {
  const env = process.env;
  const pid = Number(env.RTM_PROJECT_ID ?? DEV_PROJECT_ID);
  let secret = env.RTM_PROJECT_SECRET;
  if (!secret) {
    const file = join(env.RTM_DATA_DIR || DEFAULT_CONFIG.dataDir, 'dev-project-secret');
    try {
      secret = readFileSync(file, 'utf8').trim();
    } catch {
      throw new Error(`RTM_PROJECT_SECRET is not set and ${file} does not exist (start the server once, or set it)`);
    }
  }
  const endpoint = env.RTM_ENDPOINT || `${env.RTM_HOST?.trim() || DEFAULT_CONFIG.host}:${env.RTM_SERVER_PORT || DEFAULT_CONFIG.serverPort}`;
  return { pid, secret, endpoint };
}

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

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      mtype: { type: 'string', default: '30' },
      group: { type: 'string' },
      room: { type: 'string' },
      broadcast: { type: 'boolean', default: false },
      num: { type: 'string', default: '10' },
      asc: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
      curve: { type: 'string', default: 'secp256k1' },
    },
  });
  const [command = 'serve', ...args] = positionals;
  if (values.help) return void console.log(USAGE);
  const id = (s: string | undefined, what: string): bigint => {
    if (!s || !/^\d+$/.test(s)) throw new Error(`${what} must be a positive integer\n${USAGE}`);
    return BigInt(s);
  };
  switch (command) {
    case 'serve':
      return serve();
    case 'token':
      return withClient(async (c) => console.log(await c.getToken(id(args[0], 'uid'))));
    case 'send':
      return withClient(async (c) => {
        const mtype = Number(values.mtype);
        const from = id(args[0], 'from');
        let result;
        if (values.group) result = await c.sendGroupMessage(mtype, from, id(values.group, 'gid'), args[1] ?? '');
        else if (values.room) result = await c.sendRoomMessage(mtype, from, id(values.room, 'rid'), args[1] ?? '');
        else if (values.broadcast) result = await c.broadcastMessage(mtype, from, args[1] ?? '');
        else result = await c.sendMessage(mtype, from, id(args[1], 'to'), args[2] ?? '');
        console.log(show(result));
      });
    case 'history':
      return withClient(async (c) => {
        const uid = id(args[0], 'uid');
        const desc = !values.asc;
        const num = Number(values.num);
        const page = values.group
          ? await c.getGroupMessage(uid, id(values.group, 'gid'), desc, num)
          : values.room
            ? await c.getRoomMessage(uid, id(values.room, 'rid'), desc, num)
            : values.broadcast
              ? await c.getBroadcastMessage(uid, desc, num)
              : await c.getP2PMessage(uid, id(args[1], 'ouid'), desc, num);
        for (const m of page.messages) console.log(show(m));
        console.log(show({ num: page.num, lastid: page.lastid, begin: page.begin, end: page.end }));
      });
    case 'keygen': {
      const { randomBytes } = await import('node:crypto');
      const { derivePublicKeyFormats } = await import('@rtm/fpnn/crypto');
      const privateKey = randomBytes(32).toString('hex');
      const pub = derivePublicKeyFormats(privateKey, values.curve as 'secp256k1');
      const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
      console.log(`RTM_ENCRYPTION_KEY=${privateKey}\nRTM_ENCRYPTION_CURVE=${values.curve}\n`);
      console.log(`# public key for the SDKs (Python/Go: PEM file; Node: raw bytes)\n${pub.pem}`);
      console.log(
        `raw (X||Y, 64 bytes):       ${hex(pub.raw)}\nuncompressed (65 bytes):    ${hex(pub.uncompressed)}\ncompressed (33 bytes):      ${hex(pub.compressed)}`,
      );
      return;
    }
    default:
      console.error(`unknown command '${command}'\n${USAGE}`);
      process.exit(2);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
