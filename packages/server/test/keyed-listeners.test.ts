// KeyedListeners (keyed-listeners.ts), the groups behind the hub's and presence's subscriptions:
// a group of one is the listener itself and a Set from the second on, and either way a listener is
// called in the order added, once, until its removal, which is idempotent and removes only itself.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeyedListeners } from '../src/keyed-listeners.ts';

/** A listener that records what it is called with, under its name. */
function recorder(name: string, calls: string[]): (value: number) => void {
  return (value) => calls.push(`${name}:${value}`);
}

describe('KeyedListeners', () => {
  it('calls one listener, then two in the order added, and nothing for another key', () => {
    const listeners = new KeyedListeners<number>();
    const calls: string[] = [];
    listeners.add('a', recorder('first', calls));
    listeners.emit('a', 1);
    listeners.add('a', recorder('second', calls));
    listeners.emit('a', 2);
    listeners.emit('b', 3);
    assert.deepEqual(calls, ['first:1', 'first:2', 'second:2']);
    assert.equal(listeners.count('a'), 2);
    assert.equal(listeners.count('b'), 0);
  });

  it('keeps one of a listener added twice, alone or beside another', () => {
    const listeners = new KeyedListeners<number>();
    const calls: string[] = [];
    const one = recorder('one', calls);
    listeners.add('a', one);
    listeners.add('a', one);
    assert.equal(listeners.count('a'), 1);
    listeners.add('a', recorder('two', calls));
    listeners.add('a', one);
    listeners.emit('a', 1);
    assert.deepEqual(calls, ['one:1', 'two:1']);
  });

  it('removes only its own listener, once: a removal called again never removes a later one', () => {
    const listeners = new KeyedListeners<number>();
    const calls: string[] = [];
    const offFirst = listeners.add('a', recorder('first', calls));
    offFirst();
    assert.equal(listeners.count('a'), 0, 'the group went with its last listener');
    listeners.add('a', recorder('later', calls));
    offFirst();
    listeners.emit('a', 1);
    assert.deepEqual(calls, ['later:1'], 'a group of one is not removed by another listener');

    const offSecond = listeners.add('a', recorder('second', calls));
    offFirst();
    offSecond();
    offSecond();
    listeners.emit('a', 2);
    assert.deepEqual(calls, ['later:1', 'later:2'], 'nor is a group of several');
    assert.equal(listeners.count('a'), 1);
  });

  it('skips a listener removed by another while the group is being called', () => {
    const listeners = new KeyedListeners<number>();
    const calls: string[] = [];
    let offSecond: () => void = () => {};
    listeners.add('a', (value) => {
      calls.push(`first:${value}`);
      offSecond();
    });
    offSecond = listeners.add('a', recorder('second', calls));
    listeners.emit('a', 1);
    listeners.emit('a', 2);
    assert.deepEqual(calls, ['first:1', 'first:2']);
    assert.equal(listeners.count('a'), 1);
  });
});
