/**
 * A minimal typed event emitter that works the same in browsers and Node. A listener that throws
 * does not stop the others and does not break the connection. Its error goes to the client's
 * `onListenerError` when there is one; otherwise it is re-thrown asynchronously so it still surfaces
 * (uncaught exception / console) where the application can see it — as Node's EventEmitter would.
 */

export type Listener<T> = (event: T) => void;

/** Receives what a listener threw, and the event it was listening to (`message`, `statechange`…). */
export type ListenerErrorHandler = (error: unknown, event: string) => void;

/**
 * What becomes of an exception a listener threw: `handler` gets it, when there is one. Without one —
 * or when the handler throws too (its own error, then) — it is re-thrown in a microtask: out of the
 * frame being dispatched, so the other listeners and the connection go on, yet not swallowed. In
 * Node that is an `uncaughtException`, which ends a process that does not handle it.
 */
export function reportListenerError(
  handler: ListenerErrorHandler | undefined,
  error: unknown,
  event: string,
): void {
  let thrown = error;
  if (handler) {
    try {
      handler(error, event);
      return;
    } catch (err) {
      thrown = err;
    }
  }
  queueMicrotask(() => {
    throw thrown;
  });
}

export class Emitter<Events extends Record<string, unknown>> {
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>();
  readonly #onListenerError: ListenerErrorHandler | undefined;

  /** `onListenerError`: where a listener's exception goes (see `reportListenerError`). */
  constructor(onListenerError?: ListenerErrorHandler) {
    this.#onListenerError = onListenerError;
  }

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  /** Adds a listener called at most once. */
  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const off = this.on(event, (value) => {
      off();
      listener(value);
    });
    return off;
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.#listeners.get(event)?.delete(listener as Listener<never>);
  }

  emit<K extends keyof Events>(event: K, value: Events[K]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        (listener as Listener<Events[K]>)(value);
      } catch (err) {
        reportListenerError(this.#onListenerError, err, String(event));
      }
    }
  }

  /** Whether any listener is registered for `event`. */
  has(event: keyof Events): boolean {
    return (this.#listeners.get(event)?.size ?? 0) > 0;
  }
}
