/**
 * The SQLite store's per-channel id filter on its own (sqlite-id-filter.ts): never "absent" for an id
 * it was given, full only past its capacity (the store then rebuilds it bigger), and at its
 * capacity no more false positives than designed (≈ 0.4 % at 12 bits per id, its tightest sizing).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IdFilter } from '../src/store/sqlite-id-filter.ts';

describe('IdFilter', () => {
  it('is full only past its capacity', () => {
    const filter = new IdFilter(1024);
    for (let i = 0; i < 1024; i++) filter.add(`id${i}`);
    assert.equal(filter.full, false, 'at capacity');
    filter.add('one more');
    assert.equal(filter.full, true, 'past capacity');
  });

  it('holds every id it was given, with at most the designed false positives at capacity', () => {
    // 1,365 ids × 12 bits ≤ 16,384 bits: the fewest bits per id any capacity gets
    const filter = new IdFilter(1365);
    for (let i = 0; i < 1365; i++) filter.add(`pub:${i}`);
    for (let i = 0; i < 1365; i++) assert.equal(filter.mayHave(`pub:${i}`), true, `pub:${i}`);
    let positives = 0;
    const tries = 100_000;
    for (let i = 0; i < tries; i++) if (filter.mayHave(`other:${i}`)) positives++;
    // designed: (1 − e^(−6/12))^6 ≈ 0.37 %
    assert.ok(positives / tries < 0.005, `${positives} false positives in ${tries}`);
  });
});
