/** Listeners grouped by key (a channel name): add, remove (dropping empty groups), and iterate. */
export class KeyedListeners<L> {
  readonly #groups = new Map<string, Set<L>>();

  /** Adds a listener; returns the function that removes it. */
  add(key: string, listener: L): () => void {
    let group = this.#groups.get(key);
    if (!group) {
      group = new Set();
      this.#groups.set(key, group);
    }
    group.add(listener);
    return () => {
      const current = this.#groups.get(key);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) this.#groups.delete(key);
    };
  }

  get(key: string): ReadonlySet<L> | undefined {
    return this.#groups.get(key);
  }

  count(key: string): number {
    return this.#groups.get(key)?.size ?? 0;
  }
}
