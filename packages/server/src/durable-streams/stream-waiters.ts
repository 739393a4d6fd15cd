/**
 * Wakes live readers (long-poll, SSE) of a stream when it changes: an append, a close or a delete
 * through this server. In-process only, like the LocalHub: with several nodes over one store, each
 * node would need the store's bus to hear another node's appends (PROTOCOL.md §16.9).
 */
export class StreamWaiters {
  readonly #waiting = new Map<string, Set<() => void>>();
  #closed = false;

  /** True once the server is shutting down: live reads end instead of waiting. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Ends every wait now and every later one at once (shutdown). */
  close(): void {
    this.#closed = true;
    for (const path of [...this.#waiting.keys()]) this.notify(path);
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
        if (current?.size === 0) this.#waiting.delete(path);
        resolve(changed);
      };
      const wake = () => done(true);
      const aborted = () => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      set.add(wake);
      if (signal?.aborted) aborted();
      else signal?.addEventListener('abort', aborted, { once: true });
    });
  }

  notify(path: string): void {
    const set = this.#waiting.get(path);
    if (!set) return;
    for (const wake of [...set]) wake();
  }

  get size(): number {
    let n = 0;
    for (const set of this.#waiting.values()) n += set.size;
    return n;
  }
}
