#!/usr/bin/env node
// Runs the test suite with node's test runner (its summary is what CI reads).
// Usage: npm test [-- <path filter> ...]   e.g. npm test -- packages/fpnn
// Test files: packages/*/test/**/*.test.ts and test/**/*.test.ts.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

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
const selected = files.sort().filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
if (selected.length === 0) {
  console.error('no test files matched', filters);
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  ['--conditions=development', '--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=120000', ...flags, ...selected],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
