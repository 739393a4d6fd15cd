/** appendText: the same text as `+`, held in about the space of the text itself. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { appendText } from '../src/index.ts';

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
