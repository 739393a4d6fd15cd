/**
 * Rate budgets counted across nodes, in Redis (PROTOCOL.md §10, §15): an identity's publish rates
 * (`maxPublishRate`, `maxPublishBytesRate`, and the keys' own) hold for all its connections, REST
 * calls and Durable Streams writes together, and its connection-request rate (`maxConnectRate`,
 * `maxAnonymousConnectRate`) for all its requests, whichever nodes they reach.
 *
 * - Each identity's buckets of one set of rules are one hash, `<prefix>:rate:<rules>:<identity>`
 *   (units and bytes left, when), refilled by Redis's own clock in one script (GRANT) that grants
 *   from both or from neither, so nodes whose clocks differ still agree. It expires once it would
 *   be full again: an idle identity costs Redis nothing. The identity is the rules' `keyOf`: for
 *   publishes each token without a clientId is one (`holderKey`), and its hash too expires once
 *   full, so tokens handed out and dropped leave nothing behind.
 * - A node does not ask Redis for every take. It takes a small allowance of each (a hundredth of a
 *   second's rate, or what the take needs if that is more) and spends it here; only a take the
 *   allowance does not cover waits for Redis. The cluster never spends more than the buckets
 *   granted. An allowance a node holds and does not spend is lost to the identity: at most a
 *   hundredth of a second's rate per node.
 * - A take larger than the bytes burst passes when the bucket is full (it goes below zero), as on
 *   one node.
 * - Order: the takes of one identity are decided in the order they were asked for (a take waits
 *   behind the one before it that went to Redis), so pipelined publishes keep their order.
 * - Redis out of reach: the node counts alone, in buckets of its own as one node would, until
 *   Redis answers again; nothing is refused because the budget could not be read.
 */
import {
  type BudgetIdentity,
  type Bytes,
  IdentityBudgets,
  type Rate,
  type RateBudgets,
  type RateRules,
  type Rates,
  sizeOf,
} from './identity-budgets.ts';
import { RedisScript } from './redis-script.ts';
import type { RedisConnection } from './store/redis-connection.ts';

export interface RedisIdentityBudgetsOptions {
  connection: RedisConnection;
  prefix: string;
  rules: RateRules;
  /** Identities whose allowance is kept at most (default 100,000; the least recently used go). */
  maxTracked?: number;
  /** Redis could not be read: told once per outage, while the node counts alone. */
  onError: (err: unknown) => void;
}

/**
 * KEYS: the identity's buckets. ARGV: for units, then for bytes: rate per second (0: not counted),
 * burst, need, want. → {-1 (refused: 'units' or 'bytes' short, nothing taken) | granted units,
 * granted bytes}. A bucket grants `want`, or every whole unit it holds if fewer, when it holds at
 * least `need`; the bytes bucket also grants a `need` above its burst when it is full (it goes
 * below zero).
 */
const GRANT = new RedisScript(`
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local at = tonumber(redis.call('HGET', KEYS[1], 'at') or '')
local left, grants, refill = {}, {}, 0
for i, field in ipairs({'units', 'bytes'}) do
  local rate, burst = tonumber(ARGV[4 * i - 3]), tonumber(ARGV[4 * i - 2])
  local need, want = tonumber(ARGV[4 * i - 1]), tonumber(ARGV[4 * i])
  grants[i] = 0
  if rate > 0 then
    local tokens = tonumber(redis.call('HGET', KEYS[1], field) or '')
    if tokens == nil or at == nil then tokens = burst
    elseif now > at then tokens = math.min(burst, tokens + (now - at) * rate / 1000) end
    local floor = need
    if field == 'bytes' then floor = math.min(need, burst) end
    if tokens < floor then return {-1, field} end
    grants[i] = math.max(need, math.min(want, math.floor(tokens)))
    left[i] = tokens - grants[i]
    refill = math.max(refill, math.ceil((burst - left[i]) * 1000 / rate))
  end
end
for i, field in ipairs({'units', 'bytes'}) do
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
  /** Units this node may still take for the identity without asking Redis. */
  allowance: number;
  /** Bytes likewise. */
  bytes: number;
  /** The last take still being decided: the identity's next takes wait behind it. */
  tail: Promise<void> | undefined;
}

export class RedisIdentityBudgets implements RateBudgets {
  readonly #o: RedisIdentityBudgetsOptions;
  readonly #held = new Map<string, Held>();
  readonly #maxTracked: number;
  /** Counts while Redis cannot be read. */
  readonly #alone: IdentityBudgets;
  #unreachable = false;

  constructor(options: RedisIdentityBudgetsOptions) {
    this.#o = options;
    this.#maxTracked = options.maxTracked ?? 100_000;
    this.#alone = new IdentityBudgets(options.rules, { maxTracked: this.#maxTracked });
  }

  take(identity: BudgetIdentity, count: number, bytes: Bytes): Promise<void> | undefined {
    const rates = this.#o.rules.of(identity);
    if (!rates.units && !rates.bytes) return;
    const ops = rates.units ? count : 0;
    const size = rates.bytes ? sizeOf(bytes) : 0;
    const id = this.#o.rules.keyOf(identity);
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
    rates: Rates,
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
        [`${this.#o.prefix}:rate:${this.#o.rules.name}:${id}`],
        [...ask(rates.units, need), ...ask(rates.bytes, needBytes)],
      );
    } catch (err) {
      if (!this.#unreachable) this.#o.onError(err);
      this.#unreachable = true;
      this.#alone.take(identity, count, size);
      return;
    }
    this.#unreachable = false;
    const [units, bytes] = granted as [number, number | string];
    if (units < 0) throw this.#o.rules.refuse(identity, rates, bytes === 'bytes' ? 'bytes' : 'units');
    held.allowance += units - count;
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

/** GRANT's arguments for one bucket: rate, burst, need, want (nothing wanted where nothing is needed). */
function ask(rate: Rate | undefined, need: number): string[] {
  if (!rate) return ['0', '0', '0', '0'];
  const share = Math.min(rate.burst, Math.ceil(rate.perSecond * ALLOWANCE_SHARE));
  const want = need === 0 ? 0 : Math.max(need, share);
  return [String(rate.perSecond), String(rate.burst), String(need), String(want)];
}
