/**
 * The bytes a token holder may send this node per second — WebSocket frames, the bodies of
 * upstream POSTs (HTTP transports), of REST publishes and of Durable Streams writes — before any of
 * them is parsed (PROTOCOL.md §10, `maxInboundBytesRate`). Parsing and checking a frame costs the
 * event loop in proportion to its size (tens of ms for a frame of `maxFrameSize` whose JSON is a
 * few hundred thousand small values), and every other budget is taken after that work: without
 * this one, a token holder sending large frames or bodies as fast as its link allows held the event
 * loop from everyone.
 *
 * Over budget, nothing is refused: the connection's socket (or the request's body) stops being read
 * until the identity's bucket has refilled, so TCP slows the sender down and no frame is lost. A
 * POST forwarded from another node (Redis) was read there; it waits here, on the node holding the
 * connection, for as long as its bytes ask before its frames are handled. One bucket per holder
 * (`holderKey`: key + clientId, or one token without a clientId — one anonymous visitor cannot stop
 * the others' sockets being read), shared by its connections and requests on this node; the event
 * loop is per node, so the budget is too. A bucket outlives its last user until it has refilled, so requests one after the other draw on one bucket, not a fresh burst each. API
 * keys (trusted backends) are not counted.
 */

import type { BudgetIdentity } from './identity-budgets.ts';

/** How long (ms) to stop reading after `bytes` more arrived; 0 to read on. */
export type Pace = (bytes: number) => number;

/** Tells `pace` (if any) that `bytes` more arrived, and waits as long as it says before reading on. */
export async function paced(pace: Pace | undefined, bytes: number): Promise<void> {
  const wait = pace?.(bytes) ?? 0;
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
}

/**
 * Reads a request body of `identity` through `read`, at the identity's pace when it is counted (a
 * token identity, with `maxInboundBytesRate` on), else without one.
 */
export type PacedRead = <T>(identity: BudgetIdentity, read: (pace?: Pace) => Promise<T>) => Promise<T>;

/**
 * Request bodies and WebSocket messages of one holder (`holderKey`: a token without a clientId is
 * one of its own) read at once on a node; more wait, unread,
 * for one to finish. Each is buffered until it is whole, so bodies left part-sent (until Node's
 * `requestTimeout`, 300 s) would otherwise hold up to `maxHttpBody` each, and messages begun on its
 * WebSocket connections (for as long as they stay open) up to `maxFrameSize` each, as many as the
 * identity opened.
 */
export const BODIES_PER_IDENTITY = 8;

interface Bucket {
  level: number;
  at: number;
  /** Connections and requests of the identity open on this node. */
  users: number;
  /** Request bodies and WebSocket messages being read now (at most `BODIES_PER_IDENTITY`). */
  reading: number;
  /** Those waiting for one of them to finish, first come first served. */
  waiting: SlotWaiter[];
}

/** Waits for one of its identity's reading slots: `granted` is called when one is handed to it. */
export interface SlotWaiter {
  granted(): void;
}

export class InboundBudget {
  readonly #buckets = new Map<string, Bucket>();
  /** Buckets with no user, by when they are full again (kept till then), in the order they were left. */
  readonly #idle = new Map<string, number>();
  readonly #rate: number;
  readonly #burst: number;
  readonly #now: () => number;
  readonly #onThrottle: () => void;
  readonly #onWait: () => void;

  /**
   * `rate` bytes per second after a burst of `burst` bytes; `onThrottle` hears each read that
   * leaves an identity over its budget, `onWait` each body or WebSocket message that waits for one
   * of its identity's `BODIES_PER_IDENTITY` (metrics); `now` in ms (a clock for tests).
   */
  constructor(
    rate: number,
    burst: number,
    hooks: { onThrottle?: () => void; onWait?: () => void; now?: () => number } = {},
  ) {
    this.#rate = rate;
    this.#burst = burst;
    this.#onThrottle = hooks.onThrottle ?? (() => {});
    this.#onWait = hooks.onWait ?? (() => {});
    this.#now = hooks.now ?? (() => performance.now());
  }

  /** A connection or request of `key` began. */
  hold(key: string): void {
    this.#forgetFull();
    const bucket = this.#buckets.get(key);
    if (bucket) {
      bucket.users++;
      this.#idle.delete(key);
    } else this.#buckets.set(key, { level: this.#burst, at: this.#now(), users: 1, reading: 0, waiting: [] });
  }

  /** A connection or request of `key` ended: its bucket is dropped once it has refilled. */
  release(key: string): void {
    const bucket = this.#buckets.get(key);
    if (bucket === undefined || --bucket.users > 0) return;
    this.#refill(bucket);
    this.#idle.delete(key);
    this.#idle.set(key, bucket.at + ((this.#burst - bucket.level) * 1000) / this.#rate);
    this.#forgetFull();
  }

  /**
   * Reads a request's body at `key`'s pace, as one more user of its bucket while it reads; with
   * `BODIES_PER_IDENTITY` of its bodies (or part-received WebSocket messages) being read already,
   * only once one of them has finished.
   */
  async reading<T>(key: string, read: (pace: Pace) => Promise<T>): Promise<T> {
    this.hold(key);
    try {
      const waiter = { granted: () => {} };
      const handed = new Promise<void>((resolve) => {
        waiter.granted = resolve;
      });
      if (!this.enter(key, waiter)) await handed;
      try {
        return await read((bytes) => this.take(key, bytes));
      } finally {
        this.leave(key);
      }
    } finally {
      this.release(key);
    }
  }

  /**
   * Takes one of `key`'s `BODIES_PER_IDENTITY` reading slots (a body, or a WebSocket message begun
   * and not yet whole) and returns true; with all of them taken, returns false and calls
   * `waiter.granted()` once a slot is handed to it, first come first served. `key` must be held
   * (`hold`).
   */
  enter(key: string, waiter: SlotWaiter): boolean {
    const bucket = this.#buckets.get(key)!;
    if (bucket.reading < BODIES_PER_IDENTITY) {
      bucket.reading++;
      return true;
    }
    this.#onWait();
    bucket.waiting.push(waiter);
    return false;
  }

  /** Gives back a slot taken by `enter` (or handed to it): to the first waiting, else free. */
  leave(key: string): void {
    const bucket = this.#buckets.get(key);
    if (bucket === undefined) return;
    const next = bucket.waiting.shift();
    if (next) next.granted();
    else bucket.reading--;
  }

  /** `waiter`, waiting for a slot of `key`, no longer wants one. */
  cancel(key: string, waiter: SlotWaiter): void {
    const waiting = this.#buckets.get(key)?.waiting;
    const at = waiting?.indexOf(waiter) ?? -1;
    if (at >= 0) waiting!.splice(at, 1);
  }

  /**
   * Takes `bytes` just received; returns how long (ms) the reading must stop for the bucket to be
   * back at zero, or 0 while the identity is within its budget.
   */
  take(key: string, bytes: number): number {
    const bucket = this.#buckets.get(key);
    if (bucket === undefined) return 0;
    this.#refill(bucket);
    bucket.level -= bytes;
    if (bucket.level >= 0) return 0;
    this.#onThrottle();
    return Math.ceil((-bucket.level * 1000) / this.#rate);
  }

  /** Identities with a bucket (for the metric and tests). */
  get size(): number {
    this.#forgetFull();
    return this.#buckets.size;
  }

  #refill(bucket: Bucket): void {
    const now = this.#now();
    bucket.level = Math.min(this.#burst, bucket.level + ((now - bucket.at) * this.#rate) / 1000);
    bucket.at = now;
  }

  /**
   * Drops the unused buckets that are full again (a new one would be the same). Checked in the
   * order they were left, up to the first that is not full yet: one left later may wait a little
   * longer behind it, which only keeps it longer.
   */
  #forgetFull(): void {
    const now = this.#now();
    for (const [key, fullAt] of this.#idle) {
      if (fullAt > now) return;
      this.#idle.delete(key);
      this.#buckets.delete(key);
    }
  }
}
