/** Error codes (PROTOCOL.md §9) and limits (§10): the table in the spec and the code are the same. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { DEFAULT_LIMITS, DEFAULT_TIMINGS, ERRORS, errorInfo, isErrorCode } from '@mooring/protocol';

const PROTOCOL = readFileSync(new URL('../../../PROTOCOL.md', import.meta.url), 'utf8');

function section(title: string): string {
  const start = PROTOCOL.indexOf(`\n## ${title}`);
  assert.ok(start >= 0, `PROTOCOL.md has a section ${title}`);
  const end = PROTOCOL.indexOf('\n## ', start + 1);
  return PROTOCOL.slice(start, end < 0 ? undefined : end);
}

describe('errors', () => {
  test('PROTOCOL.md §9 lists exactly the codes of ERRORS, with the same status and retryable', () => {
    const rows = [...section('9. Errors').matchAll(/^\| `([a-z_]+)` \| (\d{3}) \| (yes|no) \|/gm)];
    const documented = Object.fromEntries(
      rows.map((m) => [m[1]!, { status: Number(m[2]), retryable: m[3] === 'yes' }]),
    );
    assert.deepEqual(documented, ERRORS);
  });

  test('errorInfo fills status and retryable from the table; isErrorCode knows only its codes', () => {
    assert.deepEqual(errorInfo('token_expired', 'renew'), {
      code: 'token_expired',
      status: 401,
      retryable: true,
      message: 'renew',
    });
    assert.equal(isErrorCode('rate_limited'), true);
    for (const bad of ['toString', '__proto__', 'RATE_LIMITED', '', 42, undefined])
      assert.equal(isErrorCode(bad), false, String(bad));
  });

  test('PROTOCOL.md §10 has one row for every limit, with the default the code uses, and none for a limit the code lacks', () => {
    const rows = [...section('10. Limits').matchAll(/^\| `([A-Za-z]+)`[^|]*\| ([^|]+) \|/gm)];
    // "64 KiB", "1 MiB", "10 000", "10 s", "0"
    const value = (text: string) => {
      const m = /^(\d+(?: \d{3})*) ?(KiB|MiB|s)?$/.exec(text.trim());
      assert.ok(m, `not a default: "${text}"`);
      const scale = { KiB: 1024, MiB: 1024 * 1024, s: 1000 }[m[2] as 'KiB' | 'MiB' | 's'] ?? 1;
      return Number(m[1]!.replaceAll(' ', '')) * scale;
    };
    const documented = new Map<string, number>();
    for (const [, name, text] of rows) {
      assert.ok(!documented.has(name!), `${name} has two rows`);
      documented.set(name!, value(text!));
    }
    const code = new Map<string, number>(Object.entries(DEFAULT_LIMITS));
    code.set('firstPollTimeout', DEFAULT_TIMINGS.firstPollTimeout);
    assert.deepEqual(Object.fromEntries(documented), Object.fromEntries(code));
  });
});
