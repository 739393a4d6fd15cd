/** Serials (PROTOCOL.md §3): format, parsing, and that string order is log order. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  compareSerials,
  formatSerial,
  hasEpoch,
  isSerial,
  newEpoch,
  parseSerial,
  sameEpoch,
  serialSeq,
} from '@mooring/protocol';

describe('serials', () => {
  test('format and parse round-trip: 12-char epoch, 16-digit zero-padded sequence', () => {
    const s = formatSerial('mi9x2k0a7q3f', 42);
    assert.equal(s, 'mi9x2k0a7q3f.0000000000000042');
    assert.deepEqual(parseSerial(s), { epoch: 'mi9x2k0a7q3f', seq: 42 });
    assert.deepEqual(parseSerial(formatSerial('000000000000', 9_007_199_254_740_991)), {
      epoch: '000000000000',
      seq: 9_007_199_254_740_991,
    });
  });

  test('refuses what is not a serial', () => {
    for (const bad of [
      '',
      'mi9x2k0a7q3f',
      'mi9x2k0a7q3f.42',
      'mi9x2k0a7q3f.00000000000000042', // 17 digits
      'MI9X2K0A7Q3F.0000000000000042', // upper case
      'mi9x2k0a7q3.0000000000000042', // 11-char epoch
      'mi9x2k0a7q3f-0000000000000042',
      ' mi9x2k0a7q3f.0000000000000042',
      'mi9x2k0a7q3f.000000000000004a',
    ]) {
      assert.equal(isSerial(bad), false, bad);
      assert.equal(parseSerial(bad), undefined, bad);
    }
    for (const notString of [42, null, undefined, {}, ['mi9x2k0a7q3f.0000000000000042']])
      assert.equal(isSerial(notString), false);
  });

  test('string order is sequence order within an epoch, across digit counts', () => {
    const seqs = [1, 2, 9, 10, 11, 99, 100, 1000, 123_456_789, 10 ** 15];
    const serials = seqs.map((n) => formatSerial('mi9x2k0a7q3f', n));
    const shuffled = [...serials].reverse();
    assert.deepEqual(shuffled.sort(compareSerials), serials);
    assert.deepEqual([...serials].reverse().sort(), serials, 'plain string sort agrees');
    assert.equal(compareSerials(serials[0]!, serials[0]!), 0);
    assert.equal(compareSerials(serials[1]!, serials[0]!), 1);
    assert.equal(compareSerials(serials[0]!, serials[1]!), -1);
  });

  test('an epoch made right after another sorts after it, also within the same millisecond', () => {
    // a log deleted and started again at once: followers take a batch of an older epoch for stale
    for (let i = 0; i < 200; i++) {
      const now = Date.now();
      const first = newEpoch(now);
      const second = newEpoch(now);
      assert.ok(second > first, `${second} does not sort after ${first}`);
    }
  });

  test('epochs: 12 base-36 chars, time-prefixed so a newer log sorts after an older one', () => {
    const older = newEpoch(Date.UTC(2025, 0, 1));
    const newer = newEpoch(Date.UTC(2026, 0, 1));
    for (const e of [older, newer, newEpoch()]) assert.match(e, /^[0-9a-z]{12}$/);
    assert.ok(older < newer);
    assert.ok(formatSerial(older, 10 ** 15) < formatSerial(newer, 1));
  });

  test('the hand-written check agrees with the format, character by character', () => {
    // The format as a regular expression: the oracle. Every one-character change of a serial, to
    // each character at the edges of the allowed ranges, is judged the same by both.
    const format = /^([0-9a-z]{12})\.(\d{16})$/;
    const base = formatSerial('mi9x2k0a7q3f', 1_234_567);
    const edges = ['0', '9', 'a', 'z', '/', ':', '`', '{', 'A', 'Z', '.', '-', ' ', 'é'];
    let checked = 0;
    for (let i = 0; i <= base.length; i++) {
      for (const c of edges) {
        for (const candidate of [
          base.slice(0, i) + c + base.slice(i + 1),
          base.slice(0, i) + c + base.slice(i),
        ]) {
          const m = format.exec(candidate);
          assert.equal(isSerial(candidate), m !== null, candidate);
          assert.equal(serialSeq(candidate), m ? Number(m[2]) : -1, candidate);
          assert.deepEqual(
            parseSerial(candidate),
            m ? { epoch: m[1], seq: Number(m[2]) } : undefined,
            candidate,
          );
          checked++;
        }
      }
    }
    assert.ok(checked > 500);
  });

  test('sameEpoch and hasEpoch: both well-formed, the same log', () => {
    const a = formatSerial('mi9x2k0a7q3f', 7);
    const b = formatSerial('mi9x2k0a7q3f', 8);
    const other = formatSerial('mi9x2k0a7q3g', 7);
    assert.equal(sameEpoch(a, b), true);
    assert.equal(sameEpoch(a, other), false);
    assert.equal(sameEpoch(a, ''), false);
    assert.equal(sameEpoch('', ''), false);
    assert.equal(sameEpoch('mi9x2k0a7q3f.7', 'mi9x2k0a7q3f.7'), false, 'not serials');
    assert.equal(hasEpoch(a, 'mi9x2k0a7q3f'), true);
    assert.equal(hasEpoch(other, 'mi9x2k0a7q3f'), false);
    assert.equal(hasEpoch(a, 'mi9x2k0a7q3'), false, 'a prefix is not an epoch');
    assert.equal(hasEpoch('mi9x2k0a7q3f.12', 'mi9x2k0a7q3f'), false);
    // one side well-formed is not enough, whichever side it is
    assert.equal(sameEpoch(a, 'mi9x2k0a7q3f.7'), false);
    assert.equal(sameEpoch('mi9x2k0a7q3f.7', a), false);
  });

  test('sequence number 0 is well-formed and of its log (it names no operation: they start at 1)', () => {
    const zero = formatSerial('mi9x2k0a7q3f', 0);
    assert.equal(isSerial(zero), true);
    assert.deepEqual(parseSerial(zero), { epoch: 'mi9x2k0a7q3f', seq: 0 });
    assert.equal(hasEpoch(zero, 'mi9x2k0a7q3f'), true);
    assert.equal(sameEpoch(zero, formatSerial('mi9x2k0a7q3f', 1)), true);
    assert.equal(sameEpoch(formatSerial('mi9x2k0a7q3f', 1), zero), true);
  });
});
