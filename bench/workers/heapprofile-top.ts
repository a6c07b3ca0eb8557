/**
 * Summarises a V8 sampling heap profile (.heapprofile, from RTM_BENCH_HEAP_SAMPLING_DIR; see
 * probe.mjs): bytes allocated by function (self), and by function with its callers' chain
 * (inclusive), largest first.
 *
 *   node --import tsx bench/workers/heapprofile-top.ts <file.heapprofile> [--top 30]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { frameLabel, type CallFrame } from './cpuprofile-top.js';

interface Node {
  callFrame: CallFrame;
  selfSize: number;
  children: Node[];
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '30' } } });
const top = Number(values.top);
const profile = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as { head: Node };
const self = new Map<string, number>();
const inclusive = new Map<string, number>();
const name = (n: Node): string => frameLabel(n.callFrame);

function walk(n: Node, onStack: Set<string>): number {
  const key = name(n);
  self.set(key, (self.get(key) ?? 0) + n.selfSize);
  const first = !onStack.has(key);
  if (first) onStack.add(key);
  let total = n.selfSize;
  for (const c of n.children) total += walk(c, onStack);
  if (first) {
    onStack.delete(key);
    inclusive.set(key, (inclusive.get(key) ?? 0) + total);
  }
  return total;
}

const all = walk(profile.head, new Set());
const show = (title: string, m: Map<string, number>): void => {
  console.log(`\n${title}:`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${((100 * v) / all).toFixed(1).padStart(5)}%  ${(v / 2 ** 20).toFixed(1).padStart(7)} MiB  ${k}`);
};
console.log(`sampled ${(all / 2 ** 20).toFixed(1)} MiB allocated`);
show('self', self);
show('inclusive', inclusive);
