/**
 * A small semaphore for large reads (history pages, catch-up pages): at most `concurrency` run at
 * once, so a few readers of big messages cannot multiply the server's memory or starve the event
 * loop. Others wait in line, first come first served; when `maxWaiting` already wait, `acquire`
 * refuses with `rate_limited` (retryable) instead of queueing without bound — callers that must not
 * fail (a catch-up) pass `wait: 'always'`.
 */
import { ServerError } from './server-error.ts';

export class ReadLimiter {
  readonly #concurrency: number;
  readonly #maxWaiting: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(concurrency: number, maxWaiting: number) {
    this.#concurrency = Math.max(1, concurrency);
    this.#maxWaiting = maxWaiting;
  }

  get running(): number {
    return this.#running;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /** Resolves with a release function once a slot is free; see the module header for refusals. */
  async acquire(wait: 'bounded' | 'always' = 'bounded'): Promise<() => void> {
    if (this.#running < this.#concurrency) this.#running++;
    else {
      if (wait === 'bounded' && this.#waiting.length >= this.#maxWaiting)
        throw new ServerError(
          'rate_limited',
          `the server is busy with ${this.#running} large reads and ${this.#waiting.length} waiting; retry shortly`,
        );
      // the slot is handed over by release(): #running stays the same
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    };
  }

  /** Runs `fn` holding a slot. */
  async run<T>(fn: () => Promise<T>, wait: 'bounded' | 'always' = 'bounded'): Promise<T> {
    const release = await this.acquire(wait);
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
