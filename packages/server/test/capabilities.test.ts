/**
 * Capability globs (PROTOCOL.md §14): the matcher keeps the documented semantics (checked against a
 * reference on every short glob/name pair of a small alphabet) and runs in linear time, so a hostile
 * glob cannot stall the server. The timing cases run the matcher in other processes that are killed
 * if they do not finish: a backtracking matcher would hang the test runner itself otherwise.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Capability, globMatches } from '../src/capabilities.ts';
import { createToken } from '../src/index.ts';
import { TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';
import { spawnServer } from './support/server-process.ts';

const CAPABILITIES = fileURLToPath(new URL('../src/capabilities.ts', import.meta.url));

/** The documented meaning, as a reference for short inputs only. */
function reference(glob: string, text: string): boolean {
  const escaped = glob.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${escaped.join('.*')}$`).test(text);
}

function* strings(alphabet: string, maxLength: number): Generator<string> {
  yield '';
  let level = [''];
  for (let n = 1; n <= maxLength; n++) {
    const next: string[] = [];
    for (const s of level) for (const c of alphabet) next.push(s + c);
    yield* next;
    level = next;
  }
}

describe('capability specs', () => {
  it('refuses what is not a spec with a typed bad_request, and takes its bounds at their word', () => {
    const refuses = (spec: unknown, message: RegExp) =>
      assert.throws(
        () => Capability.parse(spec),
        (err: Error & { code?: string }) => err.code === 'bad_request' && message.test(err.message),
        JSON.stringify(spec)?.slice(0, 60),
      );
    for (const spec of [null, [], 'session:*', 42, undefined])
      refuses(spec, /must be an object of channel glob → operations/);
    for (const ops of ['subscribe', 7, { 0: 'subscribe' }]) refuses({ 'session:*': ops }, /must be a list/);
    const globs = (n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`g${i}`, ['subscribe']]));
    assert.ok(Capability.parse(globs(100)).allows('g99', 'subscribe'));
    refuses(globs(101), /more than 100 channel globs/);
    assert.ok(Capability.parse({ ['a'.repeat(256)]: ['subscribe'] }).allows('a'.repeat(256), 'subscribe'));
    refuses({ ['a'.repeat(257)]: ['subscribe'] }, /invalid channel glob/);
    assert.ok(Capability.parse({ x: Array(20).fill('publish') }).allows('x', 'publish'));
    refuses({ x: Array(21).fill('publish') }, /must be a list/);
  });
});

describe('capability globs', () => {
  it('match exactly as documented: * is any run (":" included), everything else itself', () => {
    const cases: Array<[string, string, boolean]> = [
      ['*', 'session:abc', true],
      ['session:*', 'session:', true],
      ['session:a*', 'session:abc:def', true],
      ['session:a*', 'session:b', false],
      ['*:one', 'exact:one', true],
      ['exact:one', 'exact:one2', false],
      ['a*b*c', 'axxbyyc', true],
      ['a*b*c', 'axxbyy', false],
      ['a**b', 'ab', true],
      ['?', 'a', false],
      ['a.c', 'abc', false],
      ['a+', 'aa', false],
    ];
    for (const [glob, name, expected] of cases)
      assert.equal(globMatches(glob, name), expected, `${glob} ~ ${name}`);
    let checked = 0;
    const globs = [...strings('ab*:', 4)].filter((g) => g !== '');
    const names = [...strings('ab:', 5)];
    for (const glob of globs) {
      for (const name of names) {
        assert.equal(globMatches(glob, name), reference(glob, name), `${glob} ~ ${name}`);
        checked++;
      }
    }
    assert.ok(checked > 100_000);
  });

  it('matches an 8-star glob against a 10,000-character name in linear time (separate process)', async () => {
    const script = `
      const { Capability } = await import(${JSON.stringify(CAPABILITIES)});
      const cap = Capability.parse({ ['a*'.repeat(8) + 'b']: ['subscribe'], ['*a*a*a*a*a*a*a*a*c']: ['publish'] });
      const name = 'a'.repeat(10000);
      process.stdout.write(String(cap.allows(name, 'subscribe')) + ' ' + String(cap.allows(name + 'c', 'publish')));
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    // Far above what a linear matcher needs (milliseconds), far below what backtracking needs (years).
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await new Promise<number | string>((resolve) =>
      child.on('exit', (c, signal) => resolve(c ?? signal ?? 'unknown')),
    );
    clearTimeout(killer);
    assert.equal(code, 0, 'the matcher finished (it was not killed)');
    assert.equal(out, 'false true');
  });

  it('keeps the server answering a token with a hostile glob on a long channel name (separate process)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-glob-'));
    const server = await spawnServer(['--store', 'memory', '--data', dir]);
    try {
      const { token } = await createToken(TEST_KEY, {
        clientId: 'x',
        capability: { [`${'a*'.repeat(8)}b`]: ['subscribe'] },
      });
      const c = await RawClient.connect(server.url, { token });
      const channel = 'a'.repeat(256);
      const answer = await c.request({ type: 'attach', channel });
      assert.equal(answer.type === 'error' && answer.error.code, 'forbidden');
      assert.equal((await c.request({ type: 'ping' })).type, 'pong');
      c.kill();
    } finally {
      server.child.kill('SIGKILL');
      await server.exited;
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('still validates globs when parsing', () => {
    assert.throws(() => Capability.parse({ '': ['subscribe'] }), /invalid channel glob/);
    assert.throws(() => Capability.parse({ 'a b': ['subscribe'] }), /invalid channel glob/);
  });
});
