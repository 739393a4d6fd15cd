/**
 * The catch-ups of one connection waiting for room in its transport's send queue
 * (`Connection.#drained`). They are woken together by one signal: the transport's drain
 * (`TransportSink.whenDrained`, asked once per round whatever the number of waiters), the end of
 * the connection, or, for one of them, the end of its attachment. Each woken waiter looks at the
 * queue again and waits anew if it is still full.
 *
 * Before, each waiter polled the queue on its own 5 ms timer: 500 attaches on a connection whose
 * reader stopped ran 100,000 timers a second, and 8 such connections took most of the event loop
 * (review-ws #3).
 */
export class DrainWaiters {
  /** Each waiter's wake-up, by its key (the `current` check of the catch-up that waits). */
  readonly #waiting = new Map<object, () => void>();
  /** True while the transport has been asked for a drain that has not come yet. */
  #armed = false;
  /** Made once: what the transport calls when its queue drained. */
  readonly #drained = (): void => {
    this.#armed = false;
    this.wakeAll();
  };

  /** Waiters now. */
  get size(): number {
    return this.#waiting.size;
  }

  /**
   * Resolves at the next drain, `wakeAll` or `wake(key)`. `arm` asks the transport for the drain;
   * it is called only when no drain was asked for since the last one came.
   */
  wait(key: object, arm: (drained: () => void) => void): Promise<void> {
    const woken = new Promise<void>((resolve) => {
      const before = this.#waiting.get(key);
      this.#waiting.set(
        key,
        before === undefined
          ? resolve
          : () => {
              before();
              resolve();
            },
      );
    });
    if (!this.#armed) {
      this.#armed = true;
      arm(this.#drained);
    }
    return woken;
  }

  /** Wakes the waiter of `key` (its catch-up ended), if it waits. */
  wake(key: object): void {
    const resolve = this.#waiting.get(key);
    if (resolve === undefined) return;
    this.#waiting.delete(key);
    resolve();
  }

  /** Wakes every waiter: the queue drained, or the connection ended. */
  wakeAll(): void {
    if (this.#waiting.size === 0) return;
    const all = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const resolve of all) resolve();
  }
}
