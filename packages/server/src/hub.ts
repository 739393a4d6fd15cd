/**
 * Fan-out of stored operations to the subscribers of a channel on this node.
 *
 * The hub is told about operations only after the store made them durable, in serial order per
 * channel, and hands every subscriber the same pre-serialised frame so that fan-out to N subscribers
 * costs one encoding, not N (two at most: plain and compact subscribers read different forms). A
 * distributed engine (Redis) implements the same interface over pub/sub; subscribers rely only on
 * "in serial order, after storing".
 */
import {
  encodeCompactMessages,
  encodeMessages,
  type Message,
  type MessagesFrameExtras,
} from '@mooring/protocol';
import { forEachOfInSlices } from './in-slices.ts';
import { KeyedListeners } from './keyed-listeners.ts';

export interface Delivery {
  channel: string;
  messages: Message[];
  /**
   * The `messages` frame for these operations, plain and compact (PROTOCOL.md §6.5): each encoded
   * at the first subscriber that reads that form, once for all of them (`frameOf`).
   */
  plainFrame: Buffer | undefined;
  compactFrame: Buffer | undefined;
  /**
   * The messages are rolled up (read back from the store after what the hub delivered before): they
   * hold every change since, and their versions may skip. The frames do not say so; the listener does.
   */
  rolledUp?: true;
  /**
   * With `rolledUp`: the read-back goes on in the channel's next delivery (it comes in last-change
   * order, so what was delivered up to here need not be a prefix of the log; PROTOCOL.md §4.3).
   */
  more?: true;
}

export type HubListener = (delivery: Delivery) => void;

export interface Hub {
  subscribe(channel: string, listener: HubListener): () => void;
  /**
   * `rolledUp`: the messages were read back, rolled up, after everything delivered before; `more`:
   * and the read-back goes on in the next rolled-up publish (nothing else of the channel between).
   */
  publish(channel: string, messages: Message[], rolledUp?: boolean, more?: boolean): void;
  subscriberCount(channel: string): number;
}

/** A `messages` frame, plain or compact (PROTOCOL.md §6.3, §6.5). */
export function encodeMessagesFrame(
  channel: string,
  messages: Message[],
  compact = false,
  extras?: MessagesFrameExtras,
): Buffer {
  return Buffer.from(
    compact ? encodeCompactMessages(channel, messages, extras) : encodeMessages(channel, messages, extras),
  );
}

/** The frame of `delivery` in the form a subscriber reads; each form is encoded once per delivery. */
export function frameOf(delivery: Delivery, compact: boolean): Buffer {
  if (compact) {
    delivery.compactFrame ??= encodeMessagesFrame(delivery.channel, delivery.messages, true);
    return delivery.compactFrame;
  }
  delivery.plainFrame ??= encodeMessagesFrame(delivery.channel, delivery.messages);
  return delivery.plainFrame;
}

/**
 * A channel with at most this many subscribers on the node is delivered at the end of the task that
 * stored its operations; a larger one at the end of the event loop's turn (see LocalHub).
 */
export const FEW_SUBSCRIBERS = 4;

/**
 * A delivery to more subscribers than this is handed out this many at a time, one share per turn of
 * the event loop. A delivery costs 15–20 µs per subscriber on loopback (a `writev` each), so a channel
 * of 10,000 would otherwise hold the node for ~0.2 s per delivery, every other connection's frames
 * and heartbeats waiting behind it; in shares of 256 they wait for one share (~5 ms).
 */
export const FAN_OUT_SHARE = 256;

/** A channel's delivery under way in shares, and what the channel stored meanwhile (in order). */
interface Pass {
  /** Deliveries of the channel that wait for this pass to end: each goes out whole, in order. */
  readonly after: Array<{ messages: Message[]; rolledUp: boolean; more: boolean }>;
}

export interface LocalHubOptions {
  /** A delivery is handed out in shares (its channel has more than `FAN_OUT_SHARE` subscribers here). */
  onPass?: () => void;
}

/**
 * Fan-out on one node. Operations are delivered in batches, one frame per channel per batch,
 * written once to every subscriber:
 *
 * - a channel with many subscribers (more than `FEW_SUBSCRIBERS`) batches what was stored during one
 *   turn of the event loop (`setImmediate`): under load each frame saved is a write saved on every
 *   subscriber's socket, so the fan-out's throughput rests on it;
 * - a channel with few subscribers (a chat or AI session: the user's tabs) batches what one task
 *   stored (a microtask: the operations of one socket read, of one commit), and its frames do not
 *   wait for the rest of the turn. Under load a turn handles many reads, and a token would
 *   otherwise wait for all of them before reaching its one or two sockets.
 *
 * Per channel, operations still go out in the order they were stored: while a channel has a batch
 * waiting, what it stores next joins that batch, whichever of the two it is.
 *
 * A channel of more than `FAN_OUT_SHARE` subscribers is handed each delivery `FAN_OUT_SHARE`
 * subscribers per turn (a pass), so the node's other connections are read and written between the
 * shares. What the channel stores during a pass waits for it to end, and goes out after it, in order
 * (its plain deliveries merged into one). A subscriber that leaves during a pass is skipped; one that
 * comes during it may or may not be reached by it, which an attachment takes either way: it
 * subscribed before its catch-up read, which holds everything stored before (channel-attachment.ts).
 */
export class LocalHub implements Hub {
  readonly #listeners = new KeyedListeners<Delivery>();
  readonly #onPass: (() => void) | undefined;
  /** Channels whose delivery is under way in shares (more than `FAN_OUT_SHARE` subscribers). */
  readonly #passes = new Map<string, Pass>();
  /** Batches of small channels, delivered at the end of the current task. */
  readonly #task = new Batches(
    (flush) => queueMicrotask(flush),
    (channel, messages) => this.#deliver(channel, messages),
  );
  /** Batches of large channels, delivered at the end of the current turn. */
  readonly #turn = new Batches(
    (flush) => setImmediate(flush),
    (channel, messages) => this.#deliver(channel, messages),
  );

  constructor(options: LocalHubOptions = {}) {
    this.#onPass = options.onPass;
  }

  subscribe(channel: string, listener: HubListener): () => void {
    return this.#listeners.add(channel, listener);
  }

  publish(channel: string, messages: Message[], rolledUp = false, more = false): void {
    const subscribers = this.#listeners.count(channel);
    if (messages.length === 0 || subscribers === 0) return;
    if (rolledUp) {
      // its own delivery, now, after what waits for this channel (the order is the serial order)
      const before = this.#task.take(channel) ?? this.#turn.take(channel);
      if (before) this.#deliver(channel, before);
      this.#deliver(channel, messages, true, more);
      return;
    }
    const waiting = this.#task.waiting(channel) ?? this.#turn.waiting(channel);
    if (waiting) waiting.push(...messages);
    else (subscribers <= FEW_SUBSCRIBERS ? this.#task : this.#turn).start(channel, messages);
  }

  subscriberCount(channel: string): number {
    return this.#listeners.count(channel);
  }

  #deliver(channel: string, messages: Message[], rolledUp = false, more = false): void {
    const pass = this.#passes.get(channel);
    if (pass) {
      pass.after.push({ messages, rolledUp, more });
      return;
    }
    const subscribers = this.#listeners.count(channel);
    if (subscribers === 0) return;
    const delivery: Delivery = { channel, messages, plainFrame: undefined, compactFrame: undefined };
    if (rolledUp) delivery.rolledUp = true;
    if (rolledUp && more) delivery.more = true;
    if (subscribers <= FAN_OUT_SHARE) {
      this.#listeners.emit(channel, delivery);
      return;
    }
    const started: Pass = { after: [] };
    this.#passes.set(channel, started);
    this.#onPass?.();
    forEachOfInSlices(
      this.#listeners.listeners(channel),
      FAN_OUT_SHARE,
      (listener) => listener(delivery),
      () => this.#endPass(channel, started),
    );
  }

  /**
   * Ends `channel`'s pass; what the channel stored meanwhile goes out in the next turn (the pass
   * stays in place until then, so nothing overtakes it), consecutive plain deliveries as one.
   */
  #endPass(channel: string, pass: Pass): void {
    if (pass.after.length === 0) {
      this.#passes.delete(channel);
      return;
    }
    setImmediate(() => {
      this.#passes.delete(channel);
      let plain: Message[] | undefined;
      for (const { messages, rolledUp, more } of pass.after) {
        if (!rolledUp) {
          plain ??= [];
          for (const message of messages) plain.push(message);
          continue;
        }
        if (plain) this.#deliver(channel, plain);
        plain = undefined;
        this.#deliver(channel, messages, true, more);
      }
      if (plain) this.#deliver(channel, plain);
    });
  }
}

/** Channels' batches that wait for the same moment (`schedule`) and are delivered together then. */
class Batches {
  #batches = new Map<string, Message[]>();
  /** The map of the previous flush, emptied: the two take turns, so a flush allocates none. */
  #spare = new Map<string, Message[]>();
  readonly #schedule: (flush: () => void) => void;
  readonly #deliver: (channel: string, messages: Message[]) => void;
  #scheduled = false;

  constructor(
    schedule: (flush: () => void) => void,
    deliver: (channel: string, messages: Message[]) => void,
  ) {
    this.#schedule = schedule;
    this.#deliver = deliver;
  }

  /** The batch `channel` has waiting here, if any: what it stores next joins it. */
  waiting(channel: string): Message[] | undefined {
    return this.#batches.get(channel);
  }

  /** Takes the batch `channel` has waiting here out of the next flush (to deliver it now). */
  take(channel: string): Message[] | undefined {
    const batch = this.#batches.get(channel);
    if (batch) this.#batches.delete(channel);
    return batch;
  }

  /** Starts a batch for `channel` (none waits here), delivered at the next scheduled moment. */
  start(channel: string, messages: Message[]): void {
    this.#batches.set(channel, [...messages]);
    if (this.#scheduled) return;
    this.#scheduled = true;
    this.#schedule(this.#flush);
  }

  /**
   * Delivers the batches waiting. What a delivery stores in turn (re-entrant) starts a new batch in
   * the other map, for the next flush: a batch being delivered is never joined.
   */
  readonly #flush = (): void => {
    this.#scheduled = false;
    const pending = this.#batches;
    this.#batches = this.#spare;
    pending.forEach(this.#deliverEach);
    pending.clear();
    this.#spare = pending;
  };

  readonly #deliverEach = (batch: Message[], channel: string): void => this.#deliver(channel, batch);
}
