/**
 * Runs every benchmark, one after the other, each in its own process, and prints their figures.
 *
 *   npm run bench                      # all
 *   npm run bench -- rtt sends         # some: protocol rtt sends group-sends store fanout latency memory cluster answer-order backup
 *
 * Figures go to bench/RESULTS.md by hand, with the machine and the date: this machine is shared
 * and noisy, so every bench compares side by side within one run (ratios).
 */
import { spawnSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { LOAD_GENERATOR_V8_FLAGS } from './workers/lib.js';

const ALL = [
  'protocol',
  'rtt',
  'sends',
  'group-sends',
  'store',
  'fanout',
  'latency',
  'memory',
  'cluster',
  'answer-order',
  'backup',
] as const;
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const unknown = wanted.filter((w) => !(ALL as readonly string[]).includes(w));
if (unknown.length) {
  console.error(`unknown bench ${unknown.join(', ')}; choose from ${ALL.join(' ')}`);
  process.exit(2);
}
const list = wanted.length ? wanted : [...ALL];
console.log(
  `# RTM benchmarks — ${new Date().toISOString()} — ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}\n`,
);
let failed = 0;
for (const name of list) {
  console.log(`## ${name}\n`);
  const file = fileURLToPath(new URL(`./${name}.ts`, import.meta.url));
  const started = Date.now();
  const r = spawnSync(process.execPath, ['--conditions=rtm-source', '--import', 'tsx', ...LOAD_GENERATOR_V8_FLAGS, file], {
    stdio: 'inherit',
    timeout: 15 * 60_000,
  });
  if (r.status !== 0) {
    failed++;
    console.log(`\n(${name} failed: ${r.error?.message ?? `exit ${r.status}`})`);
  }
  console.log(`\n(${name}: ${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
}
process.exit(failed ? 1 : 0);
