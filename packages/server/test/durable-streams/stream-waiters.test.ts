/**
 * StreamWaiters over a wake bus (a fake one, driven by the test): a new subscription wakes the
 * stream's readers once it is active, so a change made before it was active is not missed; the
 * subscription lingers after the last reader left (no subscribe per long-poll), then is dropped;
 * `notify` wakes local readers and publishes. Also (from the mutation sweep of stream-waiters.ts): a
 * wait ends false on its timeout, its abort and after close; a listen after close subscribes nothing;
 * a subscription made by listen alone lingers and is dropped; a failed subscription is forgotten, so
 * the next reader subscribes again without waking the readers already waiting.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { within } from '@mooring/testkit';
import { StreamWaiters } from '../../src/durable-streams/stream-waiters.ts';
import type { StreamWakeBus } from '../../src/store/stream-store.ts';

class FakeBus implements StreamWakeBus {
  readonly published: string[] = [];
  readonly watches: string[] = [];
  readonly unwatches: string[] = [];
  readonly listeners = new Map<string, () => void>();
  readonly #pending: { resolve: () => void; reject: (err: Error) => void }[] = [];
  #unwatched: (() => void) | undefined;

  publish(path: string): void {
    this.published.push(path);
  }
  watch(path: string, onWake: () => void): Promise<void> {
    this.watches.push(path);
    this.listeners.set(path, onWake);
    return new Promise((resolve, reject) => this.#pending.push({ resolve, reject }));
  }
  unwatch(path: string): void {
    this.unwatches.push(path);
    this.listeners.delete(path);
    this.#unwatched?.();
  }
  onReconnect(): void {}
  /** Makes every pending subscription active. */
  activate(): void {
    for (const { resolve } of this.#pending.splice(0)) resolve();
  }
  /** Fails every pending subscription (Redis unreachable). */
  fail(): void {
    for (const { reject } of this.#pending.splice(0)) reject(new Error('subscribe failed'));
  }
  unwatched(): Promise<void> {
    return new Promise((resolve) => {
      this.#unwatched = resolve;
    });
  }
}

test('a reader whose subscription becomes active is woken once to re-read', async () => {
  const bus = new FakeBus();
  const waiters = new StreamWaiters(bus);
  // the change happened on another node before the subscription was active: its wake is lost
  const waited = waiters.wait('s', 30_000);
  assert.deepEqual(bus.watches, ['s']);
  bus.activate();
  assert.equal(await waited, true, 'woken by the subscription becoming active, not by its timeout');
  waiters.close();
});

test('the subscription lingers after the last reader, then is dropped; notify publishes', async () => {
  const bus = new FakeBus();
  const waiters = new StreamWaiters(bus, 60_000);
  const first = waiters.wait('s', 30_000);
  bus.activate();
  assert.equal(await first, true);
  // a long-poll client's next request comes a round trip later
  await new Promise((resolve) => setTimeout(resolve, 20));
  const second = waiters.wait('s', 30_000);
  assert.deepEqual(bus.watches, ['s'], 'a reader re-waiting within the linger does not subscribe again');
  bus.listeners.get('s')?.();
  assert.equal(await second, true, 'a wake from the bus wakes the reader');
  const third = waiters.wait('t', 30_000);
  waiters.notify('t');
  assert.equal(await third, true);
  assert.deepEqual(bus.published, ['t']);
  waiters.close();

  const short = new FakeBus();
  const brief = new StreamWaiters(short, 10);
  const waited = brief.wait('s', 30_000);
  short.activate();
  await waited;
  await short.unwatched();
  assert.deepEqual(short.unwatches, ['s'], 'dropped once the linger passed with no reader');
  assert.equal(brief.watched, 0);
  brief.close();
});

test('listen resolves once subscribed; the wait after it neither subscribes again nor wakes spuriously', async () => {
  const bus = new FakeBus();
  const waiters = new StreamWaiters(bus, 60_000);
  let listening = false;
  const listened = waiters.listen('s').then(() => {
    listening = true;
  });
  await Promise.resolve();
  assert.equal(listening, false, 'not before the subscription is active');
  bus.activate();
  await listened;
  const waited = waiters.wait('s', 30_000);
  assert.deepEqual(bus.watches, ['s']);
  let woken = false;
  void waited.then(() => {
    woken = true;
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(woken, false, 'no wake without a change');
  bus.listeners.get('s')?.();
  assert.equal(await waited, true);
  waiters.close();
});

const turn = () => new Promise((resolve) => setImmediate(resolve));

test('a wait ends false on its timeout or its abort, and at once after close; a listen after close subscribes nothing', async () => {
  const bus = new FakeBus();
  const waiters = new StreamWaiters(bus, 60_000);
  assert.equal(await waiters.wait('s', 1), false, 'timed out: no change');
  const abort = new AbortController();
  const aborted = waiters.wait('s', 30_000, abort.signal);
  abort.abort();
  assert.equal(await aborted, false, 'aborted: no change');
  assert.equal(waiters.size, 0);
  waiters.close();
  assert.equal(await waiters.wait('t', 30_000), false, 'after close: at once, no change');
  const listened = waiters.listen('t');
  // nothing would ever drop a subscription made after close
  assert.deepEqual(bus.watches, ['s'], 'a listen after close does not subscribe');
  await listened;
});

// a long-poll that finds data at once answers without waiting: its stream must not stay subscribed
test('a subscription made by listen alone, with no wait after it, is dropped after the linger', async () => {
  const bus = new FakeBus();
  const waiters = new StreamWaiters(bus, 10);
  const listened = waiters.listen('s');
  bus.activate();
  await listened;
  await within(bus.unwatched(), { timeout: 5_000, message: 'the subscription was kept with no reader' });
  assert.deepEqual(bus.unwatches, ['s']);
  assert.equal(waiters.watched, 0);
  waiters.close();
});

test('a subscription that fails is dropped: the next listen subscribes again (waking nobody), a reader ends at its timeout', async () => {
  const bus = new FakeBus();
  const waiters = new StreamWaiters(bus, 60_000);
  const waited = waiters.wait('s', 30_000);
  bus.fail();
  await turn();
  assert.equal(waiters.watched, 0, 'the failed subscription is not counted as heard');
  const listened = waiters.listen('s');
  assert.deepEqual(bus.watches, ['s', 's'], 'the next reader subscribes again');
  bus.activate();
  await listened;
  let woken = false;
  void waited.then(() => {
    woken = true;
  });
  await turn();
  assert.equal(woken, false, "another reader's subscription is no change: the waiting reader is not woken");
  bus.listeners.get('s')?.();
  assert.equal(await waited, true);

  // not subscribed at all: the reader falls back to its timeout, and ends cleanly there
  const alone = waiters.wait('t', 20);
  bus.fail();
  assert.equal(await alone, false);
  assert.equal(waiters.size, 0);
  waiters.close();
});
