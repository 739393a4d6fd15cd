/**
 * The per-connection presence budget (presence-budget.ts) on its own: the byte cap holds up to and
 * including `maxBytesPerConnection`, and the enters a connection sends together (`take`, Redis)
 * leave the count of their channel right however each one ends: what a failed enter took is given
 * back, what a later enter took stays.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PresenceBudget } from '../src/presence-budget.ts';
import { ServerError } from '../src/server-error.ts';

const budget = () => new PresenceBudget({ maxChannelsPerConnection: 2, maxBytesPerConnection: 100 });
const refusal = (code: string) => (err: unknown) => err instanceof ServerError && err.code === code;

describe('PresenceBudget', () => {
  it('holds exactly maxBytesPerConnection over all channels, not a byte more', () => {
    const b = budget();
    b.add('c', 'a', 60);
    b.check('c', 'b', 40);
    assert.throws(() => b.check('c', 'b', 41), refusal('presence_too_large'));
    // an update of a held channel replaces its bytes
    b.check('c', 'a', 100);
    assert.throws(() => b.check('c', 'a', 101), refusal('presence_too_large'));
  });

  it('an enter refused before a later one of the same channel leaves the later one counted', () => {
    const b = budget();
    const first = b.take('c', 'a', 10);
    const second = b.take('c', 'a', 20);
    first.undo();
    assert.deepEqual(b.held('c'), { channels: 1, bytes: 20 });
    second.kept();
    assert.deepEqual(b.held('c'), { channels: 1, bytes: 20 });
  });

  it('an enter refused after an earlier one of the same channel still pending leaves the earlier one counted', () => {
    const b = budget();
    const first = b.take('c', 'a', 10);
    const second = b.take('c', 'a', 20);
    second.undo();
    assert.deepEqual(b.held('c'), { channels: 1, bytes: 10 });
    first.kept();
    assert.deepEqual(b.held('c'), { channels: 1, bytes: 10 });
    assert.equal(b.unsettled, 0);
  });

  it('enters of two channels sent together settle each on its own, whatever the other did', () => {
    const b = budget();
    const a = b.take('c', 'a', 10);
    const other = b.take('c', 'b', 20);
    a.kept();
    other.undo();
    assert.deepEqual(b.held('c'), { channels: 1, bytes: 10 }, 'the refused enter of b is given back');
    // a leave of one channel with an enter pending, while an enter of another is pending too
    const again = b.take('c', 'a', 15);
    const c = b.take('c', 'c', 30);
    b.remove('c', 'a');
    again.kept();
    c.undo();
    assert.deepEqual(b.held('c'), { channels: 0, bytes: 0 }, 'the refused enter of c is given back');
  });

  it('keeps nothing of the enters once they are answered, however many', () => {
    const b = budget();
    for (let i = 0; i < 100; i++) b.take('c', 'a', i % 50).kept(); // an update after the other
    b.take('c', 'b', 5).undo();
    assert.equal(b.unsettled, 0);
    assert.deepEqual(b.held('c'), { channels: 1, bytes: 49 });
  });

  it('enters of one channel sent together and all refused hold nothing after, in either order', () => {
    for (const order of [
      [0, 1],
      [1, 0],
    ]) {
      const b = budget();
      const taken = [b.take('c', 'a', 10), b.take('c', 'a', 20)];
      for (const i of order) taken[i]!.undo();
      assert.deepEqual(b.held('c'), { channels: 0, bytes: 0 }, `undone in the order ${order}`);
      assert.equal(b.isPresent('c'), false);
    }
  });

  it('an enter kept before a later one that is refused: the kept one counts', () => {
    const b = budget();
    b.add('c', 'a', 5);
    const first = b.take('c', 'a', 10);
    const second = b.take('c', 'a', 20);
    first.kept();
    second.undo();
    assert.deepEqual(b.held('c'), { channels: 1, bytes: 10 });
    // nothing kept: what the channel held before them
    const third = b.take('c', 'a', 30);
    third.undo();
    assert.deepEqual(b.held('c'), { channels: 1, bytes: 10 });
  });

  it('a leave while enters are pending decides: a refused enter settled after it brings nothing back', () => {
    const b = budget();
    b.add('c', 'a', 5);
    const taken = b.take('c', 'a', 10);
    b.remove('c', 'a');
    taken.undo();
    assert.deepEqual(b.held('c'), { channels: 0, bytes: 0 });
    const again = b.take('c', 'b', 10);
    b.forget('c');
    again.undo();
    assert.deepEqual(b.held('c'), { channels: 0, bytes: 0 });
  });
});
