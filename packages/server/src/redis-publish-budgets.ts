/**
 * Publish budgets counted across nodes, in Redis (PROTOCOL.md §10, §15): an identity's
 * `maxPublishRate` and `maxPublishBytesRate` (`maxKeyPublishRate`, `maxKeyPublishBytesRate` for API
 * keys) hold for all its connections, REST calls and Durable Streams writes together, whichever
 * nodes they reach.
 *
 * - Each identity's buckets are one hash, `<prefix>:rate:<identity>` (operations and bytes left,
 *   when), refilled by Redis's own clock in one script (GRANT) that grants from both or from
 *   neither, so nodes whose clocks differ still agree. It expires once it would be full again: an
 *   idle identity costs Redis nothing.
 * - A node does not ask Redis for every publish. It takes a small allowance of each (a hundredth of
 *   a second's rate, or what the publish needs if that is more) and spends it here; only a publish
 *   the allowance does not cover waits for Redis. The cluster never spends more than the buckets
 *   granted. An allowance a node holds and does not spend is lost to the identity: at most a
 *   hundredth of a second's rate per node.
 * - A publish larger than the bytes burst passes when the bucket is full (it goes below zero), as on
 *   one node.
 * - Order: the takes of one identity are decided in the order they were asked for (a take waits
 *   behind the one before it that went to Redis), so pipelined publishes keep their order.
 * - Redis out of reach: the node counts alone, in a bucket of its own as one node would, until
 *   Redis answers again; a publish is never refused because the budget could not be read.
 */
import type { Limits } from '@mooring/protocol';
import {
  type BudgetIdentity,
  type Bytes,
  IdentityBudgets,
  identityKey,
  type PublishBudgets,
  type PublishRates,
  publishRatesOf,
  rateLimited,
  sizeOf,
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
 * KEYS: the identity's buckets. ARGV: for operations, then for bytes: rate per second (0: not
 * counted; its burst is as many), need, want. → {-1 (refused: 'ops' or 'bytes' short, nothing
 * taken) | granted operations, granted bytes}. A bucket grants `want`, or every whole unit it holds
 * if fewer, when it holds at least `need`; the bytes bucket also grants a `need` above its burst
 * when it is full (it goes below zero).
 */
const GRANT = new RedisScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or '')
local left, grants, refill = {}, {}, 0
for i, field in ipairs({'ops', 'bytes'}) do
  local rate, need, want = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  grants[i] = 0
  if rate > 0 then
    local tokens = tonumber(redis.call('HGET', KEYS[1], field) or '')
    if tokens == nil or at == nil then tokens = rate
    elseif now > at then tokens = math.min(rate, tokens + (now - at) * rate / 1000) end
    local floor = need
    if field == 'bytes' then floor = math.min(need, rate) end
    if tokens < floor then return {-1, field} end
    grants[i] = math.max(need, math.min(want, math.floor(tokens)))
    left[i] = tokens - grants[i]
    refill = math.max(refill, math.ceil((rate - left[i]) * 1000 / rate))
  end
end
for i, field in ipairs({'ops', 'bytes'}) do
  if left[i] ~= nil then redis.call('HSET', KEYS[1], field, tostring(left[i])) end
end
redis.call('HSET', KEYS[1], 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], refill + 1000)
return grants
`);

/** An allowance is this share of a second's rate (at least one operation). */
const ALLOWANCE_SHARE = 0.01;

/** What this node holds of one identity's budgets. */
interface Held {
  /** Operations this node may still publish for the identity without asking Redis. */
  allowance: number;
  /** Bytes likewise. */
  bytes: number;
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

  takePublish(identity: BudgetIdentity, count: number, bytes: Bytes): Promise<void> | undefined {
    const rates = publishRatesOf(identity, this.#o.limits);
    if (rates.ops <= 0 && rates.bytes <= 0) return;
    const ops = rates.ops > 0 ? count : 0;
    const size = rates.bytes > 0 ? sizeOf(bytes) : 0;
    const id = identityKey(identity);
    let held = this.#held.get(id);
    if (held)
      this.#held.delete(id); // re-inserted below: the map's order is least recently used first
    else held = { allowance: 0, bytes: 0, tail: undefined };
    this.#held.set(id, held);
    if (this.#held.size > this.#maxTracked) this.#evict();
    if (held.tail === undefined && held.allowance >= ops && held.bytes >= size) {
      held.allowance -= ops;
      held.bytes -= size;
      return;
    }
    const entry = held;
    const take = (held.tail ?? Promise.resolve()).then(() =>
      this.#take(id, entry, identity, rates, ops, size),
    );
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

  async #take(
    id: string,
    held: Held,
    identity: BudgetIdentity,
    rates: PublishRates,
    count: number,
    size: number,
  ): Promise<void> {
    const need = Math.max(0, count - held.allowance);
    const needBytes = Math.max(0, size - held.bytes);
    if (need === 0 && needBytes === 0) {
      held.allowance -= count;
      held.bytes -= size;
      return;
    }
    let granted: unknown;
    try {
      granted = await GRANT.run(
        this.#o.connection,
        [`${this.#o.prefix}:rate:${id}`],
        [...ask(rates.ops, need), ...ask(rates.bytes, needBytes)],
      );
    } catch (err) {
      if (!this.#unreachable) this.#o.onError(err);
      this.#unreachable = true;
      this.#alone.takePublish(identity, count, size);
      return;
    }
    this.#unreachable = false;
    const [ops, bytes] = granted as [number, number | string];
    if (ops < 0) throw rateLimited(identity, rates, bytes === 'bytes' ? 'bytes' : 'ops');
    held.allowance += ops - count;
    held.bytes += Number(bytes) - size;
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

/** GRANT's arguments for one bucket: rate, need, want (nothing wanted where nothing is needed). */
function ask(rate: number, need: number): string[] {
  if (rate <= 0) return ['0', '0', '0'];
  const want = need === 0 ? 0 : Math.max(need, Math.min(rate, Math.ceil(rate * ALLOWANCE_SHARE)));
  return [String(rate), String(need), String(want)];
}
