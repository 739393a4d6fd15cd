import { timingSafeEqual } from 'node:crypto';

/** Compares two secrets in time independent of where they differ (keys, connection keys). */
export function safeEqual(a: string | Buffer, b: string | Buffer): boolean {
  const ba = typeof a === 'string' ? Buffer.from(a) : a;
  const bb = typeof b === 'string' ? Buffer.from(b) : b;
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}
