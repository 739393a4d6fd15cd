/**
 * Writing a long answer (a history page, a Durable Streams page or SSE event) to a reader that may
 * not read: one piece at a time, waiting for the reader to take the previous ones, so that an
 * answer nobody reads holds at most a piece and the socket's buffer, not the whole answer.
 */
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';

/**
 * Writes one piece; when the response's buffer is full, waits until the reader took it. A reader
 * that takes nothing for `stallMs` is cut (the response destroyed). False when the response is gone.
 */
export async function writeWithin(
  res: ServerResponse,
  piece: Uint8Array | string,
  stallMs: number,
): Promise<boolean> {
  if (res.destroyed) return false;
  if (res.write(piece)) return true;
  const done = new AbortController();
  const timer = setTimeout(() => done.abort(), stallMs);
  try {
    await Promise.race([
      once(res, 'drain', { signal: done.signal }),
      once(res, 'close', { signal: done.signal }),
    ]);
  } catch {
    // the reader took nothing for stallMs: drop it and free what it holds
    res.destroy();
    return false;
  } finally {
    clearTimeout(timer);
    done.abort(); // removes the listener that did not fire
  }
  return !res.destroyed;
}
