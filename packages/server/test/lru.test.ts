/**
 * The store's bounded cache (`Lru`): what it keeps, what it forgets, and that it never holds more than
 * its bound.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Lru } from '../src/store/lru.ts';

describe('Lru', () => {
  it('never holds more than its bound', () => {
    const lru = new Lru<number, number>(10);
    for (let i = 0; i < 1000; i++) {
      lru.set(i, i);
      lru.get(i % 7);
      assert.ok(lru.size <= 10, `${lru.size} entries after ${i + 1} sets`);
    }
  });

  it('keeps every entry when no more keys than its bound are used, in any order', () => {
    const lru = new Lru<number, number>(10);
    for (let round = 0; round < 20; round++) {
      for (let k = 0; k < 10; k++) {
        if (round === 0) lru.set(k, k);
        else assert.equal(lru.get(round % 2 === 0 ? k : 9 - k), round % 2 === 0 ? k : 9 - k);
      }
    }
  });

  it('keeps an entry used at least once per half its bound of new entries', () => {
    const lru = new Lru<string, number>(10);
    lru.set('hot', 1);
    for (let i = 0; i < 1000; i++) {
      lru.set(`k${i}`, i);
      if (i % 5 === 4) assert.equal(lru.get('hot'), 1, `after ${i + 1} new entries`);
    }
  });

  it('forgets an entry not used for its bound of new entries, and keeps the newest', () => {
    const lru = new Lru<string, number>(10);
    lru.set('cold', 1);
    for (let i = 0; i < 10; i++) lru.set(`k${i}`, i);
    assert.equal(lru.get('cold'), undefined);
    assert.equal(lru.get('k9'), 9);
    assert.equal(lru.get('k5'), 5);
  });

  it('set replaces a held value; delete and clear forget', () => {
    const lru = new Lru<string, number>(4);
    lru.set('a', 1);
    lru.set('b', 2);
    lru.set('c', 3); // 'a' and 'b' are now the old generation
    lru.set('a', 10);
    lru.set('c', 30);
    assert.equal(lru.size, 3, 'a value set again is held once');
    assert.equal(lru.get('a'), 10);
    assert.equal(lru.get('c'), 30);
    lru.delete('a');
    assert.equal(lru.get('a'), undefined);
    assert.equal(lru.get('b'), 2);
    lru.clear();
    assert.equal(lru.size, 0);
    assert.equal(lru.get('b'), undefined);
  });
});
