/**
 * JSON mode (PROTOCOL.md §16.4–16.6): a stream created with `application/json` keeps message boundaries.
 * A POST body is one JSON value, or an array whose elements (one level flattened) are the messages.
 * Each request is stored as one chunk: its messages re-serialised and joined with `,`, so a read is
 * `[` + the chunks joined with `,` + `]` without parsing anything again.
 *
 * Parsing and re-serialising cost far more than the bytes (an 8 MiB `[{},{},…]` took over a second
 * of one event-loop turn), so the work per request is bounded: JSON bodies are refused above
 * `maxJsonAppendBytes` (1 MiB by default, durable-streams-api.ts), nesting deeper than
 * `MAX_JSON_DEPTH` is refused by a linear scan before anything is parsed, and the messages are
 * re-serialised in slices with the event loop free in between (`jsonFragment`).
 */
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { MAX_JSON_DEPTH } from '../limits.ts';

export type JsonFragment = { ok: true; fragment: Uint8Array } | { ok: false; reason: string };

/**
 * The chunk to store for a JSON body. `allowEmpty` (a PUT's initial content): `[]` is an empty stream;
 * on a POST an empty array is refused, as it appends nothing.
 *
 * The messages are re-serialised a slice at a time (about `SLICE_MS` of work each) with the event
 * loop free in between, so a body of many small messages does not hold it for long.
 */
export async function jsonFragment(
  body: Uint8Array,
  allowEmpty: boolean,
  /** The clock the slices are timed with (a test's own). */
  now: () => number = () => performance.now(),
): Promise<JsonFragment> {
  const parsed = parse(body, allowEmpty);
  if (!Array.isArray(parsed)) return parsed;
  const out: string[] = new Array(parsed.length);
  try {
    let sliceStart = now();
    for (let i = 0; i < parsed.length; i++) {
      out[i] = JSON.stringify(parsed[i]);
      if ((i & 1023) === 1023 && now() - sliceStart > SLICE_MS) {
        await yieldTurn();
        sliceStart = now();
      }
    }
  } catch {
    return TOO_DEEP;
  }
  return { ok: true, fragment: Buffer.from(out.join(','), 'utf8') };
}

const SLICE_MS = 10;
const TOO_DEEP: JsonFragment = {
  ok: false,
  reason: `the JSON body is nested deeper than ${MAX_JSON_DEPTH} levels`,
};

/** The messages of a JSON body, or why it is refused. */
function parse(body: Uint8Array, allowEmpty: boolean): unknown[] | JsonFragment {
  if (nestedDeeper(body, MAX_JSON_DEPTH)) return TOO_DEEP;
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body));
  } catch {
    return { ok: false, reason: 'the body is not valid JSON (UTF-8)' };
  }
  const messages = Array.isArray(value) ? value : [value];
  if (messages.length === 0) {
    if (allowEmpty) return { ok: true, fragment: new Uint8Array(0) };
    return { ok: false, reason: 'an empty JSON array appends nothing' };
  }
  return messages;
}

/**
 * Whether brackets outside strings nest deeper than `limit`: one pass over the bytes, no allocation.
 * Invalid JSON may pass (JSON.parse refuses it next); valid JSON deeper than the limit never does.
 */
function nestedDeeper(body: Uint8Array, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const b = body[i];
    if (inString) {
      // skip the escaped character, e.g. \"
      if (b === 0x5c) i++;
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) inString = true;
    else if (b === 0x5b || b === 0x7b) {
      if (++depth > limit) return true;
    } else if (b === 0x5d || b === 0x7d) depth--;
  }
  return false;
}

/** The JSON array of the messages held by `chunks`. */
export function jsonArray(chunks: readonly Uint8Array[]): Buffer {
  const parts: Buffer[] = [Buffer.from('[')];
  chunks.forEach((chunk, i) => {
    if (i > 0) parts.push(Buffer.from(','));
    parts.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  });
  parts.push(Buffer.from(']'));
  return Buffer.concat(parts);
}
