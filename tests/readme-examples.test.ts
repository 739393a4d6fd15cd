/**
 * Every TypeScript example in the docs (```ts and ```tsx blocks of the READMEs, ARCHITECTURE.md and
 * PROTOCOL.md) type-checks against the packages' own types, with the repo's compiler options: an
 * option renamed, a method gone, a wrong argument shows here rather than in a user's editor.
 * Examples are fragments: a block sees the imports of the blocks above it in the same doc (added at
 * its end, so its line numbers hold), and a name it uses that nothing declares (`model`, `DEV_KEY`,
 * `app`) is taken as given, as is a name declared twice in one block (two ways to do one thing)
 * and a parameter without a type.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** What a fragment may leave out: undeclared names (2304, 2552, 18004, and test globals 2582, 2593),
 * a name declared twice (2451), parameters without types (7006, 7031). */
const FRAGMENT = new Set([2304, 2552, 18004, 2582, 2593, 2451, 7006, 7031]);

interface Example {
  doc: string;
  line: number;
  file: string;
  text: string;
}

function docs(): string[] {
  const found = ['README.md', 'ARCHITECTURE.md', 'PROTOCOL.md'];
  for (const dir of ['packages', 'apps', 'examples'])
    for (const name of readdirSync(join(ROOT, dir)))
      if (existsSync(join(ROOT, dir, name, 'README.md'))) found.push(`${dir}/${name}/README.md`);
  return found;
}

function examplesOf(doc: string, text: string, into: Example[]): void {
  const lines = text.split('\n');
  const imports: Array<{ names: string[]; text: string }> = [];
  let open: { at: number; lang: string } | undefined;
  lines.forEach((line, i) => {
    const fence = /^```(\S*)/.exec(line);
    if (!fence) return;
    if (open === undefined) open = { at: i, lang: fence[1] ?? '' };
    else {
      if (open.lang === 'ts' || open.lang === 'tsx') {
        const code = lines.slice(open.at + 1, i).join('\n');
        const own = importsOf(code);
        const taken = new Set(own.flatMap((d) => d.names));
        const inherited = imports.filter((d) => !d.names.some((name) => taken.has(name)));
        into.push({
          doc,
          line: open.at + 2,
          // beside the repo's package.json, so imports resolve as in the repo
          file: join(ROOT, `.doc-example-${into.length}.tsx`),
          text: [code, ...inherited.map((d) => d.text)].join('\n'),
        });
        imports.push(...own);
      }
      open = undefined;
    }
  });
}

function importsOf(code: string): Array<{ names: string[]; text: string }> {
  const source = ts.createSourceFile('block.tsx', code, ts.ScriptTarget.Latest);
  return source.statements.filter(ts.isImportDeclaration).map((d) => {
    const clause = d.importClause;
    const bindings = clause?.namedBindings;
    const names = [
      ...(clause?.name ? [clause.name.text] : []),
      ...(bindings === undefined
        ? []
        : ts.isNamespaceImport(bindings)
          ? [bindings.name.text]
          : bindings.elements.map((e) => e.name.text)),
    ];
    return { names, text: d.getText(source) };
  });
}

/** `doc:line TScode message` for each problem in the examples. */
function check(examples: Example[]): string[] {
  const config = ts.readConfigFile(join(ROOT, 'tsconfig.json'), ts.sys.readFile);
  const { options } = ts.convertCompilerOptionsFromJson(config.config.compilerOptions, ROOT);
  options.jsx = ts.JsxEmit.ReactJSX;
  options.moduleDetection = ts.ModuleDetectionKind.Force;
  const byFile = new Map(examples.map((e) => [e.file, e]));
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, language, ...rest) => {
    const example = byFile.get(name);
    return example
      ? ts.createSourceFile(name, example.text, language)
      : getSourceFile.call(host, name, language, ...rest);
  };
  host.fileExists = (name) => byFile.has(name) || fileExists.call(host, name);
  host.readFile = (name) => byFile.get(name)?.text ?? readFile.call(host, name);
  const program = ts.createProgram([...byFile.keys()], options, host);
  // The program's options and global problems, and every file's syntax; but the types of the
  // examples only: the packages' sources they import are type-checked by `npm run check` (tsc -p
  // tsconfig.json, which `npm test` runs first), and checking them again here was most of this test.
  const checked = program.getSourceFiles().filter((f) => byFile.has(f.fileName));
  const diagnostics = [
    ...program.getConfigFileParsingDiagnostics(),
    ...program.getOptionsDiagnostics(),
    ...program.getGlobalDiagnostics(),
    ...program.getSyntacticDiagnostics(),
    ...checked.flatMap((f) => program.getSemanticDiagnostics(f)),
  ];
  const problems: string[] = [];
  for (const d of diagnostics) {
    const example = d.file === undefined ? undefined : byFile.get(d.file.fileName);
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n    ');
    if (example === undefined) problems.push(`(outside the examples) TS${d.code} ${message}`);
    else if (!FRAGMENT.has(d.code)) {
      const { line } = example && d.file ? d.file.getLineAndCharacterOfPosition(d.start ?? 0) : { line: 0 };
      problems.push(`${example.doc}:${example.line + line} TS${d.code} ${message}`);
    }
  }
  return problems;
}

test('every TypeScript example in the docs type-checks against the packages', () => {
  const examples: Example[] = [];
  for (const doc of docs()) examplesOf(doc, readFileSync(join(ROOT, doc), 'utf8'), examples);
  const real = examples.length;
  assert.ok(real >= 25, `only ${real} examples found`);
  // the check itself can fail: a misspelt option and a method that is not there are reported
  examplesOf(
    'self-check.md',
    [
      '```ts',
      "import { Mooring } from '@mooring/client';",
      "const client = new Mooring({ url: 'http://127.0.0.1:8080', keey: 'a:b' });",
      "await client.channels.get('x').publishh('text', 'hi');",
      '```',
    ].join('\n'),
    examples,
  );
  const problems = check(examples);
  const selfCheck = problems.filter((p) => p.startsWith('self-check.md'));
  assert.deepEqual(
    selfCheck.map((p) => /^self-check\.md:(\d+) TS(\d+)/.exec(p)?.slice(1).join(' ')),
    ['3 2561', '4 2551'],
    `the self-check was not reported as expected:\n${selfCheck.join('\n')}`,
  );
  const inDocs = problems.filter((p) => !p.startsWith('self-check.md'));
  assert.deepEqual(inDocs, [], `${inDocs.length} problems in ${real} examples:\n${inDocs.join('\n')}`);
});
