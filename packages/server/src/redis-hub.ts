/**
 * Fan-out between nodes over Redis pub/sub (ARCHITECTURE.md §10), behind the same `Hub` interface as the
 * single-node LocalHub: listeners get each channel's operations once, in serial order, after storing.
 *
 * - The store's publish script puts every stored batch on the channel's bus (SPUBLISH, same hash tag
 *   as the channel's keys), so batches reach the bus in serial order. A node subscribes the bus of a
 *   channel only while it has local listeners on it, and delivers its own publishes at once (their
 *   echo from the bus is then dropped as already delivered, by its head alone: `busBatchHead`).
 * - Pub/sub is lossy (a reconnect, an output-buffer limit). Serials are contiguous per channel (one
 *   seq per op), so a jump shows a loss: the node waits `gapGrace` for the missing batch (it may be
 *   in flight on the other socket), then reads what it missed from the store — rolled up, which the
 *   client folds like catch-up, in a frame marked `rolledUp` so that its skipping versions are not
 *   taken for a hole — and goes on. An idle channel whose last batch was lost shows no
 *   jump, so every `checkInterval` each subscribed channel's head is compared with what was delivered.
 * - A read-back comes in pages, in the order of each message's last change, so the subscribers hold
 *   a prefix of the log only once its last page is delivered: every page but the last is marked
 *   `more` (PROTOCOL.md §4.3), and nothing is delivered live in between — also when the store fails
 *   after some pages: what comes next is held and the read-back is made again, from its last page.
 * - Starting a channel: the store head is read *before* the bus subscription is made (on the store's
 *   connection, ahead of the attaching client's own reads), then everything after it is read back
 *   once the subscription is active, so nothing stored in between is missed by a new subscriber.
 * - A new epoch (Redis lost the channel) restarts the count: the new log is delivered from its start.
 */
import type { Message } from '@mooring/protocol';
import { formatSerial, parseSerial, serialSeq } from '@mooring/protocol';
import type { Hub, HubListener } from './hub.ts';
import { LocalHub } from './hub.ts';
import type { BusConnection } from './store/redis-connection.ts';
import type { RedisStore } from './store/redis-store.ts';
import { busBatchHead, busChannel, decodeBusBatch } from './store/redis-store.ts';

export interface RedisHubOptions {
  store: RedisStore;
  /** Test hook: return false to drop a bus payload, as if pub/sub had lost it. */
  filter?: (channel: string, payload: string) => boolean;
  /** How long a jump in serials waits for the missing batch before reading it from the store (ms, default 50). */
  gapGrace?: number;
  /** How often subscribed channels are compared with the store head (ms, default 5,000). */
  checkInterval?: number;
  /** Messages per page of a read-back (default 500; a test lowers it to read back in many pages). */
  readBackPage?: number;
  onError?: (err: unknown) => void;
  /** A delivery handed out in shares on this node (`LocalHubOptions.onPass`). */
  onPass?: () => void;
}

export interface RedisHubStats {
  /** Batches received from the bus. */
  received: number;
  /** Bus payloads dropped by the test filter. */
  dropped: number;
  /** Gaps (or stale channels) read back from the store. */
  repairs: number;
  /** Batches from the bus dropped unparsed: delivered already (mostly this node's own echoes). */
  skipped: number;
}

interface Feed {
  channel: string;
  state: 'starting' | 'live' | 'repairing';
  /** Epoch of the log being delivered (undefined: the channel had none yet). */
  epoch: string | undefined;
  /** Seq of the last operation delivered. */
  delivered: number;
  /** Batches that arrived out of order, or while starting / repairing. */
  pending: Message[][];
  pendingCount: number;
  gapTimer: NodeJS.Timeout | undefined;
  /**
   * The last delivery was a read-back page marked `more`: the subscribers hold no prefix of the log
   * until the read-back's last page (after a failure, a read-back made again from here).
   */
  unfinished: boolean;
  /**
   * Batches held while starting or repairing were dropped (too many): the read-back under way may
   * have read the store before they were stored, so another one follows it.
   */
  overflowed: boolean;
  closed: boolean;
}

const PAGE = 500;
const MAX_PENDING = 10_000;
/** After the bus reconnected, a catch-up that failed is made again after this, doubling… */
const CATCH_UP_RETRY_MS = 100;
/** …up to this. */
const CATCH_UP_MAX_MS = 2_000;

function seqOf(serial: string): number {
  return Math.max(0, serialSeq(serial));
}

function epochOf(serial: string): string {
  return parseSerial(serial)?.epoch ?? '';
}

export class RedisHub implements Hub {
  readonly stats: RedisHubStats = { received: 0, dropped: 0, repairs: 0, skipped: 0 };
  readonly #store: RedisStore;
  readonly #sub: BusConnection;
  readonly #local: LocalHub;
  readonly #feeds = new Map<string, Feed>();
  readonly #o: RedisHubOptions;
  readonly #check: NodeJS.Timeout;
  #closed = false;

  private constructor(sub: BusConnection, options: RedisHubOptions) {
    this.#local = new LocalHub(options.onPass ? { onPass: options.onPass } : {});
    this.#store = options.store;
    this.#sub = sub;
    this.#o = options;
    this.#check = setInterval(() => void this.#checkAll(), options.checkInterval ?? 5_000);
    this.#check.unref();
    // After a reconnect the subscriptions are restored, but what was published meanwhile is gone:
    // read it back, again until it worked (the store's command connection may come back later).
    sub.onReady(() => this.#catchUp(CATCH_UP_RETRY_MS));
  }

  /** Opens the subscriber connection (a second connection to the store's Redis). */
  static async open(options: RedisHubOptions): Promise<RedisHub> {
    const sub = await options.store.connection.subscriber((err) => options.onError?.(err));
    return new RedisHub(sub, options);
  }

  subscribe(channel: string, listener: HubListener): () => void {
    const unsubscribe = this.#local.subscribe(channel, listener);
    if (!this.#feeds.has(channel)) this.#start(channel);
    return () => {
      unsubscribe();
      if (this.#local.subscriberCount(channel) === 0) this.#stop(channel);
    };
  }

  /** Operations this node stored: delivered here at once (the script already put them on the bus). */
  publish(channel: string, messages: Message[]): void {
    const feed = this.#feeds.get(channel);
    if (feed && messages.length > 0) this.#accept(feed, messages);
  }

  subscriberCount(channel: string): number {
    return this.#local.subscriberCount(channel);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#check);
    for (const feed of this.#feeds.values()) {
      feed.closed = true;
      clearTimeout(feed.gapTimer);
    }
    this.#feeds.clear();
    this.#sub.destroy();
  }

  #start(channel: string): void {
    const feed: Feed = {
      channel,
      state: 'starting',
      epoch: undefined,
      delivered: 0,
      pending: [],
      pendingCount: 0,
      gapTimer: undefined,
      unfinished: false,
      overflowed: false,
      closed: false,
    };
    this.#feeds.set(channel, feed);
    // Sent now, on the store's connection, before the attaching client's reads: the starting point.
    const before = this.#store.info(channel);
    before.catch(() => {});
    void this.#begin(feed, before);
  }

  async #begin(feed: Feed, before: Promise<{ epoch: string; head: string } | undefined>): Promise<void> {
    let started: Promise<{ epoch: string; head: string } | undefined> | undefined;
    try {
      const info = await before;
      if (info) {
        feed.epoch = info.epoch;
        feed.delivered = seqOf(info.head);
      }
      started = Promise.resolve(info);
      await this.#sub.subscribe(busChannel(this.#store.prefix, feed.channel), (payload) =>
        this.#onBus(feed, payload),
      );
      if (feed.closed) return;
      await this.#readBack(feed);
    } catch (err) {
      this.#o.onError?.(err);
      if (feed.closed || this.#closed) return;
      // Redis unreachable: try again shortly; clients see the outage through their own requests.
      // Once the starting point was read, it stays: a new one would skip what was stored since,
      // which this node may already hold back for delivery (and would then drop as delivered).
      const retry = setTimeout(() => {
        if (!feed.closed && this.#feeds.get(feed.channel) === feed)
          void this.#begin(feed, started ?? this.#store.info(feed.channel));
      }, 500);
      retry.unref();
    }
  }

  #stop(channel: string): void {
    const feed = this.#feeds.get(channel);
    if (!feed) return;
    feed.closed = true;
    clearTimeout(feed.gapTimer);
    this.#feeds.delete(channel);
    if (!this.#closed)
      this.#sub
        .unsubscribe(busChannel(this.#store.prefix, channel))
        .catch((err: unknown) => this.#o.onError?.(err));
  }

  #onBus(feed: Feed, payload: string): void {
    if (feed.closed) return;
    if (this.#o.filter && !this.#o.filter(feed.channel, payload)) {
      this.stats.dropped++;
      return;
    }
    this.stats.received++;
    if (feed.state === 'live') {
      // the echo of this node's own publish (or a batch delivered by a read-back): dropped before
      // its operations are parsed, which is most of what a node receives when it holds the publisher
      const head = busBatchHead(payload);
      if (head !== undefined && head.epoch === feed.epoch && head.last <= feed.delivered) {
        this.stats.skipped++;
        return;
      }
    }
    const batch = decodeBusBatch(payload);
    if (!batch || batch.messages.length === 0) return;
    this.#accept(feed, batch.messages);
  }

  /** Takes one batch (serial order within it) from the bus or this node; delivers what is next in line. */
  #accept(feed: Feed, messages: Message[]): void {
    if (feed.state !== 'live') {
      this.#hold(feed, messages);
      return;
    }
    const epoch = epochOf(messages[0]!.version);
    if (epoch !== feed.epoch) {
      // A batch of an older log is stale; a newer epoch is a new log, counted from its start.
      if (feed.epoch !== undefined && epoch < feed.epoch) return;
      if (feed.epoch !== undefined && feed.delivered > 0 && seqOf(messages[0]!.version) > 1) {
        // Not a new log from its start: the log this feed followed going on in this epoch (a new
        // Redis). Read back from where it was — the store takes that position into the new epoch
        // when it can (only what changed after it, not the whole log, at every node), else from
        // the start.
        void this.#readBack(feed);
        return;
      }
      feed.epoch = epoch;
      feed.delivered = 0;
      feed.pending = [];
      feed.pendingCount = 0;
    }
    const fresh = messages.filter((m) => seqOf(m.version) > feed.delivered);
    if (fresh.length === 0) return;
    // A gap; or a read-back that failed after some of its pages: until it is read back to its end,
    // operations would land on messages its subscribers hold in an older state than the log's.
    if (feed.unfinished || seqOf(fresh[0]!.version) > feed.delivered + 1) {
      this.#hold(feed, fresh);
      feed.gapTimer ??= setTimeout(() => this.#gapTimeout(feed), this.#o.gapGrace ?? 50);
      return;
    }
    this.#deliver(feed, fresh);
    this.#drainPending(feed);
  }

  #hold(feed: Feed, messages: Message[]): void {
    feed.pending.push(messages);
    feed.pendingCount += messages.length;
    // Everything pending is also in the store: past this bound, forget it and read it back.
    if (feed.pendingCount > MAX_PENDING) {
      feed.pending = [];
      feed.pendingCount = 0;
      if (feed.state === 'live') void this.#readBack(feed);
      else feed.overflowed = true;
    }
  }

  #drainPending(feed: Feed): void {
    if (feed.pending.length === 0) {
      clearTimeout(feed.gapTimer);
      feed.gapTimer = undefined;
      return;
    }
    const pending = feed.pending.sort((a, b) => seqOf(a[0]!.version) - seqOf(b[0]!.version));
    feed.pending = [];
    feed.pendingCount = 0;
    clearTimeout(feed.gapTimer);
    feed.gapTimer = undefined;
    for (const batch of pending) this.#accept(feed, batch);
  }

  #gapTimeout(feed: Feed): void {
    feed.gapTimer = undefined;
    if (feed.closed || feed.state !== 'live' || feed.pending.length === 0) return;
    void this.#readBack(feed);
  }

  /**
   * `page`: a page read back from the store after `feed.delivered`, rolled up (versions may skip);
   * `more` when the read-back goes on after it.
   */
  #deliver(feed: Feed, messages: Message[], page?: 'more' | 'last'): void {
    feed.delivered = seqOf(messages[messages.length - 1]!.version);
    feed.unfinished = page === 'more';
    this.#local.publish(feed.channel, messages, page !== undefined, page === 'more');
  }

  /**
   * Reads everything after the last delivered op from the store, delivers it, then what was held.
   * Resolves false when the store failed (tried again on the next check or jump).
   */
  async #readBack(feed: Feed): Promise<boolean> {
    if (feed.state === 'repairing') return true; // the one under way delivers it
    const wasLive = feed.state === 'live';
    feed.state = 'repairing';
    if (wasLive) this.stats.repairs++;
    try {
      let after =
        feed.epoch !== undefined && feed.delivered > 0 ? formatSerial(feed.epoch, feed.delivered) : undefined;
      // Each page is delivered once the next one was read: only then is it known whether another
      // page with something to deliver follows, so the last page delivered is never marked `more`
      // (two pages held, not the whole read-back). A page not delivered when the store fails is
      // read again.
      let unsent: Message[] | undefined;
      let head: string | undefined;
      for (;;) {
        const page = await this.#store.readSince(feed.channel, after, this.#o.readBackPage ?? PAGE);
        if (feed.closed) return true;
        if (page.epoch === '') break;
        if (page.epoch !== feed.epoch) {
          // The log was replaced (readSince then read it from its start): the read-back of the old
          // one ends with what was read of it.
          if (unsent) this.#deliver(feed, unsent, 'last');
          unsent = undefined;
          feed.epoch = page.epoch;
          feed.delivered = 0;
        }
        const fresh = page.messages.filter((m) => seqOf(m.version) > feed.delivered);
        if (fresh.length > 0) {
          if (unsent) this.#deliver(feed, unsent, 'more');
          unsent = fresh;
        }
        if (!page.more || page.messages.length === 0) {
          head = page.head;
          break;
        }
        after = page.messages[page.messages.length - 1]!.version;
      }
      if (unsent) this.#deliver(feed, unsent, 'last');
      if (head !== undefined) feed.delivered = Math.max(feed.delivered, seqOf(head));
      feed.state = 'live';
      if (feed.overflowed) {
        // what was dropped may be newer than the last read: read on from here (and drain after it)
        feed.overflowed = false;
        return this.#readBack(feed);
      }
      this.#drainPending(feed);
      return true;
    } catch (err) {
      this.#o.onError?.(err);
      // Try again on the next position check (or the next jump).
      feed.state = 'live';
      return false;
    }
  }

  /**
   * The position check after the bus reconnected: what was published while it was away is read
   * back, and the check is made again (after `delay`, doubling up to `CATCH_UP_MAX_MS`) until every
   * channel's check and read-back worked, instead of waiting for the periodic one.
   */
  #catchUp(delay: number): void {
    if (this.#closed) return;
    void this.#checkAll().then((ok) => {
      if (ok || this.#closed) return;
      const timer = setTimeout(() => this.#catchUp(Math.min(delay * 2, CATCH_UP_MAX_MS)), delay);
      timer.unref();
    });
  }

  /**
   * The position check: a channel whose head moved past what was delivered lost its last batch.
   * Resolves false when a store call failed (that channel is checked again later).
   */
  async #checkAll(): Promise<boolean> {
    const checks: Promise<boolean>[] = [];
    for (const feed of this.#feeds.values()) {
      // A feed with batches held and no gap timer had its read-back fail: it is checked too (it may
      // see no further batch to start one), and so is one whose failed read-back is unfinished.
      if (feed.state !== 'live' || feed.gapTimer !== undefined) continue;
      checks.push(
        this.#store.info(feed.channel).then(
          (info) => {
            if (!info || feed.closed || feed.state !== 'live') return true;
            if (info.epoch !== feed.epoch || seqOf(info.head) > feed.delivered || feed.unfinished)
              return this.#readBack(feed);
            return true;
          },
          (err: unknown) => {
            this.#o.onError?.(err);
            return false;
          },
        ),
      );
    }
    return (await Promise.all(checks)).every(Boolean);
  }
}
