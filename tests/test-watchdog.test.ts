// The watchdog every test file is started with (scripts/test-watchdog.ts) ends a finished file's
// process through process.exit: the exit code must still say whether its tests passed, and the file's
// own 'exit' listeners must still run.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const watchdog = fileURLToPath(new URL('../scripts/test-watchdog.ts', import.meta.url));

function runTestFile(t: { after(fn: () => void): void }, name: string, body: string) {
  const dir = mkdtempSync(join(tmpdir(), 'mooring-watchdog-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, name);
  writeFileSync(
    file,
    `import { test } from 'node:test';\nprocess.on('exit', (code) => console.log('own exit listener ran, code ' + code));\n${body}\n`,
  );
  // a runner of its own: not a child of this file's runner
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  return spawnSync(process.execPath, ['--import', watchdog, '--test', '--test-reporter=tap', file], {
    encoding: 'utf8',
    timeout: 60_000,
    env,
  });
}

test('a passing file exits 0 and its own exit listener runs', (t) => {
  const run = runTestFile(t, 'pass.test.ts', `test('passes', () => {});`);
  assert.equal(run.status, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /own exit listener ran, code 0/);
  assert.match(run.stdout, /# pass 1/);
});

test('a failing file exits non-zero', (t) => {
  const run = runTestFile(t, 'fail.test.ts', `test('fails', () => { throw new Error('no'); });`);
  assert.notEqual(run.status, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /# fail 1/);
});
