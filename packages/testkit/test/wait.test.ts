import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { deferred, once, waitFor, within } from '../src/wait.ts';

test('waitFor resolves with the first truthy value', async () => {
  let calls = 0;
  const value = await waitFor(() => (++calls >= 3 ? { calls } : null), { interval: 1 });
  assert.deepEqual(value, { calls: 3 });
});

test('waitFor rejects with the given message when the condition never holds', async () => {
  await assert.rejects(
    waitFor(() => false, { timeout: 20, interval: 1, message: 'never' }),
    /never/,
  );
});

test('waitFor rejects at once when the predicate throws', async () => {
  await assert.rejects(
    waitFor(() => {
      throw new Error('boom');
    }),
    /boom/,
  );
});

test('once resolves with the event arguments, rejects on error and on timeout', async () => {
  const emitter = new EventEmitter();
  const got = once(emitter, 'ping');
  emitter.emit('ping', 1, 'a');
  assert.deepEqual(await got, [1, 'a']);
  assert.equal(emitter.listenerCount('ping') + emitter.listenerCount('error'), 0);

  const failed = once(emitter, 'ping');
  emitter.emit('error', new Error('bad'));
  await assert.rejects(failed, /bad/);

  await assert.rejects(once(emitter, 'ping', { timeout: 5, message: 'no ping' }), /no ping/);
});

test('deferred settles from outside', async () => {
  const d = deferred<number>();
  d.resolve(7);
  assert.equal(await d.promise, 7);
  const e = deferred();
  e.reject(new Error('nope'));
  await assert.rejects(e.promise, /nope/);
});

test('within settles as its promise does, or rejects with its message when it never settles', async () => {
  assert.equal(await within(Promise.resolve(7), { message: 'unused' }), 7);
  await assert.rejects(within(Promise.reject(new Error('own')), { message: 'unused' }), /own/);
  await assert.rejects(
    within(new Promise(() => {}), { timeout: 20, message: 'the answer never came' }),
    /the answer never came \(not settled within 0.02 s\)/,
  );
});
