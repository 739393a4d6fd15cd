/** `forEachInSlices`: a pass over many items that lets the event loop run between its slices. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forEachInSlices, forEachOfInSlices } from '../src/in-slices.ts';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('forEachInSlices', () => {
  it('visits every item once, in order, and lets queued I/O callbacks run between slices', async () => {
    const log: string[] = [];
    const finished = new Promise<void>((resolve) => {
      forEachInSlices(
        [1, 2, 3, 4, 5],
        2,
        (n) => {
          log.push(`visit ${n}`);
          // something that became ready while the slice runs (a socket read, a timer's work)
          if (n === 1) setImmediate(() => log.push('other work'));
        },
        () => {
          log.push('done');
          resolve();
        },
      );
    });
    assert.deepEqual(log, ['visit 1', 'visit 2'], 'the first slice runs inside the call, and only it');
    await finished;
    assert.deepEqual(log, ['visit 1', 'visit 2', 'other work', 'visit 3', 'visit 4', 'visit 5', 'done']);
  });

  it('finishes inside the call when everything fits in one slice (a plain loop)', () => {
    const log: string[] = [];
    const pass = forEachInSlices(
      ['a', 'b'],
      2,
      (x) => log.push(x),
      () => log.push('done'),
    );
    assert.deepEqual(log, ['a', 'b', 'done']);
    assert.equal(pass, undefined, 'nothing left running');
    forEachInSlices(
      [],
      2,
      (x) => log.push(x),
      () => log.push('empty done'),
    );
    assert.deepEqual(log, ['a', 'b', 'done', 'empty done']);
  });

  it('stops between slices when cancelled, without calling done', async () => {
    const visited: number[] = [];
    let done = false;
    const pass = forEachInSlices(
      [1, 2, 3, 4],
      1,
      (n) => visited.push(n),
      () => {
        done = true;
      },
    );
    assert.ok(pass, 'a pass over more than one slice is still running after the call');
    await turn();
    pass.cancel();
    for (let i = 0; i < 5; i++) await turn();
    assert.ok(visited.length >= 1 && visited.length < 4, `stopped part way (visited ${visited.join(',')})`);
    assert.equal(done, false);
  });

  it('stops when cancelled from inside a visit: the rest of the slice runs, no later slice, no done', async () => {
    const visited: number[] = [];
    let done = false;
    let pass: ReturnType<typeof forEachInSlices>;
    pass = forEachInSlices(
      [1, 2, 3, 4, 5, 6],
      2,
      (n) => {
        visited.push(n);
        if (n === 3) pass?.cancel(); // e.g. a visit that closes what the pass walks
      },
      () => {
        done = true;
      },
    );
    for (let i = 0; i < 6; i++) await turn();
    assert.deepEqual(visited, [1, 2, 3, 4]);
    assert.equal(done, false);
  });

  it('refuses a slice size below 1', () => {
    assert.throws(
      () =>
        forEachInSlices(
          [1],
          0,
          () => {},
          () => {},
        ),
      /at least 1/,
    );
  });
});

describe('forEachOfInSlices', () => {
  it("over a Set's live iterator: visits in order a slice per turn, skips what left before its turn, reaches what came", async () => {
    const set = new Set([1, 2, 3, 4, 5]);
    const log: string[] = [];
    const finished = new Promise<void>((resolve) => {
      forEachOfInSlices(
        set.values(),
        2,
        (n) => {
          log.push(`visit ${n}`);
          if (n === 1) {
            setImmediate(() => log.push('other work'));
            set.delete(4); // leaves before its turn
            set.add(6); // comes during the pass
          }
        },
        () => {
          log.push('done');
          resolve();
        },
      );
    });
    assert.deepEqual(log, ['visit 1', 'visit 2'], 'the first slice runs inside the call');
    await finished;
    assert.deepEqual(log, ['visit 1', 'visit 2', 'other work', 'visit 3', 'visit 5', 'visit 6', 'done']);
  });

  it('finishes inside the call when the items are fewer than a slice, and refuses a slice below 1', () => {
    const log: number[] = [];
    let done = false;
    forEachOfInSlices(
      [1, 2][Symbol.iterator](),
      3,
      (n) => log.push(n),
      () => {
        done = true;
      },
    );
    assert.deepEqual(log, [1, 2]);
    assert.equal(done, true);
    // a slice of one (a presence pass with FAN_OUT_SHARE changes or more waiting) goes one a turn
    const one: number[] = [];
    forEachOfInSlices(
      [1, 2][Symbol.iterator](),
      1,
      (n) => one.push(n),
      () => {},
    );
    assert.deepEqual(one, [1], 'one item, then the next turn');
    assert.throws(
      () =>
        forEachOfInSlices(
          [1][Symbol.iterator](),
          0,
          () => {},
          () => {},
        ),
      /at least 1/,
    );
  });
});
