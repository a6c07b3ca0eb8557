/**
 * Group sends by group size: server CPU and latency per `sendgroupmsg` through the server gate to
 * groups of 10, 1,000 and 10,000 members (offline: this measures the send, not the pushes), beside
 * a p2p send (measured first and last: the machine's drift shows), against the real server in a
 * child process, in one run. The ratio to the p2p send says what a group's size costs a send.
 * Groups hold at most RTM's default 10,000 members.
 *
 *   node --conditions=rtm-source --import tsx bench/group-sends.ts [--sends 5000] [--sizes 10,1000,10000]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { RTMServerClient } from '@rtm/server-sdk';
import { spawnServer, TEST_PID, TEST_SECRET } from '@rtm/testkit';
import { processCpuUs } from './sends.js';

export interface GroupSendFigures {
  /** Members of the group; 0 for the p2p send. */
  members: number;
  /** Server CPU per send, µs. */
  serverCpuUs: number;
  /** Sequential sends: answer latency, ms. */
  p50Ms: number;
  p99Ms: number;
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? 0;

export async function runGroupSendBench(sends = 5000, sizes = [10, 1000, 10_000]): Promise<GroupSendFigures[]> {
  const dataDir = await mkdtemp(join(tmpdir(), 'rtm-bench-groups-'));
  const server = await spawnServer({
    RTM_DATA_DIR: dataDir,
    RTM_PROJECT_ID: String(TEST_PID),
    RTM_PROJECT_SECRET: TEST_SECRET,
  });
  const client = new RTMServerClient({
    pid: TEST_PID,
    secret: TEST_SECRET,
    endpoint: `127.0.0.1:${server.serverPort}`,
    autoReconnect: false,
  });
  try {
    await client.connect();
    const base = 1n << 58n;
    const measure = async (members: number, send: () => Promise<unknown>): Promise<GroupSendFigures> => {
      for (let i = 0; i < 1000; i++) await send(); // warm-up
      const latencies: number[] = [];
      const cpu0 = await processCpuUs(server.child.pid!);
      for (let i = 0; i < sends; i++) {
        const t0 = performance.now();
        await send();
        latencies.push(performance.now() - t0);
      }
      const cpu = (await processCpuUs(server.child.pid!)) - cpu0;
      latencies.sort((a, b) => a - b);
      return {
        members,
        serverCpuUs: +(cpu / sends).toFixed(1),
        p50Ms: +percentile(latencies, 50).toFixed(3),
        p99Ms: +percentile(latencies, 99).toFixed(3),
      };
    };
    const out = [await measure(0, () => client.sendMessage(51, base, base + 1n, 'benchmark message body'))];
    for (const [g, size] of sizes.entries()) {
      const gid = BigInt(g + 1);
      for (let i = 0; i < size; i += 100) {
        await client.addGroupMembers(
          gid,
          Array.from({ length: Math.min(100, size - i) }, (_, j) => base + BigInt(i + j)),
        );
      }
      out.push(await measure(size, () => client.sendGroupMessage(51, base, gid, 'benchmark message body')));
    }
    out.push(await measure(0, () => client.sendMessage(51, base, base + 1n, 'benchmark message body')));
    return out;
  } finally {
    await client.close();
    await server.kill();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { sends: { type: 'string' }, sizes: { type: 'string' } } });
  const figures = await runGroupSendBench(
    values.sends ? Number(values.sends) : undefined,
    values.sizes ? values.sizes.split(',').map(Number) : undefined,
  );
  const p2p = { serverCpuUs: (figures[0]!.serverCpuUs + figures.at(-1)!.serverCpuUs) / 2 };
  console.log('send                     server CPU µs   ÷ p2p   p50 ms   p99 ms');
  for (const f of figures) {
    const name = f.members === 0 ? 'p2p' : `group of ${f.members.toLocaleString('en-US')}`;
    console.log(
      `${name.padEnd(24)} ${String(f.serverCpuUs).padStart(13)} ${(f.serverCpuUs / p2p.serverCpuUs).toFixed(2).padStart(7)} ${f.p50Ms.toFixed(3).padStart(8)} ${f.p99Ms.toFixed(3).padStart(8)}`,
    );
  }
}
