/**
 * Wakes live readers (long-poll, SSE) of a stream when it changes: an append, a close or a delete
 * through this server, and — when the store is shared by several nodes (`StreamWakeBus`, Redis) —
 * through any other node (PROTOCOL.md §16.9).
 *
 * - `notify` wakes this node's readers at once and publishes a wake for the other nodes.
 * - A stream's wakes are heard (subscribed) while this node has readers of it, and for `linger` ms
 *   after the last one left: a long-poll reader re-waits right after each answer, so it does not
 *   subscribe and unsubscribe once per poll.
 * - A new subscription wakes the stream's readers once it is active: a change made between their
 *   read and the subscription would otherwise go unheard until their timeout.
 * - After the bus reconnects (wakes sent meanwhile may be lost) every local reader is woken once;
 *   nothing is lost, since readers re-read the store.
 */
import type { StreamWakeBus } from '../store/stream-store.ts';

const DEFAULT_LINGER = 10_000;

export class StreamWaiters {
  readonly #waiting = new Map<string, Set<() => void>>();
  readonly #bus: StreamWakeBus | undefined;
  readonly #linger: number;
  /** Streams whose wakes are heard; a timer while lingering after the last reader left. */
  readonly #watched = new Map<string, NodeJS.Timeout | undefined>();
  #closed = false;

  constructor(bus?: StreamWakeBus, linger = DEFAULT_LINGER) {
    this.#bus = bus;
    this.#linger = linger;
    bus?.onReconnect(() => {
      for (const path of [...this.#waiting.keys()]) this.#wake(path);
    });
  }

  /** True once the server is shutting down: live reads end instead of waiting. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Ends every wait now and every later one at once (shutdown). */
  close(): void {
    this.#closed = true;
    for (const path of [...this.#waiting.keys()]) this.#wake(path);
    for (const [path, timer] of this.#watched) {
      clearTimeout(timer);
      this.#bus?.unwatch(path);
    }
    this.#watched.clear();
  }

  /** Resolves true when the stream changes, false after `timeoutMs` or when `signal` aborts. */
  wait(path: string, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      let set = this.#waiting.get(path);
      if (!set) {
        set = new Set();
        this.#waiting.set(path, set);
      }
      const done = (changed: boolean) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', aborted);
        const current = this.#waiting.get(path);
        current?.delete(wake);
        if (current?.size === 0) {
          this.#waiting.delete(path);
          this.#release(path);
        }
        resolve(changed);
      };
      const wake = () => done(true);
      const aborted = () => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      set.add(wake);
      this.#hear(path);
      if (signal?.aborted) aborted();
      else signal?.addEventListener('abort', aborted, { once: true });
    });
  }

  /** The stream changed through this node: wake its readers here and on the other nodes. */
  notify(path: string): void {
    this.#wake(path);
    this.#bus?.publish(path);
  }

  get size(): number {
    let n = 0;
    for (const set of this.#waiting.values()) n += set.size;
    return n;
  }

  /** Streams whose wakes this node hears now (tests). */
  get watched(): number {
    return this.#watched.size;
  }

  #wake(path: string): void {
    const set = this.#waiting.get(path);
    if (!set) return;
    for (const wake of [...set]) wake();
  }

  #hear(path: string): void {
    const bus = this.#bus;
    if (!bus) return;
    if (this.#watched.has(path)) {
      clearTimeout(this.#watched.get(path));
      this.#watched.set(path, undefined);
      return;
    }
    this.#watched.set(path, undefined);
    bus
      .watch(path, () => this.#wake(path))
      .then(
        () => this.#wake(path),
        // not subscribed (Redis unreachable): the readers fall back to their poll timeout
        () => {
          clearTimeout(this.#watched.get(path));
          this.#watched.delete(path);
        },
      );
  }

  #release(path: string): void {
    if (!this.#bus || !this.#watched.has(path) || this.#closed) return;
    const timer = setTimeout(() => {
      this.#watched.delete(path);
      this.#bus?.unwatch(path);
    }, this.#linger);
    timer.unref();
    this.#watched.set(path, timer);
  }
}
