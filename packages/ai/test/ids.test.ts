/** Run, message and device ids: a prefix and 128 random bits in 22 base64url characters. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { randomId } from '../src/ids.ts';

describe('randomId', () => {
  it('writes the 16 random bytes as base64url, every bit once', (t) => {
    for (const fill of [
      (i: number) => i * 17 + 3,
      (i: number) => 255 - i,
      () => 0,
      () => 255,
      (i: number) => (i * 73) % 256,
    ]) {
      const bytes = Uint8Array.from({ length: 16 }, (_, i) => fill(i));
      t.mock.method(crypto, 'getRandomValues', (array: Uint8Array) => {
        array.set(bytes);
        return array;
      });
      assert.equal(randomId('run_'), `run_${Buffer.from(bytes).toString('base64url')}`);
      t.mock.restoreAll();
    }
  });

  it('is the prefix and 22 base64url characters, different each time', () => {
    const ids = Array.from({ length: 10_000 }, () => randomId('msg_'));
    for (const id of ids) assert.match(id, /^msg_[A-Za-z0-9_-]{22}$/);
    assert.equal(new Set(ids).size, ids.length);
  });
});
