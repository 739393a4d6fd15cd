/**
 * The size of a frame the client sends, against the server's `maxFrameSize` (PROTOCOL.md §10, announced
 * in `connected.limits`, with `maxHttpBody`: see `frameLimit`). The server closes a connection whose incoming frame is larger with 1009 and
 * sends no error (§8, §9): a request that went out anyway would be resent on the next connection, and
 * closed again, for ever. So the requests that are resent (publishes, presence) are measured before
 * each send and refused locally with `frame_too_large` (413, not retryable) instead.
 */
import { DEFAULT_LIMITS, utf8Length } from '@mooring/protocol';
import { MooringError } from './errors.ts';

/**
 * The largest frame the client may send: the server's `maxFrameSize`, or less where its `maxHttpBody`
 * is lower, since on the HTTP transports a frame goes up in a POST body as a JSON array (`[` + frame
 * + `]`, PROTOCOL.md §12) that the server refuses whole above `maxHttpBody`; a frame refused there
 * would be resent after every reconnect, like one above `maxFrameSize`. Measured against what the
 * latest `connected` announced, else the protocol's defaults (before the first `connected`; the check
 * is made again, exactly, when the frame is sent).
 */
export function frameLimit(limits: { maxFrameSize?: number; maxHttpBody?: number } | undefined): number {
  const frame = announced(limits?.maxFrameSize, DEFAULT_LIMITS.maxFrameSize);
  const body = announced(limits?.maxHttpBody, DEFAULT_LIMITS.maxHttpBody);
  return Math.min(frame, body - 2);
}

function announced(value: number | undefined, fallback: number): number {
  return typeof value === 'number' && value > 0 ? value : fallback;
}

/** `encode`'s bytes in UTF-8: what `value` weighs on the wire, or why it cannot be sent. */
export function measure(value: unknown, what: string): number | MooringError {
  const json = encode(value, what);
  return json instanceof MooringError ? json : utf8Length(json);
}

/**
 * `value` as JSON text, or the error of a request that cannot be sent as JSON at all (a BigInt, a
 * cycle): JSON.stringify would throw in the transport, the send would count as a lost connection and
 * the resend on the next one would throw again.
 */
export function encode(value: unknown, what: string): string | MooringError {
  try {
    return JSON.stringify(value) ?? '';
  } catch (err) {
    return new MooringError(
      'bad_request',
      `the ${what} cannot be sent as JSON (${err instanceof Error ? err.message : String(err)}); it was not sent`,
      { cause: err },
    );
  }
}

/** The error of a request whose frame is `bytes` long, above `max`: permanent, never sent. */
export function frameTooLarge(what: string, bytes: number, max: number): MooringError {
  return new MooringError(
    'frame_too_large',
    `the ${what} frame would be ${bytes} bytes, above the ${max} bytes the server takes in a frame ` +
      '(its maxFrameSize, or its maxHttpBody less 2 where that is lower: PROTOCOL.md §10); it was not ' +
      'sent: make it smaller (split a batch into several publishes, a long text into appends)',
  );
}
