/**
 * The options tables of the package READMEs (`| option | default | |`) and the options types they
 * describe agree: every name in a row's first column is an option the type has (nothing stale),
 * and every option of the type is named in the table (nothing left out). A row whose first column
 * is not code (`timings`) names its options in its last column.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const TABLES = [
  {
    doc: 'packages/client/README.md',
    after: '### `new Mooring(options)`',
    source: 'packages/client/src/mooring.ts',
    type: 'MooringOptions',
  },
  {
    doc: 'packages/ai/README.md',
    after: '### `new AgentSession(options)`',
    source: 'packages/ai/src/agent-session.ts',
    type: 'AgentSessionOptions',
  },
  {
    doc: 'packages/temporal/README.md',
    after: '## Streaming activities: `streamToSession`',
    source: 'packages/temporal/src/stream-to-session.ts',
    type: 'StreamToSessionOptions',
  },
];

/** The rows of the first `| option | default | |` table after `after`, as cells. */
function rows(doc: string, after: string): string[][] {
  const text = readFileSync(join(ROOT, doc), 'utf8');
  const from = text.indexOf(after);
  assert.ok(from >= 0, `${doc} has no "${after}"`);
  const head = text.indexOf('\n| option | default |', from);
  assert.ok(head >= 0, `${doc}: no options table after "${after}"`);
  const lines = text.slice(head + 1).split('\n');
  const table = lines.slice(
    2,
    lines.findIndex((line) => !line.startsWith('|')),
  );
  return table.map((line) =>
    line
      .split(/(?<!\\)\|/)
      .slice(1, -1)
      .map((cell) => cell.trim()),
  );
}

const names = (cell: string) => [...cell.matchAll(/`([A-Za-z]\w*)/g)].map((m) => m[1] ?? '');

test('the options tables of the READMEs name exactly the options of their types', () => {
  const config = ts.readConfigFile(join(ROOT, 'tsconfig.json'), ts.sys.readFile);
  const { options } = ts.convertCompilerOptionsFromJson(config.config.compilerOptions, ROOT);
  const program = ts.createProgram(
    TABLES.map((t) => join(ROOT, t.source)),
    options,
  );
  const checker = program.getTypeChecker();
  const problems: string[] = [];
  for (const table of TABLES) {
    const source = program.getSourceFile(join(ROOT, table.source));
    const declaration = source?.statements.find(
      (s): s is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(s) && s.name.text === table.type,
    );
    assert.ok(declaration, `${table.source} declares ${table.type}`);
    const properties = checker.getPropertiesOfType(checker.getTypeAtLocation(declaration)).map((p) => p.name);
    const cells = rows(table.doc, table.after);
    const listed = cells.flatMap(([first = '', , last = '']) => names(first.includes('`') ? first : last));
    const mentioned = new Set(cells.flatMap((row) => row.flatMap(names)));
    for (const name of listed)
      if (!properties.includes(name))
        problems.push(`${table.doc}: \`${name}\` is not an option of ${table.type}`);
    for (const name of properties)
      if (!mentioned.has(name)) problems.push(`${table.doc}: ${table.type}.${name} is not in the table`);
    assert.ok(listed.length >= 5, `${table.doc}: only ${listed.length} options read`);
  }
  assert.deepEqual(problems, []);
});
