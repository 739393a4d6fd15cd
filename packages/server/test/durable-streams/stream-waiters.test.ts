/**
 * StreamWaiters over a wake bus (a fake one, driven by the test): a new subscription wakes the
 * stream's readers once it is active, so a change made before it was active is not missed; the
 * subscription lingers after the last reader left (no subscribe per long-poll), then is dropped;
 * `notify` wakes local readers and publishes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StreamWaiters } from '../../src/durable-streams/stream-waiters.ts';
import type { StreamWakeBus } from '../../src/store/stream-store.ts';

class FakeBus implements StreamWakeBus {
  readonly published: string[] = [];
  readonly watches: string[] = [];
  readonly unwatches: string[] = [];
  readonly listeners = new Map<string, () => void>();
  readonly #pending: (() => void)[] = [];
  #unwatched: (() => void) | undefined;

  publish(path: string): void {
    this.published.push(path);
  }
  watch(path: string, onWake: () => void): Promise<void> {
    this.watches.push(path);
    this.listeners.set(path, onWake);
    return new Promise((resolve) => this.#pending.push(resolve));
  }
  unwatch(path: string): void {
    this.unwatches.push(path);
    this.listeners.delete(path);
    this.#unwatched?.();
  }
  onReconnect(): void {}
  /** Makes every pending subscription active. */
  activate(): void {
    for (const resolve of this.#pending.splice(0)) resolve();
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
