import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConfigOverrides } from '../../server/src/config.js';
import type { RunningServer, StartOptions } from '../../server/src/main.js';

export const TEST_PID = 11000001;
export const TEST_SECRET = 'golden-secret';

export interface TestServer extends RunningServer {
  readonly dataDir: string;
  readonly serverEndpoint: string;
  readonly clientEndpoint: string;
  /** `localhost:<port>` of the client gate's TLS port (the test certificates' name), when it has one. */
  readonly clientTlsEndpoint: string | undefined;
  /** Stops the server and removes its data directory. */
  close(): Promise<void>;
}

/**
 * Starts a real server for a test: ephemeral ports on 127.0.0.1, a fresh temporary data
 * directory, silent logs, the golden project (pid 11000001, secret "golden-secret").
 */
export async function startTestServer(
  overrides: ConfigOverrides = {},
  options: StartOptions & {
    dataDir?: string;
    keepData?: boolean;
    /** A store of the test's making in the server's own data directory (e.g. a slowed one). */
    makeStore?: (dataDir: string) => NonNullable<StartOptions['store']>;
  } = {},
): Promise<TestServer> {
  const { startServer } = await import('../../server/src/main.js');
  const { isWildcardHost, resolveConfig } = await import('../../server/src/config.js');
  const { createLogger } = await import('../../server/src/observability/logger.js');
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'rtm-test-')));
  const { config } = resolveConfig(
    {},
    {
      host: '127.0.0.1',
      serverPort: 0,
      clientPort: 0,
      clientTlsPort: 0,
      adminPort: 0,
      dataDir,
      projects: [{ pid: TEST_PID, secret: TEST_SECRET }],
      // Test clients do not close a socket on kickout as the SDKs do: the server's fallback close
      // comes at once (login.test.ts covers the default's wait).
      kickoutCloseMs: 50,
      ...overrides,
    },
  );
  const server = await startServer(config, {
    logger: options.logger ?? createLogger(process.env.RTM_TEST_LOG_LEVEL ?? 'silent'),
    store: options.store ?? options.makeStore?.(dataDir),
    bus: options.bus,
  }).catch(async (err: unknown) => {
    // A start that fails leaves no directory of ours behind.
    if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    throw err;
  });
  return {
    ...server,
    dataDir,
    serverEndpoint: `127.0.0.1:${server.serverPort}`,
    // Where the client gate listens (clientHost when it is one address), else loopback.
    clientEndpoint: `${config.clientHost && !isWildcardHost(config.clientHost) ? config.clientHost : '127.0.0.1'}:${server.clientPort}`,
    clientTlsEndpoint: server.clientTlsPort === undefined ? undefined : `localhost:${server.clientTlsPort}`,
    async close() {
      await server.stop();
      if (!options.keepData && !options.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
