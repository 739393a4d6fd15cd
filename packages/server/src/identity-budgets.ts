/**
 * Rate budgets per identity (PROTOCOL.md §10): token buckets per key + clientId, shared by every
 * connection, REST call and Durable Streams write of that identity. Two sets of rules use them:
 * - `publishRules`: token identities get `maxPublishRate` operations and `maxPublishBytesRate`
 *   bytes per second, API-key identities `maxKeyPublishRate` and `maxKeyPublishBytesRate` (0 = none:
 *   trusted backends and agents). Opening more connections (or switching to REST) buys no more
 *   throughput. The bytes budget keeps one token holder from filling the store for everyone (a
 *   thousand 64 KiB operations per second would be 64 MB/s). A token without a clientId is a
 *   holder of its own (`holderKey`: the token itself), so one anonymous visitor of a public app
 *   cannot spend the budget of every other; a holder that renews its token draws on the new one's.
 * - `connectRules`: connection requests (new or recovering, any transport) and token renewals (`auth`
 *   frames: each costs a signature check, like a connection request) of a token clientId,
 *   `maxConnectRate` per second after a burst of twice `maxConnectionsPerClient`; of a key's
 *   anonymous tokens together (whichever tokens: this bounds them all), `maxAnonymousConnectRate`
 *   after a burst of twice `maxAnonymousConnectionsPerKey` — and, first, of each such token alone
 *   as of a clientId (`holderConnectRules`), so one visitor cannot spend the others' share.
 *   Every dropped connection leaves its identity recoverable (and its presence for the grace), so
 *   a client opening and dropping connections as fast as the server accepts them would hold
 *   memory without bound.
 * A take counts `count` units and, where a bytes rate is set, `bytes` bytes: from both or from
 * neither. One take larger than the bytes burst passes when that budget is full, and the identity
 * then waits for it to refill.
 *
 * `RateBudgets` is where they are counted: `IdentityBudgets` in this process (one node), or
 * `RedisIdentityBudgets` across every node (redis-identity-budgets.ts).
 *
 * The map of buckets is bounded: beyond `maxTracked` identities the least recently used go (an idle
 * bucket has refilled, so forgetting it changes nothing), so a flood of distinct clientIds costs
 * bounded memory.
 */
import type { Limits, OperationInput } from '@mooring/protocol';
import type { Identity } from './connection-registry.ts';
import { operationsSize } from './operation-size.ts';
import { ServerError } from './server-error.ts';
import { Lru } from './store/lru.ts';
import { TokenBucket } from './token-bucket.ts';

export type BudgetIdentity = Pick<Identity, 'keyName' | 'clientId' | 'viaToken' | 'holder'>;

/** Where rate budgets are counted. */
export interface RateBudgets {
  /**
   * Takes `count` units and `bytes` bytes together from the identity's budgets (`bytes` may be the
   * operations, measured only where bytes are counted), or refuses them all (thrown, or the promise
   * rejected; the rules' refusal). Undefined when it was decided at once. The takes of one identity
   * are decided in the order they were asked for, so a caller that goes on as each is decided keeps
   * its publishes in order.
   */
  take(identity: BudgetIdentity, count: number, bytes: Bytes): Promise<void> | undefined;
}

/**
 * A size in bytes, or the operations whose size it is (measured only where bytes are counted: an
 * agent's publish per token allocates nothing for it).
 */
export type Bytes = number | readonly OperationInput[];

/** One bucket: its refill per second and what it holds when full. */
export interface Rate {
  perSecond: number;
  burst: number;
}

/** An identity's buckets (absent: not counted). */
export interface Rates {
  units: Rate | undefined;
  bytes: Rate | undefined;
}

/** What a set of rate budgets counts, per identity, and how it refuses. */
export interface RateRules {
  /** Names the budgets where they are shared (Redis keys `<prefix>:rate:<name>:<identity>`). */
  name: string;
  /** Whose buckets a take of `identity` draws on: `identityKey` or `holderKey`. */
  keyOf(identity: BudgetIdentity): string;
  of(identity: BudgetIdentity): Rates;
  refuse(identity: BudgetIdentity, rates: Rates, which: 'units' | 'bytes'): ServerError;
}

/** One identity's buckets, where counted. */
interface Buckets {
  units: TokenBucket | undefined;
  bytes: TokenBucket | undefined;
}

export interface IdentityBudgetsOptions {
  /** Buckets kept at most (default 100,000). */
  maxTracked?: number;
  now?: () => number;
}

export class IdentityBudgets implements RateBudgets {
  readonly #rules: RateRules;
  readonly #buckets: Lru<string, Buckets>;
  readonly #now: () => number;

  constructor(rules: RateRules, options: IdentityBudgetsOptions = {}) {
    this.#rules = rules;
    this.#buckets = new Lru(options.maxTracked ?? 100_000);
    this.#now = options.now ?? Date.now;
  }

  /** Takes `count` units and `bytes` bytes from the identity's budgets, or refuses them all. */
  take(identity: BudgetIdentity, count: number, bytes: Bytes): undefined {
    const rates = this.#rules.of(identity);
    if (!rates.units && !rates.bytes) return;
    const id = this.#rules.keyOf(identity);
    let buckets = this.#buckets.get(id);
    if (!buckets) {
      buckets = { units: this.#bucket(rates.units), bytes: this.#bucket(rates.bytes) };
      this.#buckets.set(id, buckets);
    }
    const size = buckets.bytes ? sizeOf(bytes) : 0;
    if (buckets.units && !buckets.units.holds(count)) throw this.#rules.refuse(identity, rates, 'units');
    if (buckets.bytes && !buckets.bytes.holds(size, true)) throw this.#rules.refuse(identity, rates, 'bytes');
    buckets.units?.spend(count);
    buckets.bytes?.spend(size);
  }

  #bucket(rate: Rate | undefined): TokenBucket | undefined {
    return rate ? new TokenBucket(rate.perSecond, rate.burst, this.#now) : undefined;
  }

  /** Identities currently tracked (tests, metrics). */
  get size(): number {
    return this.#buckets.size;
  }
}

/**
 * The budget key of an identity: key + clientId; tokens and the key itself never share one. The
 * anonymous tokens of a key share one: for what bounds them together (connections, connection rate).
 */
export function identityKey(identity: BudgetIdentity): string {
  return `${identity.viaToken ? 'token' : 'key'}\u0000${identity.keyName}\u0000${identity.clientId ?? ''}`;
}

/**
 * The budget key of one holder: `identityKey`, except for a token without a clientId, which is a
 * holder of its own (the token, `Identity.holder`): the publish rates, the inbound bytes rate, the
 * bodies read at once, the share of the read slots (read-limiter.ts) and the leases
 * (`maxLeasesPerClient`) of one anonymous token are not those of the key's other anonymous tokens.
 */
export function holderKey(identity: BudgetIdentity): string {
  if (!identity.viaToken || identity.clientId !== undefined || identity.holder === undefined)
    return identityKey(identity);
  return `anonymous\u0000${identity.keyName}\u0000${identity.holder}`;
}

/** A bucket of `perSecond` (at least `burst` when full), or none for 0. */
function rate(perSecond: number, burst = perSecond): Rate | undefined {
  return perSecond > 0 ? { perSecond, burst: Math.max(burst, perSecond, 1) } : undefined;
}

/** Publishes: operations and bytes per second. */
export function publishRules(limits: Limits): RateRules {
  const token: Rates = { units: rate(limits.maxPublishRate), bytes: rate(limits.maxPublishBytesRate) };
  const key: Rates = { units: rate(limits.maxKeyPublishRate), bytes: rate(limits.maxKeyPublishBytesRate) };
  return {
    name: 'publish',
    keyOf: holderKey,
    of: (identity) => (identity.viaToken ? token : key),
    refuse: (identity, rates, which) =>
      new ServerError(
        'rate_limited',
        `more than ${which === 'units' ? `${rates.units?.perSecond} operations` : `${rates.bytes?.perSecond} bytes`} published per second by ${describeHolder(identity)} (all its connections, REST and Durable Streams writes together); slow down and retry`,
      ),
  };
}

/**
 * The data of presence `enter` and `update` frames (PROTOCOL.md §6.4): written to every subscriber
 * of the channel as a publish is, so a holder's presence bytes are held to its publish bytes rate
 * (`maxPublishBytesRate`; `maxKeyPublishBytesRate` for an API key). Counted on each node alone (a
 * presence frame waits for nothing: its order with the connection's next `leave` must hold).
 */
export function presenceRules(limits: Limits): RateRules {
  const token: Rates = { units: undefined, bytes: rate(limits.maxPublishBytesRate) };
  const key: Rates = { units: undefined, bytes: rate(limits.maxKeyPublishBytesRate) };
  return {
    name: 'presence',
    keyOf: holderKey,
    of: (identity) => (identity.viaToken ? token : key),
    refuse: (identity, rates) =>
      new ServerError(
        'rate_limited',
        `more than ${rates.bytes?.perSecond} bytes of presence data per second by ${describeHolder(identity)} (all its connections on this node); slow down and retry`,
      ),
  };
}

/** Connection requests (new or recovering) of token identities; API keys are not counted. */
export function connectRules(limits: Limits): RateRules {
  // bursts of twice the connection budgets: a client at its budget is told too_many_connections
  // (what it can act on), and every tab of a full client can reconnect at once after a network change
  const named: Rates = {
    units: rate(limits.maxConnectRate, 2 * limits.maxConnectionsPerClient),
    bytes: undefined,
  };
  const anonymous: Rates = {
    units: rate(limits.maxAnonymousConnectRate, 2 * limits.maxAnonymousConnectionsPerKey),
    bytes: undefined,
  };
  const none: Rates = { units: undefined, bytes: undefined };
  return {
    name: 'connect',
    // a key's anonymous tokens together: minting more tokens buys no more connection requests
    keyOf: identityKey,
    of: (identity) => (!identity.viaToken ? none : identity.clientId === undefined ? anonymous : named),
    refuse: (identity, rates) => connectRefused(rates, describe(identity)),
  };
}

/**
 * Connection requests and token renewals of each token without a clientId (a holder of its own,
 * `holderKey`): `maxConnectRate` after a burst of twice `maxConnectionsPerClient`, as for a clientId.
 * Taken before the key's anonymous budget (`connectRules`, `inTurn`): a token past its own rate
 * spends nothing of what the key's other anonymous tokens share.
 */
export function holderConnectRules(limits: Limits): RateRules {
  const own: Rates = {
    units: rate(limits.maxConnectRate, 2 * limits.maxConnectionsPerClient),
    bytes: undefined,
  };
  const none: Rates = { units: undefined, bytes: undefined };
  return {
    name: 'connect-holder',
    keyOf: holderKey,
    of: (identity) =>
      identity.viaToken && identity.clientId === undefined && identity.holder !== undefined ? own : none,
    refuse: (identity, rates) => connectRefused(rates, describeHolder(identity)),
  };
}

/** A connection request or token renewal past `rates`, naming whose budget it was. */
function connectRefused(rates: Rates, who: string): ServerError {
  return new ServerError(
    'rate_limited',
    `more than ${rates.units?.perSecond} connection requests and token renewals per second by ${who}; retry after a short delay`,
  );
}

/**
 * Takes from `first`, then, once that is decided, from `then`: a refusal of the first leaves the
 * second untouched. The takes of one identity stay decided in the order they were asked for.
 */
export function inTurn(first: RateBudgets, then: RateBudgets): RateBudgets {
  return {
    take(identity, count, bytes) {
      const decided = first.take(identity, count, bytes);
      return decided
        ? decided.then(() => then.take(identity, count, bytes))
        : then.take(identity, count, bytes);
    },
  };
}

export function sizeOf(bytes: Bytes): number {
  return typeof bytes === 'number' ? bytes : operationsSize(bytes);
}

function describe(identity: BudgetIdentity): string {
  const who = identity.clientId === undefined ? 'anonymous clients' : `clientId ${identity.clientId}`;
  return `${who} of key ${identity.keyName}`;
}

/** `describe` for a budget of one holder (`holderKey`). */
function describeHolder(identity: BudgetIdentity): string {
  if (identity.viaToken && identity.clientId === undefined && identity.holder !== undefined)
    return `this token (without a clientId) of key ${identity.keyName}`;
  return describe(identity);
}
