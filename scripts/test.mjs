#!/usr/bin/env node
// Runs the test suite with node's test runner (its summary is what CI reads).
// Usage: npm test [-- <path filter> ...]   e.g. npm test -- packages/fpnn
// Test files: packages/*/test/**/*.test.ts and test/**/*.test.ts.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, sep } from 'node:path';

function walk(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    if (name === 'node_modules' || name === 'dist') continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else if (name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

const filters = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const flags = process.argv.slice(2).filter((a) => a.startsWith('--'));
const files = [];
for (const pkg of readdirSync('packages')) walk(join('packages', pkg, 'test'), files);
walk('test', files);
// The runner starts files in the order given, so one long file started late is the whole suite's
// tail: the longest (measured 2026-12-04, 20 – 40 s each; most files take 1 – 10 s) go first.
// Four files at a time on two cores: most of a test's time is waiting (timers, sockets, child
// processes). With two the suite used ~1.05 cores (7 min); with three ~1.5 (5.7 min); with four
// ~1.55 cores and 4.9 min (2026-12-04, the same 447 s of CPU).
const LONGEST_FIRST = [
  'packages/server/test/bus-nats.test.ts',
  'packages/server/test/rooms-model.test.ts',
  'packages/server/test/presence-ends.test.ts',
  'test/cluster/rolling-restart.test.ts',
  'packages/client-sdk/test/browser-network.test.ts',
  'packages/server/test/cli.test.ts',
  'packages/server/test/transport.test.ts',
  'packages/server/test/store-sqlite.test.ts',
  'packages/server/test/unread-model.test.ts',
];
const rank = (f) => {
  const i = LONGEST_FIRST.indexOf(f.split(sep).join('/'));
  return i === -1 ? LONGEST_FIRST.length : i;
};
const selected = files
  .sort()
  .sort((a, b) => rank(a) - rank(b))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
if (selected.length === 0) {
  console.error('no test files matched', filters);
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  ['--conditions=rtm-source', '--import', 'tsx', '--test', '--test-concurrency=4', '--test-timeout=300000', ...flags, ...selected],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
