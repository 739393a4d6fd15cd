/**
 * The leases a node knows, with the two indexes every lease keeper needs kept in step with them:
 * the leases of each holder connection (so a lost or recovered connection finds its leases) and the
 * count per owner identity (`maxLeasesPerClient`). `LeaseManager` (leases.ts) and `RedisLeases`
 * (redis-leases.ts) both keep their node's leases here, so adding and removing a lease can never
 * leave a holder list or an owner count behind: a stale count would refuse an identity's leases
 * for ever, a stale holder list would re-arm a lease that is gone. (`RedisLeases` counts owners in
 * Redis, for every node, so its leases name no owner here.)
 */

/** What every lease keeper knows of a lease (each adds its own timing). */
export interface HeldLease {
  channel: string;
  serial: string;
  /** The connection holding it; undefined for REST publishers (and for leases restored after a restart). */
  holder: string | undefined;
  /** The clientId that took it: the same clientId may take it back from another connection. */
  clientId: string | undefined;
  /** The identity it counts against (`maxLeasesPerClient`); unknown for leases restored or adopted. */
  owner: string | undefined;
  ms: number;
}

/**
 * Whether a write to a leased message moves the lease to the writer (`touch`): a lease follows its
 * own holder and nobody else — the same clientId, or for a lease taken without one the same holder
 * (`holderKey`: one anonymous token is not another, so visitor B writing to visitor A's run does
 * not take A's lease away from A's connection). A lease whose record names no holder (recorded
 * before records named one) follows any writer without a clientId, as it did then.
 */
export function followsWriter(
  lease: { clientId?: string | undefined },
  leaseOwner: string | undefined,
  clientId: string | undefined,
  owner: string | undefined,
): boolean {
  if (lease.clientId !== undefined || clientId !== undefined) return lease.clientId === clientId;
  return leaseOwner === undefined || leaseOwner === owner;
}

export class LeaseIndex<L extends HeldLease> {
  readonly #leases = new Map<string, L>();
  readonly #byHolder = new Map<string, Set<string>>();
  readonly #perOwner = new Map<string, number>();

  get size(): number {
    return this.#leases.size;
  }

  get(key: string): L | undefined {
    return this.#leases.get(key);
  }

  has(key: string): boolean {
    return this.#leases.has(key);
  }

  /** Every lease by key (removing the current one while iterating is safe). */
  entries(): IterableIterator<[string, L]> {
    return this.#leases.entries();
  }

  values(): IterableIterator<L> {
    return this.#leases.values();
  }

  /** The identities with a lease counted against them (none left behind once their leases are gone). */
  get owners(): number {
    return this.#perOwner.size;
  }

  /** Active leases counted against `owner`. */
  heldBy(owner: string): number {
    return this.#perOwner.get(owner) ?? 0;
  }

  /** The keys of the leases a connection holds (live: a lease removed meanwhile leaves it). */
  keysOf(holder: string): ReadonlySet<string> | undefined {
    return this.#byHolder.get(holder);
  }

  /** Adds a lease under `key`. A lease already there must be removed first (its caller stops its timers). */
  add(key: string, lease: L): void {
    this.#leases.set(key, lease);
    if (lease.owner !== undefined) this.#perOwner.set(lease.owner, this.heldBy(lease.owner) + 1);
    if (lease.holder !== undefined) {
      let keys = this.#byHolder.get(lease.holder);
      if (!keys) {
        keys = new Set();
        this.#byHolder.set(lease.holder, keys);
      }
      keys.add(key);
    }
  }

  /** Removes the lease under `key` from the map and both indexes; returns it, if there was one. */
  remove(key: string): L | undefined {
    const lease = this.#leases.get(key);
    if (!lease) return undefined;
    this.#leases.delete(key);
    if (lease.owner !== undefined) {
      const held = this.heldBy(lease.owner) - 1;
      if (held > 0) this.#perOwner.set(lease.owner, held);
      else this.#perOwner.delete(lease.owner);
    }
    if (lease.holder !== undefined) {
      const keys = this.#byHolder.get(lease.holder);
      keys?.delete(key);
      if (keys?.size === 0) this.#byHolder.delete(lease.holder);
    }
    return lease;
  }

  clear(): void {
    this.#leases.clear();
    this.#byHolder.clear();
    this.#perOwner.clear();
  }
}
