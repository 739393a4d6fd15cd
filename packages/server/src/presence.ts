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
 * Memory follows the budgets: a member's data is kept as its JSON text (the size the budget counts),
 * never as parsed objects (a JSON array of 21,000 `{}` is 63 KB as text, ~1.3 MB as objects), and
 * the frames sent (events, `sync`) are built from that text. What dropped connections keep (members
 * in their grace, then the departed members kept for a recovery within `recoverWithin`) is bounded
 * per clientId by `maxDroppedBytesPerClient`: past it, the oldest dropped connection of that clientId
 * is let go (its members leave now, or its departed members are forgotten), so connecting, entering
 * and dropping without end holds no more than the bound.
 *
 * One clientId holds at most `maxMembersPerClient` members in a channel, those in their grace
 * included: each of its connections is a member, and a dropped one stays for the grace while its
 * connection no longer counts, so without it a few accounts' reloads fill a channel for everyone. A
 * new member past the cap replaces the clientId's oldest members still in their grace (they leave,
 * as when the grace ends), so a user reloading tabs is never refused; only when its members are all
 * connected is the enter refused (`too_many_members`).
 *
 * `Presence` is the seam: `PresenceService` here is node-local; `RedisPresence` (redis-presence.ts)
 * keeps the same sets in Redis so every node sees them, and removes a dead node's members.
 */
import type { JsonValue, PresenceMember } from '@mooring/protocol';
import { PresenceBudget } from './presence-budget.ts';
import { PresenceFanOut, type PresenceFanOutOptions } from './presence-fan-out.ts';
import { ServerError } from './server-error.ts';

export type PresenceListener = (frame: Buffer) => void;

export interface PresenceOptions {
  grace: number;
  maxMembers: number;
  /** Members of one clientId in one channel, those in their grace included; 0 or absent: no limit. */
  maxMembersPerClient?: number;
  /** Channels one connection may be present in. */
  maxChannelsPerConnection: number;
  /** Bytes of member data (as JSON) one connection may hold over all its channels. */
  maxBytesPerConnection: number;
  /** How long a dropped connection can still be recovered (connectionStateTtl), ms. */
  recoverWithin: number;
  /**
   * What the dropped connections of one clientId keep together (members in their grace, then kept
   * for a recovery), counted as their data's JSON bytes plus `DROPPED_MEMBER_COST` per member: what
   * that clientId's live connections may hold (server.ts).
   */
  maxDroppedBytesPerClient: number;
  /** What the metrics count of a crowded channel's presence (presence-fan-out.ts). */
  fanOut?: PresenceFanOutOptions;
}

/** Presence sets, node-local or shared; `enter` and `members` may answer later on a shared one. */
export interface Presence {
  members(channel: string): PresenceMember[] | Promise<PresenceMember[]>;
  /**
   * How many members the channel has, reading none of them (their data may be MiBs): what an
   * operator endpoint shows (`GET …/health`), at the cost of one lookup, not of the set.
   */
  count(channel: string): number | Promise<number>;
  channelsOf(connectionId: string): string[];
  enter(
    channel: string,
    connectionId: string,
    clientId: string,
    data: JsonValue | undefined,
    size?: number,
    /** `data` as JSON, when the caller serialised it already (`size` is then its bytes). */
    json?: string,
  ): void | Promise<void>;
  leave(channel: string, connectionId: string): void;
  connectionClosed(connectionId: string): void;
  connectionLost(connectionId: string): void;
  /**
   * The connection was recovered. `keeps`: the channels its new credentials allow presence on; its
   * members elsewhere leave (within the grace) or do not enter again (after it).
   */
  connectionResumed(connectionId: string, keeps?: (channel: string) => boolean): void;
  /**
   * A shared implementation (Redis): the connection was recovered on another node, which took its
   * members over. Forget it here, leaving nothing and announcing nothing.
   */
  connectionMoved?(connectionId: string): void;
  /**
   * The channel's `sync` frame, encoded (PROTOCOL.md §6.4): what `members` gives, as JSON, built
   * from the members' stored JSON without parsing it. Optional: without it the frame is made from
   * `members`.
   */
  syncFrame?(channel: string): Buffer | Promise<Buffer>;
  /**
   * The channel's members, each as JSON (what `members` gives, written out), from their stored JSON
   * without parsing it. Optional: without it they are written from `members`.
   */
  memberJsons?(channel: string): string[] | Promise<string[]>;
  subscribe(channel: string, listener: PresenceListener): () => void;
  close(): void | Promise<void>;
}

/** A member as kept: its data as JSON text, as the budget counts it. */
interface StoredMember {
  clientId: string;
  connectionId: string;
  timestamp: number;
  /** The data as JSON, or undefined when the member has none. */
  data: string | undefined;
  /** Bytes of `data` (UTF-8), as counted by the budget. */
  size: number;
}

/** A dropped connection: in its grace (`timer`), or departed (`departed`, its members left). */
interface Dropped {
  clientId: string;
  /** What it counts in `maxDroppedBytesPerClient`. */
  cost: number;
  timer: NodeJS.Timeout | undefined;
  /** Set once its members left: what is needed to make them enter again on a recovery. */
  departed:
    | { at: number; members: Array<{ channel: string; data: string | undefined; size: number }> }
    | undefined;
}

/**
 * A channel's `sync` frame is kept (until the set changes) from this many members on: each attach
 * of the channel is sent one, and a set of 1,000 members is ~100 KB to encode. Smaller ones are
 * cheap to encode again and not worth a copy of their data.
 */
export const SYNC_KEPT_FROM = 32;

export class PresenceService implements Presence {
  readonly #members = new Map<string, Map<string, StoredMember>>();
  readonly #listeners: PresenceFanOut;
  /** The `sync` frames of large sets, until their next change (`syncFrame`). */
  readonly #syncs = new Map<string, Buffer>();
  readonly #budget: PresenceBudget;
  /** Dropped connections (in grace or departed), by connectionId. */
  readonly #dropped = new Map<string, Dropped>();
  /** Per clientId: its dropped connections, oldest first, and their total cost. */
  readonly #droppedOf = new Map<string, { cost: number; ids: Set<string> }>();
  /** Per channel, per clientId: the connections that are its members there (`maxMembersPerClient`). */
  readonly #membersOf = new Map<string, Map<string, Set<string>>>();
  readonly #options: PresenceOptions;
  /** Bytes of member data (JSON) held by the sets now. */
  #heldBytes = 0;

  constructor(options: PresenceOptions) {
    this.#options = options;
    this.#listeners = new PresenceFanOut(options.fanOut);
    this.#budget = new PresenceBudget(options);
  }

  members(channel: string): PresenceMember[] {
    return [...(this.#members.get(channel)?.values() ?? [])].map(toMember);
  }

  count(channel: string): number {
    return this.#members.get(channel)?.size ?? 0;
  }

  syncFrame(channel: string): Buffer {
    const kept = this.#syncs.get(channel);
    if (kept) return kept;
    const frame = encodeSync(channel, this.memberJsons(channel));
    // a large set's frame is kept until its next change: a busy channel's attaches share it
    if ((this.#members.get(channel)?.size ?? 0) >= SYNC_KEPT_FROM) this.#syncs.set(channel, frame);
    return frame;
  }

  memberJsons(channel: string): string[] {
    return [...(this.#members.get(channel)?.values() ?? [])].map(memberJson);
  }

  /**
   * What the service keeps, for tests and diagnostics: members and their data bytes in the sets,
   * and the dropped connections (in grace or departed) with their cost and departed data bytes.
   */
  retained(): {
    members: number;
    bytes: number;
    dropped: number;
    droppedCost: number;
    departedBytes: number;
  } {
    let members = 0;
    for (const set of this.#members.values()) members += set.size;
    let droppedCost = 0;
    for (const of of this.#droppedOf.values()) droppedCost += of.cost;
    let departedBytes = 0;
    for (const dropped of this.#dropped.values())
      for (const m of dropped.departed?.members ?? []) departedBytes += m.size;
    return { members, bytes: this.#heldBytes, dropped: this.#dropped.size, droppedCost, departedBytes };
  }

  /** The channels where the connection is a presence member. */
  channelsOf(connectionId: string): string[] {
    return this.#budget.channelsOf(connectionId);
  }

  /**
   * Enters, or updates when the connection is already a member (an update of a non-member enters).
   * `size`: the bytes of `data` as JSON, and `json` that JSON, when the caller made them already.
   */
  enter(
    channel: string,
    connectionId: string,
    clientId: string,
    data: JsonValue | undefined,
    size?: number,
    json?: string,
  ): void {
    const text = data === undefined ? undefined : (json ?? JSON.stringify(data));
    this.#enter(
      channel,
      connectionId,
      clientId,
      text,
      size ?? (text === undefined ? 0 : Buffer.byteLength(text)),
    );
  }

  #enter(
    channel: string,
    connectionId: string,
    clientId: string,
    data: string | undefined,
    size: number,
  ): void {
    let set = this.#members.get(channel);
    const existing = set?.get(connectionId);
    // nothing changes before every check passed: the members replaced leave last
    const replaced = existing ? [] : this.#replaced(channel, clientId);
    if (!existing && (set?.size ?? 0) - replaced.length >= this.#options.maxMembers)
      throw new ServerError(
        'too_many_members',
        `channel ${channel} already has ${this.#options.maxMembers} presence members; try again later`,
      );
    this.#budget.check(connectionId, channel, size);
    for (const id of replaced) this.leave(channel, id);
    set = this.#members.get(channel);
    if (!set) {
      set = new Map();
      this.#members.set(channel, set);
    }
    const member: StoredMember = { clientId, connectionId, timestamp: Date.now(), data, size };
    set.set(connectionId, member);
    this.#heldBytes += size - (existing?.size ?? 0);
    this.#budget.add(connectionId, channel, size);
    if (!existing) this.#countMember(channel, clientId, connectionId, true);
    // entering twice is an update; updating when absent is an enter
    this.#emit(channel, connectionId, existing ? 'update' : 'enter', memberJson(member));
  }

  leave(channel: string, connectionId: string): void {
    const set = this.#members.get(channel);
    const member = set?.get(connectionId);
    if (!set || !member) return;
    set.delete(connectionId);
    if (set.size === 0) this.#members.delete(channel);
    this.#countMember(channel, member.clientId, connectionId, false);
    this.#heldBytes -= member.size;
    this.#budget.remove(connectionId, channel);
    this.#emit(channel, connectionId, 'leave', memberJson({ ...member, timestamp: Date.now() }));
  }

  /** The connection closed on purpose: its members leave now. */
  connectionClosed(connectionId: string): void {
    this.#forgetDropped(connectionId);
    this.#forgetDeparted();
    this.#leaveAll(connectionId);
  }

  #leaveAll(connectionId: string): void {
    for (const channel of this.channelsOf(connectionId)) this.leave(channel, connectionId);
    this.#budget.forget(connectionId);
  }

  /** The connection dropped: its members leave after the grace period unless it comes back. */
  connectionLost(connectionId: string): void {
    if (!this.#budget.isPresent(connectionId)) return;
    this.#forgetDropped(connectionId);
    this.#forgetDeparted();
    const held = this.#held(connectionId);
    const clientId = held[0]?.member.clientId;
    if (clientId === undefined) return;
    const cost = this.#budget.droppedCost(connectionId);
    const timer = setTimeout(() => {
      const dropped = this.#dropped.get(connectionId);
      if (dropped?.timer !== timer) return;
      dropped.timer = undefined;
      // remember what it was, in case the connection is recovered later within its state TTL:
      // the channels and the data's JSON, nothing more
      const members = this.#held(connectionId).map(({ channel, member }) => ({
        channel,
        data: member.data,
        size: member.size,
      }));
      this.#leaveAll(connectionId);
      if (members.length > 0) dropped.departed = { at: Date.now(), members };
      else this.#forgetDropped(connectionId);
    }, this.#options.grace);
    timer.unref();
    this.#dropped.set(connectionId, { clientId, cost, timer, departed: undefined });
    let of = this.#droppedOf.get(clientId);
    if (!of) {
      of = { cost: 0, ids: new Set() };
      this.#droppedOf.set(clientId, of);
    }
    of.ids.add(connectionId);
    of.cost += cost;
    // over the bound: let the oldest dropped connections of this clientId go (never the one just lost)
    for (const oldest of of.ids) {
      if (of.cost <= this.#options.maxDroppedBytesPerClient || oldest === connectionId) break;
      this.#letGo(oldest);
    }
  }

  /**
   * The connection was recovered within its state TTL. Within the grace its membership simply holds
   * (nothing is announced); after the grace its members left, so they enter again — only where its
   * new credentials allow presence (`keeps`), as a renewal would leave the others.
   */
  connectionResumed(connectionId: string, keeps: (channel: string) => boolean = () => true): void {
    this.#forgetDeparted();
    const departed = this.#dropped.get(connectionId)?.departed;
    const clientId = this.#dropped.get(connectionId)?.clientId;
    this.#forgetDropped(connectionId);
    for (const channel of this.channelsOf(connectionId))
      if (!keeps(channel)) this.leave(channel, connectionId);
    if (!departed || clientId === undefined) return;
    for (const { channel, data, size } of departed.members) {
      if (!keeps(channel)) continue;
      try {
        this.#enter(channel, connectionId, clientId, data, size);
      } catch {
        // the channel filled up meanwhile: the client sees itself missing from the snapshot
      }
    }
  }

  /**
   * The members of `clientId` in `channel` that leave for a new one (`maxMembersPerClient`): none
   * below the cap; at it, the oldest still in their grace (their connection dropped), as many as
   * make room. Throws `too_many_members` when its connected members alone fill the cap.
   */
  #replaced(channel: string, clientId: string): string[] {
    const max = this.#options.maxMembersPerClient ?? 0;
    const mine = this.#membersOf.get(channel)?.get(clientId);
    if (max <= 0 || !mine || mine.size < max) return [];
    const over = mine.size - max + 1;
    const replaced: string[] = [];
    // its dropped connections are in the order they dropped: the oldest first
    for (const id of this.#droppedOf.get(clientId)?.ids ?? []) {
      if (replaced.length === over) break;
      if (this.#dropped.get(id)?.timer !== undefined && mine.has(id)) replaced.push(id);
    }
    if (replaced.length < over) throw clientFull(channel, clientId, max);
    return replaced;
  }

  #countMember(channel: string, clientId: string, connectionId: string, added: boolean): void {
    let ofChannel = this.#membersOf.get(channel);
    if (added) {
      if (!ofChannel) {
        ofChannel = new Map();
        this.#membersOf.set(channel, ofChannel);
      }
      let mine = ofChannel.get(clientId);
      if (!mine) {
        mine = new Set();
        ofChannel.set(clientId, mine);
      }
      mine.add(connectionId);
      return;
    }
    const mine = ofChannel?.get(clientId);
    if (!ofChannel || !mine) return;
    mine.delete(connectionId);
    if (mine.size > 0) return;
    ofChannel.delete(clientId);
    if (ofChannel.size === 0) this.#membersOf.delete(channel);
  }

  /** A dropped connection over its clientId's bound: its members leave now, or its departed ones are forgotten. */
  #letGo(connectionId: string): void {
    const dropped = this.#dropped.get(connectionId);
    this.#forgetDropped(connectionId);
    if (dropped?.departed === undefined) this.#leaveAll(connectionId);
  }

  /** Stops counting a dropped connection (recovered, closed, let go or expired); cancels its grace. */
  #forgetDropped(connectionId: string): void {
    const dropped = this.#dropped.get(connectionId);
    if (!dropped) return;
    if (dropped.timer) clearTimeout(dropped.timer);
    this.#dropped.delete(connectionId);
    const of = this.#droppedOf.get(dropped.clientId);
    if (!of) return;
    of.ids.delete(connectionId);
    of.cost -= dropped.cost;
    if (of.ids.size === 0) this.#droppedOf.delete(dropped.clientId);
  }

  #forgetDeparted(): void {
    const cutoff = Date.now() - this.#options.recoverWithin;
    for (const [id, dropped] of this.#dropped)
      if (dropped.departed && dropped.departed.at < cutoff) this.#forgetDropped(id);
  }

  /** The connection's members, with their channels. */
  #held(connectionId: string): Array<{ channel: string; member: StoredMember }> {
    return this.channelsOf(connectionId).flatMap((channel) => {
      const member = this.#members.get(channel)?.get(connectionId);
      return member ? [{ channel, member }] : [];
    });
  }

  subscribe(channel: string, listener: PresenceListener): () => void {
    return this.#listeners.add(channel, listener);
  }

  close(): void {
    for (const dropped of this.#dropped.values()) if (dropped.timer) clearTimeout(dropped.timer);
    this.#dropped.clear();
    this.#droppedOf.clear();
  }

  #emit(channel: string, connectionId: string, action: 'enter' | 'update' | 'leave', member: string): void {
    this.#syncs.delete(channel);
    if (this.#listeners.count(channel) === 0) return;
    // as JSON.stringify({ type, channel, action, member }) would write it
    const encoded = Buffer.from(
      `{"type":"presence","channel":${JSON.stringify(channel)},"action":"${action}","member":${member}}`,
    );
    this.#listeners.emit(channel, connectionId, encoded);
  }
}

/** The refusal of a member past `maxPresenceMembersPerClient`, whose connections are all live. */
export function clientFull(channel: string, clientId: string, max: number): ServerError {
  return new ServerError(
    'too_many_members',
    `clientId ${clientId} already has ${max} presence members in channel ${channel}, the most one clientId may have (maxPresenceMembersPerClient), all of them connected; leave with one of them first`,
  );
}

/**
 * The `sync` frame of a channel, from its members already as JSON: what JSON.stringify({ type,
 * channel, action: 'sync', members }) would write.
 */
export function encodeSync(channel: string, members: readonly string[]): Buffer {
  return Buffer.from(
    `{"type":"presence","channel":${JSON.stringify(channel)},"action":"sync","members":[${members.join(',')}]}`,
  );
}

/**
 * A member as JSON, its data given as JSON text: what JSON.stringify({ clientId, connectionId,
 * timestamp, data }) would write, byte for byte.
 */
export function memberJson(member: {
  clientId: string;
  connectionId: string;
  timestamp: number;
  data: string | undefined;
}): string {
  const data = member.data === undefined ? '' : `,"data":${member.data}`;
  return `{"clientId":${JSON.stringify(member.clientId)},"connectionId":${JSON.stringify(member.connectionId)},"timestamp":${member.timestamp}${data}}`;
}

function toMember(stored: StoredMember): PresenceMember {
  const member: PresenceMember = {
    clientId: stored.clientId,
    connectionId: stored.connectionId,
    timestamp: stored.timestamp,
  };
  if (stored.data !== undefined) member.data = JSON.parse(stored.data) as JsonValue;
  return member;
}
