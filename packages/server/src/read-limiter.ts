/**
 * A small semaphore for large reads (history pages, catch-up pages): at most `concurrency` run at
 * once, so a few readers of big messages cannot multiply the server's memory or starve the event
 * loop. Others wait in line, first come first served; when `maxWaiting` already wait, `acquire`
 * refuses with `rate_limited` (retryable) instead of queueing without bound — callers that must not
 * fail (a catch-up) pass `wait: 'always'`.
 *
 * Shares per owner (a holder, `holderKey`: key + clientId, or one token without a clientId, so one
 * anonymous visitor's reads are not every other anonymous visitor's of the key). A history page
 * holds its slot while it is streamed, at the pace its reader takes it, so a client that asks for
 * pages and never reads them held every slot, and every other client's history was refused. A read
 * that names its owner runs only while that owner holds fewer than half the slots, and waits only
 * while it has fewer than a quarter of the queue; when a slot frees, the first waiter whose owner is
 * under its share takes it. So one holder can take at most half the slots and a quarter of the line.
 *
 * `share: 'contended'` (catch-up pages) holds owners to their half only while others wait: a slot is
 * held for the store read alone, not while a reader takes the page, so an owner may use every idle
 * slot, and when one frees, a waiter of an owner under its share goes first. One holder's many
 * connections catching up at once then delay another's catch-up by one read, not by their queue.
 */
import { ServerError } from './server-error.ts';

/** An owner's reads: running, and waiting in line. */
interface Share {
  running: number;
  waiting: number;
}

interface Waiter {
  owner: string | undefined;
  resolve: () => void;
}

export class ReadLimiter {
  readonly #concurrency: number;
  readonly #maxWaiting: number;
  /** Slots one owner may hold at once, and places it may take in the line. */
  readonly #perOwner: number;
  readonly #perOwnerWaiting: number;
  #running = 0;
  readonly #waiting: Waiter[] = [];
  /** Running and waiting reads per owner (owners with none are not kept). */
  readonly #held = new Map<string, Share>();

  /** Whether an owner past its share may take a slot nobody under theirs waits for. */
  readonly #strict: boolean;

  constructor(concurrency: number, maxWaiting: number, share: 'strict' | 'contended' = 'strict') {
    this.#strict = share === 'strict';
    this.#concurrency = Math.max(1, concurrency);
    this.#maxWaiting = maxWaiting;
    this.#perOwner = Math.max(1, Math.floor(this.#concurrency / 2));
    this.#perOwnerWaiting = Math.max(1, Math.floor(maxWaiting / 4));
  }

  get running(): number {
    return this.#running;
  }

  /** Owners with reads running or waiting: the others are forgotten (tests). */
  get owners(): number {
    return this.#held.size;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Resolves with a release function once a slot is free; see the module header for refusals.
   * `owner`: who reads (its share is bounded); none for the server's own reads.
   */
  async acquire(wait: 'bounded' | 'always' = 'bounded', owner?: string): Promise<() => void> {
    const held = owner === undefined ? undefined : this.#heldBy(owner);
    if (this.#running < this.#concurrency && this.#mayTake(held)) {
      this.#running++;
      if (held) held.running++;
    } else {
      const busy = wait === 'bounded' ? this.#busy(held) : undefined;
      if (busy !== undefined) {
        this.#forgetIdle(owner);
        throw new ServerError('rate_limited', busy);
      }
      if (held) held.waiting++;
      // the slot is handed over by #handOver (which counts it to the owner): #running stays the same
      await new Promise<void>((resolve) => this.#waiting.push({ owner, resolve }));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (held) held.running--;
      this.#forgetIdle(owner);
      this.#handOver();
    };
  }

  /** Runs `fn` holding a slot. */
  async run<T>(fn: () => Promise<T>, wait: 'bounded' | 'always' = 'bounded', owner?: string): Promise<T> {
    const release = await this.acquire(wait, owner);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Why a bounded read cannot wait in line, if it cannot. */
  #busy(held: Share | undefined): string | undefined {
    if (this.#waiting.length >= this.#maxWaiting)
      return `the server is busy with ${this.#running} large reads and ${this.#waiting.length} waiting; retry shortly`;
    if (held && held.waiting >= this.#perOwnerWaiting)
      return `this client already has ${held.running} large reads running and ${held.waiting} waiting; retry once they are done`;
    return undefined;
  }

  #mayRun(held: Share | undefined): boolean {
    return held === undefined || held.running < this.#perOwner;
  }

  /**
   * Whether a read may take a free slot now: under its owner's share, or shares are held only when
   * contended (then a free slot means nobody waits).
   */
  #mayTake(held: Share | undefined): boolean {
    return this.#mayRun(held) || !this.#strict;
  }

  /**
   * A slot was freed: to the first waiter whose owner is under its share; else, unless shares are
   * strict, to the first waiter; else it is free.
   */
  #handOver(): void {
    let i = this.#waiting.findIndex((w) => w.owner === undefined || this.#mayRun(this.#held.get(w.owner)));
    if (i < 0 && !this.#strict && this.#waiting.length > 0) i = 0;
    if (i < 0) {
      this.#running--;
      return;
    }
    const [next] = this.#waiting.splice(i, 1);
    // counted now, not when the waiter's code resumes: a second slot freed in the same turn must
    // see this owner's share as taken
    const held = next!.owner === undefined ? undefined : this.#held.get(next!.owner);
    if (held) {
      held.waiting--;
      held.running++;
    }
    next!.resolve();
  }

  /** Drops the bookkeeping of an owner with nothing running or waiting (kept only while in use). */
  #forgetIdle(owner: string | undefined): void {
    if (owner === undefined) return;
    const held = this.#held.get(owner);
    if (held && held.running === 0 && held.waiting === 0) this.#held.delete(owner);
  }

  #heldBy(owner: string): Share {
    let held = this.#held.get(owner);
    if (!held) {
      held = { running: 0, waiting: 0 };
      this.#held.set(owner, held);
    }
    return held;
  }
}
