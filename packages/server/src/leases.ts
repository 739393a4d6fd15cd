/**
 * Message leases (ARCHITECTURE.md §5.6, PROTOCOL.md §7.1): "a run never hangs".
 *
 * A message created (or touched) with `lease: ms` is held by the publisher's connection. While that
 * connection lives — or comes back within the lease as the same recovered connection — nothing
 * happens. If it is gone for longer than the lease, the server applies a final `update` that sets the
 * header `status=abandoned` (other headers kept), so every screen stops showing "streaming…".
 *
 * - Publishers without a connection (REST) hold a lease by activity: it expires `ms` after their last
 *   operation on the message.
 * - A publisher that comes back *without* its connection identity (after the connection TTL, or after
 *   a server restart) keeps the lease by writing to the message again as the same clientId.
 * - `lease: 0`, or a delete, releases it.
 * - With a durable store the lease records survive a server restart and are re-armed on start, as if
 *   every holder had just dropped: a live agent re-takes its lease by writing again.
 * - Expiry is crash-safe: the update is stored before the record is removed, and an expiry run again
 *   after a crash in between finds the message already abandoned and stores nothing.
 *
 * `Leases` is the seam: `LeaseManager` here keeps the timers in this process (one node);
 * `RedisLeases` (redis-leases.ts) keeps the deadlines in Redis, renewed by the holder's node, so any
 * node expires a lease whose holder's node died.
 */
import { followsWriter, type HeldLease, LeaseIndex } from './lease-index.ts';
import type { LeaseRecord, LeaseRecords } from './store/store.ts';

interface Lease extends HeldLease {
  timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (ms since 1970); undefined while the holder is connected. */
  deadline?: number | undefined;
}

/** A lease as the inspector shows it (`GET /v1/channels/:channel/health`). */
export interface LeaseView {
  serial: string;
  clientId?: string;
  ms: number;
  /**
   * True while the holding connection is connected: no deadline runs. On Redis a deadline always
   * exists (renewed while the holder lives) and `held` is known only for holders on the answering node.
   */
  held: boolean;
  /** When the message is marked abandoned unless its publisher comes back (ms since 1970). */
  deadline?: number;
}

/**
 * Marks a message abandoned. Resolves true when done (or nothing was left to abandon), false when
 * the message changed between the expiry's read and its write: it stored nothing, and the lease's
 * owner decides again — a lease released or taken again meanwhile is left alone, any other runs
 * out again (the write came from its publisher, alive after all).
 */
export type ExpireLease = (
  channel: string,
  serial: string,
  /** Asked between the expiry's read and its write: false → store nothing, resolve false. */
  due?: () => Promise<boolean>,
) => Promise<boolean>;

export interface LeaseManagerOptions {
  expire: ExpireLease;
  onError: (err: unknown) => void;
  /** Where lease records are kept across restarts, if the store can. */
  records?: LeaseRecords | undefined;
}

/** Message leases, held by connections; what `ChannelService` needs of them. */
export interface Leases {
  /** Re-arms what was recorded before a restart; how many. */
  restore(): number;
  /**
   * Takes (or renews) a lease. A promise, when the lease is recorded elsewhere (Redis): it resolves
   * once every node can see it (a failure goes to `onError`, not here); the publish that took the
   * lease is acknowledged only then, so a node that dies in between cannot leave a run unleased.
   */
  hold(
    channel: string,
    serial: string,
    holder: string | undefined,
    ms: number,
    clientId: string | undefined,
    owner?: string,
    /** The reservation (`reserve`) this lease was counted in until it is written. */
    reservation?: string,
  ): void | Promise<void>;
  /**
   * Another operation on a leased message: the lease follows its own holder (`followsWriter`) to its
   * current connection. `owner`: the writer's holder (`holderKey`), which a lease taken without a
   * clientId must match.
   */
  touch(
    channel: string,
    serial: string,
    holder: string | undefined,
    clientId: string | undefined,
    owner?: string,
  ): void;
  /**
   * Ends a lease. A promise when it is recorded elsewhere (Redis): it resolves once the lease no
   * longer counts against its owner on any node (a failure goes to `onError`), and the end is
   * acknowledged only then, so the owner's next run is never refused for the lease it just ended.
   */
  release(channel: string, serial: string): void | Promise<void>;
  /**
   * A publish is about to end a run (`lease: 0`, or a delete of a message this node knows leased).
   * A shared implementation (Redis) marks it, awaited before the end is stored: an expiry on another
   * node that reads the message after the end was stored sees the mark before it writes, even when
   * the release (sent after the store) has not reached Redis yet. `release` removes the mark.
   */
  ending?(channel: string, serial: string): Promise<void>;
  holderLost(connectionId: string): void;
  /**
   * The holder's connection was recovered: its leases hold again — those on channels `keeps`
   * refuses (the identity it came back with may not take leases there: `mayTakeLeases`) excepted,
   * which are let go as by `holderLetGo`.
   */
  holderBack(connectionId: string, keeps?: (channel: string) => boolean): void;
  /**
   * The holder's connection lives on with narrower rights (a renewed token): its leases on channels
   * `keeps` refuses are handled as if it had dropped now — they run out one lease later unless
   * their publisher writes again (as a REST publisher's: `touch`, by an identity that may) — and
   * no longer follow the connection: neither its life nor its recovery holds them any more.
   */
  holderLetGo(connectionId: string, keeps: (channel: string) => boolean): void;
  /**
   * A shared implementation (Redis): the holder's connection was recovered on another node, which
   * took its leases along (its `holderBack`). Forget them here without a write: renewed from here
   * too, they would outlive the connection's real loss on the other node.
   */
  holderMoved?(connectionId: string): void;
  readonly size: number;
  /**
   * The leases counted against `owner` (`maxLeasesPerClient`). A promise when they are counted
   * where every node sees them (Redis): the count then covers the owner's leases on every node.
   */
  heldBy(owner: string): number | Promise<number>;
  /**
   * Reserves `places` leases for `owner` (`maxLeasesPerClient`) if what it holds, what its
   * publishes in flight reserved, and these stay within `limit`: checked and added in one step, so
   * publishes in flight together count together and the first to arrive get the leases. The
   * reservation is passed to `hold` (Redis turns one place into a counted lease there, in the same
   * script) and given back with `unreserve` once the publish is done. Answers what the owner holds and has reserved when refused. A
   * promise where leases are counted across nodes (Redis), which rejects when they cannot be read.
   */
  reserve(owner: string, places: number, limit: number): Reservation | Promise<Reservation>;
  /** Gives back what is left of a reservation once its publish is done (its leases recorded, or none). */
  unreserve(id: string): void;
  has(channel: string, serial: string): boolean;
  /** The leases on one channel's messages, for inspection (not hot paths). */
  list(channel: string): LeaseView[] | Promise<LeaseView[]>;
  /** Stops timers; a shared implementation also flushes the writes it has not awaited. */
  close(): void | Promise<void>;
}

/** A reservation's id, or (refused) what the owner holds and has reserved. */
export type Reservation = { id: string } | { held: number };

export class LeaseManager implements Leases {
  readonly #leases = new LeaseIndex<Lease>();
  readonly #o: LeaseManagerOptions;
  /** Leases whose expiry is under way; a release or a new take removes theirs (see #arm). */
  readonly #expiring = new Set<string>();
  #closed = false;
  /** Reservations of publishes in flight (`reserve`): id → owner and places. */
  readonly #reservations = new Map<string, { owner: string; places: number }>();
  /** Owner → the places its reservations hold. */
  readonly #reserved = new Map<string, number>();
  #reservationIds = 0;

  constructor(options: LeaseManagerOptions) {
    this.#o = options;
  }

  /**
   * Re-arms the leases recorded before a restart: each runs out unless its publisher writes again.
   * Each counts against the owner its record names (`maxLeasesPerClient`), as before the restart.
   */
  restore(): number {
    const records = this.#safe(() => this.#o.records?.all()) ?? [];
    for (const record of records) this.#take(record, undefined);
    return records.length;
  }

  /** Takes or renews the lease on a message; `holder` is the publisher's connection id, if any. */
  hold(
    channel: string,
    serial: string,
    holder: string | undefined,
    ms: number,
    clientId: string | undefined,
    owner?: string,
  ): void {
    // a publish's reservation ends (`unreserve`) in the same turn as its takes: none to turn here
    const record = leaseRecord(channel, serial, ms, clientId, owner);
    this.#take(record, holder);
    this.#safe(() => this.#o.records?.save(record));
  }

  reserve(owner: string, places: number, limit: number): Reservation {
    const held = this.#leases.heldBy(owner) + (this.#reserved.get(owner) ?? 0);
    if (held + places > limit) return { held };
    const id = String(++this.#reservationIds);
    this.#reservations.set(id, { owner, places });
    this.#reserved.set(owner, (this.#reserved.get(owner) ?? 0) + places);
    return { id };
  }

  unreserve(id: string): void {
    const reservation = this.#reservations.get(id);
    if (!reservation) return;
    this.#reservations.delete(id);
    const left = (this.#reserved.get(reservation.owner) ?? 0) - reservation.places;
    if (left > 0) this.#reserved.set(reservation.owner, left);
    else this.#reserved.delete(reservation.owner);
  }

  /**
   * Another operation on a message: a lease follows its own holder (`followsWriter`: the same
   * clientId, or the same anonymous token) to its current connection (or, over REST, is renewed by
   * the activity); anyone else's write leaves it where it is.
   */
  touch(
    channel: string,
    serial: string,
    holder: string | undefined,
    clientId: string | undefined,
    owner?: string,
  ): void {
    const lease = this.#leases.get(keyOf(channel, serial));
    if (!lease || !followsWriter(lease, lease.owner, clientId, owner)) return;
    if (holder === undefined || lease.holder !== holder)
      this.#take(leaseRecord(channel, serial, lease.ms, lease.clientId, lease.owner), holder);
  }

  release(channel: string, serial: string): void {
    const key = keyOf(channel, serial);
    const lease = this.#leases.get(key);
    if (lease) this.#drop(key, lease);
    // released while its expiry is under way: the run ended, and the expiry must not retry
    else if (!this.#expiring.delete(key)) return;
    this.#safe(() => this.#o.records?.remove(channel, serial));
  }

  /** The holder's connection is gone: its leases run out unless it comes back in time. */
  holderLost(connectionId: string): void {
    for (const key of this.#leases.keysOf(connectionId) ?? []) {
      const lease = this.#leases.get(key);
      if (lease && !lease.timer) this.#arm(key, lease);
    }
  }

  /**
   * The holder's connection was recovered: its leases hold again, except where the identity it came
   * back with may not take them (`keeps`), which are let go (`holderLetGo`).
   */
  holderBack(connectionId: string, keeps?: (channel: string) => boolean): void {
    if (keeps) this.holderLetGo(connectionId, keeps);
    for (const key of this.#leases.keysOf(connectionId) ?? []) {
      const lease = this.#leases.get(key);
      if (lease?.timer) {
        clearTimeout(lease.timer);
        lease.timer = undefined;
        lease.deadline = undefined;
      }
    }
  }

  /**
   * The holder's rights narrowed: its leases on channels `keeps` refuses are taken again without a
   * holder — armed from now, as a lost holder's (or a REST publisher's), and left out of the
   * connection's list, so that its recovery does not disarm them.
   */
  holderLetGo(connectionId: string, keeps: (channel: string) => boolean): void {
    for (const key of [...(this.#leases.keysOf(connectionId) ?? [])]) {
      const lease = this.#leases.get(key);
      if (!lease || keeps(lease.channel)) continue;
      this.#take(leaseRecord(lease.channel, lease.serial, lease.ms, lease.clientId, lease.owner), undefined);
    }
  }

  get size(): number {
    return this.#leases.size;
  }

  /** Active leases counted against `owner`. */
  heldBy(owner: string): number {
    return this.#leases.heldBy(owner);
  }

  /** The leases on one channel's messages (walks every lease: for inspection, not hot paths). */
  list(channel: string): LeaseView[] {
    const views: LeaseView[] = [];
    for (const lease of this.#leases.values()) {
      if (lease.channel !== channel) continue;
      const view: LeaseView = { serial: lease.serial, ms: lease.ms, held: lease.timer === undefined };
      if (lease.clientId !== undefined) view.clientId = lease.clientId;
      if (lease.deadline !== undefined) view.deadline = lease.deadline;
      views.push(view);
    }
    return views.sort((a, b) => (a.serial < b.serial ? -1 : 1));
  }

  /** Whether the message has a lease now. */
  has(channel: string, serial: string): boolean {
    return this.#leases.has(keyOf(channel, serial));
  }

  /** Stops the timers (shutdown); the records stay for the next start. */
  close(): void {
    this.#closed = true;
    for (const lease of this.#leases.values()) if (lease.timer) clearTimeout(lease.timer);
    this.#leases.clear();
    this.#expiring.clear();
  }

  /** Adds the lease (in place of one on the message), counted against the owner its record names. */
  #take(record: LeaseRecord, holder: string | undefined): void {
    const key = keyOf(record.channel, record.serial);
    const previous = this.#leases.get(key);
    if (previous) this.#drop(key, previous);
    this.#expiring.delete(key); // an expiry under way is not this lease's
    const lease: Lease = {
      channel: record.channel,
      serial: record.serial,
      holder,
      clientId: record.clientId,
      owner: record.owner,
      ms: record.ms,
      timer: undefined,
    };
    this.#leases.add(key, lease);
    if (holder === undefined) this.#arm(key, lease);
  }

  /**
   * Crash-safe expiry: the `abandoned` update is stored first and the record removed only after, so a
   * crash between the two leaves the record, which the next start re-arms; the expiry then runs
   * again and, finding the message already abandoned, stores nothing more. If the update cannot be
   * stored, the record stays and the expiry is retried after another `ms`. A lease released or taken
   * again while its expiry runs is left to that (`#expiring`); a message written meanwhile by anyone
   * else (the expiry stored nothing: ExpireLease) gets its lease back, to run out again.
   */
  #arm(key: string, lease: Lease): void {
    lease.deadline = Date.now() + lease.ms;
    lease.timer = setTimeout(() => {
      this.#drop(key, lease);
      this.#expiring.add(key);
      // still counted against its owner, still followed by its holder
      const again = () =>
        this.#take(
          leaseRecord(lease.channel, lease.serial, lease.ms, lease.clientId, lease.owner),
          undefined,
        );
      this.#o.expire(lease.channel, lease.serial).then(
        (expired) => {
          if (!this.#expiring.delete(key)) return; // released or taken again meanwhile
          if (expired) this.#safe(() => this.#o.records?.remove(lease.channel, lease.serial));
          else if (!this.#closed) again();
        },
        (err: unknown) => {
          this.#o.onError(err);
          if (this.#expiring.delete(key) && !this.#closed) again();
        },
      );
    }, lease.ms);
    lease.timer.unref();
  }

  #drop(key: string, lease: Lease): void {
    if (lease.timer) clearTimeout(lease.timer);
    this.#leases.remove(key);
  }

  /** Lease records are best effort: a failing write is logged, never fails the publish. */
  #safe<T>(write: () => T): T | undefined {
    try {
      return write();
    } catch (err) {
      this.#o.onError(err);
      return undefined;
    }
  }
}

function leaseRecord(
  channel: string,
  serial: string,
  ms: number,
  clientId: string | undefined,
  owner: string | undefined,
): LeaseRecord {
  const record: LeaseRecord = { channel, serial, ms };
  if (clientId !== undefined) record.clientId = clientId;
  if (owner !== undefined) record.owner = owner;
  return record;
}

function keyOf(channel: string, serial: string): string {
  return `${channel}\u0000${serial}`;
}
