/**
 * The README's "Try it with curl" block runs as written against `mooring serve` started as the
 * README starts it (no key given: a development key in `.mooring/dev-key` of the folder it runs in),
 * only the port changed from 8080 to the one the test server got: publish, append, read back one
 * rolled-up "Hello".
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'packages/server/src/cli.ts');

/** The ```sh block that follows `after` in the README. */
function block(after: string): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf(after);
  assert.ok(at >= 0, `the README has no "${after}"`);
  const match = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(match, `no sh block after "${after}"`);
  return match[1] ?? '';
}

async function serve(cwd: string): Promise<{ url: string; child: ChildProcess }> {
  const { NODE_OPTIONS: _, MOORING_KEY: __, MOORING_DATA: ___, ...env } = process.env;
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--log-level', 'warn'], {
    cwd,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let err = '';
    child.stderr?.on('data', (d) => {
      err += d;
      const m = /listening on (http:\/\/[^\s]+)/.exec(err);
      if (m) resolve(m[1] ?? '');
    });
    child.on('exit', () => reject(new Error(`mooring serve exited:\n${err}`)));
  });
  return { url, child };
}

test('the README curl block publishes, appends and reads back one rolled-up message', async (t) => {
  if (spawnSync('curl', ['--version']).status !== 0) return t.skip('curl is not installed');
  const script = block('Try it with curl:');
  assert.match(script, /http:\/\/127\.0\.0\.1:8080\//);
  const cwd = mkdtempSync(join(tmpdir(), 'mooring-quickstart-'));
  const { url, child } = await serve(cwd);
  t.after(() => {
    child.kill();
    rmSync(cwd, { recursive: true, force: true });
  });
  const run = spawnSync('bash', ['-euo', 'pipefail', '-c', script.replaceAll('http://127.0.0.1:8080', url)], {
    cwd,
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(run.status, 0, `the block failed:\n${run.stdout}\n${run.stderr}`);
  // curl prints each answer without a newline after it: one JSON object after the other
  const lines = run.stdout.trim().split(/(?<=\})\s*(?=\{")/);
  const appended = JSON.parse(lines.at(-2) ?? '') as { results?: Array<{ serial?: string }> };
  assert.ok(appended.results?.[0]?.serial, `the append was refused: ${lines.at(-2)}`);
  const read = JSON.parse(lines.at(-1) ?? '') as { items: Array<{ data: unknown; name: string }> };
  assert.deepEqual(
    read.items.map((m) => [m.name, m.data]),
    [['text', 'Hello']],
  );
});
