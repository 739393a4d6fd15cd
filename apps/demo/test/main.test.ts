/**
 * `npm start`'s program (apps/demo/src/main.ts) as a process, as the README runs it: both servers
 * come up (ports chosen by the system here), the banner names them, the page and Mooring answer, the
 * development key is made in the data folder, and SIGTERM stops both. Bad flags are refused, and so
 * is a host beyond this machine without a key of its own (no development key made there).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@mooring/testkit';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));
/** The environment of a user's shell: no key, so the demo makes its development key. */
const { MOORING_KEY: _, ...ENV } = process.env;

/**
 * Runs the demo with `args` and waits for its banner (bounded: a demo that does not come up fails
 * the test, one that exits says why). `output()` is all it printed so far.
 */
async function startDemo(t: TestContext, args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [MAIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.after(() => child.kill('SIGKILL'));
  let output = '';
  child.stdout.on('data', (d) => {
    output += d;
  });
  child.stderr.on('data', (d) => {
    output += d;
  });
  let code: number | null | undefined;
  void exited.then((c) => {
    code = c;
  });
  await waitFor(() => code !== undefined || /Mooring {8}http:\/\/\S+/.test(output), {
    timeout: 60_000,
    message: 'no banner within 60 s',
  });
  assert.equal(code, undefined, `the demo exited (${code}): ${output}`);
  return { child, exited, output: () => output };
}

it('starts Mooring and the demo page, prints where, answers on both, and stops on SIGTERM', async (t) => {
  const data = mkdtempSync(join(tmpdir(), 'mooring-demo-main-'));
  t.after(() => rmSync(data, { recursive: true, force: true }));
  const {
    child,
    exited,
    output: printed,
  } = await startDemo(t, ['--port', '0', '--mooring-port', '0', '--data', data], ENV);
  const output = printed();
  const page = /Mooring demo {3}(http:\/\/\S+)/.exec(output)?.[1];
  const mooring = /Mooring {8}(http:\/\/\S+)/.exec(output)?.[1];
  assert.ok(page && mooring, output);
  assert.match(output, new RegExp(`SQLite in ${data.replaceAll('/', '\\/')}, key "dev"`));

  const html = await fetch(page);
  assert.equal(html.status, 200);
  assert.match(html.headers.get('content-type') ?? '', /text\/html/);
  assert.match(await html.text(), /<script/);
  assert.deepEqual(await (await fetch(`${mooring}/health`)).json(), { status: 'ok' });
  const key = readFileSync(join(data, 'dev-key'), 'utf8').trim();
  const history = await fetch(`${mooring}/v1/channels/session:nothing/messages`, {
    headers: { authorization: `Bearer ${key}` },
  });
  assert.equal(history.status, 200, 'the development key in the data folder is the one Mooring takes');
  assert.ok(existsSync(join(data, 'mooring.db')), 'sessions are kept in the data folder');

  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

it('makes its development key only on a loopback host: elsewhere it refuses without a key, as mooring serve does; with a key of its own it makes none', async (t) => {
  const data = mkdtempSync(join(tmpdir(), 'mooring-demo-host-'));
  t.after(() => rmSync(data, { recursive: true, force: true }));
  const args = ['--host', '0.0.0.0', '--port', '0', '--mooring-port', '0', '--data', data];
  // bounded: a demo wrongly started runs until killed
  const refused = spawnSync(process.execPath, [MAIN, ...args], {
    env: ENV,
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(refused.status, 1, refused.stderr);
  assert.match(
    refused.stderr,
    /^demo: no API key is configured and --host 0\.0\.0\.0 is not a loopback address: set MOORING_KEY=<name>:<secret> \(or "keys" in the config file\); a development key is made only for a server on 127\.0\.0\.1, ::1 or localhost$/m,
  );
  assert.ok(!existsSync(join(data, 'dev-key')), 'no development key was made');

  // with a key of its own it uses that key and makes none; tests listen on loopback only, so this
  // half runs on 127.0.0.1 (the refusal above happened before anything listened)
  const own = ['--host', '127.0.0.1', '--port', '0', '--mooring-port', '0', '--data', data];
  const {
    child,
    exited,
    output: printed,
  } = await startDemo(t, own, {
    ...ENV,
    MOORING_KEY: `lan:${'k'.repeat(40)}`,
  });
  const output = printed();
  assert.match(output, /Mooring {8}http:\/\/127\.0\.0\.1:\d+ {2}\(SQLite in \S+, key "lan"\)/);
  assert.ok(!existsSync(join(data, 'dev-key')), 'no development key was made');
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

it('refuses a bad flag or port with a message', () => {
  for (const [args, why] of [
    [['--bogus'], /demo: Unknown option '--bogus'/],
    [['--port', 'abc'], /demo: not a port: "abc"/],
    [['--port', ''], /demo: not a port: ""/],
    [['--pace=-1'], /demo: --pace must be a number ≥ 0, got "-1"/],
  ] as const) {
    // bounded: a flag wrongly accepted starts the demo, which runs until killed
    const r = spawnSync(process.execPath, [MAIN, ...args], { env: ENV, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, why);
  }
});
