/**
 * Compact `messages` frames (PROTOCOL.md §6.5): the same messages in about a third fewer bytes, for a
 * client that asks for them with `frames=compact` in its connection request.
 *
 * A streamed token is one `append` in one frame, and in the plain JSON form most of its ~270 bytes
 * are field names and two 29-character serials. The compact form names fields with one letter,
 * writes a serial of the frame's epoch as its sequence number, and leaves out a version equal to
 * the serial:
 *
 *   {"type":"m","channel":"ai:0","epoch":"0mx9e3yyw09v",
 *    "m":[{"a":"a","s":3,"v":11,"i":"run_…:p0:8","t":1796413322956,"c":"agent-0","d":" so"}]}
 *
 * It is a wire encoding only: a client expands every compact frame into the `messages` frame the
 * server would have sent otherwise (`expandCompactMessages`), and nothing above the transport sees
 * the difference. Each frame stands alone (its epoch is in it), so no state is shared between
 * frames and one encoding of a delivery serves every compact subscriber.
 */
import type { MessagesFrame } from './frames.ts';
import type { Action, Message } from './message.ts';
import { formatSerial, serialSeq } from './serial.ts';

/** The connection request's parameter, and its value, that ask for compact frames (§5.1). */
export const FRAMES_PARAM = 'frames';
export const COMPACT_FRAMES = 'compact';

/** The type of a compact `messages` frame. */
export const COMPACT_MESSAGES_TYPE = 'm';

const LETTER: Record<Action, string> = { create: 'c', append: 'a', update: 'u', delete: 'd' };
const ACTION_OF: Readonly<Record<string, Action>> = { c: 'create', a: 'append', u: 'update', d: 'delete' };
const EPOCH_WIDTH = 12;

/** Where a plain `messages` frame says more than its messages: `after`, `rolledUp`, `more` (§6.3). */
export interface MessagesFrameExtras {
  after?: string | undefined;
  rolledUp?: boolean | undefined;
  /** With `rolledUp`: the read-back goes on in the next frame (§4.3). */
  more?: boolean | undefined;
}

/** The plain JSON `messages` frame (§6.3). */
export function encodeMessages(channel: string, messages: Message[], extras?: MessagesFrameExtras): string {
  const frame: MessagesFrame = { type: 'messages', channel, messages };
  if (extras?.after !== undefined) frame.after = extras.after;
  if (extras?.rolledUp) frame.rolledUp = true;
  if (extras?.more) frame.more = true;
  return JSON.stringify(frame);
}

/**
 * The compact form of the same frame. Built as text directly: it runs once per delivered batch, and
 * an intermediate object per message would be garbage on the token path.
 */
export function encodeCompactMessages(
  channel: string,
  messages: Message[],
  extras?: MessagesFrameExtras,
): string {
  const epoch = messages.length > 0 ? epochOf(messages[0]!.version) : '';
  let out = `{"type":"${COMPACT_MESSAGES_TYPE}","channel":${JSON.stringify(channel)}`;
  // an epoch is 12 characters of [0-9a-z] (epochOf checked it): nothing to escape
  if (epoch !== '') out += `,"epoch":"${epoch}"`;
  out += ',"m":[';
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    if (i > 0) out += ',';
    out += `{"a":"${LETTER[m.action]}","s":${serialText(m.serial, epoch)}`;
    if (m.version !== m.serial) out += `,"v":${serialText(m.version, epoch)}`;
    out += `,"i":${JSON.stringify(m.id)},"t":${JSON.stringify(m.timestamp)}`;
    if (m.clientId !== undefined) out += `,"c":${JSON.stringify(m.clientId)}`;
    if (m.name !== undefined) out += `,"n":${JSON.stringify(m.name)}`;
    if (m.data !== undefined) out += `,"d":${JSON.stringify(m.data)}`;
    if (m.encoding !== undefined) out += `,"e":${JSON.stringify(m.encoding)}`;
    if (m.headers !== undefined) out += `,"h":${JSON.stringify(m.headers)}`;
    out += '}';
  }
  out += ']';
  if (extras?.after !== undefined) out += `,"after":${JSON.stringify(extras.after)}`;
  if (extras?.rolledUp) out += ',"rolledUp":true';
  if (extras?.more) out += ',"more":true';
  return `${out}}`;
}

/**
 * The `messages` frame a parsed compact frame stands for, or why it is not one. Checks what the
 * expansion relies on (the array, each entry's action and serials); the server is trusted for the
 * rest, as with plain frames.
 */
export function expandCompactMessages(value: Record<string, unknown>): MessagesFrame | string {
  const { channel, epoch, m, after, rolledUp, more } = value;
  if (typeof channel !== 'string') return 'compact messages frame without a channel';
  if (!Array.isArray(m)) return 'compact messages frame without an m array';
  if (epoch !== undefined && typeof epoch !== 'string')
    return 'compact messages frame with a non-string epoch';
  const messages: Message[] = new Array(m.length);
  for (let i = 0; i < m.length; i++) {
    const entry: unknown = m[i];
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
      return `compact message ${i} is not an object`;
    const c = entry as Record<string, unknown>;
    const action = typeof c.a === 'string' ? ACTION_OF[c.a] : undefined;
    if (action === undefined) return `compact message ${i} has an unknown action ${JSON.stringify(c.a)}`;
    const serial = serialFrom(c.s, epoch);
    if (serial === undefined) return `compact message ${i} has no valid serial`;
    const version = c.v === undefined ? serial : serialFrom(c.v, epoch);
    if (version === undefined) return `compact message ${i} has no valid version`;
    const message: Message = { serial, version, action, id: c.i as string, timestamp: c.t as number };
    if (c.n !== undefined) message.name = c.n as string;
    if (c.d !== undefined) message.data = c.d as NonNullable<Message['data']> | null;
    if (c.e !== undefined) message.encoding = c.e as NonNullable<Message['encoding']>;
    if (c.h !== undefined) message.headers = c.h as NonNullable<Message['headers']>;
    if (c.c !== undefined) message.clientId = c.c as string;
    messages[i] = message;
  }
  const frame: MessagesFrame = { type: 'messages', channel, messages };
  if (typeof after === 'string') frame.after = after;
  if (rolledUp === true) frame.rolledUp = true;
  if (more === true) frame.more = true;
  return frame;
}

/** The epoch of `serial`, or '' when it is not a serial. */
function epochOf(serial: string): string {
  return serialSeq(serial) < 0 ? '' : serial.slice(0, EPOCH_WIDTH);
}

/** A serial in a compact frame of `epoch`: its sequence number when it is of that epoch, else the string. */
function serialText(serial: string, epoch: string): string {
  if (epoch !== '' && serial.startsWith(epoch)) {
    const seq = serialSeq(serial);
    // a sequence past 2^53 would not survive a JSON number: it stays a string
    if (seq >= 0 && seq <= Number.MAX_SAFE_INTEGER) return String(seq);
  }
  return JSON.stringify(serial);
}

function serialFrom(value: unknown, epoch: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) return undefined;
  if (typeof epoch !== 'string' || epoch.length !== EPOCH_WIDTH) return undefined;
  return formatSerial(epoch, value);
}
