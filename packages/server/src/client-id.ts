/**
 * What a clientId may be (PROTOCOL.md §14), in one place for API keys (`?clientId=`), token minting
 * and token verification. A clientId is shown to other users (presence, message `clientId`) and is
 * the unit of ownership and of dedup scopes, so it must be a visible, bounded, non-empty name:
 *
 * - 1–128 characters (code points);
 * - no whitespace, no `*` or `?` (glob characters);
 * - no control characters (C0/C1), no format characters (bidi overrides and isolates such as U+202E,
 *   zero-width joiners and marks) and no lone surrogates: nothing that renders as something else.
 *
 * `""` is never a clientId: an identity without one is anonymous, and anonymous identities own
 * nothing (their ownership check uses a value no clientId can equal).
 */
export const MAX_CLIENT_ID_LENGTH = 128;

const CLIENT_ID_RE = /^[^\s*?\p{Cc}\p{Cf}\p{Cs}]+$/u;

export const CLIENT_ID_RULE = `clientId must be 1-${MAX_CLIENT_ID_LENGTH} visible characters: no spaces, control or formatting characters (such as bidi overrides), * or ?`;

export function isClientId(value: unknown): value is string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 4 * MAX_CLIENT_ID_LENGTH)
    return false;
  if (!CLIENT_ID_RE.test(value)) return false;
  let codePoints = 0;
  for (const _ of value) codePoints++;
  return codePoints <= MAX_CLIENT_ID_LENGTH;
}
