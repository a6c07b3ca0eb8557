/**
 * The `rtm` command as an operator runs it: `npm start`, signals, exit codes and the messages of
 * start-up failures. Every test runs the real CLI in a child process with its own temporary data
 * directory and ephemeral ports.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createECDH } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { prlimitMissing, startTestServer } from '@rtm/testkit';
import { StartupError } from '../src/main.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const VERSION = (JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'rtm-cli-'));
  dirs.push(d);
  return d;
}

/** The environment of a test server: ephemeral ports, admin off, its own data directory. */
async function serverEnv(extra: Record<string, string> = {}): Promise<Record<string, string>> {
  return {
    RTM_DATA_DIR: await tempDir(),
    RTM_HOST: '127.0.0.1',
    RTM_SERVER_PORT: '0',
    RTM_CLIENT_PORT: '0',
    RTM_ADMIN_PORT: '-1',
    RTM_LOG_LEVEL: 'info',
    ...extra,
  };
}

interface Run {
  /** Resolves once stdout and stderr have closed and the process has exited. */
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  /** The JSON log lines seen so far. */
  readonly logs: Record<string, unknown>[];
  /** Resolves with the first log line whose msg is `msg`. */
  waitFor(msg: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  kill(signal: NodeJS.Signals): void;
  /** What the process wrote to stderr so far. */
  stderr(): string;
}

function run(command: string, args: string[], env: Record<string, string>, as?: { uid: number; gid: number }): Run {
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...as });
  let stdout = '';
  let stderr = '';
  const logs: Record<string, unknown>[] = [];
  const waiters: { msg: string; resolve: (e: Record<string, unknown>) => void }[] = [];
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout }).on('line', (line) => {
    stdout += line + '\n';
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    logs.push(entry);
    for (const w of waiters.filter((x) => x.msg === entry.msg)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(entry);
    }
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    // 'close': the process has exited AND its stdio is closed (no orphan holds them).
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return {
    done,
    logs,
    waitFor(msg, timeoutMs = 20_000) {
      const seen = logs.find((e) => e.msg === msg);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no '${msg}' log within ${timeoutMs} ms: ${stdout}${stderr}`)), timeoutMs);
        waiters.push({ msg, resolve: (e) => (clearTimeout(timer), resolve(e)) });
        void done.then(() => reject(new Error(`exited before logging '${msg}': ${stdout}${stderr}`)));
      });
    },
    kill(signal) {
      child.kill(signal);
    },
    stderr: () => stderr,
  };
}

/** Why script(1) (util-linux), which runs a command on a pseudo-terminal, cannot be used here, or undefined. */
function scriptMissing(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux (script from util-linux)';
  return spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0 ? undefined : 'script(1) (util-linux) not found';
}

const rtm = (args: string[], env: Record<string, string>, as?: { uid: number; gid: number }): Run =>
  run(process.execPath, ['--conditions=rtm-source', '--import', 'tsx', CLI, ...args], env, as);

/** `done` within `ms`, or a failure that says the process (or an orphan holding its output) is still there. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

describe('npm start', () => {
  it('SIGTERM to the npm process reaches the server, which stops gracefully (rolling restarts)', async () => {
    const npm = run('npm', ['start', '--silent'], await serverEnv({ RTM_HOST: '' })); // empty: the default
    const started = await npm.waitFor('RTM server started', 30_000);
    assert.equal(started.host, '127.0.0.1', 'the started line names the bind address');
    assert.equal(started.version, VERSION, 'and the version');
    const { pid } = started as { pid: number };
    npm.kill('SIGTERM');
    let stdout;
    try {
      ({ stdout } = await within(npm.done, 15_000, 'npm start did not end after SIGTERM: the server was left running'));
    } finally {
      try {
        process.kill(pid, 'SIGKILL'); // an orphaned server, if the signal did not reach it
      } catch {
        // gone, as it should be
      }
    }
    assert.ok(
      npm.logs.some((e) => e.msg === 'stopped'),
      `the server did not log its graceful stop:\n${stdout}`,
    );
  });
});

describe('configuration errors', () => {
  // Each: the environment, and what the one-line message must say. Exit code 2, nothing started.
  const configFile = async (text: string): Promise<Record<string, string>> => {
    const path = join(await tempDir(), 'rtm.json');
    await writeFile(path, text);
    return { RTM_CONFIG: path };
  };
  const cases: [string, () => Promise<Record<string, string>>, RegExp][] = [
    [
      'PostgreSQL without a project secret',
      async () => ({ RTM_STORE: 'postgres://rtm@127.0.0.1:1/rtm' }),
      /RTM_PROJECT_SECRET.*RTM_CONFIG/,
    ],
    [
      'RTM_CONFIG with a misspelt key',
      () => configFile('{"project":[{"pid":1,"secret":"a-long-secret"}]}'),
      /RTM_CONFIG.*unknown key 'project'/,
    ],
    [
      'RTM_PING_INTERVAL_MS above RTM_IDLE_TIMEOUT_MS (clients answering every ping would be closed as idle)',
      async () => ({ RTM_PROJECT_SECRET: 'a-long-project-secret', RTM_IDLE_TIMEOUT_MS: '1000', RTM_PING_INTERVAL_MS: '4000' }),
      /RTM_PING_INTERVAL_MS.*RTM_IDLE_TIMEOUT_MS/,
    ],
    // The log level itself: the failure is still logged (at the default level).
    ['RTM_LOG_LEVEL that is no level', async () => ({ RTM_LOG_LEVEL: 'verbose' }), /RTM_LOG_LEVEL must be one of/],
    // A misspelt variable behind the error (the client port meant for RTM_CLIENT_PORT went nowhere).
    [
      'RTM_PING_INTERVAL_MS above RTM_IDLE_TIMEOUT_MS, with a misspelt variable set',
      async () => ({ RTM_IDLE_TIMEOUT_MS: '1000', RTM_PING_INTERVAL_MS: '4000', RTM_CLEINT_PORT: '23321', RTM_FROBNICATE: '1' }),
      /RTM_PING_INTERVAL_MS.*RTM_IDLE_TIMEOUT_MS.*; also, not read by the server: RTM_CLEINT_PORT \(did you mean RTM_CLIENT_PORT\?\)$/m,
    ],
  ];
  for (const [what, env, message] of cases) {
    it(`${what}: exit code 2, a message naming the setting, and the same as a fatal log line`, async () => {
      const r = rtm(['serve'], await serverEnv(await env()));
      const { code, stdout, stderr } = await within(r.done, 20_000, 'the server did not exit');
      assert.equal(code, 2, stdout + stderr);
      assert.match(stderr, /^configuration error: /m);
      assert.match(stderr, message);
      assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
      assert.ok(!r.logs.some((e) => e.msg === 'RTM server started'));
      assertFatalLogged(r, stderr, 2);
    });
  }
});

/** The failure on stderr is also the last JSON log line on stdout, at fatal with the exit code (README configuration). */
function assertFatalLogged(r: Run, stderr: string, exitCode: number): void {
  const fatal = r.logs.filter((e) => e.level === 60);
  assert.equal(fatal.length, 1, `one fatal log line:\n${JSON.stringify(r.logs)}`);
  assert.equal(fatal[0], r.logs.at(-1), 'the last');
  assert.equal(fatal[0]!.msg, stderr.trim().split('\n').at(-1), 'its message is the line on stderr');
  assert.equal(fatal[0]!.exitCode, exitCode);
  assert.equal(fatal[0]!.service, 'rtm-server', 'written by the server logger');
}

describe('start-up failures on a terminal', () => {
  it(
    'where stdout and stderr are one terminal, the failure is said once, on stderr, not again as a JSON line',
    { skip: scriptMissing() },
    async () => {
      // script(1) runs the command on a pseudo-terminal, as an operator's shell would.
      const command = [process.execPath, '--conditions=rtm-source', '--import', 'tsx', CLI, 'serve'].map((a) => `'${a}'`).join(' ');
      const r = run(
        'script',
        ['-qefc', command, '/dev/null'],
        await serverEnv({ RTM_PING_INTERVAL_MS: '4000', RTM_IDLE_TIMEOUT_MS: '1000' }),
      );
      const { code, stdout } = await within(r.done, 20_000, 'the server did not exit');
      assert.equal(code, 2, stdout);
      assert.equal(stdout.match(/RTM_PING_INTERVAL_MS \(4000\) must be less/g)?.length, 1, stdout);
      assert.match(stdout, /^configuration error: /m);
    },
  );
});

describe('misspelt variables', () => {
  it('an RTM_ variable the server does not read (RTM_LOGLEVEL) is warned about at start, not ignored silently, with the one meant', async () => {
    const r = rtm(
      ['serve'],
      await serverEnv({ RTM_PROJECT_SECRET: 'a-long-project-secret', RTM_LOGLEVEL: 'debug', RTM_FROBNICATE: '1', RTM_ENDPOINT: 'x:1' }),
    );
    try {
      const warning = await r.waitFor('ignored: RTM_* environment variables that the server does not read (misspelt?)');
      assert.equal(warning.level, 40);
      assert.deepEqual(warning.variables, ['RTM_FROBNICATE', 'RTM_LOGLEVEL'], "RTM_ENDPOINT is the CLI's");
      assert.deepEqual(warning.didYouMean, { RTM_LOGLEVEL: 'RTM_LOG_LEVEL' }, 'a near miss is named; RTM_FROBNICATE is near nothing');
      await r.waitFor('RTM server started');
    } finally {
      r.kill('SIGTERM');
      await within(r.done, 10_000, 'no exit after SIGTERM');
    }
  });
});

describe('the dev project secret', () => {
  it('a first start that fails after generating it (a port in use) has printed it; the next start says where it is', async () => {
    const dataDir = join(await tempDir(), 'data');
    const busy: Server = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const { port } = busy.address() as { port: number };
    try {
      const first = await within(
        rtm(['serve'], await serverEnv({ RTM_DATA_DIR: dataDir, RTM_CLIENT_PORT: String(port) })).done,
        30_000,
        'first start',
      );
      assert.equal(first.code, 1, first.stderr);
      const saved = (await readFile(join(dataDir, 'dev-project-secret'), 'utf8')).trim();
      assert.match(first.stderr, new RegExp(`RTM_PROJECT_SECRET=${saved}\n`), 'printed when generated, though the start failed');
      assert.match(first.stderr, /^start-up failed: port \d+ \(RTM_CLIENT_PORT\) is in use/m);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
    const second = rtm(['serve'], await serverEnv({ RTM_DATA_DIR: dataDir }));
    try {
      await second.waitFor('RTM server started');
    } finally {
      second.kill('SIGTERM');
      await within(second.done, 10_000, 'no exit after SIGTERM');
    }
    assert.match(second.stderr(), /RTM_PROJECT_SECRET=|dev-project-secret/, 'README: "`npm start` prints the generated secret … once"');
    assert.doesNotMatch(second.stderr(), /RTM_PROJECT_SECRET=[0-9a-f]/, 'the secret itself only once');
  });

  it('an empty dev-project-secret file: exit code 2 and a message naming the file, not RTM_PROJECT_SECRET the operator never set', async () => {
    const dataDir = join(await tempDir(), 'data');
    await mkdir(dataDir);
    await writeFile(join(dataDir, 'dev-project-secret'), '');
    const r = await within(rtm(['serve'], await serverEnv({ RTM_DATA_DIR: dataDir })).done, 20_000, 'no exit');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^configuration error: the dev project's secret file .*dev-project-secret is empty: .*remove the file/m);
  });

  it(
    'a secret that cannot be saved (the disk takes no writes): a configuration error naming RTM_DATA_DIR, and no file left',
    { skip: prlimitMissing() },
    async () => {
      const dataDir = join(await tempDir(), 'data');
      // prlimit --fsize=1: every write past a file's first byte fails, as on a full disk.
      const r = await within(
        run(
          'prlimit',
          ['--fsize=1', '--', process.execPath, '--conditions=rtm-source', '--import', 'tsx', CLI, 'serve'],
          await serverEnv({ RTM_DATA_DIR: dataDir }),
        ).done,
        20_000,
        'no exit',
      );
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^configuration error: RTM_DATA_DIR .*: the dev project's secret cannot be saved in .*dev-project-secret \(/m);
      assert.deepEqual(await readdir(dataDir), [], 'no empty secret file for the next start to refuse');
    },
  );

  it('a dev-project-secret that cannot be read (a directory): one "configuration error" line naming the file', async () => {
    const dataDir = join(await tempDir(), 'data');
    await mkdir(join(dataDir, 'dev-project-secret'), { recursive: true });
    const r = await within(rtm(['serve'], await serverEnv({ RTM_DATA_DIR: dataDir })).done, 20_000, 'no exit');
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^configuration error: .*dev-project-secret cannot be read \(it is a directory, not a file\)/m);
  });
});

describe('the data directory', () => {
  // root may write anywhere: then the server runs as nobody, in a directory of root's. That needs a
  // checkout nobody may read (a clone in a private temporary directory is not).
  const asRoot = process.getuid?.() === 0;
  const nobody = asRoot ? { uid: 65534, gid: 65534 } : undefined;
  const unreadable =
    nobody && spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(CLI)})`], { ...nobody }).status !== 0
      ? `user nobody cannot read this checkout (${ROOT}), and root may write anywhere`
      : undefined;

  it('a file in the way: exit code 2 and "RTM_DATA_DIR <dir> cannot be created (a file is in the way: not a directory)"', async () => {
    const parent = await tempDir();
    await writeFile(join(parent, 'file'), 'x');
    const dataDir = join(parent, 'file', 'data');
    const r = rtm(['serve'], await serverEnv({ RTM_DATA_DIR: dataDir, RTM_PROJECT_SECRET: 'a-long-project-secret' }));
    const { code, stdout, stderr } = await within(r.done, 20_000, 'the server did not exit');
    assert.equal(code, 2, stdout + stderr);
    assert.match(
      stderr,
      new RegExp(`^configuration error: RTM_DATA_DIR ${dataDir} cannot be created \\(a file is in the way: not a directory\\)$`, 'm'),
    );
  });

  it('rtm.sqlite that is a directory: the start fails saying so, not with a guess about SQLite settings', async () => {
    const dataDir = join(await tempDir(), 'data');
    await mkdir(join(dataDir, 'rtm.sqlite'), { recursive: true });
    const r = rtm(['serve'], await serverEnv({ RTM_DATA_DIR: dataDir, RTM_PROJECT_SECRET: 'a-long-project-secret' }));
    const { code, stdout, stderr } = await within(r.done, 20_000, 'the server did not exit');
    assert.equal(code, 1, stdout + stderr);
    assert.match(stderr, /^start-up failed: .*rtm\.sqlite: it is a directory, not a database file/m);
    assert.doesNotMatch(stderr, /URI|RTM_SQLITE_EXCLUSIVE/);
  });

  it('made 0700 when missing; the database (login tokens, messages) 0600 as dev-project-secret, whatever the umask', async () => {
    const dataDir = join(await tempDir(), 'data');
    const r = rtm(['serve'], await serverEnv({ RTM_DATA_DIR: dataDir }));
    try {
      await r.waitFor('RTM server started');
      await new Promise((resolve) => setTimeout(resolve, 300)); // a checkpoint or two: the WAL is written
      assert.equal((await stat(dataDir)).mode & 0o777, 0o700);
      assert.equal((await stat(join(dataDir, 'dev-project-secret'))).mode & 0o777, 0o600);
      const files = (await readdir(dataDir)).filter((f) => f.startsWith('rtm.sqlite'));
      assert.ok(files.includes('rtm.sqlite') && files.includes('rtm.sqlite-wal'), files.join());
      for (const f of files) {
        const mode = (await stat(join(dataDir, f))).mode & 0o777;
        assert.equal(mode, 0o600, `${f} is mode ${mode.toString(8)} (umask ${process.umask().toString(8)})`);
      }
    } finally {
      r.kill('SIGTERM');
      await within(r.done, 10_000, 'no exit after SIGTERM');
    }
  });

  for (const secret of [true, false]) {
    it(
      `not writable: exit code 2 and "RTM_DATA_DIR <dir> is not writable (permission denied)"${secret ? '' : ', also when the dev secret is to be generated'}`,
      { skip: unreadable },
      async () => {
        const parent = await tempDir();
        await chmod(parent, 0o755);
        const dataDir = join(parent, 'data');
        await mkdir(dataDir, { mode: 0o755 });
        if (!asRoot) await chmod(dataDir, 0o555);
        const r = rtm(
          ['serve'],
          await serverEnv({ RTM_DATA_DIR: dataDir, ...(secret ? { RTM_PROJECT_SECRET: 'a-long-project-secret' } : {}) }),
          nobody,
        );
        const { code, stdout, stderr } = await within(r.done, 20_000, 'the server did not exit');
        assert.equal(code, 2, stdout + stderr);
        assert.match(stderr, new RegExp(`^configuration error: RTM_DATA_DIR ${dataDir} is not writable \\(permission denied\\)$`, 'm'));
      },
    );
  }
});

describe('signals', () => {
  for (const [what, bytes] of [
    ['an admin (/healthz, /metrics) connection holds an unfinished request', 'GET /healthz HTTP/1.1\r\nHost: x\r\n'],
    ['an admin connection is open and has sent nothing yet (a TCP health check)', ''],
  ] as const)
    it(`SIGTERM stops gracefully within 10 s while ${what}`, async () => {
      const r = rtm(['serve'], await serverEnv({ RTM_PROJECT_SECRET: 'a-long-project-secret', RTM_ADMIN_PORT: '0' }));
      const started = (await r.waitFor('RTM server started')) as { adminPort: number };
      const s = connect(started.adminPort, '127.0.0.1');
      s.on('error', () => undefined);
      await new Promise((resolve) => s.once('connect', resolve));
      if (bytes) s.write(bytes);
      await new Promise((resolve) => setTimeout(resolve, 200));
      try {
        r.kill('SIGTERM');
        const { code, stdout } = await within(r.done, 10_000, 'still running 10 s after SIGTERM (waiting for the admin connection)');
        assert.equal(code, 0, stdout);
        assert.ok(
          r.logs.some((e) => e.msg === 'stopped'),
          stdout,
        );
      } finally {
        s.destroy();
        r.kill('SIGKILL');
      }
    });

  for (const [signal, code] of [
    ['SIGTERM', 143],
    ['SIGINT', 130],
  ] as const) {
    it(`a second ${signal} during the graceful stop forces the exit (code ${code}) after logging it`, async () => {
      const r = rtm(['serve'], await serverEnv({ RTM_PROJECT_SECRET: 'a-long-project-secret' }));
      const started = (await r.waitFor('RTM server started')) as { serverPort: number };
      // An HTTP keep-alive connection that does not end its side when the server ends its own
      // holds the graceful stop for 3 s.
      const silent = connect({ port: started.serverPort, host: '127.0.0.1', allowHalfOpen: true });
      silent.on('error', () => undefined);
      await new Promise((resolve) => silent.once('connect', resolve));
      silent.write('GET /service/x HTTP/1.1\r\nHost: a\r\n\r\n');
      await new Promise((resolve) => silent.once('data', resolve));
      try {
        r.kill(signal);
        await r.waitFor('stopping: no new connections, finishing in-flight quests');
        // At once, it is the same one delivered twice (a terminal's Ctrl-C, forwarded by npm too).
        r.kill(signal);
        await r.waitFor('signal received again at once (from npm or the process group): the graceful stop goes on');
        await new Promise((resolve) => setTimeout(resolve, 1100));
        r.kill(signal);
        const { code: exit, stdout, stderr } = await within(r.done, 2500, 'the second signal did not end the process at once');
        assert.equal(exit, code, stdout + stderr);
        assert.ok(
          r.logs.some((e) => e.msg === 'second signal during the graceful stop: forced exit' && e.signal === signal),
          stdout,
        );
        assert.ok(!r.logs.some((e) => e.msg === 'stopped'));
      } finally {
        silent.destroy();
      }
    });
  }
});

describe('backing services and ports at start-up', () => {
  /** A port with nothing listening on it (bound, then closed). */
  const closedPort = async (): Promise<number> => {
    const srv = createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const { port } = srv.address() as { port: number };
    await new Promise((resolve) => srv.close(resolve));
    return port;
  };
  const startFails = async (env: Record<string, string>): Promise<string> => {
    const r = rtm(['serve'], await serverEnv({ RTM_PROJECT_SECRET: 'a-long-project-secret', ...env }));
    const { code, stdout, stderr } = await within(r.done, 30_000, 'the server did not exit');
    assert.equal(code, 1, stdout + stderr);
    assert.doesNotMatch(stderr, /\n\s+at /, `no stack trace:\n${stderr}`);
    assert.equal(stderr.trim().split('\n').length, 1, `one line:\n${stderr}`);
    assert.ok(!r.logs.some((e) => e.msg === 'RTM server started'));
    assertFatalLogged(r, stderr, 1);
    return stderr.trim();
  };

  it('PostgreSQL unreachable: "store (RTM_STORE=postgres://host:port/db) unreachable: …", never the password', async () => {
    const port = await closedPort();
    const line = await startFails({ RTM_STORE: `postgres://rtm:hunter2-secret@127.0.0.1:${port}/rtm?sslmode=disable` });
    assert.match(
      line,
      new RegExp(`^start-up failed: store \\(RTM_STORE=postgres://127\\.0\\.0\\.1:${port}/rtm\\) unreachable: .*ECONNREFUSED`),
    );
    assert.doesNotMatch(line, /hunter2|rtm:/);
  });

  it('NATS unreachable: "bus (RTM_BUS=nats://…) unreachable: …", and the store is closed again', async () => {
    const port = await closedPort();
    const line = await startFails({ RTM_BUS: `nats://user:hunter2@127.0.0.1:${port}` });
    assert.match(line, new RegExp(`^start-up failed: bus \\(RTM_BUS=nats://127\\.0\\.0\\.1:${port}\\) unreachable: `));
    assert.doesNotMatch(line, /hunter2/);
  });

  it('a port in use: "port N (RTM_CLIENT_PORT) is in use"', async () => {
    const busy: Server = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const { port } = busy.address() as { port: number };
    try {
      const line = await startFails({ RTM_CLIENT_PORT: String(port) });
      assert.equal(line, `start-up failed: port ${port} (RTM_CLIENT_PORT) is in use on 127.0.0.1`);

      // Embedded: the failed start closes what it had opened, so the data directory opens again at once.
      const dataDir = await tempDir();
      await assert.rejects(
        startTestServer({ clientPort: port }, { dataDir }),
        (e) => e instanceof StartupError && /RTM_CLIENT_PORT/.test(e.message),
      );
      const again = await within(startTestServer({}, { dataDir }), 3000, 'the store of the failed start was left open');
      await again.close();
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });
});

describe('the command line', () => {
  it('rtm version / --version / -v print the version of packages/server/package.json', async () => {
    for (const args of [['version'], ['--version'], ['-v']]) {
      const { code, stdout } = await rtm(args, {}).done;
      assert.equal(code, 0);
      assert.equal(stdout, `${VERSION}\n`, args.join(' '));
    }
  });

  it('rtm help / --help / -h print the usage, with the exit codes', async () => {
    for (const args of [['help'], ['--help'], ['-h'], ['token', '--help']]) {
      const { code, stdout } = await rtm(args, {}).done;
      assert.equal(code, 0);
      assert.match(stdout, /^usage:\n/, args.join(' '));
      assert.match(stdout, /exit codes: 0 .* 1 .* 2 bad command line or configuration/);
    }
  });

  it('a bad command line exits 2 with the usage, before connecting anywhere', async () => {
    // A server-gate stand-in that counts connections: none may be made.
    let connections = 0;
    const gate = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => gate.listen(0, '127.0.0.1', resolve));
    const env = { RTM_ENDPOINT: `127.0.0.1:${(gate.address() as { port: number }).port}`, RTM_PROJECT_SECRET: 'a-long-project-secret' };
    try {
      const cases: [string[], RegExp][] = [
        [['--nope'], /Unknown option '--nope'/],
        [['frobnicate'], /unknown command 'frobnicate'/],
        [['token', 'abc'], /uid must be an integer/],
        [['token'], /missing <uid>/],
        [['token', '1', '2'], /unexpected argument '2' for 'token'/],
        [['token', '99999999999999999999'], /uid must be an integer from 1 to 2\^63-1/],
        [['token', '0'], /uid must be an integer from 1 to 2\^63-1, got '0'/],
        [['send', '1', '2', 'hi', '--mtype', '0'], /--mtype must be an integer from 1 to 127/],
        [['send', '1', '2'], /missing <text>/],
        [['send', '1', '2', 'hi', '--mtype', 'chat'], /--mtype must be an integer/],
        [['send', '1', 'hi', '--group', '5', '--room', '6'], /choose one of --group, --room and --broadcast/],
        [['history', '1', '2', '--num', 'x'], /--num must be an integer/],
        [['keygen', '--curve', 'ed25519'], /--curve must be secp256k1 or secp256r1/],
        [['serve', 'now'], /unexpected argument 'now' for 'serve'/],
      ];
      await Promise.all(
        cases.map(async ([args, message]) => {
          const { code, stderr } = await rtm(args, env).done;
          assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
          assert.match(stderr, message, args.join(' '));
          assert.match(stderr, /\nusage:\n/, args.join(' '));
        }),
      );
      const bad = await rtm(['token', '1'], { ...env, RTM_PROJECT_ID: 'abc' }).done;
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /^configuration error: RTM_PROJECT_ID must be a positive int32/);
      assert.equal(connections, 0, 'nothing connected');
    } finally {
      await new Promise((resolve) => gate.close(resolve));
    }
  });

  it('no RTM_PROJECT_SECRET in a cluster node’s environment (RTM_STORE=postgres, or RTM_CONFIG): exit 2 saying what to set, not to start the server once', async () => {
    const dataDir = await tempDir();
    const cases: [Record<string, string>, RegExp][] = [
      [
        { RTM_STORE: 'postgres://db.example:5432/rtm' },
        /RTM_PROJECT_SECRET is not set: with RTM_STORE=postgres .*set RTM_PROJECT_ID and RTM_PROJECT_SECRET/,
      ],
      [
        { RTM_CONFIG: join(dataDir, 'projects.json') },
        /RTM_PROJECT_SECRET is not set: the client commands do not read RTM_CONFIG.*set RTM_PROJECT_ID and RTM_PROJECT_SECRET/,
      ],
    ];
    for (const [env, message] of cases) {
      const r = await rtm(['token', '1001'], { RTM_DATA_DIR: dataDir, RTM_ENDPOINT: '127.0.0.1:1', RTM_PROJECT_SECRET: '', ...env }).done;
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /start the server once/);
    }
  });

  it('a server that is down: exit code 1 and one line', async () => {
    const srv = createServer();
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const { port } = srv.address() as { port: number };
    await new Promise((resolve) => srv.close(resolve));
    const r = await within(
      rtm(['send', '1001', '1002', 'hello'], { RTM_ENDPOINT: `127.0.0.1:${port}`, RTM_PROJECT_SECRET: 'a-long-project-secret' }).done,
      20_000,
      'the CLI did not exit',
    );
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /ECONNREFUSED/);
  });

  it('`rtm keygen`: the key forms it names for the Node server SDK are the ones its ECDH takes', async () => {
    const r = await within(rtm(['keygen'], {}).done, 20_000, 'keygen did not exit');
    assert.equal(r.code, 0, r.stderr);
    const form = (name: string): Buffer => Buffer.from(new RegExp(`^${name} \\([^)]*\\):\\s+([0-9a-f]+)$`, 'm').exec(r.stdout)![1]!, 'hex');
    assert.match(r.stdout, /^# Node: a file of the compressed or the uncompressed bytes/m);
    // What the official Node server SDK does with its key file: ecdh.computeSecret(file bytes).
    const client = createECDH('secp256k1');
    client.generateKeys();
    for (const name of ['compressed', 'uncompressed']) assert.equal(client.computeSecret(form(name)).length, 32, name);
    assert.throws(() => client.computeSecret(form('raw')), /not valid for specified curve/, 'the raw form is not for Node');
  });

  it('`rtm keygen | head -1`: the reader gone, it ends quietly (no EPIPE stack trace)', async () => {
    const child = spawn(process.execPath, ['--conditions=rtm-source', '--import', 'tsx', CLI, 'keygen'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // The reader is gone before the CLI writes (racy with head, certain here).
    child.stdout.destroy();
    const code = await within(new Promise<number | null>((resolve) => child.once('close', resolve)), 20_000, 'keygen did not exit');
    assert.doesNotMatch(stderr, /\n\s+at /, `exit ${code}, stack trace:\n${stderr.slice(0, 400)}`);
    assert.equal(stderr, '');
    assert.equal(code, 0);
  });
});
