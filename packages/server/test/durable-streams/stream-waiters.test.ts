/**
 * StreamWaiters over a wake bus (a fake one, driven by the test): a new subscription wakes the
 * stream's readers once it is active, so a change made before it was active is not missed; the
 * subscription lingers after the last reader left (no subscribe per long-poll), then is dropped;
 * `notify` wakes local readers and publishes. Also (from the mutation sweep of stream-waiters.ts): a
 * wait ends 0 on its timeout, its abort and after close; a listen after close subscribes nothing;
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
  assert.ok((await waited) > 0, 'woken by the subscription becoming active, not by its timeout');
  waiters.close();
});

test('the subscription lingers after the last reader, then is dropped; notify publishes', async () => {
  const bus = new FakeBus();
  const waiters = new StreamWaiters(bus, 60_000);
  const first = waiters.wait('s', 30_000);
  bus.activate();
  assert.ok((await first) > 0);
  // a long-poll client's next request comes a round trip later
  await new Promise((resolve) => setTimeout(resolve, 20));
  const second = waiters.wait('s', 30_000);
  assert.deepEqual(bus.watches, ['s'], 'a reader re-waiting within the linger does not subscribe again');
  bus.listeners.get('s')?.();
  assert.ok((await second) > 0, 'a wake from the bus wakes the reader');
  const third = waiters.wait('t', 30_000);
  waiters.notify('t');
  assert.ok((await third) > 0);
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
  assert.ok((await waited) > 0);
  waiters.close();
});

const turn = () => new Promise((resolve) => setImmediate(resolve));

test('a wait ends 0 on its timeout or its abort, and at once after close; a listen after close subscribes nothing', async () => {
  const bus = new FakeBus();
  const waiters = new StreamWaiters(bus, 60_000);
  assert.equal(await waiters.wait('s', 1), 0, 'timed out: no change');
  const abort = new AbortController();
  const aborted = waiters.wait('s', 30_000, abort.signal);
  abort.abort();
  assert.equal(await aborted, 0, 'aborted: no change');
  assert.equal(waiters.size, 0);
  waiters.close();
  assert.equal(await waiters.wait('t', 30_000), 0, 'after close: at once, no change');
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
  assert.ok((await waited) > 0);

  // not subscribed at all: the reader falls back to its timeout, and ends cleanly there
  const alone = waiters.wait('t', 20);
  bus.fail();
  assert.equal(await alone, 0);
  assert.equal(waiters.size, 0);
  waiters.close();
});

test('readers woken by one wake share a page read after it; a read from before the wake, or a later wake, is not shared', async () => {
  const waiters = new StreamWaiters();
  let reads = 0;
  const read = () => Promise.resolve(++reads);
  // a page read before the wake (a reader not woken: its own first read) is no page for woken readers
  const before = await waiters.shared('s', 'k', 0, read);
  const first = waiters.wait('s', 30_000);
  const second = waiters.wait('s', 30_000);
  waiters.notify('s');
  const [a, b] = await Promise.all([first, second]);
  assert.ok(a > 0 && a === b, 'one wake, one stamp');
  assert.equal(await waiters.shared('s', 'k', a, read), before + 1, 'read again after the wake');
  assert.equal(await waiters.shared('s', 'k', b, read), before + 1, 'the second reader shares it');
  assert.equal(await waiters.shared('s', 'other', b, read), before + 2, 'another offset reads on its own');
  assert.equal(await waiters.shared('t', 'k', b, read), before + 3, 'another stream reads on its own');
  const third = waiters.wait('s', 30_000);
  waiters.notify('s');
  const c = await third;
  assert.ok(c > a);
  assert.equal(await waiters.shared('s', 'k', c, read), before + 4, 'a later wake reads again');
  // a failed read is not kept
  waiters.notify('t'); // drops 't's page: what is kept below is only 's'
  const fourth = waiters.wait('s', 30_000);
  waiters.notify('s');
  const d = await fourth;
  await assert.rejects(waiters.shared('s', 'k', d, () => Promise.reject(new Error('store down'))));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(waiters.sharing, 0, 'the failed page is forgotten, and its stream with it');
  assert.equal(await waiters.shared('s', 'k', d, read), before + 5, 'tried again after a failure');
  assert.equal(waiters.sharing, 1);
  waiters.notify('s');
  assert.equal(waiters.sharing, 0, "a wake drops the stream's pages");
  waiters.close();
});
