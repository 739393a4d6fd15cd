/**
 * Message leases (DESIGN §5.6, PROTOCOL.md §7.1): "a run never hangs".
 *
 * A message created (or touched) with `lease: ms` is held by the publisher's connection. While that
 * connection lives — or comes back within the lease as the same recovered connection — nothing
 * happens. If it is gone for longer than the lease, the server applies a final `update` that sets the
 * header `status=abandoned` (other headers kept), so every screen stops showing "streaming…".
 * Publishers without a connection (REST) hold a lease by activity: it expires `ms` after their last
 * operation carrying a lease on that message. `lease: 0`, or a delete, releases it.
 *
 * Lease state lives on the node that took the publish (node-local, like presence).
 */

interface Lease {
  channel: string;
  serial: string;
  holder: string | undefined;
  ms: number;
  timer: NodeJS.Timeout | undefined;
}

export type ExpireLease = (channel: string, serial: string) => Promise<void>;

export class LeaseManager {
  readonly #leases = new Map<string, Lease>();
  readonly #byHolder = new Map<string, Set<string>>();
  readonly #expire: ExpireLease;
  readonly #onError: (err: unknown) => void;

  constructor(expire: ExpireLease, onError: (err: unknown) => void) {
    this.#expire = expire;
    this.#onError = onError;
  }

  /** Takes or renews the lease on a message; `holder` is the publisher's connection id, if any. */
  hold(channel: string, serial: string, holder: string | undefined, ms: number): void {
    const key = keyOf(channel, serial);
    const previous = this.#leases.get(key);
    if (previous) this.#drop(key, previous);
    const lease: Lease = { channel, serial, holder, ms, timer: undefined };
    this.#leases.set(key, lease);
    if (holder === undefined) this.#arm(key, lease);
    else {
      let keys = this.#byHolder.get(holder);
      if (!keys) {
        keys = new Set();
        this.#byHolder.set(holder, keys);
      }
      keys.add(key);
    }
  }

  release(channel: string, serial: string): void {
    const key = keyOf(channel, serial);
    const lease = this.#leases.get(key);
    if (lease) this.#drop(key, lease);
  }

  /** The holder's connection is gone: its leases run out unless it comes back in time. */
  holderLost(connectionId: string): void {
    for (const key of this.#byHolder.get(connectionId) ?? []) {
      const lease = this.#leases.get(key);
      if (lease && !lease.timer) this.#arm(key, lease);
    }
  }

  /** The holder's connection was recovered: its leases hold again. */
  holderBack(connectionId: string): void {
    for (const key of this.#byHolder.get(connectionId) ?? []) {
      const lease = this.#leases.get(key);
      if (lease?.timer) {
        clearTimeout(lease.timer);
        lease.timer = undefined;
      }
    }
  }

  get size(): number {
    return this.#leases.size;
  }

  close(): void {
    for (const lease of this.#leases.values()) if (lease.timer) clearTimeout(lease.timer);
    this.#leases.clear();
    this.#byHolder.clear();
  }

  #arm(key: string, lease: Lease): void {
    lease.timer = setTimeout(() => {
      this.#drop(key, lease);
      this.#expire(lease.channel, lease.serial).catch(this.#onError);
    }, lease.ms);
    lease.timer.unref();
  }

  #drop(key: string, lease: Lease): void {
    if (lease.timer) clearTimeout(lease.timer);
    this.#leases.delete(key);
    if (lease.holder !== undefined) {
      const keys = this.#byHolder.get(lease.holder);
      keys?.delete(key);
      if (keys?.size === 0) this.#byHolder.delete(lease.holder);
    }
  }
}

function keyOf(channel: string, serial: string): string {
  return `${channel}\u0000${serial}`;
}
