/**
 * Delivery health per channel: "is it happening to *that* session?". For each channel this node
 * serves it keeps who is subscribed (connection, clientId, transport), and over the last 15 minutes
 * the reconnects, resumes that held, continuity lost, connections lost, time offline, what catch-up
 * sent, slow-consumer drops; and the publishes received but not yet acknowledged (the oldest one's
 * age is how long an agent has been waiting for its ack).
 *
 * Bounded whatever the clients do: at most `maxChannels` channels are tracked, at most 64 remembered
 * drops per channel, and 15 one-minute slots per channel. Past `maxChannels`, what is forgotten
 * first is what nobody will look for: a record with nothing notable in the window (no reconnect,
 * drop, continuity lost or time offline), idle (no subscriber, no publish in flight) first, then
 * busy; only then an idle one in trouble, then the oldest. A channel whose users all dropped is idle
 * and exactly a session in trouble, so it is kept for the window. And a holder (key + clientId,
 * `holderKey`) that created a quarter of the records or more, when the table is full, forgets its
 * own oldest record for each new one: one token holder attaching thousands of channels (and
 * dropping them, to make them look troubled) recycles its own records, not everyone else's. Never a Prometheus label: per-channel numbers are
 * served as JSON (`GET /v1/channels/:channel/health`, `GET /v1/health`), so the metric series stay
 * bounded. Hot-path cost: a publish does one map lookup and one map insert/delete.
 */
import type { ResumeFailure } from '@mooring/protocol';
import type { ConnectionKind } from './connection.ts';
import { type BudgetIdentity, holderKey } from './identity-budgets.ts';

/** The window the per-channel counts cover. */
export const HEALTH_WINDOW_MS = 15 * 60_000;
const SLOT_MS = 60_000;
const SLOTS = HEALTH_WINDOW_MS / SLOT_MS;
const MAX_DROPS = 64;
export const DEFAULT_MAX_CHANNELS = 5_000;
/**
 * A report lists at most this many subscribers (the earliest attached), and counts them all in
 * `subscriberCount`: a channel with 10,000 subscribers on the node would be a ~1 MB answer, built
 * and sent whole, to anyone who may inspect it.
 */
export const MAX_SUBSCRIBERS_LISTED = 200;

const F_RECONNECTS = 0;
const F_RESUMES = 1;
const F_LOST_CONTINUITY = 2;
const F_SLOW = 3;
const F_CONNECTIONS_LOST = 4;
const F_OFFLINE_MS = 5;
const F_MAX_OFFLINE_MS = 6;
const F_CAUGHT_UP_MESSAGES = 7;
const F_CAUGHT_UP_BYTES = 8;
const FIELDS = 9;
/** Fields that count in `trouble`: a record with one of them in the window is notable. */
const TROUBLE_FIELDS = new Set([F_RECONNECTS, F_LOST_CONTINUITY, F_SLOW, F_CONNECTIONS_LOST, F_OFFLINE_MS]);

export interface SubscriberHealth {
  connectionId: string;
  clientId?: string;
  transport: ConnectionKind;
  /** When it attached (ms since 1970). */
  since: number;
}

export interface ChannelHealth {
  channel: string;
  /** The first `MAX_SUBSCRIBERS_LISTED` subscribers, earliest attached first (see `subscriberCount`). */
  subscribers: SubscriberHealth[];
  /** How many subscribers the channel has on this node, listed or not. */
  subscriberCount: number;
  /** Counts over the last `windowMinutes`. */
  windowMinutes: number;
  /** Attaches that asked to resume from a position. */
  reconnects: number;
  /** ... of which continuity held (`resumed: true`). */
  resumes: number;
  /** Resumes answered `resumed: false`: the client had to reload the session from history. */
  continuityLost: number;
  lastContinuityLost?: { reason: ResumeFailure; at: number };
  /** Subscribers whose connection was lost (not closed by the client) while attached. */
  connectionsLost: number;
  slowConsumerDrops: number;
  /** Time between a subscriber's drop and its return to the channel, summed, and the longest. */
  offlineMs: number;
  maxOfflineMs: number;
  caughtUpMessages: number;
  caughtUpBytes: number;
  /** Publishes received and not yet acknowledged (stored), and how long the oldest has waited. */
  unackedPublishes: number;
  oldestUnackedMs: number | null;
  /** A score for sorting: higher is worse; 0 means nothing went wrong in the window. */
  trouble: number;
}

class ChannelRecord {
  readonly subscribers = new Map<string, SubscriberHealth>();
  /** Until when something in its window counts as trouble (ms since 1970; 0: never did). */
  notableUntil = 0;
  /** The holder whose attach or publish created it (`holderKey`), when known. */
  readonly holder: string | undefined;

  constructor(holder?: string) {
    this.holder = holder;
  }

  /**
   * Drop time by subscriber (clientId, or connection id for anonymous ones). Created by the first
   * drop, as `inflight` is by the first publish: a record exists per attached channel, and two
   * empty Maps are ~0.5 KB of it (bench/README, "Idle connections").
   */
  drops: Map<string, number> | undefined;
  /** Publishes in flight: id → start; insertion order is start order, so the first is the oldest. */
  inflight: Map<number, number> | undefined;
  lastContinuityLost: { reason: ResumeFailure; at: number } | undefined;
  slots: Float64Array | undefined;
  minutes: Float64Array | undefined;

  add(field: number, n: number, now: number, max = false): void {
    if (!this.slots || !this.minutes) {
      this.slots = new Float64Array(SLOTS * FIELDS);
      this.minutes = new Float64Array(SLOTS).fill(-1);
    }
    const minute = Math.floor(now / SLOT_MS);
    const slot = minute % SLOTS;
    if (this.minutes[slot] !== minute) {
      this.minutes[slot] = minute;
      this.slots.fill(0, slot * FIELDS, slot * FIELDS + FIELDS);
    }
    const at = slot * FIELDS + field;
    this.slots[at] = max ? Math.max(this.slots[at]!, n) : this.slots[at]! + n;
    if (n > 0 && TROUBLE_FIELDS.has(field)) this.notableUntil = now + HEALTH_WINDOW_MS;
  }

  /** Nothing in the window counts as trouble: forgetting it loses nobody's diagnosis. */
  quiet(now: number): boolean {
    return this.notableUntil <= now;
  }

  /** Every field over the slots still in the window, in one pass (max for F_MAX_OFFLINE_MS). */
  totals(now: number): Float64Array {
    const out = new Float64Array(FIELDS);
    if (!this.slots || !this.minutes) return out;
    const oldest = Math.floor(now / SLOT_MS) - SLOTS;
    for (let slot = 0; slot < SLOTS; slot++) {
      if (this.minutes[slot]! <= oldest) continue;
      const base = slot * FIELDS;
      for (let f = 0; f < FIELDS; f++) {
        const value = this.slots[base + f]!;
        out[f] = f === F_MAX_OFFLINE_MS ? Math.max(out[f]!, value) : out[f]! + value;
      }
    }
    return out;
  }

  get idle(): boolean {
    return this.subscribers.size === 0 && !this.inflight?.size;
  }
}

export interface DeliveryHealthOptions {
  maxChannels?: number;
  /**
   * Records one holder may have created once `maxChannels` are tracked; past it, each new one of
   * its own replaces its oldest (default a quarter of `maxChannels`).
   */
  maxChannelsPerHolder?: number;
  now?: () => number;
}

export class DeliveryHealth {
  readonly #channels = new Map<string, ChannelRecord>();
  /**
   * The channels each connection is attached to (to account for its end): the channel's name while
   * it is one (most connections), a Set from the second on.
   */
  readonly #byConnection = new Map<string, string | Set<string>>();
  readonly #max: number;
  readonly #perHolder: number;
  /** The records each holder created, oldest first (only holders with some). */
  readonly #byHolder = new Map<string, Set<string>>();
  readonly #now: () => number;
  #publishIds = 0;
  /**
   * Records that are `idle` (no subscriber, no publish in flight): while there are none, a new
   * channel past `maxChannels` forgets the oldest at once instead of looking through all of them
   * for an idle one first (5,000 records per attach, ~50 µs, on a node with more channels attached).
   */
  #idleRecords = 0;

  constructor(options: DeliveryHealthOptions = {}) {
    this.#max = options.maxChannels ?? DEFAULT_MAX_CHANNELS;
    this.#perHolder = options.maxChannelsPerHolder ?? Math.max(1, Math.floor(this.#max / 4));
    this.#now = options.now ?? Date.now;
  }

  /**
   * A channel attach completed on a connection (`resume`: it asked to resume from a position).
   * `holder`: whose connection (`holderKey`), which a new record counts against.
   */
  attached(
    channel: string,
    subscriber: {
      connectionId: string;
      clientId?: string | undefined;
      transport: ConnectionKind;
      holder?: string | undefined;
    },
    resume: boolean,
    outcome: { resumed: boolean; reason?: ResumeFailure | undefined },
  ): void {
    const now = this.#now();
    const record = this.#record(channel, subscriber.holder);
    const entry: SubscriberHealth = {
      connectionId: subscriber.connectionId,
      transport: subscriber.transport,
      since: now,
    };
    if (subscriber.clientId !== undefined) entry.clientId = subscriber.clientId;
    const wasIdle = record.idle;
    record.subscribers.set(subscriber.connectionId, entry);
    this.#idleChanged(record, wasIdle);
    const channels = this.#byConnection.get(subscriber.connectionId);
    if (channels === undefined || channels === channel)
      this.#byConnection.set(subscriber.connectionId, channel);
    else if (typeof channels === 'string')
      this.#byConnection.set(subscriber.connectionId, new Set([channels, channel]));
    else channels.add(channel);
    const who = subscriber.clientId ?? subscriber.connectionId;
    const droppedAt = record.drops?.get(who);
    if (droppedAt !== undefined) {
      record.drops?.delete(who);
      record.add(F_OFFLINE_MS, now - droppedAt, now);
      record.add(F_MAX_OFFLINE_MS, now - droppedAt, now, true);
    }
    if (!resume) return;
    record.add(F_RECONNECTS, 1, now);
    if (outcome.resumed) record.add(F_RESUMES, 1, now);
    else {
      record.add(F_LOST_CONTINUITY, 1, now);
      record.lastContinuityLost = { reason: outcome.reason ?? 'epoch_changed', at: now };
    }
  }

  /** The connection detached the channel on purpose. */
  detached(channel: string, connectionId: string): void {
    const record = this.#channels.get(channel);
    if (record) this.#unsubscribe(record, connectionId);
    this.#forget(connectionId, channel);
  }

  #unsubscribe(record: ChannelRecord, connectionId: string): void {
    const wasIdle = record.idle;
    record.subscribers.delete(connectionId);
    this.#idleChanged(record, wasIdle);
  }

  /** Counts `record` in or out of `#idleRecords` after a change that may have made it (not) idle. */
  #idleChanged(record: ChannelRecord, wasIdle: boolean): void {
    const idle = record.idle;
    if (idle !== wasIdle) this.#idleRecords += idle ? 1 : -1;
  }

  /** `channel` is no longer one of the connection's. */
  #forget(connectionId: string, channel: string): void {
    const channels = this.#byConnection.get(connectionId);
    if (channels === channel) this.#byConnection.delete(connectionId);
    else if (typeof channels === 'object') channels.delete(channel);
  }

  /**
   * The connection ended; `reason` as in `mooring_connections_closed_total` (`closed` = by the
   * client: not a drop). Every other end starts the subscriber's time offline on its channels.
   */
  connectionEnded(connectionId: string, clientId: string | undefined, reason: string): void {
    const channels = this.#byConnection.get(connectionId);
    if (channels === undefined) return;
    this.#byConnection.delete(connectionId);
    const now = this.#now();
    for (const channel of typeof channels === 'string' ? [channels] : channels) {
      const record = this.#channels.get(channel);
      if (!record) continue;
      this.#unsubscribe(record, connectionId);
      if (reason === 'closed' || reason === 'shutting_down') continue;
      if (reason === 'slow_consumer') record.add(F_SLOW, 1, now);
      record.add(F_CONNECTIONS_LOST, 1, now);
      record.drops ??= new Map();
      if (record.drops.size >= MAX_DROPS) {
        const oldest = record.drops.keys().next().value;
        if (oldest !== undefined) record.drops.delete(oldest);
      }
      record.drops.set(clientId ?? connectionId, now);
    }
  }

  /** Catch-up sent `messages` in `bytes` of frames on the channel. */
  caughtUp(channel: string, messages: number, bytes: number): void {
    const record = this.#channels.get(channel);
    if (!record) return;
    const now = this.#now();
    record.add(F_CAUGHT_UP_MESSAGES, messages, now);
    record.add(F_CAUGHT_UP_BYTES, bytes, now);
  }

  /**
   * A publish was received; returns its id for `published` (acknowledged or failed). `holder`: who
   * published (`holderKey`), which a new record counts against.
   */
  publishing(channel: string, by?: BudgetIdentity): number {
    const id = ++this.#publishIds;
    // the holder's key is made only for a record made now (a string per publish otherwise)
    const record =
      this.#channels.get(channel) ?? this.#record(channel, by === undefined ? undefined : holderKey(by));
    const wasIdle = record.idle;
    record.inflight ??= new Map();
    record.inflight.set(id, this.#now());
    this.#idleChanged(record, wasIdle);
    return id;
  }

  published(channel: string, id: number): void {
    const record = this.#channels.get(channel);
    if (!record?.inflight) return;
    const wasIdle = record.idle;
    record.inflight.delete(id);
    this.#idleChanged(record, wasIdle);
  }

  /** The health of one channel (undefined when this node knows nothing of it). */
  channel(channel: string): ChannelHealth | undefined {
    const record = this.#channels.get(channel);
    return record && this.#report(channel, record, this.#now());
  }

  /** The health of a channel nothing happened on: all zeros. */
  empty(channel: string): ChannelHealth {
    return this.#report(channel, new ChannelRecord(), this.#now());
  }

  /** The `limit` channels with the most trouble (trouble > 0) that `visible` lets the caller see. */
  worst(limit: number, visible: (channel: string) => boolean = () => true): ChannelHealth[] {
    const now = this.#now();
    const reports: ChannelHealth[] = [];
    for (const [channel, record] of this.#channels) {
      // nothing ever went wrong here: no report to build (most channels, most of the time)
      if (!record.slots && !record.inflight?.size && !record.drops?.size) continue;
      if (!visible(channel)) continue;
      const report = this.#report(channel, record, now);
      if (report.trouble > 0) reports.push(report);
    }
    return reports.sort((a, b) => b.trouble - a.trouble).slice(0, limit);
  }

  get trackedChannels(): number {
    return this.#channels.size;
  }

  #report(channel: string, r: ChannelRecord, now: number): ChannelHealth {
    const oldest = r.inflight?.values().next().value;
    const t = r.totals(now);
    const report: ChannelHealth = {
      channel,
      subscribers: firstSubscribers(r.subscribers),
      subscriberCount: r.subscribers.size,
      windowMinutes: SLOTS,
      reconnects: t[F_RECONNECTS]!,
      resumes: t[F_RESUMES]!,
      continuityLost: t[F_LOST_CONTINUITY]!,
      connectionsLost: t[F_CONNECTIONS_LOST]!,
      slowConsumerDrops: t[F_SLOW]!,
      offlineMs: t[F_OFFLINE_MS]!,
      maxOfflineMs: t[F_MAX_OFFLINE_MS]!,
      caughtUpMessages: t[F_CAUGHT_UP_MESSAGES]!,
      caughtUpBytes: t[F_CAUGHT_UP_BYTES]!,
      unackedPublishes: r.inflight?.size ?? 0,
      oldestUnackedMs: oldest === undefined ? null : now - oldest,
      trouble: 0,
    };
    if (r.lastContinuityLost && now - r.lastContinuityLost.at < HEALTH_WINDOW_MS)
      report.lastContinuityLost = r.lastContinuityLost;
    // still offline: count the time so far
    for (const at of r.drops?.values() ?? []) {
      if (now - at > HEALTH_WINDOW_MS) continue;
      report.offlineMs += now - at;
      report.maxOfflineMs = Math.max(report.maxOfflineMs, now - at);
    }
    report.trouble =
      report.continuityLost * 10 +
      report.slowConsumerDrops * 5 +
      report.connectionsLost * 2 +
      report.reconnects +
      report.offlineMs / 10_000 +
      (report.oldestUnackedMs !== null && report.oldestUnackedMs > 1_000
        ? report.oldestUnackedMs / 1_000
        : 0);
    return report;
  }

  #record(channel: string, holder: string | undefined): ChannelRecord {
    let record = this.#channels.get(channel);
    if (record) return record;
    if (this.#channels.size >= this.#max) this.#evict(holder);
    record = new ChannelRecord(holder);
    this.#channels.set(channel, record);
    this.#idleRecords++;
    if (holder !== undefined) {
      const own = this.#byHolder.get(holder);
      if (own) own.add(channel);
      else this.#byHolder.set(holder, new Set([channel]));
    }
    return record;
  }

  /** Makes room for a record `holder` creates: its own oldest past its share, else the quietest. */
  #evict(holder: string | undefined): void {
    const own = holder === undefined ? undefined : this.#byHolder.get(holder);
    const victim =
      own !== undefined && own.size >= this.#perHolder ? own.values().next().value : this.#quietest();
    if (victim !== undefined) this.#drop(victim);
  }

  /**
   * The oldest record with nothing notable in the window, idle first, then busy; else the oldest
   * idle one; else the oldest. One pass, which ends at the first quiet idle record (or, while none
   * is idle, at the first quiet one): the usual table, mostly quiet, is looked through no further
   * than its first records.
   */
  #quietest(): string | undefined {
    const now = this.#now();
    let quietBusy: string | undefined;
    let idle: string | undefined;
    let oldest: string | undefined;
    for (const [channel, record] of this.#channels) {
      oldest ??= channel;
      const quiet = record.quiet(now);
      if (record.idle) {
        if (quiet) return channel;
        idle ??= channel;
      } else if (quiet) {
        if (this.#idleRecords === 0) return channel; // no idle one to prefer further on
        quietBusy ??= channel;
      }
    }
    return quietBusy ?? idle ?? oldest;
  }

  /** Forgets a channel's record, and what points to it. */
  #drop(channel: string): void {
    const record = this.#channels.get(channel);
    if (!record) return;
    this.#channels.delete(channel);
    if (record.idle) this.#idleRecords--;
    for (const connectionId of record.subscribers.keys()) this.#forget(connectionId, channel);
    if (record.holder === undefined) return;
    const own = this.#byHolder.get(record.holder);
    own?.delete(channel);
    if (own?.size === 0) this.#byHolder.delete(record.holder);
  }
}

/** The first `MAX_SUBSCRIBERS_LISTED` of a channel's subscribers, without copying the rest. */
function firstSubscribers(subscribers: Map<string, SubscriberHealth>): SubscriberHealth[] {
  const listed: SubscriberHealth[] = [];
  for (const subscriber of subscribers.values()) {
    if (listed.length === MAX_SUBSCRIBERS_LISTED) break;
    listed.push(subscriber);
  }
  return listed;
}
