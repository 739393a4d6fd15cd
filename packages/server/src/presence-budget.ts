/**
 * The per-connection presence budget (PROTOCOL.md §6.4): the channels a connection is present in
 * and the bytes of its member data in each, checked against `maxChannelsPerConnection` and
 * `maxBytesPerConnection` before an enter, so one client cannot fill the server's memory (or Redis)
 * with members. Kept by the node holding the connection — a connection is on one node at a time —
 * and shared by `PresenceService` (presence.ts) and `RedisPresence` (redis-presence.ts), so both
 * refuse the same enters with the same errors.
 */
import { ServerError } from './server-error.ts';

/** What one kept member counts in `maxDroppedBytesPerClient` beyond its data: its channel and record. */
export const DROPPED_MEMBER_COST = 256;

export interface PresenceBudgetLimits {
  /** Channels one connection may be present in. */
  maxChannelsPerConnection: number;
  /** Bytes of member data (as JSON) one connection may hold over all its channels. */
  maxBytesPerConnection: number;
}

export class PresenceBudget {
  /** Per connection: its channels, and the bytes of its data in each. */
  readonly #channelsOf = new Map<string, Map<string, number>>();
  /** Per connection and channel: the enters taken and not yet settled (`take`), in the order sent. */
  readonly #pendingOf = new Map<string, Map<string, Pending>>();
  readonly #limits: PresenceBudgetLimits;

  constructor(limits: PresenceBudgetLimits) {
    this.#limits = limits;
  }

  /** The channels where the connection is a presence member. */
  channelsOf(connectionId: string): string[] {
    return [...(this.#channelsOf.get(connectionId)?.keys() ?? [])];
  }

  /** Whether the connection is present in any channel. */
  isPresent(connectionId: string): boolean {
    return (this.#channelsOf.get(connectionId)?.size ?? 0) > 0;
  }

  /** The enters `take` keeps until they settle: none once every enter sent has been answered. */
  get unsettled(): number {
    let n = 0;
    for (const pendingOf of this.#pendingOf.values())
      for (const pending of pendingOf.values()) n += pending.enters.length;
    return n;
  }

  /** The connections counted here (including those that left every channel but did not close). */
  connections(): IterableIterator<string> {
    return this.#channelsOf.keys();
  }

  /**
   * Throws `too_many_channels` or `presence_too_large` if the connection may not hold `size` bytes
   * of data in `channel` (replacing what it holds there already).
   */
  check(connectionId: string, channel: string, size: number): void {
    const channels = this.#channelsOf.get(connectionId);
    const { maxChannelsPerConnection, maxBytesPerConnection } = this.#limits;
    if (!channels?.has(channel) && (channels?.size ?? 0) >= maxChannelsPerConnection)
      throw new ServerError(
        'too_many_channels',
        `a connection may be present in at most ${maxChannelsPerConnection} channels; leave some first`,
      );
    let held = 0;
    for (const [other, bytes] of channels ?? []) if (other !== channel) held += bytes;
    if (held + size > maxBytesPerConnection)
      throw new ServerError(
        'presence_too_large',
        `a connection may hold at most ${maxBytesPerConnection} bytes of presence data over all its channels (${held} held); send less, or leave some channels`,
      );
  }

  /**
   * Checks (as `check`) and counts at once, for an enter that completes later (Redis): enters sent
   * together on one connection each see the others. The enter then settles as `kept` or `undone`
   * (it failed). The channel counts the last enter sent that did not fail (still pending or kept),
   * or what it held before them: however the enters of one channel sent together end, and in
   * whichever order, a failed one counts nothing after. A `remove`, `forget` or `add` meanwhile
   * decides the channel's count; the enters pending then settle without changing it.
   */
  take(connectionId: string, channel: string, size: number): Taken {
    this.check(connectionId, channel, size);
    let pendingOf = this.#pendingOf.get(connectionId);
    if (!pendingOf) {
      pendingOf = new Map();
      this.#pendingOf.set(connectionId, pendingOf);
    }
    let pending = pendingOf.get(channel);
    if (!pending) {
      pending = { base: this.#channelsOf.get(connectionId)?.get(channel), enters: [] };
      pendingOf.set(channel, pending);
    }
    const enter: PendingEnter = { size, state: 'pending' };
    pending.enters.push(enter);
    this.#count(connectionId, channel, size);
    const settle = (state: 'kept' | 'undone') => {
      if (enter.state !== 'pending') return;
      enter.state = state;
      this.#settle(connectionId, channel, pending);
    };
    return { kept: () => settle('kept'), undo: () => settle('undone') };
  }

  /** What an enter settled means for its channel's count, once its own enter has settled. */
  #settle(connectionId: string, channel: string, pending: Pending): void {
    const pendingOf = this.#pendingOf.get(connectionId);
    // the channel was left, the connection forgotten, or a member counted since: theirs to say
    if (pendingOf?.get(channel) !== pending) return;
    // settled from the oldest on: what Redis holds for sure is the base of the rest
    while (pending.enters[0] !== undefined && pending.enters[0].state !== 'pending') {
      const first = pending.enters.shift()!;
      if (first.state === 'kept') pending.base = first.size;
    }
    const last = pending.enters.findLast((e) => e.state !== 'undone');
    const size = last === undefined ? pending.base : last.size;
    if (pending.enters.length === 0) {
      pendingOf.delete(channel);
      if (pendingOf.size === 0) this.#pendingOf.delete(connectionId);
    }
    if (size === undefined) this.#channelsOf.get(connectionId)?.delete(channel);
    else this.#count(connectionId, channel, size);
  }

  /** Counts the connection's `size` bytes in `channel` (after a successful enter). */
  add(connectionId: string, channel: string, size: number): void {
    this.#dropPending(connectionId, channel);
    this.#count(connectionId, channel, size);
  }

  #count(connectionId: string, channel: string, size: number): void {
    let channels = this.#channelsOf.get(connectionId);
    if (!channels) {
      channels = new Map();
      this.#channelsOf.set(connectionId, channels);
    }
    channels.set(channel, size);
  }

  #dropPending(connectionId: string, channel: string): void {
    const pendingOf = this.#pendingOf.get(connectionId);
    if (!pendingOf?.delete(channel)) return;
    if (pendingOf.size === 0) this.#pendingOf.delete(connectionId);
  }

  /** The connection left one channel. */
  remove(connectionId: string, channel: string): void {
    this.#dropPending(connectionId, channel);
    this.#channelsOf.get(connectionId)?.delete(channel);
  }

  /** What the connection holds: its channels and the bytes of its data over all of them. */
  held(connectionId: string): { channels: number; bytes: number } {
    const channels = this.#channelsOf.get(connectionId);
    let bytes = 0;
    for (const size of channels?.values() ?? []) bytes += size;
    return { channels: channels?.size ?? 0, bytes };
  }

  /**
   * What the connection's presence counts in its clientId's `maxDroppedBytesPerClient` once it has
   * dropped: its data's JSON bytes, and `DROPPED_MEMBER_COST` per channel it is present in.
   */
  droppedCost(connectionId: string): number {
    const { channels, bytes } = this.held(connectionId);
    return bytes + channels * DROPPED_MEMBER_COST;
  }

  /** The connection is gone: forgets all it held. */
  forget(connectionId: string): void {
    this.#channelsOf.delete(connectionId);
    this.#pendingOf.delete(connectionId);
  }
}

/** An enter taken by `PresenceBudget.take`: it is kept (it succeeded), or undone (it failed). */
export interface Taken {
  kept(): void;
  undo(): void;
}

interface PendingEnter {
  size: number;
  state: 'pending' | 'kept' | 'undone';
}

/** The enters of one connection in one channel not yet settled, and what the channel held before. */
interface Pending {
  base: number | undefined;
  enters: PendingEnter[];
}
