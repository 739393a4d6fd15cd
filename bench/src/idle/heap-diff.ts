/**
 * What two heap snapshots differ by, counted by constructor: for the idle bench's snapshots
 * (`--heap-snapshots DIR`), what each further attached channel (or connection) holds.
 *
 *   node bench/src/idle/heap-diff.ts <before.heapsnapshot> <after.heapsnapshot> [--per N] [--top 40]
 *
 * Each object is counted under its kind and name as the snapshot gives them: an object by its
 * constructor, a closure by its function's name, an array by what holds it (`(object elements)`,
 * `(object properties)`), V8's own structures (`system / Context`, the tables of Maps and Sets) by
 * theirs, strings as one `(string)`. Printed: the rows that grew most in bytes, with count and
 * bytes divided by `--per` (e.g. the attachments added between the snapshots). Self sizes only:
 * what an object holds through others is in those others' rows.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

interface Tally {
  count: number;
  bytes: number;
}

const STRING_TYPES = new Set(['string', 'concatenated string', 'sliced string']);

/** Count and self size by kind and name. */
function tally(path: string): Map<string, Tally> {
  const heap = JSON.parse(readFileSync(path, 'utf8')) as Snapshot;
  const fields = heap.snapshot.meta.node_fields;
  const types = heap.snapshot.meta.node_types[0];
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const sizeAt = fields.indexOf('self_size');
  const rows = new Map<string, Tally>();
  for (let i = 0; i < heap.nodes.length; i += width) {
    const type = types[heap.nodes[i + typeAt]!]!;
    const name = heap.strings[heap.nodes[i + nameAt]!]!;
    const key = rowOf(type, name);
    const row = rows.get(key) ?? { count: 0, bytes: 0 };
    row.count++;
    row.bytes += heap.nodes[i + sizeAt]!;
    rows.set(key, row);
  }
  return rows;
}

function rowOf(type: string, name: string): string {
  if (STRING_TYPES.has(type)) return '(string)';
  if (type === 'object' || type === 'native') return name.length > 60 ? `${name.slice(0, 57)}...` : name;
  if (type === 'closure') return `closure ${name || '(anonymous)'}`;
  if (type === 'number' || type === 'code' || type === 'regexp') return `(${type})`;
  return `(${type}) ${name.length > 50 ? `${name.slice(0, 47)}...` : name}`;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { per: { type: 'string' }, top: { type: 'string' } },
});
if (positionals.length !== 2) {
  process.stderr.write(
    'usage: node bench/src/idle/heap-diff.ts <before.heapsnapshot> <after.heapsnapshot> [--per N] [--top 40]\n',
  );
  process.exit(2);
}
const per = Number(values.per ?? 1);
const top = Number(values.top ?? 40);
const before = tally(positionals[0]!);
const after = tally(positionals[1]!);
const diff = [...after].map(([key, a]) => {
  const b = before.get(key) ?? { count: 0, bytes: 0 };
  return { key, count: a.count - b.count, bytes: a.bytes - b.bytes };
});
for (const [key, b] of before) if (!after.has(key)) diff.push({ key, count: -b.count, bytes: -b.bytes });
diff.sort((x, y) => y.bytes - x.bytes);
const totalBytes = diff.reduce((sum, d) => sum + d.bytes, 0);
const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const lines = [
  `| what | objects added | bytes added | objects / ${fmt(per)} | bytes / ${fmt(per)} |`,
  '|---|---:|---:|---:|---:|',
  ...diff
    .slice(0, top)
    .map(
      (d) =>
        `| ${d.key.replaceAll('|', '\\|')} | ${fmt(d.count)} | ${fmt(d.bytes)} | ${fmt(d.count / per, 2)} | ${fmt(d.bytes / per, 1)} |`,
    ),
  `| **all** | | ${fmt(totalBytes)} | | ${fmt(totalBytes / per, 1)} |`,
];
console.log(lines.join('\n'));
