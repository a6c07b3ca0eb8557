/**
 * What tests that need the outside world share: PostgreSQL and NATS for the cluster paths,
 * prlimit(1) to make the system refuse writes. On a machine without them such a test skips and
 * says why; with CI=true a missing service fails it instead (CI has them all: a skip there would
 * hide a broken setup).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';

/**
 * Runs `body` (which declares a suite) when `unavailable` is undefined; otherwise declares suite
 * `suite` with one test named `needs` that skips with `unavailable` as its reason, or fails with it
 * when CI=true.
 */
export function whenAvailable(unavailable: string | undefined, suite: string, needs: string, body: () => void): void {
  if (!unavailable) return body();
  describe(suite, () => {
    if (process.env['CI'] === 'true') it(`${needs} (required when CI=true)`, () => assert.fail(unavailable));
    else it(needs, { skip: unavailable }, () => {});
  });
}

/** Why prlimit(1), which changes the limits of a running process (Linux, util-linux), cannot be used here, or undefined. */
export function prlimitMissing(): string | undefined {
  if (process.platform !== 'linux') return 'needs Linux (prlimit)';
  try {
    execFileSync('prlimit', ['--version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'prlimit(1) (util-linux) not found';
  }
}
