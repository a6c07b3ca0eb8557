import { after } from 'node:test';
import { startTestServer, type TestServer } from '@rtm/testkit';
import type { ConfigOverrides } from '../../src/config.js';
import { createLogger } from '../../src/observability/logger.js';

/** A pino line as the server writes it. */
export interface Logged {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** pino's level number of `warn`. */
export const WARN = 40;

const servers: TestServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

/** A test server logging at info into `lines`, closed after the test file. */
export async function serverWith(overrides: ConfigOverrides): Promise<TestServer & { lines: Logged[] }> {
  const lines: Logged[] = [];
  const logger = createLogger('info', { write: (s: string) => lines.push(JSON.parse(s) as Logged) } as unknown as NodeJS.WritableStream);
  const server = await startTestServer(overrides, { logger });
  servers.push(server);
  return Object.assign(server, { lines });
}

/** The value of an unlabelled series, or of `series` with its labels, on /metrics (0 when absent). */
export async function metric(server: TestServer, series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}
