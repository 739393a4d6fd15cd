/** Error codes (PROTOCOL.md §9) and limits (§10): the table in the spec and the code are the same. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { DEFAULT_LIMITS, ERRORS, errorInfo, isErrorCode } from '@mooring/protocol';

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

  test('PROTOCOL.md §10 states the default limits the code uses', () => {
    const limits = section('10. Limits');
    const kib = (n: number) => (n >= 1024 * 1024 ? `${n / 1024 / 1024} MiB` : `${n / 1024} KiB`);
    for (const key of [
      'maxOperationSize',
      'maxMessageSize',
      'maxFrameSize',
      'maxHttpBody',
      'maxSendBuffer',
    ] as const)
      assert.match(limits, new RegExp(`\`${key}\`[^|]*\\| ${kib(DEFAULT_LIMITS[key])} \\|`), key);
    for (const key of [
      'maxOpsPerPublish',
      'maxChannelsPerConnection',
      'maxPresenceMembers',
      'maxJsonDepth',
    ] as const)
      assert.match(limits, new RegExp(`\`${key}\`[^|]*\\| ${DEFAULT_LIMITS[key]} \\|`), key);
  });
});
