/**
 * The runs' shared timers (shared-timers.ts): timers due in the same millisecond run in one
 * callback, so what they send shares one write; each runs when its time has come, as its own Node
 * timer would; a cleared one does not run; one that throws does not keep the others from running.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sharedTimers } from '../src/shared-timers.ts';

const later = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('sharedTimers', () => {
  it('timers due in the same millisecond run in one callback: no microtask runs between them', async () => {
    const seen: boolean[] = [];
    let between = false;
    // all nearest to the same millisecond, however long the loop takes
    const due = Math.round(performance.now()) + 20;
    for (let i = 0; i < 10; i++)
      sharedTimers.setTimeout(
        () => {
          seen.push(between);
          queueMicrotask(() => {
            between = true;
          });
        },
        due - performance.now() - 0.25,
      );
    await later(60);
    assert.equal(seen.length, 10);
    assert.deepEqual(seen, Array(10).fill(false), 'each ran before the microtasks of the ones before it');
  });

  it('runs each one when its time has come, as its own Node timer would, in order of time', async () => {
    const ran: number[] = [];
    const early: string[] = [];
    const delays = [30, 5, 17, 1, 25, 12, 8, 40, 3, 21];
    for (const ms of delays) {
      const set = performance.now();
      sharedTimers.setTimeout(() => {
        // Node's own timers may fire up to a millisecond early against `performance.now`, and a
        // shared one half a millisecond before or after its own would have
        if (performance.now() - set < ms - 2) early.push(`${ms} ms after ${performance.now() - set}`);
        ran.push(ms);
      }, ms);
    }
    await later(80);
    assert.deepEqual(early, []);
    assert.deepEqual(
      ran,
      [...delays].sort((a, b) => a - b),
    );
  });

  it('a cleared timer does not run, the others of its millisecond do', async () => {
    const ran: string[] = [];
    sharedTimers.setTimeout(() => ran.push('a'), 15);
    const b = sharedTimers.setTimeout(() => ran.push('b'), 15);
    sharedTimers.setTimeout(() => ran.push('c'), 15);
    sharedTimers.clearTimeout(b);
    sharedTimers.clearTimeout(undefined);
    await later(50);
    assert.deepEqual(ran, ['a', 'c']);
  });

  it('one that throws does not keep the others from running; its error is thrown after them', async (t) => {
    const caught: unknown[] = [];
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    const onUncaught = (err: unknown) => caught.push(err);
    process.on('uncaughtException', onUncaught);
    t.after(() => {
      process.off('uncaughtException', onUncaught);
      for (const listener of listeners) process.on('uncaughtException', listener);
    });
    const ran: string[] = [];
    sharedTimers.setTimeout(() => ran.push('a'), 15);
    sharedTimers.setTimeout(() => {
      throw new Error('boom');
    }, 15);
    sharedTimers.setTimeout(() => ran.push('c'), 15);
    await later(50);
    assert.deepEqual(ran, ['a', 'c']);
    assert.equal((caught[0] as Error | undefined)?.message, 'boom');
  });
});
