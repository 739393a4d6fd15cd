/**
 * JSON mode (PROTOCOL.md §16.4–16.6): a stream created with `application/json` keeps message boundaries.
 * A POST body is one JSON value, or an array whose elements (one level flattened) are the messages.
 * Each request is stored as one chunk: its messages re-serialised and joined with `,`, so a read is
 * `[` + the chunks joined with `,` + `]` without parsing anything again.
 */
export type JsonFragment = { ok: true; fragment: Uint8Array } | { ok: false; reason: string };

/**
 * The chunk to store for a JSON body. `allowEmpty` (a PUT's initial content): `[]` is an empty stream;
 * on a POST an empty array is refused, as it appends nothing.
 */
export function jsonFragment(body: Uint8Array, allowEmpty: boolean): JsonFragment {
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
  try {
    return { ok: true, fragment: Buffer.from(messages.map((m) => JSON.stringify(m)).join(','), 'utf8') };
  } catch {
    // nesting deep enough to exhaust the stack when re-serialised
    return { ok: false, reason: 'the JSON body is nested too deeply' };
  }
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
