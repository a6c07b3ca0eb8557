/**
 * Persisted sends per second and their latency through our server SDK (several connections,
 * pipelined) against the real server in a child process, beside the raw better-sqlite3 insert
 * rate of an equivalent row on the same machine (the ceiling), in one run.
 *
 *   node --conditions=rtm-source --import tsx bench/sends.ts [--seconds 5] [--connections 4] [--depth 256]
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { RTMServerClient } from '@rtm/server-sdk';
import { spawnServer, TEST_PID, TEST_SECRET } from '@rtm/testkit';
import { SQLITE_MIGRATIONS } from '../packages/server/src/store/sqlite-migrations.js';

export interface SendFigures {
  connections: number;
  depth: number;
  sendsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  rawInsertsPerSecond: number;
  ratioToRaw: number;
  /** Server process CPU time per persisted send (robust on a shared machine). */
  serverCpuUsPerSend: number;
  /** CPU time per raw insert (same shape, same indexes). */
  rawCpuUsPerInsert: number;
  /** rawCpuUsPerInsert / serverCpuUsPerSend: the share of the ceiling, in CPU terms. */
  cpuRatioToRaw: number;
}

/** utime + stime of a process, in µs (Linux /proc; clock ticks of 10 ms). */
export async function processCpuUs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;

/** The ceiling: prepared inserts of the same rows into the store's schema in transactions of 1,000, WAL, synchronous NORMAL. */
async function rawInsertRate(seconds: number): Promise<{ rate: number; cpuUs: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'rtm-bench-raw-'));
  try {
    const db = new Database(join(dir, 'raw.sqlite'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    // The store's own table and indexes (its migrations), so the ceiling follows the schema.
    for (const m of SQLITE_MIGRATIONS) db.exec(m.sql);
    const insert = db.prepare(
      'INSERT INTO messages (pid, kind, conv_lo, conv_hi, from_id, to_id, mid, mtype, msg, attrs, mtime) VALUES (?,?,?,?,?,?,?,?,?,?,?)',
    );
    const batch = db.transaction((start: number) => {
      for (let i = start; i < start + 1000; i++)
        insert.run(
          1,
          1,
          i % 1000,
          1000 + (i % 7),
          i % 1000,
          1000 + (i % 7),
          BigInt(i) * 7919n,
          51,
          'benchmark message body',
          '',
          Date.now(),
        );
    });
    let n = 0;
    const cpu0 = process.cpuUsage();
    const started = performance.now();
    while (performance.now() - started < seconds * 1000) {
      batch(n);
      n += 1000;
    }
    const rate = n / ((performance.now() - started) / 1000);
    const cpu = process.cpuUsage(cpu0);
    db.close();
    return { rate, cpuUs: (cpu.user + cpu.system) / n };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function runSendBench(seconds = 5, connections = 4, depth = 256): Promise<SendFigures> {
  const dataDir = await mkdtemp(join(tmpdir(), 'rtm-bench-sends-'));
  const server = await spawnServer({ RTM_DATA_DIR: dataDir, RTM_PROJECT_ID: String(TEST_PID), RTM_PROJECT_SECRET: TEST_SECRET });
  const clients = await Promise.all(
    Array.from({ length: connections }, async () => {
      const c = new RTMServerClient({
        pid: TEST_PID,
        secret: TEST_SECRET,
        endpoint: `127.0.0.1:${server.serverPort}`,
        autoReconnect: false,
      });
      await c.connect();
      return c;
    }),
  );
  try {
    const run = async (ms: number, record: number[] | undefined): Promise<number> => {
      let done = 0;
      const deadline = performance.now() + ms;
      const lane = async (client: RTMServerClient, lane: number): Promise<void> => {
        const from = BigInt(lane + 1);
        while (performance.now() < deadline) {
          const t0 = performance.now();
          await client.sendMessage(51, from, from + 100_000n, 'benchmark message body', '');
          record?.push(performance.now() - t0);
          done++;
        }
      };
      const started = performance.now();
      await Promise.all(clients.flatMap((c, ci) => Array.from({ length: depth }, (_, l) => lane(c, ci * depth + l))));
      return done / ((performance.now() - started) / 1000);
    };
    await run(1000, undefined); // warm-up
    const latencies: number[] = [];
    const cpuBefore = await processCpuUs(server.child.pid!);
    const sendsPerSecond = await run(seconds * 1000, latencies);
    const serverCpuUs = (await processCpuUs(server.child.pid!)) - cpuBefore;
    latencies.sort((a, b) => a - b);
    const raw = await rawInsertRate(Math.min(seconds, 3));
    const rawInsertsPerSecond = raw.rate;
    const serverCpuUsPerSend = serverCpuUs / (latencies.length || 1);
    return {
      connections,
      depth,
      sendsPerSecond: Math.round(sendsPerSecond),
      p50Ms: +percentile(latencies, 50).toFixed(2),
      p99Ms: +percentile(latencies, 99).toFixed(2),
      rawInsertsPerSecond: Math.round(rawInsertsPerSecond),
      ratioToRaw: +(sendsPerSecond / rawInsertsPerSecond).toFixed(2),
      serverCpuUsPerSend: +serverCpuUsPerSend.toFixed(1),
      rawCpuUsPerInsert: +raw.cpuUs.toFixed(1),
      cpuRatioToRaw: +(raw.cpuUs / serverCpuUsPerSend).toFixed(2),
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await server.kill();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '5' },
      connections: { type: 'string', default: '4' },
      depth: { type: 'string', default: '256' },
    },
  });
  const f = await runSendBench(Number(values.seconds), Number(values.connections), Number(values.depth));
  console.log(
    `persisted sends through the SDK (${f.connections} connections × ${f.depth} in flight): ${f.sendsPerSecond.toLocaleString('en')}/s, p50 ${f.p50Ms} ms, p99 ${f.p99Ms} ms`,
  );
  console.log(`raw better-sqlite3 inserts (ceiling): ${f.rawInsertsPerSecond.toLocaleString('en')}/s — ratio ${f.ratioToRaw}`);
  console.log(
    `server CPU per persisted send: ${f.serverCpuUsPerSend} µs; raw insert: ${f.rawCpuUsPerInsert} µs — CPU ratio ${f.cpuRatioToRaw}`,
  );
}
