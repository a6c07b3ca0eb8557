import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../server/src/cli.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface SpawnedServer {
  readonly child: ChildProcess;
  readonly serverPort: number;
  readonly clientPort: number;
  /** The client gate's TLS port, when RTM_TLS_CERT and RTM_TLS_KEY are set. */
  readonly clientTlsPort: number | undefined;
  readonly adminPort: number | undefined;
  /** The JSON lines the server has logged so far (pino entries), from its start: the first 1,000. */
  readonly logs: readonly Record<string, unknown>[];
  /** Resolves with the exit code / signal once the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Runs `rtm serve` in a child process (what `npm start` runs) with the given RTM_* environment and
 * ephemeral ports, and resolves once it has logged its bound ports (needs RTM_LOG_LEVEL info or lower).
 * `nodeArgs` go to node itself (e.g. `--cpu-prof`, which NODE_OPTIONS does not allow); `launcher`
 * runs node (e.g. `['prlimit', '--nofile=300', '--']`).
 */
export function spawnServer(
  env: Record<string, string>,
  timeoutMs = 20_000,
  nodeArgs: string[] = [],
  launcher: readonly string[] = [],
): Promise<SpawnedServer> {
  const [command, ...launcherArgs] = [...launcher, process.execPath];
  const child = spawn(command!, [...launcherArgs, ...nodeArgs, '--conditions=rtm-source', '--import', 'tsx', CLI, 'serve'], {
    env: {
      ...process.env,
      RTM_SERVER_PORT: '0',
      RTM_CLIENT_PORT: '0',
      RTM_CLIENT_TLS_PORT: '0',
      RTM_ADMIN_PORT: '-1',
      RTM_HOST: '127.0.0.1',
      RTM_LOG_LEVEL: 'info',
      RTM_KICKOUT_CLOSE_MS: '50', // as startTestServer's
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let stderr = '';
  const logs: Record<string, unknown>[] = [];
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start within ${timeoutMs} ms: ${stderr}`));
    }, timeoutMs);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let entry: { msg?: string; serverPort?: number; clientPort?: number; clientTlsPort?: number; adminPort?: number };
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      // Bounded: a bench's server runs for minutes; tests look at the start-up lines.
      if (logs.length < 1000) logs.push(entry);
      if (entry.msg !== 'RTM server started') return;
      clearTimeout(timer);
      resolve({
        child,
        serverPort: entry.serverPort!,
        clientPort: entry.clientPort!,
        clientTlsPort: entry.clientTlsPort,
        adminPort: entry.adminPort,
        logs,
        exited,
        async kill(signal: NodeJS.Signals = 'SIGTERM') {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          await exited;
        },
      });
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (code ${code}, signal ${signal}): ${stderr}`));
    });
  });
}

/** What a finished `rtm` command said. */
export interface RtmRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `rtm <args>` (the CLI, from source) to its end, in the repository's root, with the test
 * runner's environment plus `env`; killed after `timeoutMs`.
 */
export function runRtm(args: readonly string[], env: Record<string, string>, timeoutMs = 30_000): Promise<RtmRun> {
  const child = spawn(process.execPath, ['--conditions=rtm-source', '--import', 'tsx', CLI, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}
