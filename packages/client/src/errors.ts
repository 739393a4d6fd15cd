/**
 * Errors of the client SDK. Every failure a user sees is a `MooringError` with a stable string `code`
 * to switch on: one of the protocol's codes (PROTOCOL.md §9, passed through from the server) or one of
 * the client's own below. `retryable` says whether the same request may succeed later unchanged.
 */
import type { ErrorCode, ErrorInfo } from '@mooring/protocol';
import { ERRORS, isErrorCode } from '@mooring/protocol';

/** Codes raised by the client itself, never sent by a server. */
export const CLIENT_ERRORS = {
  /** The transport dropped (socket closed, idle timeout, failed send); the client reconnects itself. */
  disconnected: { status: 503, retryable: true },
  /** The connection has been failing for `connectionStateTtl`; operations fail fast until it is back. */
  connection_suspended: { status: 503, retryable: true },
  /** `close()` was called; nothing is sent until `connect()`. */
  connection_closed: { status: 400, retryable: false },
  /** A permanent error (bad credentials, forbidden) stopped the connection; see `cause`. */
  connection_failed: { status: 400, retryable: false },
  /** `detach()` was called before a pending `attach()` completed. */
  channel_detached: { status: 409, retryable: false },
  /** The offline queue is full; wait for the connection to come back. */
  queue_full: { status: 429, retryable: true },
  /** Something expected from the server did not arrive in time. */
  timeout: { status: 504, retryable: true },
  /** An HTTP request (REST) could not reach the server. */
  network_error: { status: 503, retryable: true },
  /** The server sent something that is not a valid frame or response. */
  protocol_error: { status: 502, retryable: true },
  /**
   * `authCallback` or `authUrl` did not provide a token (it threw, could not be reached, answered an
   * error). Retried with the connection's backoff, unless it answered 401/403 (`retryable: false`).
   */
  auth_failed: { status: 503, retryable: true },
  /** The requested feature is not available in this version of the SDK. */
  unsupported: { status: 501, retryable: false },
} as const satisfies Record<string, { status: number; retryable: boolean }>;

export type ClientErrorCode = keyof typeof CLIENT_ERRORS;
export type MooringErrorCode = ErrorCode | ClientErrorCode;

export interface MooringErrorOptions {
  /** Overrides the status of the code's table entry (e.g. the HTTP status of a failed handshake). */
  status?: number;
  /** Overrides whether the code is retryable. */
  retryable?: boolean;
  cause?: unknown;
  /** The operation ids of the publish this error rejects without a server's answer. */
  ids?: string[];
}

export class MooringError extends Error {
  override readonly name = 'MooringError';
  readonly code: MooringErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  /**
   * Set on a publish rejected without an answer from the server (the connection `suspended`,
   * `failed` or `closed` while it waited): its operation ids, in order. It may have been stored;
   * publishing it again with these ids (`{ id }`) stores it at most once.
   */
  readonly ids?: string[];

  constructor(code: MooringErrorCode, message: string, options: MooringErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    const entry = isErrorCode(code) ? ERRORS[code] : CLIENT_ERRORS[code];
    this.code = code;
    this.status = options.status ?? entry.status;
    this.retryable = options.retryable ?? entry.retryable;
    if (options.ids !== undefined) this.ids = options.ids;
  }

  /** This error for one publish: the same, with that publish's operation ids. */
  forPublish(ids: string[]): MooringError {
    const options: MooringErrorOptions = { status: this.status, retryable: this.retryable, ids };
    if (this.cause !== undefined) options.cause = this.cause;
    return new MooringError(this.code, this.message, options);
  }

  /** Wraps an `ErrorInfo` received from a server, keeping its code, status and retryable flag. */
  static fromInfo(info: ErrorInfo): MooringError {
    const code = isErrorCode(info.code) ? info.code : 'internal';
    return new MooringError(code, info.message, { status: info.status, retryable: info.retryable });
  }

  /** An `ErrorInfo`-shaped plain object (for logs and JSON). */
  toJSON(): { code: MooringErrorCode; status: number; retryable: boolean; message: string } {
    return { code: this.code, status: this.status, retryable: this.retryable, message: this.message };
  }
}

/** Best-effort conversion of a JSON body into an `ErrorInfo`, for handshake and REST failures. */
export function errorInfoFromBody(body: unknown): ErrorInfo | undefined {
  if (typeof body !== 'object' || body === null || !('error' in body)) return undefined;
  const e = (body as { error: unknown }).error;
  if (typeof e !== 'object' || e === null) return undefined;
  const { code, status, retryable, message } = e as Record<string, unknown>;
  if (!isErrorCode(code) || typeof message !== 'string') return undefined;
  return {
    code,
    status: typeof status === 'number' ? status : ERRORS[code].status,
    retryable: typeof retryable === 'boolean' ? retryable : ERRORS[code].retryable,
    message,
  };
}

/** The protocol code matching an HTTP status, for responses without a readable error body. */
export function codeForHttpStatus(status: number): ErrorCode {
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not_found';
  if (status === 405) return 'method_not_allowed';
  if (status === 413) return 'body_too_large';
  if (status === 429) return 'too_many_connections';
  if (status === 503) return 'store_unavailable';
  if (status >= 500) return 'internal';
  return 'bad_request';
}
