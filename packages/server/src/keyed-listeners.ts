/**
 * Listeners grouped by key (a channel name): add, remove (dropping empty groups), and call them.
 *
 * A group of one listener is the listener itself, a Set from the second on: most channels have
 * one subscriber on a node (a session open in one tab), and a Set with its table is ~150 bytes,
 * kept per channel twice (deliveries and presence; bench/README, "Memory per attached channel").
 * A Set stays a Set until its group is empty, so a listener removed while its group is being
 * called is skipped, as a Set's iteration skips it.
 */
export class KeyedListeners<V> {
  readonly #groups = new Map<string, ((value: V) => void) | Set<(value: V) => void>>();

  /**
   * Adds a listener; returns the function that removes it (idempotent). Adding the same listener
   * to a key twice keeps one.
   */
  add(key: string, listener: (value: V) => void): () => void {
    const group = this.#groups.get(key);
    if (group === undefined) this.#groups.set(key, listener);
    else if (typeof group !== 'function') group.add(listener);
    else if (group !== listener) this.#groups.set(key, new Set([group, listener]));
    // bound, not a closure: no context object per listener (one per attached channel, twice)
    return this.#remove.bind(this, key, listener);
  }

  /** Calls every listener of `key` with `value`, in the order they were added. */
  emit(key: string, value: V): void {
    const group = this.#groups.get(key);
    if (group === undefined) return;
    if (typeof group === 'function') group(value);
    else for (const listener of group) listener(value);
  }

  /**
   * The listeners of `key`, for a pass that may span turns (the hub's sliced fan-out). A Set's
   * iterator stays valid while the Set changes: a listener removed before its turn is skipped, one
   * added meanwhile is reached. A group of one is a snapshot of that one listener.
   */
  listeners(key: string): Iterator<(value: V) => void> {
    const group = this.#groups.get(key);
    if (group === undefined) return [][Symbol.iterator]();
    if (typeof group === 'function') return [group][Symbol.iterator]();
    return group.values();
  }

  count(key: string): number {
    const group = this.#groups.get(key);
    if (group === undefined) return 0;
    return typeof group === 'function' ? 1 : group.size;
  }

  #remove(key: string, listener: (value: V) => void): void {
    const group = this.#groups.get(key);
    if (group === undefined) return;
    if (typeof group === 'function') {
      if (group === listener) this.#groups.delete(key);
    } else if (group.delete(listener) && group.size === 0) this.#groups.delete(key);
  }
}
