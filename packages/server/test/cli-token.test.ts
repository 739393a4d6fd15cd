/**
 * `mooring token`: prints a token the server accepts, with the clientId and capability asked for;
 * an empty value (an unset shell variable) is refused, never read as "not given" — which would
 * mint an anonymous token, or one with everything the key may do (nor an empty --key read as
 * "take MOORING_KEY").
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseApiKey } from '../src/index.ts';
import { verifyToken } from '../src/tokens.ts';

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const KEY = 'ops:token-secret';

function token(...args: string[]) {
  const { NODE_OPTIONS: _, ...env } = process.env;
  const r = spawnSync(process.execPath, [CLI, 'token', ...args], {
    env: { ...env, MOORING_KEY: KEY },
    encoding: 'utf8',
  });
  return { code: r.status, out: r.stdout.trim(), err: r.stderr };
}

it('prints a token with the clientId and capability asked for, and when it expires', async () => {
  const r = token('--client-id', 'alice', '--capability', '{"session:*":["subscribe"]}', '--ttl', '30m');
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^expires \d{4}-\d\d-\d\dT/);
  const key = parseApiKey(KEY);
  const verified = await verifyToken(r.out, (name) => (name === key.name ? key.secret : undefined));
  assert.equal(verified.clientId, 'alice');
  assert.deepEqual(verified.capability, { 'session:*': ['subscribe'] });
});

it('refuses an empty --client-id, --capability or --ttl instead of minting an anonymous or all-powerful token', () => {
  for (const [flag, why] of [
    ['--client-id', /clientId must be 1-128 visible characters/],
    ['--capability', /--capability must be JSON/],
    ['--ttl', /ttl: not a duration: ""/],
  ] as const) {
    const r = token(flag, '');
    assert.equal(r.code, 1, `${flag} '': ${r.out}`);
    assert.match(r.err, why);
    assert.equal(r.out, '', 'no token printed');
  }
});

it('refuses an empty --key even with MOORING_KEY set, and an unknown flag, printing no token', () => {
  const empty = token('--key', '');
  assert.equal(empty.code, 1, empty.out);
  assert.match(empty.err, /^mooring: --key is required/);
  assert.equal(empty.out, '');
  const unknown = token('--client', 'alice');
  assert.equal(unknown.code, 1, unknown.out);
  assert.match(unknown.err, /Unknown option '--client'/);
  assert.equal(unknown.out, '');
});
