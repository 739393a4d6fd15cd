/**
 * Text grown by many small appends: a streamed part, one append per token (PROTOCOL.md §4.2).
 *
 * V8 keeps `a + b` as a rope: a node per append pointing at both sides, each delta a string of its
 * own. A held text of n tokens so costs about three objects per token (some 90 bytes against ~5 of
 * text), and every token survives each young-generation collection, until something reads the text
 * (a read flattens a rope into one string). An agent folding its own output reads nothing while it
 * streams: a 20,000-token answer held that way took 640 KB where its text is 138 KB.
 *
 * `appendText` reads one character each time the text's length crosses a multiple of an eighth of
 * its size (at least 256 characters). `at` flattens a rope (`charCodeAt` reads through it), so at
 * most an eighth stays a rope, and the copying adds up to at most 16 times the final length (eight
 * flattenings per doubling): O(1) per appended character, never O(length) per append. On an engine
 * without ropes the read costs nothing and changes nothing.
 */

/** Appends at most this many characters before the first flattening. */
const FLATTEN_FROM = 256;

/** `base + delta`, kept flat enough for a text that grows by one small delta at a time. */
export function appendText(base: string, delta: string): string {
  const text = base + delta;
  if (text.length < FLATTEN_FROM) return text;
  const step = Math.max(FLATTEN_FROM, 2 ** (Math.floor(Math.log2(text.length)) - 3));
  if (Math.floor(text.length / step) !== Math.floor(base.length / step)) text.at(-1); // flattens it (V8)
  return text;
}

/**
 * The length of `text` in UTF-8 bytes, as the server counts operation and frame sizes (PROTOCOL.md
 * §10), without encoding it (browsers have no `Buffer`). A lone surrogate counts 3, the bytes of the
 * U+FFFD it is encoded as.
 */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}
