/**
 * Wakes live readers (long-poll, SSE) of a stream when it changes: an append, a close or a delete
 * through this server, and — when the store is shared by several nodes (`StreamWakeBus`, Redis) —
 * through any other node (PROTOCOL.md §16.9).
 *
 * - `notify` wakes this node's readers at once and publishes a wake for the other nodes.
 * - A stream's wakes are heard (subscribed) while this node has readers of it, and for `linger` ms
 *   after the last one left: a long-poll reader re-waits right after each answer, so it does not
 *   subscribe and unsubscribe once per poll.
 * - A live read calls `listen` before its first read: the subscription is active before the read,
 *   so a change made after the read is heard. (A wait that had to subscribe by itself wakes its
 *   readers once the subscription is active instead, a spurious but harmless extra read.)
 * - After the bus reconnects (wakes sent meanwhile may be lost) every local reader is woken once;
 *   nothing is lost, since readers re-read the store.
 * - Readers woken together read the store once between them (`shared`): a wake is stamped, and a
 *   page read after the stamp holds the change that woke them. A stream followed by 300 long-polls
 *   took ~900 store reads per append before (a read to wait, one after the wake, one holding a
 *   page slot); now 300 + a few.
 */
import type { StreamWakeBus } from '../store/stream-store.ts';

const DEFAULT_LINGER = 10_000;
/** How long a page read after a wake is kept for the other readers that wake woke, at most (ms). */
const PAGE_LINGER = 1_000;

interface SharedPage {
  /** The clock when its read started: it holds every change woken before. */
  stamp: number;
  page: Promise<unknown>;
  timer: NodeJS.Timeout;
}

interface Watch {
  /** Settles once the subscription is active (or failed). */
  ready: Promise<void>;
  /** Set while lingering after the last reader left. */
  linger: NodeJS.Timeout | undefined;
}

export class StreamWaiters {
  readonly #waiting = new Map<string, Set<(stamp: number) => void>>();
  readonly #bus: StreamWakeBus | undefined;
  readonly #linger: number;
  /** Streams whose wakes are heard. */
  readonly #watched = new Map<string, Watch>();
  /** Pages read after a wake, by stream and by what was read (`shared`); dropped at its next wake. */
  readonly #pages = new Map<string, Map<string, SharedPage>>();
  /** Orders wakes and shared reads (a stamp is taken from it). */
  #clock = 0;
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
    for (const [path, entry] of this.#watched) {
      clearTimeout(entry.linger);
      this.#bus?.unwatch(path);
    }
    this.#watched.clear();
  }

  /**
   * Resolves when the stream changes with the wake's stamp (for `shared`), or with 0 after
   * `timeoutMs` or when `signal` aborts.
   */
  wait(path: string, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    if (this.#closed) return Promise.resolve(0);
    return new Promise((resolve) => {
      let set = this.#waiting.get(path);
      if (!set) {
        set = new Set();
        this.#waiting.set(path, set);
      }
      const done = (stamp: number) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', aborted);
        const current = this.#waiting.get(path);
        current?.delete(wake);
        if (current?.size === 0) {
          this.#waiting.delete(path);
          this.#release(path);
        }
        resolve(stamp);
      };
      const wake = (stamp: number) => done(stamp);
      const aborted = () => done(0);
      const timer = setTimeout(() => done(0), timeoutMs);
      set.add(wake);
      void this.#hear(path);
      if (signal?.aborted) aborted();
      else signal?.addEventListener('abort', aborted, { once: true });
    });
  }

  /**
   * Hears the stream's changes from now on (resolves once subscribed; at once without a bus, when
   * already subscribed, or when the bus fails: the reader then falls back to its poll timeout).
   */
  async listen(path: string): Promise<void> {
    if (!this.#bus || this.#closed) return;
    await this.#hear(path, false);
    if (!this.#waiting.has(path)) this.#release(path);
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

  /** Streams with pages kept for their woken readers now (tests). */
  get sharing(): number {
    return this.#pages.size;
  }

  /** Streams whose wakes this node hears now (tests). */
  get watched(): number {
    return this.#watched.size;
  }

  /**
   * `read`'s page of `path` (`key` names what it reads: offset and size), or the same page another
   * reader of it read after `since`, a stamp of `wait`: a read that started after the wake holds
   * the change that woke this reader. A page is kept until the stream's next wake, and
   * `PAGE_LINGER` ms at most. Only for reads made after a wake: a request's first read reads the
   * store itself.
   */
  shared<T>(path: string, key: string, since: number, read: () => Promise<T>): Promise<T> {
    let pages = this.#pages.get(path);
    const known = pages?.get(key);
    if (known && known.stamp > since) return known.page as Promise<T>;
    if (known) clearTimeout(known.timer);
    const stamp = ++this.#clock; // taken before the read starts: it holds every change woken before
    const page = read();
    if (this.#closed) return page;
    if (!pages) {
      pages = new Map();
      this.#pages.set(path, pages);
    }
    const entry: SharedPage = {
      stamp,
      page,
      timer: setTimeout(() => this.#forget(path, key, entry), PAGE_LINGER),
    };
    entry.timer.unref();
    pages.set(key, entry);
    // a failed read is not kept: the next reader tries again
    page.catch(() => this.#forget(path, key, entry));
    return page;
  }

  #forget(path: string, key: string, entry: SharedPage): void {
    const pages = this.#pages.get(path);
    if (pages?.get(key) !== entry) return;
    clearTimeout(entry.timer);
    pages.delete(key);
    if (pages.size === 0) this.#pages.delete(path);
  }

  #wake(path: string): void {
    const stamp = ++this.#clock;
    const pages = this.#pages.get(path);
    if (pages) {
      for (const entry of pages.values()) clearTimeout(entry.timer);
      this.#pages.delete(path);
    }
    const set = this.#waiting.get(path);
    if (!set) return;
    for (const wake of [...set]) wake(stamp);
  }

  /** Subscribes the stream's wakes unless already heard; `wake`: wake its readers once active. */
  #hear(path: string, wake = true): Promise<void> {
    const bus = this.#bus;
    if (!bus) return Promise.resolve();
    const known = this.#watched.get(path);
    if (known) {
      clearTimeout(known.linger);
      known.linger = undefined;
      return known.ready;
    }
    const entry: Watch = { ready: Promise.resolve(), linger: undefined };
    entry.ready = bus
      .watch(path, () => this.#wake(path))
      .then(
        () => {
          if (wake) this.#wake(path);
        },
        // not subscribed (Redis unreachable): the readers fall back to their poll timeout
        () => {
          if (this.#watched.get(path) !== entry) return;
          clearTimeout(entry.linger);
          this.#watched.delete(path);
        },
      );
    this.#watched.set(path, entry);
    return entry.ready;
  }

  #release(path: string): void {
    const entry = this.#watched.get(path);
    if (!this.#bus || !entry || this.#closed) return;
    clearTimeout(entry.linger);
    entry.linger = setTimeout(() => {
      if (this.#watched.get(path) !== entry) return;
      this.#watched.delete(path);
      this.#bus?.unwatch(path);
    }, this.#linger);
    entry.linger.unref();
  }
}
