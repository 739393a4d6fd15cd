/**
 * Publish budgets per identity (PROTOCOL.md §10): one token bucket per key + clientId, shared by
 * REST, Durable Streams writes and every connection of that identity, so opening more connections
 * (or switching to REST) buys no more throughput. Token identities get `maxPublishRate` operations
 * per second, API-key identities `maxKeyPublishRate` (0 = unlimited: trusted backends and agents).
 * Anonymous tokens of one key share one budget.
 *
 * `PublishBudgets` is where they are counted: `IdentityBudgets` in this process (one node), or
 * `RedisPublishBudgets` across every node (redis-publish-budgets.ts).
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

/** Where publish budgets are counted. */
export interface PublishBudgets {
  /**
   * Takes `count` operations from the identity's budget, or refuses them all with `rate_limited`
   * (thrown, or the promise rejected). Undefined when it was decided at once. The takes of one
   * identity are decided in the order they were asked for, so a caller that goes on as each is
   * decided keeps its publishes in order.
   */
  takePublish(identity: BudgetIdentity, count: number): Promise<void> | undefined;
}

export interface IdentityBudgetsOptions {
  /** Buckets kept at most (default 100,000). */
  maxTracked?: number;
  now?: () => number;
}

export class IdentityBudgets implements PublishBudgets {
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
  takePublish(identity: BudgetIdentity, count: number): undefined {
    const rate = publishRateOf(identity, this.#limits);
    if (rate <= 0) return;
    const id = identityKey(identity);
    let bucket = this.#buckets.get(id);
    if (bucket)
      this.#buckets.delete(id); // re-inserted below: the map's order is least recently used first
    else bucket = new TokenBucket(rate, rate, this.#now);
    this.#buckets.set(id, bucket);
    if (this.#buckets.size > this.#maxTracked) this.#evict();
    if (!bucket.take(count)) throw rateLimited(identity, rate);
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

/** The identity's publish rate, operations per second (0: none). */
export function publishRateOf(identity: BudgetIdentity, limits: Limits): number {
  return identity.viaToken ? limits.maxPublishRate : limits.maxKeyPublishRate;
}

/** The refusal of a publish beyond the identity's rate. */
export function rateLimited(identity: BudgetIdentity, rate: number): ServerError {
  return new ServerError(
    'rate_limited',
    `more than ${rate} operations per second for ${describe(identity)} (all its connections and REST together); slow down and retry`,
  );
}

function describe(identity: BudgetIdentity): string {
  const who = identity.clientId === undefined ? 'anonymous clients' : `clientId ${identity.clientId}`;
  return `${who} of key ${identity.keyName}`;
}
