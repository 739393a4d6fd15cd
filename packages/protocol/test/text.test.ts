/** appendText: the same text as `+`, held in about the space of the text itself. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { appendText, utf8Length } from '../src/index.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const WORDS = Array.from({ length: 1000 }, (_, i) => ` tok${i}`);

/** 200 texts of `tokens` small deltas each (fresh strings, as a socket's frames give them). */
function grow(append: (base: string, delta: string) => string, tokens: number): string[] {
  const texts: string[] = [];
  for (let t = 0; t < 200; t++) {
    let text = '';
    for (let i = 0; i < tokens; i++) text = append(text, WORDS[(i * 7 + t) % 1000]!.slice(0));
    texts.push(text);
  }
  return texts;
}

function heldBytes(make: () => string[]): { held: number; chars: number } {
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const texts = make();
  gc();
  gc();
  const held = process.memoryUsage().heapUsed - before;
  return { held, chars: texts.reduce((sum, text) => sum + text.length, 0) };
}

describe('appendText', () => {
  test('gives the same text as +, whatever the deltas', () => {
    let plain = '';
    let kept = '';
    for (let i = 0; i < 5_000; i++) {
      const delta = i % 97 === 0 ? '' : 'x'.repeat(i % 13) + String(i % 10);
      plain += delta;
      kept = appendText(kept, delta);
      if (i % 500 === 0) assert.equal(kept, plain);
    }
    assert.equal(kept, plain);
    assert.equal(appendText('', ''), '');
    assert.equal(appendText('ab', 'c'), 'abc');
  });

  test('a text grown token by token is held in about its own size, not a node per token', () => {
    // 200 texts of 2,000 tokens (~14 KB each): with plain + V8 holds a rope, some 4.6 × the text
    const kept = heldBytes(() => grow(appendText, 2_000));
    const rope = heldBytes(() => grow((base, delta) => base + delta, 2_000));
    assert.ok(
      kept.held < 1.6 * kept.chars,
      `held ${kept.held} bytes for ${kept.chars} characters (plain +: ${rope.held})`,
    );
  });
});

describe('utf8Length', () => {
  test('counts the UTF-8 bytes the server counts (Buffer.byteLength), at each boundary', () => {
    const texts = [
      '',
      'a',
      '\u007f', // the last 1-byte character
      '\u0080', // the first 2-byte one
      '\u07ff',
      '\u0800', // the first 3-byte one
      '\ud7ff',
      '\ue000',
      '\uffff',
      '\ud800\udc00', // a pair at both ends of the surrogate ranges: 4 bytes
      '\udbff\udfff',
      '\ud83d\ude00',
      'x\ud800', // a lone high surrogate at the end: U+FFFD, 3 bytes
      '\ud800x', // a high surrogate followed by no low one
      '\ud800\ud800\udc00', // a lone high one, then a pair
      '\udc00\ud800', // a lone low one, then a lone high one
      '\udfff',
      '\ud7ff\udc00', // below the high range: two characters of 3 bytes
      '\udc00\udc00',
      '\ud800\ue000', // a high surrogate followed by a character just past the low range
      '\ud800\udbff',
      'héllo wörld \u{1F600} — ok',
    ];
    for (const text of texts)
      assert.equal(utf8Length(text), Buffer.byteLength(text, 'utf8'), JSON.stringify(text));
  });
});
