/**
 * A mutation sweep: breaks one source file on purpose, one small change at a time, and runs the
 * given tests against each change. A change the tests do not notice ("survived") is either
 * equivalent (it cannot change behaviour) or a guarantee no test holds. GUARANTEES.md lists the
 * sweeps run and what was done with each survivor.
 *
 *   npm run mutate -- packages/server/src/store/operation-rules.ts packages/server/test/memory-store.test.ts
 *
 * The changes are operator flips on code lines (not comments, not imports): `===`/`!==`, `<`/`<=`,
 * `>`/`>=`, `&&`/`||`, `??` → `||`, `true`/`false`, a `!` dropped after `(`, `+ 1`/`- 1`, `++` →
 * `--`. Lua (a `.lua` file, or with `--lua` the Lua in a TypeScript file's strings — then only Lua
 * flips, limited with `--line` to the lines of those strings): `==`/`~=`, `<`/`<=`, `>`/`>=`,
 * `and`/`or`, `not ` dropped, `+ 1`/`- 1`, `true`/`false`; not on `--` comment lines, after ` -- `,
 * or inside a quoted Lua string. `--list` prints the mutants and runs nothing. `--also` names slower tests (repeatable), run only for what survived the first ones: a
 * mutant is reported when neither set notices it. `--line FROM-TO` limits the sweep to those lines;
 * `--line-ends` to the operators that end a line (those sweeps before stop 47 never flipped).
 * `--since REV` to the lines added or changed since that git revision (`git diff -U0 REV`): a sweep
 * of what a change wrote, not of the whole file again.
 * The file is changed in place and restored at the end, also on Ctrl-C or SIGTERM (the test run in
 * progress, a process group of its own, is killed first); run it on a checkout nobody else is
 * building or sweeping from. Each run of the tests has `--timeout` seconds (default 120) and each
 * test half of it; a run that takes longer counts as noticed (a mutant that hangs a test is caught
 * by it).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    timeout: { type: 'string' },
    line: { type: 'string' },
    also: { type: 'string', multiple: true },
    'line-ends': { type: 'boolean' },
    lua: { type: 'boolean' },
    list: { type: 'boolean' },
    since: { type: 'string' },
  },
});
const [file, ...tests] = positionals;
if (file === undefined || (tests.length === 0 && values.list !== true)) {
  console.error(
    'usage: npm run mutate -- [--timeout S] [--line FROM-TO] [--since REV] [--line-ends] [--lua] [--list] [--also TEST]... <source file> <test file>...',
  );
  process.exit(2);
}
const timeoutMs = Number(values.timeout ?? 120) * 1000;
const [fromLine, toLine] = (values.line ?? '1-1000000').split('-').map(Number) as [number, number];

/** With `--since`: the lines of the file as it is now that were added or changed since that revision. */
function changedLines(since: string): Set<number> {
  const diff = execFileSync('git', ['diff', '-U0', since, '--', file!], { encoding: 'utf8' });
  const changed = new Set<number>();
  for (const hunk of diff.matchAll(/^@@ -\S+ \+(\d+)(?:,(\d+))? @@/gm)) {
    const start = Number(hunk[1]);
    const count = hunk[2] === undefined ? 1 : Number(hunk[2]);
    for (let l = start; l < start + count; l++) changed.add(l);
  }
  return changed;
}
const since = values.since === undefined ? undefined : changedLines(values.since);

const FLIPS: ReadonlyArray<readonly [string, string]> = [
  [' === ', ' !== '],
  [' !== ', ' === '],
  [' <= ', ' < '],
  [' < ', ' <= '],
  [' >= ', ' > '],
  [' > ', ' >= '],
  [' && ', ' || '],
  [' || ', ' && '],
  [' ?? ', ' || '],
  ['true', 'false'],
  ['false', 'true'],
  ['(!', '('],
  [' + 1', ' - 1'],
  [' - 1', ' + 1'],
  ['++', '--'],
];

/** The Lua run inside Redis (`.lua` files, the scripts in TypeScript strings with `--lua`). */
const LUA_FLIPS: ReadonlyArray<readonly [string, string]> = [
  [' == ', ' ~= '],
  [' ~= ', ' == '],
  [' <= ', ' < '],
  [' < ', ' <= '],
  [' >= ', ' > '],
  [' > ', ' >= '],
  [' and ', ' or '],
  [' or ', ' and '],
  ['not ', ''],
  [' + 1', ' - 1'],
  [' - 1', ' + 1'],
  ['true', 'false'],
  ['false', 'true'],
];
const lua = file.endsWith('.lua') || values.lua === true;

/** True when `at` is inside a quoted Lua string ('...' or "...") of `code`. */
function inLuaString(code: string, at: number): boolean {
  let quote: string | undefined;
  for (let i = 0; i < at; i++) {
    const ch = code[i]!;
    if (quote !== undefined && ch === '\\') i++;
    else if (quote === undefined && (ch === "'" || ch === '"')) quote = ch;
    else if (ch === quote) quote = undefined;
  }
  return quote !== undefined;
}

interface Mutant {
  line: number;
  column: number;
  from: string;
  to: string;
}

const original = readFileSync(file, 'utf8');
const lines = original.split('\n');

function isWord(ch: string | undefined): boolean {
  return ch !== undefined && /[\w$]/.test(ch);
}

function mutants(): Mutant[] {
  const found: Mutant[] = [];
  const luaFile = file!.endsWith('.lua');
  let inComment = false;
  lines.forEach((text, i) => {
    const line = i + 1;
    const s = text.trim();
    if (!luaFile) {
      if (inComment) {
        if (s.includes('*/')) inComment = false;
        return;
      }
      if (s.startsWith('/*')) {
        inComment = !s.includes('*/');
        return;
      }
    }
    if (line < fromLine || line > toLine) return;
    if (since !== undefined && !since.has(line)) return;
    if (lua && s.startsWith('--')) return;
    if (s.startsWith('//') || s.startsWith('*') || s.startsWith('import ') || s.startsWith('export type'))
      return;
    // a space after the code, so that an operator ending the line (`a &&`, a condition broken over
    // lines) is flipped too
    const code = `${text.split(lua ? ' -- ' : ' // ')[0]!.trimEnd()} `;
    for (const [from, to] of lua ? LUA_FLIPS : FLIPS) {
      for (let at = code.indexOf(from); at >= 0; at = code.indexOf(from, at + 1)) {
        const word = from === 'true' || from === 'false' || from === 'not ';
        if (word && (isWord(code[at - 1]) || isWord(code[at + from.trimEnd().length]))) continue;
        if (from === '++' && (code[at - 1] === '+' || code[at + 2] === '+')) continue;
        if (lua && inLuaString(code, at)) continue;
        if (values['line-ends'] && at + from.length < code.length) continue;
        found.push({ line, column: at, from, to });
      }
    }
  });
  return found;
}

function restore(): void {
  writeFileSync(file!, original);
}
/** The test run in progress: a signal ends it (and its servers) before the file is restored. */
let running: ChildProcess | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (running?.pid !== undefined) killGroup(running.pid);
    restore();
    process.exit(130);
  });
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

const also = values.also ?? [];

/** Runs `files` against the file as it is now; true when a test failed or the run timed out. */
function noticed(files: readonly string[] = tests): Promise<boolean> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      './scripts/test-watchdog.ts',
      '--test',
      '--test-concurrency=2',
      // a mutant that makes a test wait for ever fails that test, not the whole sweep's time
      `--test-timeout=${Math.round(timeoutMs / 2)}`,
      ...files,
    ],
    // a group of its own, so a timeout or a signal ends the servers its tests started too
    { stdio: 'ignore', detached: true },
  );
  running = child;
  const timer = setTimeout(() => killGroup(child.pid!), timeoutMs);
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      running = undefined;
      resolve(code !== 0 || signal !== null);
    });
  });
}

const all = mutants();
if (values.list) {
  for (const m of all)
    console.log(`${file}:${m.line} '${m.from.trim()}' → '${m.to.trim()}': ${lines[m.line - 1]!.trim()}`);
  process.exit(0);
}
console.log(`${file}: ${all.length} mutants, tests: ${tests.join(' ')}`);
if (await noticed([...tests, ...also])) {
  // otherwise every mutant would look noticed
  console.error('the tests fail on the unchanged file: fix them first');
  process.exit(1);
}
const started = Date.now();
const survivors: Mutant[] = [];
try {
  for (const [n, m] of all.entries()) {
    const mutated = [...lines];
    const text = lines[m.line - 1]!;
    mutated[m.line - 1] = text.slice(0, m.column) + m.to + text.slice(m.column + m.from.length);
    writeFileSync(file, mutated.join('\n'));
    const caught = (await noticed()) || (also.length > 0 && (await noticed(also)));
    if (!caught) {
      survivors.push(m);
      console.log(`survived ${file}:${m.line} '${m.from.trim()}' → '${m.to.trim()}': ${text.trim()}`);
    }
    if ((n + 1) % 10 === 0) console.log(`  ${n + 1} / ${all.length} run, ${survivors.length} survived`);
  }
} finally {
  restore();
}
const seconds = Math.round((Date.now() - started) / 1000);
console.log(
  `${all.length} mutants, ${all.length - survivors.length} noticed, ${survivors.length} survived (${seconds} s)`,
);
