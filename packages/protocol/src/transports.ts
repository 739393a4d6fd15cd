/**
 * The realtime transports (PROTOCOL.md §5): one list, used by the server's endpoints and metrics and
 * by the client's transport selection, so a new transport is added in one place.
 */

/** Best first: a client tries them in this order unless told otherwise. */
export const TRANSPORT_KINDS = ['websocket', 'sse', 'longpoll'] as const;
export type TransportKind = (typeof TRANSPORT_KINDS)[number];

export function isTransportKind(value: unknown): value is TransportKind {
  return typeof value === 'string' && (TRANSPORT_KINDS as readonly string[]).includes(value);
}
