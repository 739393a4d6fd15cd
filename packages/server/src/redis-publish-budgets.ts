/**
 * Publish budgets counted across nodes, in Redis (PROTOCOL.md §10, §15): an identity's
 * `maxPublishRate` (`maxKeyPublishRate` for API keys) holds for all its connections, REST calls and
 * Durable Streams writes together, whichever nodes they reach.
 *
 * - Each identity's bucket is a hash, `<prefix>:rate:<identity>` (tokens left, when), refilled by
 *   Redis's own clock in one script (GRANT), so nodes whose clocks differ still agree. It expires
 *   once it would be full again: an idle identity costs Redis nothing.
 * - A node does not ask Redis for every publish. It takes a small allowance (a hundredth of a
 *   second's rate, or what the publish needs if that is more) and spends it here; only a publish
 *   the allowance does not cover waits for Redis. The cluster never spends more than the bucket
 *   granted. An allowance a node holds and does not spend is lost to the identity: at most a
 *   hundredth of a second's rate per node.
 * - Order: the takes of one identity are decided in the order they were asked for (a take waits
 *   behind the one before it that went to Redis), so pipelined publishes keep their order.
 * - Redis out of reach: the node counts alone, in a bucket of its own as one node would, until
 *   Redis answers again; a publish is never refused because the budget could not be read.
 */
import type { Limits } from '@mooring/protocol';
import {
  type BudgetIdentity,
  IdentityBudgets,
  identityKey,
  type PublishBudgets,
  publishRateOf,
  rateLimited,
} from './identity-budgets.ts';
import { RedisScript } from './redis-script.ts';
import type { RedisConnection } from './store/redis-connection.ts';

export interface RedisPublishBudgetsOptions {
  connection: RedisConnection;
  prefix: string;
  limits: Limits;
  /** Identities whose allowance is kept at most (default 100,000; the least recently used go). */
  maxTracked?: number;
  /** Redis could not be read: told once per outage, while the node counts alone. */
  onError: (err: unknown) => void;
}

/**
 * KEYS: the identity's bucket. ARGV: rate per second, burst, need, want. → what it grants: `want`,
 * or every whole token there is if fewer, when at least `need` are there; else 0 (nothing taken).
 */
const GRANT = new RedisScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local need, want = tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then tokens = burst
elseif now > at then tokens = math.min(burst, tokens + (now - at) * rate / 1000) end
if tokens < need then return 0 end
local grant = math.min(want, math.floor(tokens))
tokens = tokens - grant
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return grant
`);

/** An allowance is this share of a second's rate (at least one operation). */
const ALLOWANCE_SHARE = 0.01;

/** What this node holds of one identity's budget. */
interface Held {
  /** Operations this node may still publish for the identity without asking Redis. */
  allowance: number;
  /** The last take still being decided: the identity's next takes wait behind it. */
  tail: Promise<void> | undefined;
}

export class RedisPublishBudgets implements PublishBudgets {
  readonly #o: RedisPublishBudgetsOptions;
  readonly #held = new Map<string, Held>();
  readonly #maxTracked: number;
  /** Counts while Redis cannot be read. */
  readonly #alone: IdentityBudgets;
  #unreachable = false;

  constructor(options: RedisPublishBudgetsOptions) {
    this.#o = options;
    this.#maxTracked = options.maxTracked ?? 100_000;
    this.#alone = new IdentityBudgets(options.limits, { maxTracked: this.#maxTracked });
  }

  takePublish(identity: BudgetIdentity, count: number): Promise<void> | undefined {
    const rate = publishRateOf(identity, this.#o.limits);
    if (rate <= 0) return;
    const id = identityKey(identity);
    let held = this.#held.get(id);
    if (held)
      this.#held.delete(id); // re-inserted below: the map's order is least recently used first
    else held = { allowance: 0, tail: undefined };
    this.#held.set(id, held);
    if (this.#held.size > this.#maxTracked) this.#evict();
    if (held.tail === undefined && held.allowance >= count) {
      held.allowance -= count;
      return;
    }
    const entry = held;
    const take = (held.tail ?? Promise.resolve()).then(() => this.#take(id, entry, identity, rate, count));
    const tail = take.then(
      () => {},
      () => {},
    );
    held.tail = tail;
    void tail.then(() => {
      if (entry.tail === tail) entry.tail = undefined;
    });
    return take;
  }

  /** Identities whose allowance is kept (tests). */
  get size(): number {
    return this.#held.size;
  }

  async #take(id: string, held: Held, identity: BudgetIdentity, rate: number, count: number): Promise<void> {
    if (held.allowance >= count) {
      held.allowance -= count;
      return;
    }
    const need = count - held.allowance;
    const burst = Math.max(rate, 1);
    const want = Math.max(need, Math.min(burst, Math.ceil(rate * ALLOWANCE_SHARE)));
    let granted: number;
    try {
      granted = Number(
        await GRANT.run(
          this.#o.connection,
          [`${this.#o.prefix}:rate:${id}`],
          [String(rate), String(burst), String(need), String(want)],
        ),
      );
    } catch (err) {
      if (!this.#unreachable) this.#o.onError(err);
      this.#unreachable = true;
      this.#alone.takePublish(identity, count);
      return;
    }
    this.#unreachable = false;
    if (granted < need) throw rateLimited(identity, rate);
    held.allowance += granted - count;
  }

  /** Drops the least recently used 1% whose takes are all decided (a waiting one keeps its order). */
  #evict(): void {
    const target = Math.floor(this.#maxTracked * 0.99);
    for (const [id, held] of this.#held) {
      if (this.#held.size <= target) break;
      if (held.tail === undefined) this.#held.delete(id);
    }
  }
}
