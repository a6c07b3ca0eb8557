/**
 * Who may take a backup from the admin port (admin/backup-access.ts): loopback peers only while
 * RTM_ADMIN_TOKEN is unset; with it, any peer that sends it as a bearer token, and no one else,
 * loopback included. A pure function, so the non-loopback side is tested here, not on sockets.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backupAccess, isLoopbackAddress } from '../src/admin/backup-access.js';
import { ConfigError, resolveConfig } from '../src/config.js';

const TOKEN = 'c0ffee-0123456789abcdef';

describe('backup access: without RTM_ADMIN_TOKEN, loopback peers only', () => {
  it('serves loopback peers, IPv4, IPv6 and IPv4-mapped (a wildcard :: bind names IPv4 peers so)', () => {
    for (const peer of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1', '::FFFF:127.0.0.2'])
      assert.deepEqual(backupAccess(peer, undefined, undefined), { allowed: true }, peer);
  });

  it('refuses every other peer, private networks too, saying to set RTM_ADMIN_TOKEN', () => {
    for (const peer of ['10.0.0.5', '192.168.1.2', '172.16.0.1', '8.8.8.8', '::ffff:10.0.0.5', 'fd00::1', '2001:db8::1', '', undefined]) {
      const access = backupAccess(peer, undefined, undefined);
      assert.equal(access.allowed, false, String(peer));
      assert.match(!access.allowed ? access.reason : '', /loopback peers only.*set RTM_ADMIN_TOKEN.*Authorization: Bearer/, String(peer));
    }
  });

  it('a bearer token sent to a server without one opens nothing', () => {
    assert.equal(backupAccess('10.0.0.5', `Bearer ${TOKEN}`, undefined).allowed, false);
  });

  it('isLoopbackAddress: not fooled by look-alikes', () => {
    for (const address of ['128.0.0.1', '::2', '::ffff:128.0.0.1', '127.0.0.1.example', 'localhost', 'garbage'])
      assert.equal(isLoopbackAddress(address), false, address);
  });
});

describe('backup access: with RTM_ADMIN_TOKEN, the bearer token from any peer', () => {
  it('serves any peer, loopback or not, that sends the token (the scheme in any case)', () => {
    for (const peer of ['127.0.0.1', '10.0.0.5', '203.0.113.9', '2001:db8::1'])
      for (const header of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `BEARER  ${TOKEN}`])
        assert.deepEqual(backupAccess(peer, header, TOKEN), { allowed: true }, `${peer} ${header}`);
  });

  it('refuses a request without the header, loopback included, saying what to send', () => {
    for (const peer of ['127.0.0.1', '::1', '10.0.0.5']) {
      const access = backupAccess(peer, undefined, TOKEN);
      assert.equal(access.allowed, false, peer);
      assert.match(!access.allowed ? access.reason : '', /RTM_ADMIN_TOKEN set: send 'Authorization: Bearer <token>'/);
    }
  });

  it('refuses a wrong token, one a character short or long, another scheme, and never echoes the token', () => {
    for (const header of [
      'Bearer wrong-token-wrong-token',
      `Bearer ${TOKEN.slice(0, -1)}`,
      `Bearer ${TOKEN}x`,
      `Bearer x${TOKEN}`,
      `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`,
      TOKEN,
      'Bearer',
      `Bearer ${TOKEN} extra`,
    ]) {
      const access = backupAccess('127.0.0.1', header, TOKEN);
      assert.equal(access.allowed, false, header);
      assert.doesNotMatch(!access.allowed ? access.reason : '', new RegExp(TOKEN), header);
    }
  });
});

describe('RTM_ADMIN_TOKEN in the configuration', () => {
  const base = { RTM_PROJECT_SECRET: 'a-long-project-secret', RTM_DATA_DIR: ':memory:' };

  it('is read as given; unset or empty, there is none', () => {
    assert.equal(resolveConfig({ ...base, RTM_ADMIN_TOKEN: TOKEN }).config.adminToken, TOKEN);
    assert.equal(resolveConfig({ ...base }).config.adminToken, undefined);
    assert.equal(resolveConfig({ ...base, RTM_ADMIN_TOKEN: '' }).config.adminToken, undefined);
  });

  it('a short one, or one with spaces, stops the start naming the variable, without printing the value', () => {
    for (const bad of ['short-token', 'a token with spaces in it', 'ünïcödé-töken-ünïcödé']) {
      assert.throws(
        () => resolveConfig({ ...base, RTM_ADMIN_TOKEN: bad }),
        (err: Error) =>
          err instanceof ConfigError && /^RTM_ADMIN_TOKEN must be at least 16/.test(err.message) && !err.message.includes(bad),
        bad,
      );
    }
  });
});
