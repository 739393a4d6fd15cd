// TimerSlot (timers.ts): one timer at a time; a delay already past (a late event loop computes a
// negative remainder) runs on the next turn instead of reaching setTimeout negative (Node warns).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TimerHandle, Timers } from '../src/timers.ts';
import { TimerSlot } from '../src/timers.ts';

describe('TimerSlot', () => {
  it('clamps a delay already past to 0 and keeps one timer at a time', () => {
    const set: number[] = [];
    const cleared: TimerHandle[] = [];
    const timers: Timers = {
      setTimeout: (_fn, ms) => {
        set.push(ms);
        return set.length as unknown as TimerHandle;
      },
      clearTimeout: (handle) => cleared.push(handle),
      now: () => 0,
    };
    const slot = new TimerSlot(timers);
    slot.set(-8, () => {});
    slot.set(25, () => {});
    assert.deepEqual(set, [0, 25]);
    assert.equal(cleared.length, 1, 'the first timer was cleared by the second');
  });
});
