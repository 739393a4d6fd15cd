/**
 * `Stream-Cursor` values for live reads (PROTOCOL.md §16.7): the number of 20-second intervals since
 * 2024-10-09T00:00:00Z, and never at or below the cursor the client echoed (a random 1–3,600 s jump
 * ahead then), so a CDN that collapses identical long-poll URLs can never serve the same empty answer
 * in a loop.
 */
import { randomInt } from 'node:crypto';

const EPOCH = Date.parse('2024-10-09T00:00:00.000Z');
const INTERVAL_S = 20;

export function responseCursor(clientCursor: string | null | undefined, now: number = Date.now()): string {
  const current = Math.floor((now - EPOCH) / (INTERVAL_S * 1000));
  if (clientCursor === null || clientCursor === undefined || !/^\d{1,15}$/.test(clientCursor))
    return String(current);
  const client = Number(clientCursor);
  if (client < current) return String(current);
  const jitterIntervals = Math.max(1, Math.ceil(randomInt(1, 3601) / INTERVAL_S));
  return String(client + jitterIntervals);
}
