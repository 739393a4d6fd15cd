/**
 * Deterministic clock and timers for state-machine tests: time moves only when a test calls
 * `advance`, and due timers run in order of their due time.
 */
import type { Timers } from '../../src/timers.ts';

interface Scheduled {
  id: number;
  at: number;
  fn: () => void;
}

export class FakeTimers implements Timers {
  #now: number;
  #nextId = 0;
  #scheduled: Scheduled[] = [];

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  /** How many timers were ever set. */
  get made(): number {
    return this.#nextId;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    this.#nextId += 1;
    // as in Node and browsers: a delay beyond a signed 32-bit int of ms runs after 1 ms
    const delay = ms > 2_147_483_647 ? 1 : Math.max(0, ms);
    this.#scheduled.push({ id: this.#nextId, at: this.#now + delay, fn });
    return this.#nextId;
  }

  clearTimeout(handle: unknown): void {
    this.#scheduled = this.#scheduled.filter((t) => t.id !== handle);
  }

  /** Delays (from now) of the timers still pending, soonest first. */
  pending(): number[] {
    return this.#scheduled.map((t) => t.at - this.#now).sort((a, b) => a - b);
  }

  /** Moves time forward by `ms`, running every timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = this.#scheduled.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.#scheduled = this.#scheduled.filter((t) => t !== due);
      this.#now = due.at;
      due.fn();
    }
    this.#now = end;
  }
}
