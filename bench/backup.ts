/**
 * What an online backup costs the senders: `sendMessage` through our server SDK against the real
 * server in a child process, its store seeded with `--messages` messages, in alternating phases
 * without and with backups (`GET /backup` on the admin port, fetched whole back to back, as
 * `rtm backup` does, and thrown away).
 *
 * Two measures, each side by side in one run (the machine is shared and noisy):
 * - latency: send → answer at a steady `--rate` (messages/s over 4 connections), p50 / p99 /
 *   p99.9 / max per phase;
 * - throughput (`--saturate`): 4 connections × 64 sends in flight, sends/s per phase.
 *
 *   node --conditions=rtm-source --import tsx bench/backup.ts [--messages 200000] [--rate 2000]
 *     [--seconds 5] [--rounds 3] [--saturate] [--writer-thread]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { createInterface } from 'node:readline';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { RTMServerClient } from '@rtm/server-sdk';
import { spawnServer, TEST_PID, TEST_SECRET, type SpawnedServer } from '@rtm/testkit';
import { SqliteStore } from '../packages/server/src/store/sqlite.js';
import { MessageKind, type NewMessage } from '../packages/server/src/store/store.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '200000' },
    rate: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    saturate: { type: 'boolean', default: false },
    'writer-thread': { type: 'boolean', default: false },
  },
});
const MESSAGES = Number(values.messages);
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const CONNECTIONS = 4;
const DEPTH = 64;
const BODY = 'a message of about the length people type in a chat, with a few words more to make it so. '.repeat(2);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pct = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? NaN;
const ms = (n: number): string => n.toFixed(2);

/** A store of `count` p2p messages among 1,000 pairs, as a server left it. */
async function seed(dataDir: string, count: number): Promise<number> {
  const store = new SqliteStore({ dataDir, synchronous: 'NORMAL' });
  await store.init();
  const chunk = 20_000;
  for (let start = 0; start < count; start += chunk) {
    const batch: NewMessage[] = [];
    for (let i = start; i < Math.min(count, start + chunk); i++)
      batch.push({
        pid: TEST_PID,
        kind: MessageKind.P2P,
        from: BigInt(1 + (i % 1000)),
        to: BigInt(5000 + (i % 997)),
        mid: BigInt(i + 1),
        mtype: 30,
        msg: `${BODY}${i}`,
        attrs: '',
      });
    store.bulkInsert(batch);
  }
  await store.close();
  return statSync(join(dataDir, 'rtm.sqlite')).size;
}

/** One whole backup, read and thrown away: its size and how long it took. */
function fetchBackup(port: number): Promise<{ bytes: number; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/backup' }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`GET /backup: ${res.statusCode}`));
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ bytes, ms: performance.now() - started }));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

/**
 * Backups back to back, fetched by a process of their own (as `rtm backup` from cron would: not
 * the load generator's event loop), until `until()` says stop. Each line it prints: bytes, ms.
 */
async function backupsWhile(port: number, until: () => boolean): Promise<{ bytes: number; ms: number }[]> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', FETCHER, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const done: { bytes: number; ms: number }[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const [bytes, took] = line.split(' ').map(Number);
    done.push({ bytes: bytes!, ms: took! });
  });
  const exited = new Promise((r) => child.once('exit', r));
  while (!until()) await sleep(20);
  child.kill('SIGTERM');
  await exited;
  return done;
}

// A 409 (the backup of the fetcher before, killed at the end of its phase, not yet abandoned by the
// server) is tried again shortly.
const FETCHER = `
import { request } from 'node:http';
const port = Number(process.argv[1]);
for (;;) {
  const started = performance.now();
  const bytes = await new Promise((resolve, reject) =>
    request({ host: '127.0.0.1', port, path: '/backup' }, (res) => {
      if (res.statusCode !== 200) return res.resume().once('end', () => resolve(-res.statusCode));
      let n = 0;
      res.on('data', (c) => (n += c.length));
      res.on('end', () => resolve(n));
    }).on('error', reject).end());
  if (bytes === -409) await new Promise((r) => setTimeout(r, 10));
  else if (bytes < 0) throw new Error('GET /backup: ' + -bytes);
  else console.log(bytes + ' ' + (performance.now() - started).toFixed(0));
}
`;

interface Phase {
  kind: 'none' | 'backup';
  latencies: number[];
  sends: number;
  seconds: number;
  backups: { bytes: number; ms: number }[];
}

async function steadyPhase(clients: RTMServerClient[], kind: Phase['kind'], adminPort: number, nextFrom: () => bigint): Promise<Phase> {
  const latencies: number[] = [];
  const started = performance.now();
  const end = started + SECONDS * 1000;
  let stop = false;
  const backups = kind === 'backup' ? backupsWhile(adminPort, () => stop) : Promise.resolve([]);
  let sent = 0;
  const inflight: Promise<void>[] = [];
  while (performance.now() < end) {
    const due = Math.floor(((performance.now() - started) / 1000) * RATE);
    for (; sent < due; sent++) {
      const from = nextFrom();
      const at = performance.now();
      inflight.push(
        clients[sent % clients.length]!.sendMessage(30, from, from + 100_000n, BODY).then(
          () => void latencies.push(performance.now() - at),
        ),
      );
    }
    await sleep(1);
  }
  stop = true;
  await Promise.all(inflight);
  const seconds = (performance.now() - started) / 1000;
  return { kind, latencies, sends: sent, seconds, backups: await backups };
}

async function saturatedPhase(clients: RTMServerClient[], kind: Phase['kind'], adminPort: number, nextFrom: () => bigint): Promise<Phase> {
  const started = performance.now();
  const end = started + SECONDS * 1000;
  let stop = false;
  const backups = kind === 'backup' ? backupsWhile(adminPort, () => stop) : Promise.resolve([]);
  let sends = 0;
  const lane = async (client: RTMServerClient): Promise<void> => {
    while (performance.now() < end) {
      const from = nextFrom();
      await client.sendMessage(30, from, from + 100_000n, BODY);
      sends++;
    }
  };
  await Promise.all(clients.flatMap((c) => Array.from({ length: DEPTH }, () => lane(c))));
  stop = true;
  const seconds = (performance.now() - started) / 1000;
  return { kind, latencies: [], sends, seconds, backups: await backups };
}

function report(phases: Phase[]): void {
  for (const kind of ['none', 'backup'] as const) {
    const mine = phases.filter((p) => p.kind === kind);
    const latencies = mine.flatMap((p) => p.latencies).sort((a, b) => a - b);
    const sends = mine.reduce((n, p) => n + p.sends, 0);
    const seconds = mine.reduce((n, p) => n + p.seconds, 0);
    const backups = mine.flatMap((p) => p.backups);
    const perRound = mine.map((p) => Math.round(p.sends / p.seconds)).join(' / ');
    const backupLine =
      backups.length === 0
        ? ''
        : `; ${backups.length} backups of ${(backups[0]!.bytes / 2 ** 20).toFixed(1)} MiB, ${Math.round(backups.reduce((n, b) => n + b.ms, 0) / backups.length)} ms each`;
    if (latencies.length > 0)
      console.log(
        `${kind === 'none' ? 'without backups' : 'during backups '}: ${sends} sends, ${Math.round(sends / seconds)}/s; send → answer p50 ${ms(pct(latencies, 50))} / p99 ${ms(pct(latencies, 99))} / p99.9 ${ms(pct(latencies, 99.9))} / max ${ms(latencies.at(-1)!)} ms${backupLine}`,
      );
    else
      console.log(
        `${kind === 'none' ? 'without backups' : 'during backups '}: ${Math.round(sends / seconds)} sends/s (rounds: ${perRound})${backupLine}`,
      );
  }
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'rtm-bench-backup-'));
  let server: SpawnedServer | undefined;
  const clients: RTMServerClient[] = [];
  try {
    const t = performance.now();
    const bytes = await seed(dataDir, MESSAGES);
    console.log(
      `# backup bench — ${new Date().toISOString()} — ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}\n` +
        `store: ${MESSAGES} messages, ${(bytes / 2 ** 20).toFixed(1)} MiB (seeded in ${Math.round(performance.now() - t)} ms); ` +
        `writer thread ${values['writer-thread'] ? 'on' : 'off'}; ${values.saturate ? `saturated: ${CONNECTIONS} × ${DEPTH} in flight` : `steady ${RATE} msgs/s over ${CONNECTIONS} connections`}; ${ROUNDS} rounds of ${SECONDS} s each way`,
    );
    server = await spawnServer({
      RTM_DATA_DIR: dataDir,
      RTM_PROJECT_ID: String(TEST_PID),
      RTM_PROJECT_SECRET: TEST_SECRET,
      RTM_ADMIN_PORT: '0',
      RTM_CLIENT_CALLS_PER_SECOND: '0',
      RTM_SERVER_CALLS_PER_SECOND: '0',
      RTM_SQLITE_WRITER_THREAD: values['writer-thread'] ? 'true' : 'false',
    });
    for (let i = 0; i < CONNECTIONS; i++) {
      const c = new RTMServerClient({
        pid: TEST_PID,
        secret: TEST_SECRET,
        endpoint: `127.0.0.1:${server.serverPort}`,
        autoReconnect: false,
      });
      await c.connect();
      clients.push(c);
    }
    let from = 1_000_000n;
    const nextFrom = (): bigint => (from = from >= 1_001_000n ? 1_000_000n : from + 1n);
    const phase = values.saturate ? saturatedPhase : steadyPhase;
    await phase(clients, 'none', server.adminPort!, nextFrom); // warm-up
    await fetchBackup(server.adminPort!); // warm-up, and the file cache holds the store as in the phases
    const phases: Phase[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      phases.push(await phase(clients, 'none', server.adminPort!, nextFrom));
      phases.push(await phase(clients, 'backup', server.adminPort!, nextFrom));
    }
    report(phases);
  } finally {
    for (const c of clients) await c.close();
    await server?.kill();
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
