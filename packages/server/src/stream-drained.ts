/**
 * `TransportSink.whenDrained` for transports that write to a Node stream (a WebSocket's socket, an
 * SSE response).
 */
import type { Writable } from 'node:stream';

/**
 * How long a waiter sleeps when no `'drain'` is sure to come, ms: it then looks at the queue again.
 * Rare (see `whenStreamDrained`), and one timer per connection, not one per waiter.
 */
export const UNSURE_DRAIN_RETRY = 5;

/**
 * Calls `drained` once `stream` has written out what it queued: at its `'drain'`. A stream emits
 * that only after a write left its high-water mark (16 KiB for a socket) or more queued, and only
 * while it is not ending. Otherwise — a `maxSendBuffer` under twice the mark, whose catch-up bound
 * lies below it; a stream closing or destroyed, whose connection is about to end — `drained` is
 * called after `UNSURE_DRAIN_RETRY` ms.
 */
export function whenStreamDrained(stream: Writable, drained: () => void): void {
  if (stream.writableNeedDrain) stream.once('drain', drained);
  else setTimeout(drained, UNSURE_DRAIN_RETRY).unref();
}
