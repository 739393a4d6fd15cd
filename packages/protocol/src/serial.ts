/**
 * Serials: a message's (and an operation's) position in its channel.
 *
 *   <epoch>.<sequence>      e.g.  "mi9x2k0a7q3f.0000000000000042"
 *
 * - `epoch` (12 base-36 chars) is fixed for the life of a channel's log. A new log (channel deleted,
 *   expired, store wiped) gets a new epoch, so a position from an old log is never taken for a new one.
 *   Epochs are time-prefixed, so a newer epoch sorts after an older one.
 * - `sequence` (16 zero-padded decimal digits) strictly increases by one per operation.
 *
 * Within a channel serials are strictly increasing and sort lexicographically. Clients treat them as
 * opaque strings and only compare them (see PROTOCOL.md §3).
 */

const SEQ_WIDTH = 16;
const EPOCH_WIDTH = 12;
const SERIAL_RE = /^([0-9a-z]{12})\.(\d{16})$/;

export interface SerialParts {
  epoch: string;
  seq: number;
}

/** A fresh epoch: 9 chars of base-36 milliseconds then 3 random base-36 chars. */
export function newEpoch(now: number = Date.now()): string {
  const time = now.toString(36).padStart(9, '0').slice(-9);
  let rand = '';
  for (let i = 0; i < EPOCH_WIDTH - 9; i++) rand += Math.floor(Math.random() * 36).toString(36);
  return time + rand;
}

export function formatSerial(epoch: string, seq: number): string {
  return `${epoch}.${String(seq).padStart(SEQ_WIDTH, '0')}`;
}

/** Parses a serial, or returns `undefined` when the string is not one. */
export function parseSerial(serial: string): SerialParts | undefined {
  const m = SERIAL_RE.exec(serial);
  if (!m) return undefined;
  return { epoch: m[1]!, seq: Number(m[2]) };
}

export function isSerial(value: unknown): value is string {
  return typeof value === 'string' && SERIAL_RE.test(value);
}

/** Orders two serials of the same channel; -1, 0 or 1. */
export function compareSerials(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
