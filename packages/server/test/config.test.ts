import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, resolveConfig } from '../src/config.js';

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
