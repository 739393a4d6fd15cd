// TokenBucket (token-bucket.ts): all-or-nothing takes, the burst as a ceiling, and the one large item
// a full bucket lets through in debt (the bytes budget) while a count of operations never does.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenBucket } from '../src/token-bucket.ts';

describe('TokenBucket', () => {
  it('takes all or nothing, never above the burst, and refills at its rate', () => {
    let now = 0;
    const bucket = new TokenBucket(10, 5, () => now);
    assert.equal(bucket.take(6), false, 'more than the burst is never there');
    assert.equal(bucket.take(5), true);
    assert.equal(bucket.take(1), false, 'a refused take costs nothing…');
    now += 100; // one token back
    assert.equal(bucket.take(1), true, '…and the bucket serves again as it refills');
    now += 10_000;
    assert.equal(bucket.take(6), false, 'a long pause refills up to the burst only');
    assert.equal(bucket.take(5), true);
  });

  it('lets one item above the burst through in debt when full, then refills from below zero', () => {
    let now = 0;
    const bucket = new TokenBucket(10, 5, () => now);
    assert.equal(bucket.holds(8), false, 'without debt a count above the burst is refused');
    assert.equal(bucket.holds(8, true), true);
    bucket.spend(8); // -3 now
    now += 500; // +5: back to 2
    assert.equal(bucket.holds(3, true), false, 'in debt until it refills');
    assert.equal(bucket.holds(2), true);
  });
});
