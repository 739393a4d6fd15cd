/**
 * The message model (ARCHITECTURE.md §3, PROTOCOL.md §4): operations go into a channel's log; messages are
 * what they add up to.
 *
 * One shape, `Message`, carries both:
 * - a live operation: `action` is the operation, `version` is its own serial, `serial` the message it
 *   applies to (for `create`, the two are equal), `data` of an `append` is the delta;
 * - a rolled-up message (history, rewind, catch-up): `action` is `create` (never changed since),
 *   `update` (changed by appends or updates: this is the whole current state) or `delete`
 *   (a tombstone), and `version` is the serial of the latest operation folded into it.
 *
 * A client applies either by the same rule: `create` adds, `append` concatenates `data` (and
 * replaces `headers` if present), `update` replaces each field present, `delete` tombstones; and it
 * ignores anything whose `version` is not after its position in the channel.
 */

export const ACTIONS = ['create', 'append', 'update', 'delete'] as const;
export type Action = (typeof ACTIONS)[number];

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type HeaderValue = string | number | boolean;
export type Headers = Record<string, HeaderValue>;

/** `base64`: `data` is a base64 string standing for bytes. Absent: `data` is the value itself. */
export type Encoding = 'base64';

/** One operation as a publisher sends it (WebSocket `publish` frame or REST body). */
export interface OperationInput {
  /** Default `create`. */
  action?: Action | undefined;
  /** Idempotency key, unique in the channel. A repeated id is acknowledged again, not stored twice. */
  id?: string | undefined;
  /** The message an `append`, `update` or `delete` applies to. Not allowed on `create`. */
  serial?: string | undefined;
  name?: string | undefined;
  data?: JsonValue | undefined;
  encoding?: Encoding | undefined;
  headers?: Headers | undefined;
  /**
   * Message lease, ms (PROTOCOL.md §7.1): on a create (or later op on the same message) by a
   * connected publisher, the server marks the message `status=abandoned` if the publisher's
   * connection is gone for longer than this. 0 releases the lease.
   */
  lease?: number | undefined;
}

export interface Message {
  serial: string;
  version: string;
  action: Action;
  id: string;
  name?: string;
  data?: JsonValue;
  encoding?: Encoding;
  headers?: Headers;
  /** The authenticated publisher, stamped by the server. For a rolled-up message, its creator. */
  clientId?: string;
  /** Milliseconds since the epoch: when the operation (live) or the message (rolled up) was created. */
  timestamp: number;
}

/** The answer to one published operation. */
export interface PublishResult {
  /** The operation's own serial (for a `create`, the new message's serial). */
  serial: string;
  /** Present and true when the id had been seen: nothing was stored, `serial` is the original one. */
  duplicate?: true;
}
