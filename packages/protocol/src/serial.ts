/**
 * Serials: a message's (and an operation's) position in its channel.
 *
 *   <epoch>.<sequence>      e.g.  "mi9x2k0a7q3f.0000000000000042"
 *
 * - `epoch` (12 base-36 chars) is fixed for the life of a channel's log. A new log (channel deleted,
 *   expired, store wiped) gets a new epoch, so a position from an old log is never taken for a new one.
 *   Epochs are time-prefixed, so a newer epoch sorts after an older one (made by one process:
 *   strictly; by two, from a millisecond apart).
 * - `sequence` (16 zero-padded decimal digits) strictly increases by one per operation.
 *
 * Within a channel serials are strictly increasing and sort lexicographically. Clients treat them as
 * opaque strings and only compare them (see PROTOCOL.md §3).
 */

const SEQ_WIDTH = 16;
const EPOCH_WIDTH = 12;
const DOT = 0x2e;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const LOWER_A = 0x61;
const LOWER_Z = 0x7a;

export interface SerialParts {
  epoch: string;
  seq: number;
}

/** The time part of the last epoch this process made (ms). */
let lastEpochTime = 0;

/**
 * A fresh epoch: 9 chars of base-36 milliseconds then 3 random base-36 chars. The time part strictly
 * increases within a process, so an epoch made right after another (a log lost or deleted and
 * started again within the same millisecond) still sorts after it: a node that follows a channel
 * takes a batch of an older epoch for stale (it reads it back only at its next position check).
 */
export function newEpoch(now: number = Date.now()): string {
  const ms = Math.max(Math.floor(now), lastEpochTime + 1);
  lastEpochTime = ms;
  const time = ms.toString(36).padStart(9, '0').slice(-9);
  let rand = '';
  for (let i = 0; i < EPOCH_WIDTH - 9; i++) rand += Math.floor(Math.random() * 36).toString(36);
  return time + rand;
}

export function formatSerial(epoch: string, seq: number): string {
  return `${epoch}.${String(seq).padStart(SEQ_WIDTH, '0')}`;
}

/**
 * The sequence number of `serial`, or -1 when the string is not a serial. Checked by hand rather
 * than with a regular expression: it runs for every operation stored and delivered, and a match
 * allocates an array and two strings each time where this allocates nothing.
 */
export function serialSeq(serial: string): number {
  if (serial.length !== EPOCH_WIDTH + 1 + SEQ_WIDTH || serial.charCodeAt(EPOCH_WIDTH) !== DOT) return -1;
  for (let i = 0; i < EPOCH_WIDTH; i++) {
    const c = serial.charCodeAt(i);
    if (!((c >= DIGIT_0 && c <= DIGIT_9) || (c >= LOWER_A && c <= LOWER_Z))) return -1;
  }
  let seq = 0;
  for (let i = EPOCH_WIDTH + 1; i < serial.length; i++) {
    const d = serial.charCodeAt(i) - DIGIT_0;
    if (d < 0 || d > 9) return -1;
    seq = seq * 10 + d;
  }
  return seq;
}

/** True when `a` and `b` are both serials, of the same epoch (the same log). Allocates nothing. */
export function sameEpoch(a: string, b: string): boolean {
  if (serialSeq(a) < 0 || serialSeq(b) < 0) return false;
  for (let i = 0; i < EPOCH_WIDTH; i++) if (a.charCodeAt(i) !== b.charCodeAt(i)) return false;
  return true;
}

/** True when `serial` is a serial of the log `epoch`. Allocates nothing. */
export function hasEpoch(serial: string, epoch: string): boolean {
  return epoch.length === EPOCH_WIDTH && serialSeq(serial) >= 0 && serial.startsWith(epoch);
}

/** Parses a serial, or returns `undefined` when the string is not one. */
export function parseSerial(serial: string): SerialParts | undefined {
  const seq = serialSeq(serial);
  return seq < 0 ? undefined : { epoch: serial.slice(0, EPOCH_WIDTH), seq };
}

export function isSerial(value: unknown): value is string {
  return typeof value === 'string' && serialSeq(value) >= 0;
}

/** Orders two serials of the same channel; -1, 0 or 1. */
export function compareSerials(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
