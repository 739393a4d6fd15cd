/**
 * A token bucket: `rate` tokens per second, holding at most `burst`. Taking is all-or-nothing, so a
 * refused batch costs nothing and a client that slows down is served again at once. Time is
 * injectable so budgets are testable without waiting.
 */
export class TokenBucket {
  readonly rate: number;
  readonly burst: number;
  #tokens: number;
  #at: number;
  readonly #now: () => number;

  constructor(rate: number, burst: number = rate, now: () => number = Date.now) {
    this.rate = rate;
    this.burst = Math.max(burst, 1);
    this.#tokens = this.burst;
    this.#now = now;
    this.#at = now();
  }

  /** Takes `count` tokens if all are there; returns whether it did. */
  take(count = 1): boolean {
    if (!this.holds(count)) return false;
    this.#tokens -= count;
    return true;
  }

  /**
   * Whether `count` tokens could be taken now. With `debt`, a count above the burst can be when the
   * bucket is full: one large item passes, and the bucket refills from below zero.
   */
  holds(count: number, debt = false): boolean {
    this.#refill();
    return this.#tokens >= (debt ? Math.min(count, this.burst) : count);
  }

  /** Takes `count` tokens that `holds` said are there (in debt, the bucket goes below zero). */
  spend(count: number): void {
    this.#tokens -= count;
  }

  #refill(): void {
    const now = this.#now();
    if (now > this.#at)
      this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.rate);
    this.#at = now;
  }
}
