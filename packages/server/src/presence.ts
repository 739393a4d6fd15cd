/**
 * Presence sets per channel (ARCHITECTURE.md §8, PROTOCOL.md §6.4): who is here, with a small data payload.
 *
 * Members are keyed by connection (a connection has one clientId). A member whose connection drops
 * without a clean close stays for `grace` ms: if the connection is recovered in that window
 * (same connectionId, PROTOCOL.md §5.4) nothing is announced, so a quick reconnect does not flap;
 * otherwise it leaves. A clean close or a `leave` takes effect at once.
 *
 * Each connection has a presence budget: at most `maxChannelsPerConnection` channels and
 * `maxBytesPerConnection` bytes of member data (as JSON) over all of them, so one client cannot fill
 * the server's memory with members (`too_many_channels`, `presence_too_large`).
 *
 * `Presence` is the seam: `PresenceService` here is node-local; `RedisPresence` (redis-presence.ts)
 * keeps the same sets in Redis so every node sees them, and removes a dead node's members.
 */
import type { JsonValue, PresenceFrame, PresenceMember } from '@mooring/protocol';
import { KeyedListeners } from './keyed-listeners.ts';
import { PresenceBudget } from './presence-budget.ts';
import { ServerError } from './server-error.ts';

export type PresenceListener = (frame: Buffer) => void;

export interface PresenceOptions {
  grace: number;
  maxMembers: number;
  /** Channels one connection may be present in. */
  maxChannelsPerConnection: number;
  /** Bytes of member data (as JSON) one connection may hold over all its channels. */
  maxBytesPerConnection: number;
  /** How long a dropped connection can still be recovered (connectionStateTtl), ms. */
  recoverWithin: number;
}

/** Presence sets, node-local or shared; `enter` and `members` may answer later on a shared one. */
export interface Presence {
  members(channel: string): PresenceMember[] | Promise<PresenceMember[]>;
  channelsOf(connectionId: string): string[];
  enter(
    channel: string,
    connectionId: string,
    clientId: string,
    data: JsonValue | undefined,
    size?: number,
  ): void | Promise<void>;
  leave(channel: string, connectionId: string): void;
  connectionClosed(connectionId: string): void;
  connectionLost(connectionId: string): void;
  connectionResumed(connectionId: string): void;
  /**
   * A shared implementation (Redis): the connection was recovered on another node, which took its
   * members over. Forget it here, leaving nothing and announcing nothing.
   */
  connectionMoved?(connectionId: string): void;
  subscribe(channel: string, listener: PresenceListener): () => void;
  close(): void | Promise<void>;
}

export class PresenceService implements Presence {
  readonly #members = new Map<string, Map<string, PresenceMember>>();
  readonly #listeners = new KeyedListeners<PresenceListener>();
  readonly #budget: PresenceBudget;
  readonly #pendingLeaves = new Map<string, NodeJS.Timeout>();
  /** Members that left at the end of their grace, kept for `recoverWithin` in case the connection comes back. */
  readonly #departed = new Map<
    string,
    { members: Array<{ channel: string; member: PresenceMember }>; at: number }
  >();
  readonly #options: PresenceOptions;

  constructor(options: PresenceOptions) {
    this.#options = options;
    this.#budget = new PresenceBudget(options);
  }

  members(channel: string): PresenceMember[] {
    return [...(this.#members.get(channel)?.values() ?? [])];
  }

  /** The channels where the connection is a presence member. */
  channelsOf(connectionId: string): string[] {
    return this.#budget.channelsOf(connectionId);
  }

  /**
   * Enters, or updates when the connection is already a member (an update of a non-member enters).
   * `size`: the bytes of `data` as JSON, when the caller measured them already.
   */
  enter(
    channel: string,
    connectionId: string,
    clientId: string,
    data: JsonValue | undefined,
    size: number = data === undefined ? 0 : Buffer.byteLength(JSON.stringify(data)),
  ): void {
    let set = this.#members.get(channel);
    const existing = set?.get(connectionId);
    if (!existing && (set?.size ?? 0) >= this.#options.maxMembers)
      throw new ServerError(
        'too_many_members',
        `channel ${channel} already has ${this.#options.maxMembers} presence members; try again later`,
      );
    this.#budget.check(connectionId, channel, size);
    if (!set) {
      set = new Map();
      this.#members.set(channel, set);
    }
    const member: PresenceMember = { clientId, connectionId, timestamp: Date.now() };
    if (data !== undefined) member.data = data;
    set.set(connectionId, member);
    this.#budget.add(connectionId, channel, size);
    // entering twice is an update; updating when absent is an enter
    this.#emit({ type: 'presence', channel, action: existing ? 'update' : 'enter', member });
  }

  leave(channel: string, connectionId: string): void {
    const set = this.#members.get(channel);
    const member = set?.get(connectionId);
    if (!set || !member) return;
    set.delete(connectionId);
    if (set.size === 0) this.#members.delete(channel);
    this.#budget.remove(connectionId, channel);
    this.#emit({ type: 'presence', channel, action: 'leave', member: { ...member, timestamp: Date.now() } });
  }

  /** The connection closed on purpose: its members leave now. */
  connectionClosed(connectionId: string): void {
    this.#cancelPendingLeave(connectionId);
    this.#departed.delete(connectionId);
    this.#forgetDeparted();
    for (const channel of this.channelsOf(connectionId)) this.leave(channel, connectionId);
    this.#budget.forget(connectionId);
  }

  /** The connection dropped: its members leave after the grace period unless it comes back. */
  connectionLost(connectionId: string): void {
    if (!this.#budget.isPresent(connectionId)) return;
    this.#cancelPendingLeave(connectionId);
    const timer = setTimeout(() => {
      this.#pendingLeaves.delete(connectionId);
      // remember what it was, in case the connection is recovered later within its state TTL
      const members = this.channelsOf(connectionId).flatMap((channel) => {
        const member = this.#members.get(channel)?.get(connectionId);
        return member ? [{ channel, member }] : [];
      });
      this.connectionClosed(connectionId);
      if (members.length > 0) this.#departed.set(connectionId, { members, at: Date.now() });
    }, this.#options.grace);
    timer.unref();
    this.#pendingLeaves.set(connectionId, timer);
  }

  /**
   * The connection was recovered within its state TTL. Within the grace its membership simply holds
   * (nothing is announced); after the grace its members left, so they enter again.
   */
  connectionResumed(connectionId: string): void {
    this.#cancelPendingLeave(connectionId);
    this.#forgetDeparted();
    const departed = this.#departed.get(connectionId);
    this.#departed.delete(connectionId);
    for (const { channel, member } of departed?.members ?? []) {
      try {
        this.enter(channel, connectionId, member.clientId, member.data);
      } catch {
        // the channel filled up meanwhile: the client sees itself missing from the snapshot
      }
    }
  }

  #forgetDeparted(): void {
    const cutoff = Date.now() - this.#options.recoverWithin;
    for (const [id, departed] of this.#departed) if (departed.at < cutoff) this.#departed.delete(id);
  }

  subscribe(channel: string, listener: PresenceListener): () => void {
    return this.#listeners.add(channel, listener);
  }

  close(): void {
    for (const timer of this.#pendingLeaves.values()) clearTimeout(timer);
    this.#pendingLeaves.clear();
  }

  #cancelPendingLeave(connectionId: string): void {
    const timer = this.#pendingLeaves.get(connectionId);
    if (timer) clearTimeout(timer);
    this.#pendingLeaves.delete(connectionId);
  }

  #emit(frame: PresenceFrame): void {
    const listeners = this.#listeners.get(frame.channel);
    if (!listeners) return;
    const encoded = Buffer.from(JSON.stringify(frame));
    for (const listener of listeners) listener(encoded);
  }
}
