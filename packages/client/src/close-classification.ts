/**
 * Decides whether a transport that ended is worth retrying (PROTOCOL.md §5.1, §8, §9): the server's
 * `disconnect` frame (`reconnect`), the refused handshake's error (`retryable`) or HTTP status, and the
 * close code. Permanent means: the same credentials cannot succeed, so the connection goes `failed`
 * instead of looping (ARCHITECTURE.md §5: no retry loop on 4xx-class errors except rate limiting).
 */
import type { DisconnectFrame } from '@mooring/protocol';
import { CLOSE_CODES, isErrorCode } from '@mooring/protocol';
import { codeForHttpStatus, MooringError } from './errors.ts';
import type { TransportCloseInfo } from './transport.ts';

export interface Classified {
  type: 'lost' | 'fatal';
  error: MooringError;
  /**
   * The server ended the connection itself — a `disconnect` frame (but `token_expired`, this
   * client's own), or close 1001 (going away) or 1012 (service restart) — as it ends every connection
   * at once in a shutdown or a deploy: the first retry is spread (`firstRetryDelay`). Absent for a
   * drop nobody announced.
   */
  serverEnded?: true;
}

export function classifyClose(info: TransportCloseInfo, disconnect?: DisconnectFrame): Classified {
  if (disconnect) return classifyDisconnect(disconnect);

  if (info.error) {
    const error = MooringError.fromInfo(info.error);
    return { type: error.retryable ? 'lost' : 'fatal', error };
  }

  if (info.httpStatus !== undefined) {
    const status = info.httpStatus;
    const code = codeForHttpStatus(status);
    const permanent = status >= 400 && status < 500 && status !== 429 && status !== 408;
    const error = new MooringError(code, `the server refused the connection with HTTP ${status}`, {
      status,
      retryable: !permanent,
    });
    return { type: permanent ? 'fatal' : 'lost', error };
  }

  const known = Object.entries(CLOSE_CODES).find(([, entry]) => entry.code === info.code);
  if (known && !known[1].reconnect && info.code !== CLOSE_CODES.normal.code) {
    const name = known[0];
    const code = isErrorCode(name) ? name : 'forbidden';
    const error = new MooringError(
      code,
      `the server closed the connection (${info.code} ${name}${info.reason ? `: ${info.reason}` : ''}); ` +
        'check the credentials, then call connect()',
      { retryable: false },
    );
    return { type: 'fatal', error };
  }

  if (info.code === CLOSE_CODES.going_away.code || info.code === CLOSE_CODES.service_restart.code) {
    const detail = info.reason || `close code ${info.code}`;
    return {
      type: 'lost',
      error: new MooringError(
        'disconnected',
        `the server ended the connection (${detail}); reconnecting automatically`,
      ),
      serverEnded: true,
    };
  }

  if (info.code === CLOSE_CODES.token_expired.code) {
    // The `disconnect` frame that normally precedes it was lost: same meaning, get a new token.
    return {
      type: 'lost',
      error: new MooringError(
        'token_expired',
        'the server closed the connection because its token expired (4011); reconnecting with a new token',
      ),
    };
  }

  const detail = info.localError ?? (info.reason || `close code ${info.code}`);
  return {
    type: 'lost',
    error: new MooringError('disconnected', `the connection dropped (${detail}); reconnecting automatically`),
  };
}

function classifyDisconnect(frame: DisconnectFrame): Classified {
  const error = frame.error
    ? MooringError.fromInfo(frame.error)
    : new MooringError(
        isErrorCode(frame.reason) ? frame.reason : 'disconnected',
        `the server ended the connection (${frame.reason})${frame.reconnect ? '; reconnecting automatically' : ''}`,
        { retryable: frame.reconnect },
      );
  if (!frame.reconnect) return { type: 'fatal', error };
  // token_expired is this client's own: it gets a new token and is back at once (§14); every other
  // ending the server announces may be every client's at once (a shutdown, a drain)
  return frame.reason === 'token_expired'
    ? { type: 'lost', error }
    : { type: 'lost', error, serverEnded: true };
}
