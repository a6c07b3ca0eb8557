/**
 * The documentation as a contract (README.md, docs/cluster.md): claims about the `rtm` command and
 * the configuration that an operator relies on, checked as the operator meets them — the real CLI
 * in a child process, real servers on ephemeral ports with temporary data directories.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RTMServerClient } from '@rtm/server-sdk';
import { runRtm, spawnServer, startTestServer, TEST_PID, TEST_SECRET, TLS_FIXTURES, until, type RtmRun } from '@rtm/testkit';
import { ConfigError, resolveConfig } from '../src/config.js';
import { createLogger } from '../src/observability/logger.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const SECRET = 'a-long-project-secret';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'rtm-docs-'));
  dirs.push(d);
  return d;
}

/** Runs `rtm <args>` to its end (at most 30 s) with the test runner's environment plus `env`. */
const rtm = (args: string[], env: Record<string, string>): Promise<RtmRun> => runRtm(args, env, 30_000);

describe('docs: the client commands reach the server gate at RTM_HOST:RTM_SERVER_PORT (README quick start)', () => {
  it('with the wildcard RTM_HOST the server was started with (:: or 0.0.0.0), as for the server itself', async () => {
    const dataDir = await tempDir();
    const server = await spawnServer({ RTM_HOST: '::', RTM_DATA_DIR: dataDir, RTM_PROJECT_SECRET: SECRET });
    try {
      for (const host of ['::', '0.0.0.0']) {
        const env = { RTM_HOST: host, RTM_SERVER_PORT: String(server.serverPort), RTM_PROJECT_SECRET: SECRET, RTM_DATA_DIR: dataDir };
        const r = await rtm(['token', '1001'], env);
        assert.equal(r.code, 0, `RTM_HOST=${host}: ${r.stderr}`);
        assert.match(r.stdout, /^[0-9A-F]{32}\n$/, `RTM_HOST=${host}`);
      }
    } finally {
      await server.kill();
    }
  });

  it('prints the gates and the admin port of an IPv6 bind address as addresses (ws://[::]:port, not ws://:::port)', async () => {
    const dataDir = await tempDir();
    const child = spawn(process.execPath, ['--conditions=rtm-source', '--import', 'tsx', CLI, 'serve'], {
      cwd: ROOT,
      env: { ...process.env, RTM_HOST: '::', RTM_SERVER_PORT: '0', RTM_CLIENT_PORT: '0', RTM_ADMIN_PORT: '0', RTM_DATA_DIR: dataDir },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise((resolve) => child.once('close', resolve));
    try {
      const deadline = Date.now() + 20_000;
      while (!/Client gate:/.test(stderr) && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
      assert.match(
        stderr,
        /Server gate: \[::\]:\d+ {3}Client gate: ws:\/\/\[::\]:\d+\/service\/websocket\n {2}Admin: http:\/\/\[::\]:\d+\/healthz, \/metrics\n/,
        stderr,
      );
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  });

  it('a bad RTM_ENDPOINT, RTM_HOST or RTM_SERVER_PORT: exit code 2 and one line naming the variable, before connecting', async () => {
    let connections = 0;
    const gate = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => gate.listen(0, '127.0.0.1', resolve));
    try {
      const cases: [Record<string, string>, RegExp][] = [
        [{ RTM_ENDPOINT: 'nonsense' }, /^configuration error: RTM_ENDPOINT must be 'host:port'.*'nonsense'/],
        [{ RTM_ENDPOINT: '127.0.0.1:port' }, /^configuration error: RTM_ENDPOINT must be 'host:port'/],
        [{ RTM_SERVER_PORT: 'abc' }, /^configuration error: RTM_SERVER_PORT must be a port from 1 to 65535.*'abc'/],
        [{ RTM_SERVER_PORT: '0' }, /^configuration error: RTM_SERVER_PORT must be a port from 1 to 65535.*set RTM_ENDPOINT/],
        [{ RTM_HOST: 'a b' }, /^configuration error: RTM_HOST/],
      ];
      for (const [env, message] of cases) {
        const r = await rtm(['token', '1'], { RTM_ENDPOINT: '', RTM_HOST: '', RTM_SERVER_PORT: '', RTM_PROJECT_SECRET: SECRET, ...env });
        assert.equal(r.code, 2, `${JSON.stringify(env)}: ${r.stderr}`);
        assert.match(r.stderr, message, JSON.stringify(env));
        assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      }
      assert.equal(connections, 0, 'nothing connected');
    } finally {
      await new Promise((resolve) => gate.close(resolve));
    }
  });
});

describe('docs: a bad value stops the server at start naming the variable, exit code 2 (README configuration)', () => {
  it("RTM_BUS with a ?prefix= that is no NATS subject prefix (docs/cluster.md) names RTM_BUS, not NatsBus's internals", async () => {
    for (const bus of ['nats://127.0.0.1:4222?prefix=bad$x', 'nats://a:4222,nats://b:4222?prefix=', 'nats://a:4222?prefix=a..b']) {
      assert.throws(
        () => resolveConfig({ RTM_BUS: bus, RTM_PROJECT_SECRET: SECRET }),
        (e) => e instanceof ConfigError && /^RTM_BUS: the \?prefix= of the URL must be/.test(e.message),
        bus,
      );
    }
    // What NatsBus accepts stays accepted, as before (dot-separated tokens included).
    for (const bus of ['nats://a:4222,nats://b:4222?prefix=rtm_prod', 'nats://a:4222?prefix=chat.prod-1', 'nats://a:4222'])
      assert.equal(resolveConfig({ RTM_BUS: bus, RTM_PROJECT_SECRET: SECRET }).config.bus, bus);

    const r = await rtm(['serve'], {
      RTM_BUS: 'nats://127.0.0.1:4222?prefix=bad$x',
      RTM_PROJECT_SECRET: SECRET,
      RTM_DATA_DIR: await tempDir(),
      RTM_SERVER_PORT: '0',
      RTM_CLIENT_PORT: '0',
      RTM_ADMIN_PORT: '-1',
    });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^configuration error: RTM_BUS: the \?prefix= of the URL must be/);
  });
});

describe('docs: message retention (RTM_RETENTION_DAYS / RTM_RETENTION_MAX_PER_CONVERSATION)', () => {
  it('is applied at start (then every hour): a restart with a lower limit trims what is stored', async () => {
    const dataDir = await tempDir();
    const first = await startTestServer({}, { dataDir });
    const sdk = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: first.serverEndpoint, autoReconnect: false });
    try {
      await sdk.connect();
      for (let i = 0; i < 5; i++) await sdk.sendMessage(30, 501n, 502n, `m${i}`);
      await sdk.sendMessage(30, 501n, 503n, 'other conversation');
    } finally {
      await sdk.close();
      await first.close();
    }
    const second = await startTestServer({ retentionMaxPerConversation: 2 }, { dataDir });
    const again = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: second.serverEndpoint, autoReconnect: false });
    try {
      await again.connect();
      // The sweep at start runs beside the start (it is not awaited): give it a moment.
      await until(async () => (await again.getP2PMessage(501n, 502n, true, 10)).num === 2);
      const page = await again.getP2PMessage(501n, 502n, true, 10);
      assert.deepEqual(
        page.messages.map((m) => m.message),
        ['m4', 'm3'],
        'the newest 2 of the conversation are kept',
      );
      assert.equal((await again.getP2PMessage(501n, 503n, true, 10)).num, 1, 'a conversation under the limit is untouched');
    } finally {
      await again.close();
      await second.close();
    }
  });
});

describe('docs: the admin port (README listeners, docs/cluster.md health checks)', () => {
  it('/metrics has every rtm_* metric the README lists, and no other; /healthz answers as documented', async () => {
    const readme = await readFile(new URL('../../../README.md', import.meta.url), 'utf8');
    const paragraph = readme.slice(readme.indexOf('`/metrics` has'), readme.indexOf('Tracing:'));
    const documented = new Set(paragraph.match(/rtm_[a-z_]+/g));
    assert.ok(documented.size > 5, paragraph);
    // With a TLS port, whose metrics exist only then.
    const server = await startTestServer({ tlsCertFile: TLS_FIXTURES.a.certFile, tlsKeyFile: TLS_FIXTURES.a.keyFile });
    const sdk = new RTMServerClient({ pid: TEST_PID, secret: TEST_SECRET, endpoint: server.serverEndpoint, autoReconnect: false });
    try {
      await sdk.connect();
      const { mid } = await sdk.sendMessage(30, 601n, 602n, 'once');
      await sdk.sendMessage(30, 601n, 602n, 'once', '', { mid }); // a resend: acknowledged, not stored again
      const text = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
      const exported = new Set([...text.matchAll(/^# TYPE (rtm_[a-z_]+) /gm)].map((m) => m[1]!));
      assert.deepEqual([...exported].sort(), [...documented].sort());
      assert.match(text, /^rtm_messages_stored_total\{kind="p2p"\} 1$/m);
      assert.match(text, /^rtm_quests_total\{gate="server",method="sendmsg",outcome="ok"\} 2$/m);

      const health = await fetch(`http://127.0.0.1:${server.adminPort}/healthz`);
      assert.equal(health.status, 200);
      const body = (await health.json()) as Record<string, unknown>;
      assert.deepEqual(Object.keys(body).sort(), ['connections', 'node', 'sessions', 'status']);
      assert.equal(body.status, 'ok');
    } finally {
      await sdk.close();
      await server.close();
    }
  });
});

describe('docs: the `rtm` client commands and their options (README quick start)', () => {
  it('send/history take --broadcast in place of the peer, send --mtype, history --num and --asc', async () => {
    const server = await startTestServer();
    const env = { RTM_ENDPOINT: server.serverEndpoint, RTM_PROJECT_ID: String(TEST_PID), RTM_PROJECT_SECRET: TEST_SECRET };
    try {
      for (const [text, mtype] of [
        ['first', '30'],
        ['second', '31'],
      ] as const) {
        const r = await rtm(['send', '1', text, '--broadcast', '--mtype', mtype], env);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /^\{"mid":"\d+","mtime":"\d+"\}\n$/);
      }
      const oldest = await rtm(['history', '9', '--broadcast', '--num', '1', '--asc'], env);
      assert.equal(oldest.code, 0, oldest.stderr);
      const [entry, page] = oldest.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(entry!.message, 'first', 'oldest first');
      assert.equal(entry!.mtype, 30);
      assert.equal(page!.num, 1);
      const newest = await rtm(['history', '9', '--broadcast'], env);
      assert.deepEqual(
        newest.stdout
          .trim()
          .split('\n')
          .slice(0, -1)
          .map((l) => [(JSON.parse(l) as { message: string }).message, (JSON.parse(l) as { mtype: number }).mtype]),
        [
          ['second', 31],
          ['first', 30],
        ],
        'newest first by default',
      );
    } finally {
      await server.close();
    }
  });
});

describe('docs: the HTTP bridge example (README quick start)', () => {
  it('sign = UPPER(md5("pid:secret:salt:method:ts")) and a JSON body: answered {"mtime": …}', async () => {
    const server = await startTestServer();
    try {
      const salt = Math.floor(Math.random() * 1e9);
      const ts = Math.floor(Date.now() / 1000);
      const sign = createHash('md5').update(`${TEST_PID}:${TEST_SECRET}:${salt}:sendmsg:${ts}`).digest('hex').toUpperCase();
      const res = await fetch(`http://${server.serverEndpoint}/service/sendmsg`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: `{"pid":${TEST_PID},"salt":${salt},"ts":${ts},"sign":"${sign}","from":1001,"to":1002,"mid":${salt},"mtype":30,"msg":"hi over http","attrs":""}`,
      });
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.match(text, /^\{"mtime":\d{13}\}$/);
    } finally {
      await server.close();
    }
  });
});

describe('docs: RTM_DATA_DIR and RTM_HOST (README configuration)', () => {
  it('RTM_DATA_DIR=:memory: generates the dev secret at every start and saves it nowhere', () => {
    const first = resolveConfig({ RTM_DATA_DIR: ':memory:' });
    const second = resolveConfig({ RTM_DATA_DIR: ':memory:' });
    assert.ok(first.generatedSecret && second.generatedSecret);
    assert.notEqual(first.generatedSecret, second.generatedSecret);
    assert.equal(first.generatedSecretFile, undefined);
    assert.equal(first.config.dataDir, ':memory:');
  });

  it('an RTM_HOST that is not an address of this machine is a start-up failure naming it (exit code 1), not a configuration error', async () => {
    const { startServer, StartupError } = await import('../src/main.js');
    const { config } = resolveConfig(
      {},
      {
        host: '192.0.2.1',
        serverPort: 0,
        clientPort: 0,
        adminPort: -1,
        dataDir: ':memory:',
        projects: [{ pid: TEST_PID, secret: TEST_SECRET }],
      },
    );
    await assert.rejects(
      startServer(config, { logger: createLogger('silent') }),
      (e) => e instanceof StartupError && /^RTM_HOST 192\.0\.2\.1 is not an address of this machine/.test(e.message),
    );
    // The client gate's own address is named by its own variable.
    const { config: clientOnly } = resolveConfig(
      { RTM_HOST: '127.0.0.1', RTM_CLIENT_HOST: '192.0.2.1' },
      { serverPort: 0, clientPort: 0, adminPort: -1, dataDir: ':memory:', projects: [{ pid: TEST_PID, secret: TEST_SECRET }] },
    );
    assert.equal(clientOnly.clientHost, '192.0.2.1');
    await assert.rejects(
      startServer(clientOnly, { logger: createLogger('silent') }),
      (e) =>
        e instanceof StartupError &&
        /^RTM_CLIENT_HOST 192\.0\.2\.1 is not an address of this machine \(binding RTM_CLIENT_PORT/.test(e.message),
    );
  });
});
