/**
 * Publish budgets per identity (PROTOCOL.md §10): one token bucket per key + clientId, shared by
 * REST and by every connection of that identity, so opening more connections (or switching to
 * REST) buys no more throughput. Token identities get `maxPublishRate` operations per second,
 * API-key identities `maxKeyPublishRate` (0 = unlimited: trusted backends and agents). Anonymous
 * tokens of one key share one budget.
 *
 * The map of buckets is bounded: beyond `maxTracked` identities the least recently used go (an idle
 * bucket has refilled, so forgetting it changes nothing), so a flood of distinct clientIds costs
 * bounded memory.
 */
import type { Limits } from '@mooring/protocol';
import type { Identity } from './connection-registry.ts';
import { ServerError } from './server-error.ts';
import { TokenBucket } from './token-bucket.ts';

export type BudgetIdentity = Pick<Identity, 'keyName' | 'clientId' | 'viaToken'>;

export interface IdentityBudgetsOptions {
  /** Buckets kept at most (default 100,000). */
  maxTracked?: number;
  now?: () => number;
}

export class IdentityBudgets {
  readonly #limits: Limits;
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #maxTracked: number;
  readonly #now: () => number;

  constructor(limits: Limits, options: IdentityBudgetsOptions = {}) {
    this.#limits = limits;
    this.#maxTracked = options.maxTracked ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  /** Takes `count` operations from the identity's budget, or refuses them all with `rate_limited`. */
  takePublish(identity: BudgetIdentity, count: number): void {
    const rate = identity.viaToken ? this.#limits.maxPublishRate : this.#limits.maxKeyPublishRate;
    if (rate <= 0) return;
    const id = identityKey(identity);
    let bucket = this.#buckets.get(id);
    if (bucket)
      this.#buckets.delete(id); // re-inserted below: the map's order is least recently used first
    else bucket = new TokenBucket(rate, rate, this.#now);
    this.#buckets.set(id, bucket);
    if (this.#buckets.size > this.#maxTracked) this.#evict();
    if (!bucket.take(count))
      throw new ServerError(
        'rate_limited',
        `more than ${rate} operations per second for ${describe(identity)} (all its connections and REST together); slow down and retry`,
      );
  }

  /** Identities currently tracked (tests, metrics). */
  get size(): number {
    return this.#buckets.size;
  }

  /** Drops the least recently used 1%: amortised O(1), and an old bucket has (nearly) refilled anyway. */
  #evict(): void {
    const target = Math.floor(this.#maxTracked * 0.99);
    for (const id of this.#buckets.keys()) {
      if (this.#buckets.size <= target) break;
      this.#buckets.delete(id);
    }
  }
}

/** The budget key of an identity: key + clientId; tokens and the key itself never share one. */
export function identityKey(identity: BudgetIdentity): string {
  return `${identity.viaToken ? 'token' : 'key'}\u0000${identity.keyName}\u0000${identity.clientId ?? ''}`;
}

function describe(identity: BudgetIdentity): string {
  const who = identity.clientId === undefined ? 'anonymous clients' : `clientId ${identity.clientId}`;
  return `${who} of key ${identity.keyName}`;
}
