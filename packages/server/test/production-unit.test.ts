import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CONFIG } from '../src/config.js';
import { connectionCaps } from '../src/observability/open-files.js';

// deploy/rtm.service, the systemd unit docs/production.md installs: valid for systemd, and true to
// what the server needs (how it is started, how long a stop takes, the files its connections take).

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../../..');
const UNIT = join(ROOT, 'deploy/rtm.service');
const unit = readFileSync(UNIT, 'utf8');

/** The value of `key=` in the unit (the last one, as systemd takes it). */
function setting(key: string): string {
  const values = [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);
  assert.ok(values.length > 0, `${key}= is set`);
  return values.at(-1)!;
}

describe('the systemd unit (deploy/rtm.service)', () => {
  const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  it('passes systemd-analyze verify without a word', { skip: analyze.status === 0 ? false : 'systemd-analyze is not installed' }, () => {
    const verified = spawnSync('systemd-analyze', ['verify', UNIT], { encoding: 'utf8' });
    assert.equal(verified.status, 0, verified.stderr);
    // Unknown keys and bad values are only warnings: any output is one.
    assert.equal(`${verified.stdout}${verified.stderr}`.trim(), '');
  });

  it('starts the server as npm start does, with node itself', () => {
    const start = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start as string;
    const [node, ...args] = setting('ExecStart').split(' ');
    assert.match(node!, /\/node$/);
    assert.equal(args.join(' '), start.replace(/^exec node /, ''));
    assert.equal(setting('KillSignal'), 'SIGTERM');
    assert.equal(setting('ExecReload'), '/bin/kill -HUP $MAINPID', 'SIGHUP rereads the TLS files');
  });

  it("waits for a graceful stop, and gives both gates' default connection limits their files", () => {
    const stopMs = Number(
      /const STOP_TIMEOUT_MS = ([\d_]+);/.exec(readFileSync(join(ROOT, 'packages/server/src/cli.ts'), 'utf8'))![1]!.replaceAll('_', ''),
    );
    assert.ok(Number(setting('TimeoutStopSec')) * 1000 > stopMs, `TimeoutStopSec over the server's own bound (${stopMs} ms)`);
    // Both gates' default limits kept whole, with 1,000 files open at start (a server opens ~30).
    const { server, client } = connectionCaps(
      { server: DEFAULT_CONFIG.maxServerConnections, client: DEFAULT_CONFIG.maxClientConnections },
      Number(setting('LimitNOFILE')),
      1000,
    );
    assert.deepEqual(
      [server, client],
      [
        { cap: DEFAULT_CONFIG.maxServerConnections, lowered: false },
        { cap: DEFAULT_CONFIG.maxClientConnections, lowered: false },
      ],
      'room for RTM_MAX_SERVER_CONNECTIONS and RTM_MAX_CLIENT_CONNECTIONS by default',
    );
    assert.equal(setting('Environment'), `RTM_DATA_DIR=/var/lib/${setting('StateDirectory')}`, 'the data in the directory systemd makes');
  });
});
