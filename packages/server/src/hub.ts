/**
 * Fan-out of stored operations to the subscribers of a channel on this node.
 *
 * The hub is told about operations only after the store made them durable, in serial order per
 * channel, and hands every subscriber the same pre-serialised frame so that fan-out to N subscribers
 * costs one JSON.stringify, not N. A distributed engine (Redis) will implement the same interface
 * over pub/sub; subscribers rely only on "in serial order, after storing".
 */
import type { Message } from '@mooring/protocol';
import { KeyedListeners } from './keyed-listeners.ts';

export interface Delivery {
  channel: string;
  messages: Message[];
  /** The `messages` frame for these operations, encoded once for every subscriber. */
  frame: Buffer;
}

export type HubListener = (delivery: Delivery) => void;

export interface Hub {
  subscribe(channel: string, listener: HubListener): () => void;
  publish(channel: string, messages: Message[]): void;
  subscriberCount(channel: string): number;
}

export function encodeMessagesFrame(channel: string, messages: Message[]): Buffer {
  return Buffer.from(JSON.stringify({ type: 'messages', channel, messages }));
}

/**
 * Fan-out on one node. Operations stored during one turn of the event loop are delivered together:
 * one frame per channel per turn, written once to every subscriber. Under load (many publishes per
 * turn) that divides the number of frames and socket writes by the batch size; when idle it costs a
 * single `setImmediate` of latency.
 */
export class LocalHub implements Hub {
  readonly #listeners = new KeyedListeners<HubListener>();
  readonly #pending = new Map<string, Message[]>();
  #scheduled = false;

  subscribe(channel: string, listener: HubListener): () => void {
    return this.#listeners.add(channel, listener);
  }

  publish(channel: string, messages: Message[]): void {
    if (messages.length === 0 || this.#listeners.count(channel) === 0) return;
    const pending = this.#pending.get(channel);
    if (pending) pending.push(...messages);
    else this.#pending.set(channel, [...messages]);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  subscriberCount(channel: string): number {
    return this.#listeners.count(channel);
  }

  #flush(): void {
    this.#scheduled = false;
    const pending = [...this.#pending];
    this.#pending.clear();
    for (const [channel, messages] of pending) {
      const listeners = this.#listeners.get(channel);
      if (!listeners) continue;
      const delivery: Delivery = { channel, messages, frame: encodeMessagesFrame(channel, messages) };
      for (const listener of listeners) listener(delivery);
    }
  }
}
