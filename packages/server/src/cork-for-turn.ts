/**
 * The frames written to a socket during one turn of the event loop go out in one system call.
 *
 * `ws` writes each frame (header + payload) with its own `writev`, and on loopback or a busy host
 * a system call per frame is most of what a frame costs. Some turns write several frames to one
 * socket: the acks of the publishes that arrived in one read, a heartbeat frame and its ping.
 * Corking the socket on the first such write of a turn and uncorking it once the turn's
 * synchronous work and microtasks are done (`process.nextTick`, queued once per turn for every
 * socket) turns those into one `writev`. The WebSocket transport uses it for replies, heartbeats
 * and presence events (`TransportSink.sendSoon`, `ping`; a presence pass may write several changes
 * to each subscriber), not for deliveries: a fan-out to N sockets writes each one at once, so the
 * first subscriber does not wait for the N-th frame to be queued.
 *
 * Safe for what the connection relies on:
 * - order: corking only delays the stream's own queue, frames leave in the order written;
 * - backpressure: corked bytes are in the stream's `writableLength`, so `ws.bufferedAmount` (and
 *   the send-buffer bound built on it) counts them exactly as before;
 * - latency: nothing waits past the current turn; `flushTurn` writes at once (before a terminate).
 */
import type { Writable } from 'node:stream';

/** Sockets corked during this turn, in the order they were first written. */
const corked = new Set<Writable>();
let scheduled = false;

function uncorkAll(): void {
  scheduled = false;
  for (const socket of corked) socket.uncork();
  corked.clear();
}

/** Corks `socket` until the end of the current turn; later calls in the same turn cost a lookup. */
export function corkForTurn(socket: Writable): void {
  if (corked.has(socket)) return;
  socket.cork();
  corked.add(socket);
  if (!scheduled) {
    scheduled = true;
    process.nextTick(uncorkAll);
  }
}

/** Writes what `socket` has corked this turn now (before dropping it: what was sent still goes). */
export function flushTurn(socket: Writable): void {
  if (!corked.delete(socket)) return;
  socket.uncork();
}
