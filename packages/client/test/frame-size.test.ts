/**
 * `frameLimit` (frame-size.ts): the largest frame a request may make, from the limits the server
 * announced in `connected`; what it leaves out, or announces as no positive number, is the protocol's
 * default (never a limit of 0 or below, which would refuse every frame).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_LIMITS } from '@mooring/protocol';
import { frameLimit } from '../src/frame-size.ts';

const DEFAULT = Math.min(DEFAULT_LIMITS.maxFrameSize, DEFAULT_LIMITS.maxHttpBody - 2);

describe('frameLimit', () => {
  it('takes the announced maxFrameSize, or maxHttpBody less 2 where that is lower', () => {
    assert.equal(frameLimit({ maxFrameSize: 1000, maxHttpBody: 5000 }), 1000);
    assert.equal(frameLimit({ maxFrameSize: 5000, maxHttpBody: 1000 }), 998);
  });

  it('falls back to the protocol’s defaults for what is missing, zero or negative', () => {
    assert.equal(frameLimit(undefined), DEFAULT);
    assert.equal(frameLimit({}), DEFAULT);
    for (const bad of [0, -1, -5000])
      assert.equal(frameLimit({ maxFrameSize: bad, maxHttpBody: bad }), DEFAULT, String(bad));
  });
});
