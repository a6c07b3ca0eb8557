import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { ConfigError, ENV_VARIABLES, meantVariable, resolveConfig } from '../src/config.js';
import { startServer } from '../src/main.js';
import { createLogger } from '../src/observability/logger.js';

const base = { RTM_PROJECT_ID: '1000', RTM_PROJECT_SECRET: 'a-long-project-secret' };

describe('config: SQLite tuning from the environment', () => {
  it('defaults: synchronous NORMAL, checkpoints every 100 ms, commits in the event loop, exclusive, a 16 MiB cache', () => {
    const c = resolveConfig(base).config;
    assert.equal(c.sqliteCacheMiB, 16);
    assert.equal(c.sqliteSynchronous, 'NORMAL');
    assert.equal(c.sqliteCheckpointMs, 100);
    assert.equal(c.sqliteWriterThread, false);
    assert.equal(c.sqliteExclusive, true);
  });

  it('reads RTM_SQLITE_CHECKPOINT_MS, RTM_SQLITE_WRITER_THREAD, RTM_SQLITE_EXCLUSIVE and RTM_SQLITE_CACHE_MIB', () => {
    const c = resolveConfig({
      ...base,
      RTM_SQLITE_CHECKPOINT_MS: '0',
      RTM_SQLITE_WRITER_THREAD: 'on',
      RTM_SQLITE_SYNCHRONOUS: 'full',
      RTM_SQLITE_EXCLUSIVE: 'false',
      RTM_SQLITE_CACHE_MIB: '256',
    }).config;
    assert.equal(c.sqliteCacheMiB, 256);
    assert.equal(c.sqliteCheckpointMs, 0);
    assert.equal(c.sqliteWriterThread, true);
    assert.equal(c.sqliteSynchronous, 'FULL');
    assert.equal(c.sqliteExclusive, false);
  });

  it('a bad value names its variable', () => {
    assert.throws(
      () => resolveConfig({ ...base, RTM_SQLITE_CHECKPOINT_MS: '-5' }),
      (e) => e instanceof ConfigError && /RTM_SQLITE_CHECKPOINT_MS/.test(e.message),
    );
    assert.throws(() => resolveConfig({ ...base, RTM_SQLITE_CHECKPOINT_MS: 'soon' }), /RTM_SQLITE_CHECKPOINT_MS must be an integer/);
    assert.throws(() => resolveConfig({ ...base, RTM_SQLITE_WRITER_THREAD: 'maybe' }), /RTM_SQLITE_WRITER_THREAD must be true or false/);
    assert.throws(() => resolveConfig({ ...base, RTM_SQLITE_SYNCHRONOUS: 'OFF' }), /RTM_SQLITE_SYNCHRONOUS must be NORMAL or FULL/);
    assert.throws(() => resolveConfig({ ...base, RTM_SQLITE_CACHE_MIB: '0' }), /RTM_SQLITE_CACHE_MIB/);
  });
});

describe('config: V8 young-generation collection', () => {
  it('parallel scavenging is off by default and RTM_PARALLEL_SCAVENGE turns it back on', () => {
    assert.equal(resolveConfig(base).config.parallelScavenge, false);
    assert.equal(resolveConfig({ ...base, RTM_PARALLEL_SCAVENGE: 'true' }).config.parallelScavenge, true);
    assert.throws(() => resolveConfig({ ...base, RTM_PARALLEL_SCAVENGE: 'sometimes' }), /RTM_PARALLEL_SCAVENGE must be true or false/);
  });
});

describe('config: limits', () => {
  it('groups per project: 10000 by default (errors-and-limits.md §3), RTM_MAX_GROUPS_PER_PROJECT sets it, 0 = no limit', () => {
    assert.equal(resolveConfig(base).config.limits.maxGroupsPerProject, 10_000);
    assert.equal(resolveConfig({ ...base, RTM_MAX_GROUPS_PER_PROJECT: '250000' }).config.limits.maxGroupsPerProject, 250_000);
    assert.equal(resolveConfig({ ...base, RTM_MAX_GROUPS_PER_PROJECT: '0' }).config.limits.maxGroupsPerProject, 0);
    assert.equal(resolveConfig({ ...base, RTM_MAX_GROUPS_PER_PROJECT: '' }).config.limits.maxGroupsPerProject, 10_000);
    assert.equal(resolveConfig(base, { limits: { maxGroupsPerProject: 3 } }).config.limits.maxGroupsPerProject, 3);
    assert.throws(() => resolveConfig({ ...base, RTM_MAX_GROUPS_PER_PROJECT: '-1' }), /RTM_MAX_GROUPS_PER_PROJECT must be between 0 and/);
    assert.throws(() => resolveConfig({ ...base, RTM_MAX_GROUPS_PER_PROJECT: 'many' }), /RTM_MAX_GROUPS_PER_PROJECT must be an integer/);
  });

  it('client-gate connections: 50000 in all and none per address by default; 0 = no limit, said when a value is refused', () => {
    const c = resolveConfig(base).config;
    assert.deepEqual([c.maxClientConnections, c.maxConnectionsPerAddress], [50_000, 0]);
    const set = resolveConfig({ ...base, RTM_MAX_CLIENT_CONNECTIONS: '0', RTM_MAX_CONNECTIONS_PER_ADDRESS: '64' }).config;
    assert.deepEqual([set.maxClientConnections, set.maxConnectionsPerAddress], [0, 64]);
    const empty = resolveConfig({ ...base, RTM_MAX_CLIENT_CONNECTIONS: '', RTM_MAX_CONNECTIONS_PER_ADDRESS: '' }).config;
    assert.deepEqual([empty.maxClientConnections, empty.maxConnectionsPerAddress], [50_000, 0]);
    for (const name of ['RTM_MAX_CLIENT_CONNECTIONS', 'RTM_MAX_CONNECTIONS_PER_ADDRESS']) {
      // -1 is what "unlimited" is elsewhere: the error says what is.
      assert.throws(
        () => resolveConfig({ ...base, [name]: '-1' }),
        (e: Error) => e instanceof ConfigError && e.message === `${name} must be between 0 and 10000000 (0 = no limit), got -1`,
      );
      assert.throws(
        () => resolveConfig({ ...base, [name]: '10k' }),
        (e: Error) =>
          e instanceof ConfigError && e.message === `${name} must be an integer between 0 and 10000000 (0 = no limit), got '10k'`,
      );
    }
  });

  it('server-gate connections: 1000 by default; 0 = no limit of its own, empty the default, a bad value names the variable', () => {
    const of = (value: string) => resolveConfig({ ...base, RTM_MAX_SERVER_CONNECTIONS: value }).config.maxServerConnections;
    assert.equal(resolveConfig(base).config.maxServerConnections, 1_000);
    assert.deepEqual([of('0'), of('1'), of(' 250 '), of('10000000'), of('')], [0, 1, 250, 10_000_000, 1_000]);
    assert.equal(resolveConfig(base, { maxServerConnections: 3 }).config.maxServerConnections, 3);
    for (const bad of ['-1', '10000001'])
      assert.throws(
        () => of(bad),
        (e: Error) =>
          e instanceof ConfigError && e.message === `RTM_MAX_SERVER_CONNECTIONS must be between 0 and 10000000 (0 = no limit), got ${bad}`,
      );
    assert.throws(
      () => of('1k'),
      (e: Error) =>
        e instanceof ConfigError &&
        e.message === "RTM_MAX_SERVER_CONNECTIONS must be an integer between 0 and 10000000 (0 = no limit), got '1k'",
    );
  });
});

describe('config: the client gate as clients know it', () => {
  it('RTM_CLIENT_ENDPOINT is host:port (unset: the bind address, see main.ts); anything else names the variable', () => {
    assert.equal(resolveConfig(base).config.clientEndpoint, undefined);
    assert.equal(
      resolveConfig({ ...base, RTM_CLIENT_ENDPOINT: ' chat-1.example.com:443 ' }).config.clientEndpoint,
      'chat-1.example.com:443',
    );
    assert.equal(resolveConfig({ ...base, RTM_CLIENT_ENDPOINT: '[fd00::1]:13321' }).config.clientEndpoint, '[fd00::1]:13321');
    for (const bad of ['chat-1.example.com', 'ws://chat:13321', 'a b:1', ':13321'])
      assert.throws(() => resolveConfig({ ...base, RTM_CLIENT_ENDPOINT: bad }), /RTM_CLIENT_ENDPOINT must be 'host:port'/, bad);
  });

  it('two listeners on one port are a configuration error naming both (not "port in use" at start)', () => {
    assert.throws(
      () => resolveConfig({ ...base, RTM_SERVER_PORT: '13400', RTM_CLIENT_PORT: '13400' }),
      (e) =>
        e instanceof ConfigError &&
        e.message === 'RTM_CLIENT_PORT and RTM_SERVER_PORT are both 13400: each listener needs a port of its own',
    );
    assert.throws(() => resolveConfig({ ...base, RTM_ADMIN_PORT: '13315' }), /RTM_ADMIN_PORT and RTM_SERVER_PORT are both 13315/);
    // Ephemeral ports and an admin port turned off clash with nothing.
    resolveConfig({ ...base, RTM_SERVER_PORT: '0', RTM_CLIENT_PORT: '0', RTM_ADMIN_PORT: '0' });
    resolveConfig({ ...base, RTM_ADMIN_PORT: '-1', RTM_SERVER_PORT: '13400', RTM_CLIENT_PORT: '13401' });
  });
});

describe('config: presences', () => {
  it('a grace period of 2 minutes and a node lease of 15 s by default; RTM_NODE_LEASE_MS is at least 300 ms', () => {
    assert.equal(resolveConfig(base).config.logoutGraceMs, 120_000);
    assert.equal(resolveConfig(base).config.nodeLeaseMs, 15_000);
    assert.equal(resolveConfig({ ...base, RTM_NODE_LEASE_MS: '60000' }).config.nodeLeaseMs, 60_000);
    assert.throws(() => resolveConfig({ ...base, RTM_NODE_LEASE_MS: '100' }), /RTM_NODE_LEASE_MS/);
    assert.throws(() => resolveConfig({ ...base, RTM_NODE_LEASE_MS: 'soon' }), /RTM_NODE_LEASE_MS must be an integer/);
  });
});

describe('config: auth v2 (HMAC) tokens', () => {
  it('RTM_PROJECT_HMAC_SECRET must be base64 of at least 16 bytes; RTM_HMAC_TOKEN_TTL_SECONDS defaults to a day', () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    const { config } = resolveConfig({ ...base, RTM_PROJECT_HMAC_SECRET: key });
    assert.equal(config.projects[0]!.hmacSecret, key);
    assert.equal(config.hmacTokenTtlSeconds, 86_400);
    assert.equal(resolveConfig(base).config.projects[0]!.hmacSecret, undefined);
    assert.equal(resolveConfig({ ...base, RTM_HMAC_TOKEN_TTL_SECONDS: '600' }).config.hmacTokenTtlSeconds, 600);
    assert.throws(
      () => resolveConfig({ ...base, RTM_PROJECT_HMAC_SECRET: 'not base64!' }),
      /hmacSecret must be base64 of at least 16 bytes/,
    );
    assert.throws(() => resolveConfig({ ...base, RTM_PROJECT_HMAC_SECRET: Buffer.alloc(8).toString('base64') }), /at least 16 bytes/);
    assert.throws(() => resolveConfig({ ...base, RTM_HMAC_TOKEN_TTL_SECONDS: '0' }), /RTM_HMAC_TOKEN_TTL_SECONDS/);
  });
});

describe('config: the project secret', () => {
  it('with PostgreSQL and no RTM_PROJECT_SECRET / RTM_CONFIG projects, start-up fails naming both', () => {
    assert.throws(
      () => resolveConfig({ RTM_STORE: 'postgres://rtm@127.0.0.1:5432/rtm' }),
      (e) => e instanceof ConfigError && /RTM_PROJECT_SECRET/.test(e.message) && /RTM_CONFIG/.test(e.message),
    );
    const { config, generatedSecret } = resolveConfig({ RTM_STORE: 'postgres://rtm@127.0.0.1:5432/rtm', ...base });
    assert.equal(config.projects[0]!.secret, base.RTM_PROJECT_SECRET);
    assert.equal(generatedSecret, undefined);
  });

  it('with SQLite in memory a dev secret is generated and said to be saved nowhere', () => {
    const r = resolveConfig({ RTM_DATA_DIR: ':memory:' });
    assert.match(r.generatedSecret!, /^[0-9a-f]{32}$/);
    assert.equal(r.generatedSecretFile, undefined);
    assert.ok(!existsSync(resolve(':memory:')), 'no directory named :memory: is made');
  });
});

describe('config: the RTM_CONFIG file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rtm-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  const fileWith = (text: string): string => {
    const path = join(dir, `config-${n++}.json`);
    writeFileSync(path, text);
    return path;
  };
  const project = { pid: 7, secret: 'a-long-project-secret' };

  it('{"projects":[…]} lists the projects served; RTM_PROJECT_ID/SECRET are then ignored', () => {
    const path = fileWith(JSON.stringify({ projects: [project, { pid: 8, secret: 'another-secret', allowLegacySign: true }] }));
    const { config } = resolveConfig({ RTM_CONFIG: path, ...base });
    assert.deepEqual(
      config.projects.map((p) => p.pid),
      [7, 8],
    );
    assert.equal(config.projects[1]!.allowLegacySign, true);
  });

  it('a UTF-8 byte order mark at its start (as Windows editors write one) is read past', () => {
    const path = fileWith('\uFEFF' + JSON.stringify({ projects: [project] }, null, 2));
    assert.deepEqual(
      resolveConfig({ RTM_CONFIG: path }).config.projects.map((p) => p.pid),
      [7],
    );
    // Only there: one inside the JSON is still an error.
    assert.throws(() => resolveConfig({ RTM_CONFIG: fileWith('{"projects":\uFEFF[]}') }), /is not valid JSON/);
  });

  it('RTM_PROJECT_HMAC_SECRET beside it is refused (not dropped silently): hmacSecret goes in the file', () => {
    const path = fileWith(JSON.stringify({ projects: [project] }));
    assert.throws(
      () => resolveConfig({ RTM_CONFIG: path, RTM_PROJECT_HMAC_SECRET: Buffer.alloc(32, 1).toString('base64') }),
      (e) => e instanceof ConfigError && /RTM_PROJECT_HMAC_SECRET.*RTM_CONFIG.*hmacSecret/.test(e.message),
    );
  });

  it('anything else is an error naming RTM_CONFIG and the problem, never the dev project or a TypeError', () => {
    const cases: [string, RegExp][] = [
      [JSON.stringify({ project: [project] }), /unknown key 'project' \(did you mean 'projects'\?\)/],
      ['[]', /must be a JSON object .* got an array/],
      ['null', /must be a JSON object .* got null/],
      ['"projects"', /must be a JSON object .* got string/],
      ['{}', /has no 'projects' list/],
      [JSON.stringify({ projects: {} }), /'projects' must be an array .* got object/],
      [JSON.stringify({ projects: 'p' }), /'projects' must be an array .* got string/],
      [JSON.stringify({ projects: [] }), /'projects' is empty/],
      [JSON.stringify({ projects: [project], logLevel: 'debug' }), /unknown key 'logLevel'/],
      [JSON.stringify({ projects: [project], dataDir: '/srv/rtm' }), /unknown key 'dataDir' \(set RTM_DATA_DIR instead\)/],
      [JSON.stringify({ projects: [null] }), /projects\[0\] must be an object/],
      [JSON.stringify({ projects: [{ ...project, hmac_secret: 'x' }] }), /projects\[0\]: unknown key 'hmac_secret'/],
      [JSON.stringify({ projects: [{ pid: 7 }] }), /projects\[0\]: secret must be a string/],
      // Near misses name the key meant; a key near none is only called unknown.
      [JSON.stringify({ Projects: [project] }), /unknown key 'Projects' \(did you mean 'projects'\?\)/],
      [JSON.stringify({ projets: [project] }), /unknown key 'projets' \(did you mean 'projects'\?\)/],
      [JSON.stringify({ projects: [{ ...project, hmac_secret: 'x' }] }), /unknown key 'hmac_secret': did you mean 'hmacSecret'\?/],
      [JSON.stringify({ projects: [{ pid: 7, secert: 'a-long-secret' }] }), /unknown key 'secert': did you mean 'secret'\?/],
      [
        JSON.stringify({ projects: [{ ...project, colour: 'red' }] }),
        /unknown key 'colour' \(known: pid, secret, hmacSecret, allowLegacySign\)$/,
      ],
      ['{"projects": [', /is not valid JSON/],
    ];
    for (const [text, message] of cases) {
      assert.throws(
        () => resolveConfig({ RTM_CONFIG: fileWith(text) }),
        (e) => e instanceof ConfigError && /^RTM_CONFIG/.test(e.message) && message.test(e.message),
        text,
      );
    }
    assert.throws(() => resolveConfig({ RTM_CONFIG: join(dir, 'missing.json') }), /RTM_CONFIG: cannot read/);
  });
});

describe('config: empty variables', () => {
  it('a variable set but empty means its default (RTM_HOST, RTM_STORE, RTM_BUS, RTM_DATA_DIR, RTM_ENCRYPTION_CURVE)', () => {
    const { config } = resolveConfig({
      ...base,
      RTM_HOST: '',
      RTM_STORE: '',
      RTM_BUS: '',
      RTM_DATA_DIR: '',
      RTM_ENCRYPTION_CURVE: '',
    });
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.store, 'sqlite');
    assert.equal(config.bus, 'local');
    assert.equal(config.dataDir, './data');
    assert.equal(config.encryptionCurve, 'secp256k1');
    assert.equal(resolveConfig({ ...base, RTM_HOST: '0.0.0.0' }).config.host, '0.0.0.0');
    // An IPv6 address may be given in brackets, as in a URL.
    assert.equal(resolveConfig({ ...base, RTM_HOST: '[::1]' }).config.host, '::1');
    assert.equal(resolveConfig({ ...base, RTM_CLIENT_HOST: ' [::] ' }).config.clientHost, '::');
  });
});

describe('config: RTM_LOG_LEVEL', () => {
  it("one of pino's levels, any case; empty means info; anything else names the variable", () => {
    assert.equal(resolveConfig(base).config.logLevel, 'info');
    assert.equal(resolveConfig({ ...base, RTM_LOG_LEVEL: '' }).config.logLevel, 'info');
    assert.equal(resolveConfig({ ...base, RTM_LOG_LEVEL: 'DEBUG' }).config.logLevel, 'debug');
    assert.equal(resolveConfig({ ...base, RTM_LOG_LEVEL: 'silent' }).config.logLevel, 'silent');
    assert.throws(
      () => resolveConfig({ ...base, RTM_LOG_LEVEL: 'verbose' }),
      (e) =>
        e instanceof ConfigError &&
        /RTM_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got 'verbose'/.test(e.message),
    );
  });
});

describe('config: RTM_ENCRYPTION_KEY', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rtm-key-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  // startServer reads the key before it opens anything: a bad one fails with nothing to close.
  const start = (encryptionKey: string) =>
    startServer(resolveConfig(base, { encryptionKey, dataDir: ':memory:', adminPort: -1 }).config, { logger: createLogger('silent') });

  it('a path that does not exist, a directory, or bad contents: an error naming the variable and the problem', async () => {
    await assert.rejects(
      start(join(dir, 'server-key.pem')),
      (e) => e instanceof ConfigError && /^RTM_ENCRYPTION_KEY: file not found: .*server-key\.pem/.test(e.message),
    );
    await assert.rejects(
      start(dir),
      (e) => e instanceof ConfigError && /^RTM_ENCRYPTION_KEY: cannot read .*: it is a directory/.test(e.message),
    );
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'not a key');
    await assert.rejects(
      start(garbage),
      (e) => e instanceof ConfigError && /^RTM_ENCRYPTION_KEY \(.*garbage\.pem\): .*neither raw \(32 bytes\), PEM nor DER/.test(e.message),
    );
    await assert.rejects(start('abcd'), (e) => e instanceof ConfigError && /^RTM_ENCRYPTION_KEY: .*hex characters/.test(e.message));
  });
});

describe('config: settings that contradict each other', () => {
  it('RTM_PING_INTERVAL_MS not below RTM_IDLE_TIMEOUT_MS is refused naming both (healthy clients would be closed as idle)', () => {
    for (const env of [
      { RTM_IDLE_TIMEOUT_MS: '1000', RTM_PING_INTERVAL_MS: '4000' },
      { RTM_IDLE_TIMEOUT_MS: '5000', RTM_PING_INTERVAL_MS: '5000' },
      { RTM_IDLE_TIMEOUT_MS: '10000' }, // below the default ping interval, 20 s
    ]) {
      assert.throws(
        () => resolveConfig({ ...base, ...env }),
        (e) => e instanceof ConfigError && /RTM_PING_INTERVAL_MS \(\d+\) must be less than RTM_IDLE_TIMEOUT_MS \(\d+\)/.test(e.message),
        JSON.stringify(env),
      );
    }
    assert.equal(resolveConfig({ ...base, RTM_IDLE_TIMEOUT_MS: '1000', RTM_PING_INTERVAL_MS: '999' }).config.pingIntervalMs, 999);
  });
});

describe('config: integers', () => {
  it('a value that is not an integer names the variable and the allowed range, as an out-of-range one does', () => {
    for (const [name, value] of [
      ['RTM_SERVER_PORT', 'http'],
      ['RTM_IDLE_TIMEOUT_MS', '60s'],
      ['RTM_MAX_FRAME_BYTES', '8MiB'],
    ] as const) {
      assert.throws(
        () => resolveConfig({ RTM_DATA_DIR: ':memory:', [name]: value }),
        (e: Error) => {
          assert.match(e.message, new RegExp(name));
          assert.match(e.message, /between \d+ and \d+/, `no range: ${e.message}`);
          return true;
        },
      );
    }
  });
});

describe('config: the dev project secret file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rtm-config-dev-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a bad setting refuses the start before a secret is generated (it would be saved, never printed)', () => {
    const dataDir = join(dir, 'refused');
    assert.throws(() => resolveConfig({ RTM_DATA_DIR: dataDir, RTM_SERVER_PORT: 'http' }), /RTM_SERVER_PORT/);
    assert.ok(!existsSync(join(dataDir, 'dev-project-secret')));
  });

  it('a saved one is read, and named as the dev secret file on every start', () => {
    const dataDir = join(dir, 'saved');
    const first = resolveConfig({ RTM_DATA_DIR: dataDir });
    const file = join(resolve(dataDir), 'dev-project-secret');
    assert.equal(first.generatedSecretFile, file);
    assert.equal(first.devSecretFile, file);
    const again = resolveConfig({ RTM_DATA_DIR: dataDir });
    assert.equal(again.generatedSecret, undefined);
    assert.equal(again.devSecretFile, file);
    assert.equal(again.config.projects[0]!.secret, first.generatedSecret);
    assert.equal(resolveConfig({ ...base, RTM_DATA_DIR: dataDir }).devSecretFile, undefined, 'RTM_PROJECT_SECRET set: not the dev secret');
  });
});

describe('config: environment variables', () => {
  const SRC = fileURLToPath(new URL('../src/', import.meta.url));
  const README = fileURLToPath(new URL('../../../README.md', import.meta.url));
  /** The RTM_* variables that config.ts and cli.ts read. */
  const read = (): Set<string> => {
    const names = new Set<string>();
    for (const f of ['config.ts', 'cli.ts']) {
      const src = readFileSync(join(SRC, f), 'utf8');
      for (const m of src.matchAll(/env\.(RTM_[A-Z0-9_]+)|env, '(RTM_[A-Z0-9_]+)'/g)) names.add((m[1] ?? m[2])!);
    }
    assert.ok(names.size > 30, `parsed ${names.size} variables`);
    return names;
  };

  it('ENV_VARIABLES, the names not warned about, lists every variable the server or the CLI reads', () => {
    assert.deepEqual(
      [...read()].filter((v) => !ENV_VARIABLES.includes(v)),
      [],
    );
  });

  it("RTM_* variables the server does not read are listed to be warned about; the CLI's and tests' and benchmarks' are not", () => {
    const { unknownVariables } = resolveConfig({
      ...base,
      RTM_LOGLEVEL: 'debug',
      RTM_ENDPOINT: '127.0.0.1:1',
      RTM_BENCH_V8_FLAGS: 'x',
      RTM_MODEL_SEED: '1',
      RTM_TEST_POSTGRES_URL: 'x',
      HOME: '/root',
    });
    assert.deepEqual(unknownVariables, ['RTM_LOGLEVEL']);
  });

  it('a near miss of a variable the server reads is said (did you mean …?); a name near none is not guessed at', () => {
    for (const [misspelt, meant] of [
      ['RTM_SEVER_PORT', 'RTM_SERVER_PORT'], // a letter left out
      ['RTM_LOGLEVEL', 'RTM_LOG_LEVEL'],
      ['RTM_CLEINT_PORT', 'RTM_CLIENT_PORT'], // two letters swapped
      ['RTM_Log_Level', 'RTM_LOG_LEVEL'], // letter case
      ['RTM_LOGOUT_GRACE', 'RTM_LOGOUT_GRACE_MS'], // the unit left off
      ['RTM_SIGN_WINDOW', 'RTM_SIGN_WINDOW_SECONDS'],
      ['RTM_MAX_FRAME', 'RTM_MAX_FRAME_BYTES'],
      ['RTM_MAX_SERVER_CONNECTION', 'RTM_MAX_SERVER_CONNECTIONS'],
      ['RTM_MAX_SEVER_CONNECTIONS', 'RTM_MAX_SERVER_CONNECTIONS'],
      // Other servers' names, which spelling alone would not lead to (or would lead astray).
      ['RTM_SERVER_HOST', 'RTM_HOST'],
      ['RTM_DATABASE_URL', 'RTM_STORE'],
      ['RTM_nats_url', 'RTM_BUS'],
      ['RTM_PORT', 'RTM_CLIENT_PORT or RTM_SERVER_PORT'],
    ] as const)
      assert.equal(meantVariable(misspelt), meant, misspelt);
    for (const far of ['RTM_FOO', 'RTM_DEBUG', 'RTM_X', 'RTM_MAX']) assert.equal(meantVariable(far), undefined, far);
  });

  it('every variable the server or the CLI reads is in the README', () => {
    const inReadme = new Set(readFileSync(README, 'utf8').match(/RTM_[A-Z0-9_]+/g));
    assert.deepEqual(
      [...read()].filter((v) => !inReadme.has(v)),
      [],
      'read by the code, never mentioned in README',
    );
  });

  it('every variable of the README table is read by the code', () => {
    const readme = readFileSync(README, 'utf8');
    const table = readme.slice(readme.indexOf('| variable | meaning | default |'), readme.indexOf('`SIGTERM`/`SIGINT` stop gracefully'));
    const vars = new Set(table.match(/RTM_[A-Z0-9_]+/g));
    const src = readFileSync(join(SRC, 'config.ts'), 'utf8') + readFileSync(join(SRC, 'cli.ts'), 'utf8');
    assert.deepEqual(
      [...vars].filter((v) => !new RegExp(`env\\.${v}\\b|env, '${v}'`).test(src)), // not ENV_VARIABLES: a read
      [],
    );
  });
});
