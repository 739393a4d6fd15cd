/**
 * Error codes of the Mooring protocol. Every error a server sends, on any transport, is an
 * `ErrorInfo` with a stable string `code` users can switch on, a numeric `status` (HTTP-like) and
 * `retryable`: true when the same request may succeed later without being changed (temporary),
 * false when it never will (permanent). The table is the single source of both, and PROTOCOL.md §9
 * lists it.
 */

export const ERRORS = {
  bad_request: { status: 400, retryable: false },
  invalid_frame: { status: 400, retryable: false },
  invalid_channel: { status: 400, retryable: false },
  invalid_serial: { status: 400, retryable: false },
  operation_too_large: { status: 413, retryable: false },
  message_too_large: { status: 413, retryable: false },
  frame_too_large: { status: 413, retryable: false },
  body_too_large: { status: 413, retryable: false },
  unauthorized: { status: 401, retryable: false },
  token_expired: { status: 401, retryable: true },
  forbidden: { status: 403, retryable: false },
  not_owner: { status: 403, retryable: false },
  not_found: { status: 404, retryable: false },
  channel_not_found: { status: 404, retryable: false },
  message_not_found: { status: 404, retryable: false },
  method_not_allowed: { status: 405, retryable: false },
  unknown_connection: { status: 404, retryable: false },
  not_attached: { status: 409, retryable: false },
  attach_superseded: { status: 409, retryable: false },
  not_appendable: { status: 409, retryable: false },
  message_deleted: { status: 409, retryable: false },
  version_changed: { status: 409, retryable: false },
  out_of_order: { status: 409, retryable: true },
  stream_conflict: { status: 409, retryable: false },
  stream_closed: { status: 409, retryable: false },
  stream_gone: { status: 410, retryable: false },
  producer_fenced: { status: 403, retryable: false },
  producer_seq_gap: { status: 409, retryable: false },
  not_implemented: { status: 501, retryable: false },
  slow_consumer: { status: 429, retryable: true },
  rate_limited: { status: 429, retryable: true },
  too_many_channels: { status: 429, retryable: false },
  too_many_connections: { status: 429, retryable: true },
  too_many_members: { status: 429, retryable: true },
  too_many_leases: { status: 429, retryable: true },
  presence_too_large: { status: 413, retryable: false },
  internal: { status: 500, retryable: true },
  store_unavailable: { status: 503, retryable: true },
  shutting_down: { status: 503, retryable: true },
} as const satisfies Record<string, { status: number; retryable: boolean }>;

export type ErrorCode = keyof typeof ERRORS;

export interface ErrorInfo {
  code: ErrorCode;
  status: number;
  retryable: boolean;
  message: string;
}

export function errorInfo(code: ErrorCode, message: string): ErrorInfo {
  const { status, retryable } = ERRORS[code];
  return { code, status, retryable, message };
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERRORS, value);
}

/**
 * WebSocket close codes the server uses (PROTOCOL.md §8). 1000/1001/1012 are standard;
 * 4xxx are ours. `reconnect: false` means the client must not retry with the same credentials.
 */
export const CLOSE_CODES = {
  normal: { code: 1000, reconnect: false },
  going_away: { code: 1001, reconnect: true },
  service_restart: { code: 1012, reconnect: true },
  unauthorized: { code: 4001, reconnect: false },
  forbidden: { code: 4003, reconnect: false },
  token_expired: { code: 4011, reconnect: true },
  slow_consumer: { code: 4008, reconnect: true },
  frame_too_large: { code: 1009, reconnect: true },
  too_many_connections: { code: 4029, reconnect: true },
  rate_limited: { code: 4028, reconnect: true },
  heartbeat_timeout: { code: 4000, reconnect: true },
} as const satisfies Record<string, { code: number; reconnect: boolean }>;

export type CloseReason = keyof typeof CLOSE_CODES;
