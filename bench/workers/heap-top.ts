/**
 * Summarises a V8 .heapsnapshot: self size and count per constructor / node name, largest first;
 * with `--per N` also bytes per N (e.g. per connection).
 *
 *   node --conditions=rtm-source --import tsx bench/workers/heap-top.ts <file.heapsnapshot> [--top 30] [--per 10000]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

export function heapTop(snap: Snapshot, top = 30): { name: string; count: number; bytes: number }[] {
  const f = snap.snapshot.meta.node_fields;
  const width = f.length;
  const iType = f.indexOf('type');
  const iName = f.indexOf('name');
  const iSize = f.indexOf('self_size');
  const types = snap.snapshot.meta.node_types[0];
  const agg = new Map<string, { count: number; bytes: number }>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + iType]!]!;
    const name = type === 'object' || type === 'closure' ? snap.strings[snap.nodes[i + iName]!]! : `(${type})`;
    const key = type === 'closure' ? `closure ${name}` : name;
    const a = agg.get(key) ?? { count: 0, bytes: 0 };
    a.count++;
    a.bytes += snap.nodes[i + iSize]!;
    agg.set(key, a);
  }
  return [...agg]
    .map(([name, a]) => ({ name, ...a }))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, top);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '30' }, per: { type: 'string' } },
  });
  const per = values.per ? Number(values.per) : undefined;
  for (const r of heapTop(JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Snapshot, Number(values.top))) {
    const perText = per
      ? `  ${(r.bytes / per).toFixed(0).padStart(6)} B and ${(r.count / per).toFixed(2).padStart(6)} objects per unit`
      : '';
    console.log(
      `${(r.bytes / 2 ** 20).toFixed(2).padStart(8)} MiB ${String(r.count).padStart(9)}  ${r.name.slice(0, 60).padEnd(60)}${perText}`,
    );
  }
}
