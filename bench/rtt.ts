/**
 * Quest round trips per second over loopback, one connection, pipelined: FPNN/TCP and FPNN over
 * WebSocket against the real server (a child process, so its CPU is its own), `*ping` quests.
 *
 *   node --conditions=rtm-source --import tsx bench/rtt.ts [--seconds 3] [--depth 256]
 */
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawClient, spawnServer } from '@rtm/testkit';

export interface RttFigures {
  transport: 'tcp' | 'websocket';
  depth: number;
  roundTripsPerSecond: number;
}

async function drive(client: RawClient, seconds: number, depth: number): Promise<number> {
  let done = 0;
  const deadline = performance.now() + seconds * 1000;
  const lane = async (): Promise<void> => {
    while (performance.now() < deadline) {
      await client.quest('*ping');
      done++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: depth }, lane));
  return done / ((performance.now() - started) / 1000);
}

export async function runRttBench(seconds = 3, depth = 256): Promise<RttFigures[]> {
  const dataDir = await mkdtemp(join(tmpdir(), 'rtm-bench-rtt-'));
  const server = await spawnServer({ RTM_DATA_DIR: dataDir });
  try {
    const out: RttFigures[] = [];
    for (const transport of ['tcp', 'websocket'] as const) {
      const endpoint = `127.0.0.1:${server.clientPort}`;
      const client = transport === 'tcp' ? await RawClient.tcp(endpoint) : await RawClient.websocket(endpoint);
      await drive(client, 0.5, depth); // warm-up
      out.push({ transport, depth, roundTripsPerSecond: Math.round(await drive(client, seconds, depth)) });
      client.close();
    }
    return out;
  } finally {
    await server.kill();
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, depth: { type: 'string', default: '256' } } });
  const figures = await runRttBench(Number(values.seconds), Number(values.depth));
  for (const f of figures)
    console.log(`${f.transport.padEnd(9)} pipelined depth ${f.depth}: ${f.roundTripsPerSecond.toLocaleString('en')} round trips/s`);
}
