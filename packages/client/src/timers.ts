/**
 * The clock and timers the client uses, injectable so that every timing rule (backoff, suspension,
 * dead-connection detection) can be tested without waiting in real time.
 */

export type TimerHandle = unknown;

export interface Timers {
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  /** Milliseconds since 1970 (like `Date.now()`). */
  now(): number;
}

export const systemTimers: Timers = {
  // Timers are not unref'd: a client waiting to reconnect with publishes pending must keep a Node
  // process alive, like an open socket does. `close()` clears them all.
  setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof globalThis.setTimeout>),
  now: () => Date.now(),
};

/** One named timer slot: setting it again replaces the previous timer. */
export class TimerSlot {
  readonly #timers: Timers;
  #handle: TimerHandle | undefined;

  constructor(timers: Timers) {
    this.#timers = timers;
  }

  /** Runs `fn` after `ms` (a delay already past — a late event loop — runs it on the next turn). */
  set(ms: number, fn: () => void): void {
    this.clear();
    const handle = this.#timers.setTimeout(
      () => {
        if (this.#handle !== handle) return;
        this.#handle = undefined;
        fn();
      },
      Math.max(0, ms),
    );
    this.#handle = handle;
  }

  clear(): void {
    if (this.#handle === undefined) return;
    this.#timers.clearTimeout(this.#handle);
    this.#handle = undefined;
  }

  get pending(): boolean {
    return this.#handle !== undefined;
  }
}
