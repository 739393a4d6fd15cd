/**
 * Reference counting with a deferred release, so that React's StrictMode (mount → unmount → mount
 * in one synchronous pass) and quick remounts never tear down what the next mount uses at once:
 *
 *   retain ─▶ count 1 ─▶ release ─▶ count 0, release scheduled (a macrotask later)
 *                                     └─ retain before it runs ─▶ cancelled, nothing happened
 *
 * Used for the provider's own client (closed only when the provider really unmounts), presence
 * (entered once, left once) and shared sessions (closed when their last hook goes).
 */

export class DeferredRelease {
  #count = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #release: () => void;

  constructor(release: () => void) {
    this.#release = release;
  }

  get held(): boolean {
    return this.#count > 0;
  }

  /** Returns true when this retain is the first (nothing held, nothing pending). */
  retain(): boolean {
    this.#count++;
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      return false;
    }
    return this.#count === 1;
  }

  release(): void {
    if (this.#count === 0) return;
    this.#count--;
    if (this.#count > 0) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#count === 0) this.#release();
    }, 0);
  }
}
