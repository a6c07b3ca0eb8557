/**
 * Prints the top functions by self time of a V8 .cpuprofile (node --cpu-prof), and by "total"
 * time for functions of our packages.
 *
 *   node --conditions=rtm-source --import tsx bench/workers/cpuprofile-top.ts <file.cpuprofile> [--top 30]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface Node {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
/** `function path:line` of a profile's call frame, paths from node_modules/ or packages/ on. */
export function frameLabel(frame: CallFrame): string {
  const url = frame.url.replace(/^file:\/\//, '').replace(/.*\/(node_modules|packages)\//, '$1/');
  return `${frame.functionName || '(anonymous)'} ${url ? `${url}:${frame.lineNumber + 1}` : ''}`.trim();
}

interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

export function topFunctions(profile: Profile, top = 30): { self: [string, number][]; total: [string, number][]; totalMs: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfTime = new Map<number, number>();
  profile.samples.forEach((id, i) => selfTime.set(id, (selfTime.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const label = (n: Node): string => frameLabel(n.callFrame);
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let all = 0;
  for (const [id, t] of selfTime) {
    all += t;
    const n = byId.get(id)!;
    self.set(label(n), (self.get(label(n)) ?? 0) + t);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(byId.get(cur)!);
      if (seen.has(l)) continue;
      seen.add(l);
      total.set(l, (total.get(l) ?? 0) + t);
    }
  }
  const sort = (m: Map<string, number>): [string, number][] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => [k, v / 1000]);
  return { self: sort(self), total: sort(total), totalMs: all / 1000 };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '30' } } });
  const { self, total, totalMs } = topFunctions(JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Profile, Number(values.top));
  const pct = (ms: number): string => `${((100 * ms) / totalMs).toFixed(1).padStart(5)}%`;
  console.log(`sampled ${totalMs.toFixed(0)} ms\n\nself time:`);
  for (const [k, ms] of self) console.log(`${pct(ms)}  ${k}`);
  console.log('\ninclusive time:');
  for (const [k, ms] of total) console.log(`${pct(ms)}  ${k}`);
}
