/**
 * The server's error type: a protocol ErrorCode plus a message that tells the caller what to do.
 * Everything a handler throws is turned into an `ErrorInfo` on the wire by `toErrorInfo`; anything
 * that is not a ServerError or StoreError is a bug, reported as `internal` and logged.
 */
import { type ErrorCode, type ErrorInfo, errorInfo } from '@mooring/protocol';
import { StoreError } from './store/store.ts';

export class ServerError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'ServerError';
    this.code = code;
  }
}

export function isExpectedError(err: unknown): err is ServerError | StoreError {
  return err instanceof ServerError || err instanceof StoreError;
}

export function toErrorInfo(err: unknown): ErrorInfo {
  if (err instanceof StoreError) {
    const prefix = err.index === undefined ? '' : `op ${err.index}: `;
    return errorInfo(err.code, prefix + err.message);
  }
  if (err instanceof ServerError) return errorInfo(err.code, err.message);
  return errorInfo('internal', 'internal server error; the request may be retried');
}

/**
 * Characters of an error message made from a schema's issue, at most: zod's message repeats the
 * input (every unknown key of an object), and a 979 KB frame of unknown keys was answered with an
 * error frame of 1 MB (review-ws #6).
 */
export const MAX_ISSUE_TEXT = 300;

/**
 * A failed schema check as one line for the caller: the first issue's path (after `prefix`, when
 * given) and message, `path: message`; `fallback` when there is no issue. Cut to `MAX_ISSUE_TEXT`
 * characters, ending with "…".
 */
export function issueText(
  issues: readonly { path: readonly PropertyKey[]; message: string }[],
  fallback: string,
  prefix = '',
): string {
  const issue = issues[0];
  const path = issue && issue.path.length > 0 ? issue.path.join('.') : '';
  const where = prefix !== '' && path !== '' ? `${prefix}.${path}` : prefix || path;
  const message = issue?.message ?? fallback;
  return cut(where === '' ? message : `${where}: ${message}`, MAX_ISSUE_TEXT);
}

/** `text` cut to `max` characters with "…" at the end, never between the halves of a surrogate pair. */
function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--;
  return `${text.slice(0, end)}…`;
}
