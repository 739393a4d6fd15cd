/**
 * A pass over many items that leaves room for I/O: `visit` runs on `size` items, then the rest
 * waits for the next turn of the event loop (`setImmediate`, after the poll phase), and so on.
 *
 * A heartbeat round writes a frame and a ping to every connection of the node: ~40 µs each on
 * loopback, so 0.4 s for 10,000 connections and 4 s for 100,000 in one synchronous loop, during
 * which no publish is read or delivered. In slices of 500 a delivery waits for at most one slice
 * (~20 ms) instead of the whole round.
 *
 * The first slice runs at once, inside the call: a pass over `size` items or fewer behaves exactly
 * as a plain loop, and the call returns `undefined` (nothing is left running). Otherwise it returns
 * the pass, whose `cancel` stops it between slices (then `done` never runs). `done` runs once,
 * after the last item.
 */
export interface SlicedPass {
  cancel(): void;
}

export function forEachInSlices<T>(
  items: readonly T[],
  size: number,
  visit: (item: T) => void,
  done: () => void,
): SlicedPass | undefined {
  if (!(size >= 1)) throw new Error(`slice size must be at least 1, got ${size}`);
  let next: NodeJS.Immediate | undefined;
  let cancelled = false;
  const step = (from: number) => {
    next = undefined;
    if (cancelled) return;
    const end = Math.min(from + size, items.length);
    for (let i = from; i < end; i++) visit(items[i] as T);
    if (end < items.length) next = setImmediate(step, end);
    else done();
  };
  step(0);
  if (next === undefined) return undefined; // finished inside the call
  return {
    cancel() {
      cancelled = true;
      if (next !== undefined) clearImmediate(next);
      next = undefined;
    },
  };
}

/**
 * `forEachInSlices` over an iterator: `visit` runs on `size` items a turn until it is done, the
 * first slice inside the call; `done` runs once, after the last item: inside the call when the
 * iterator held fewer than `size` items, else in the turn that found it done (one more turn when
 * the count is a multiple of `size`: an item is never taken ahead of its turn). Used on a Set's live
 * iterator (a channel's subscribers, `KeyedListeners.listeners`): an item removed before its turn
 * is skipped, one added is reached.
 */
export function forEachOfInSlices<T>(
  items: Iterator<T>,
  size: number,
  visit: (item: T) => void,
  done: () => void,
): void {
  if (!(size >= 1)) throw new Error(`slice size must be at least 1, got ${size}`);
  const step = (): void => {
    for (let n = 0; n < size; n++) {
      const next = items.next();
      if (next.done) {
        done();
        return;
      }
      visit(next.value);
    }
    setImmediate(step);
  };
  step();
}
