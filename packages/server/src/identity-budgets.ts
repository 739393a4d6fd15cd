/**
 * Publish budgets per identity (PROTOCOL.md §10): one token bucket per key + clientId, shared by
 * REST, Durable Streams writes and every connection of that identity, so opening more connections
 * (or switching to REST) buys no more throughput. Token identities get `maxPublishRate` operations
 * and `maxPublishBytesRate` bytes per second, API-key identities `maxKeyPublishRate` and
 * `maxKeyPublishBytesRate` (0 = unlimited: trusted backends and agents). A publish takes from both
 * or from neither. The bytes budget keeps one token holder from filling the store for everyone
 * (a thousand 64 KiB operations per second would be 64 MB/s); one publish larger than its burst
 * passes when the budget is full, and the identity then waits for it to refill. Anonymous tokens of
 * one key share one budget.
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
   * Takes `count` operations of `bytes` bytes together from the identity's budgets (`bytes` may be
   * a function, called only where bytes are counted), or refuses them all with `rate_limited`
   * (thrown, or the promise rejected). Undefined when it was decided at once. The takes of one
   * identity are decided in the order they were asked for, so a caller that goes on as each is
   * decided keeps its publishes in order.
   */
  takePublish(identity: BudgetIdentity, count: number, bytes: Bytes): Promise<void> | undefined;
}

/** A publish's size in bytes, or how to measure it (only where bytes are counted). */
export type Bytes = number | (() => number);

/** An identity's publish rates per second (0: not counted). */
export interface PublishRates {
  ops: number;
  bytes: number;
}

/** One identity's buckets, where counted. */
interface Buckets {
  ops: TokenBucket | undefined;
  bytes: TokenBucket | undefined;
}

export interface IdentityBudgetsOptions {
  /** Buckets kept at most (default 100,000). */
  maxTracked?: number;
  now?: () => number;
}

export class IdentityBudgets implements PublishBudgets {
  readonly #limits: Limits;
  readonly #buckets = new Map<string, Buckets>();
  readonly #maxTracked: number;
  readonly #now: () => number;

  constructor(limits: Limits, options: IdentityBudgetsOptions = {}) {
    this.#limits = limits;
    this.#maxTracked = options.maxTracked ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  /** Takes `count` operations of `bytes` from the identity's budgets, or refuses them all with `rate_limited`. */
  takePublish(identity: BudgetIdentity, count: number, bytes: Bytes): undefined {
    const rates = publishRatesOf(identity, this.#limits);
    if (rates.ops <= 0 && rates.bytes <= 0) return;
    const id = identityKey(identity);
    let buckets = this.#buckets.get(id);
    if (buckets)
      this.#buckets.delete(id); // re-inserted below: the map's order is least recently used first
    else
      buckets = {
        ops: rates.ops > 0 ? new TokenBucket(rates.ops, rates.ops, this.#now) : undefined,
        bytes: rates.bytes > 0 ? new TokenBucket(rates.bytes, rates.bytes, this.#now) : undefined,
      };
    this.#buckets.set(id, buckets);
    if (this.#buckets.size > this.#maxTracked) this.#evict();
    const size = buckets.bytes ? sizeOf(bytes) : 0;
    if (buckets.ops && !buckets.ops.holds(count)) throw rateLimited(identity, rates, 'ops');
    if (buckets.bytes && !buckets.bytes.holds(size, true)) throw rateLimited(identity, rates, 'bytes');
    buckets.ops?.spend(count);
    buckets.bytes?.spend(size);
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

/** The identity's publish rates per second (0: none). */
export function publishRatesOf(identity: BudgetIdentity, limits: Limits): PublishRates {
  return identity.viaToken
    ? { ops: limits.maxPublishRate, bytes: limits.maxPublishBytesRate }
    : { ops: limits.maxKeyPublishRate, bytes: limits.maxKeyPublishBytesRate };
}

export function sizeOf(bytes: Bytes): number {
  return typeof bytes === 'number' ? bytes : bytes();
}

/** The refusal of a publish beyond one of the identity's rates. */
export function rateLimited(
  identity: BudgetIdentity,
  rates: PublishRates,
  which: 'ops' | 'bytes',
): ServerError {
  const what =
    which === 'ops' ? `${rates.ops} operations per second` : `${rates.bytes} bytes published per second`;
  return new ServerError(
    'rate_limited',
    `more than ${what} for ${describe(identity)} (all its connections, REST and Durable Streams writes together); slow down and retry`,
  );
}

function describe(identity: BudgetIdentity): string {
  const who = identity.clientId === undefined ? 'anonymous clients' : `clientId ${identity.clientId}`;
  return `${who} of key ${identity.keyName}`;
}
