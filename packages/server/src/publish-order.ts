/**
 * One connection's publishes reach the store in the order they were sent (PROTOCOL.md §7). Most
 * publishes wait for nothing between their frame and their append, so they are stored in frame
 * order by construction. On Redis a publish that takes a lease (counted across nodes) or ends one
 * (marked where every node sees it) waits for Redis first; a publish sent after it must wait with
 * it instead of being stored first.
 *
 * Every publish of the connection calls `enter` synchronously, in frame order. While nothing waits
 * it gets no turn at all (no promise, no bookkeeping). A publish that will wait holds a turn: it
 * extends the tail that later publishes wait on, and lets it go once its append is issued. A
 * publish entered while the tail is set waits for it before its append. Continuations of one
 * promise run in the order they were registered, so publishes waiting on the same tail are
 * issued in frame order too; the tail is dropped once every publish that saw it has passed.
 */
export interface Turn {
  /** Resolves once every publish entered before this one has issued its append. */
  readonly before: Promise<void> | undefined;
  /** This publish issued its append (or failed before it): later ones may go. Idempotent. */
  leave(): void;
}

export class PublishOrder {
  #tail: Promise<void> | undefined;
  /** Publishes entered with a turn that have not left it yet. */
  #pending = 0;

  /**
   * Called as a publish starts, synchronously and in frame order. `waits`: it will wait for
   * something (Redis) before its append. Undefined: nothing to wait for and nobody waits on it.
   */
  enter(waits: boolean): Turn | undefined {
    const before = this.#tail;
    if (!waits && before === undefined) return undefined;
    this.#pending++;
    let release: (() => void) | undefined;
    if (waits) {
      const mine = new Promise<void>((resolve) => {
        release = resolve;
      });
      this.#tail = before === undefined ? mine : before.then(() => mine);
    }
    let left = false;
    return {
      before,
      leave: () => {
        if (left) return;
        left = true;
        release?.();
        if (--this.#pending === 0) this.#tail = undefined;
      },
    };
  }
}
