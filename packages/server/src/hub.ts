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

export class LocalHub implements Hub {
  readonly #listeners = new KeyedListeners<HubListener>();

  subscribe(channel: string, listener: HubListener): () => void {
    return this.#listeners.add(channel, listener);
  }

  publish(channel: string, messages: Message[]): void {
    const listeners = this.#listeners.get(channel);
    if (!listeners || messages.length === 0) return;
    const delivery: Delivery = { channel, messages, frame: encodeMessagesFrame(channel, messages) };
    for (const listener of listeners) listener(delivery);
  }

  subscriberCount(channel: string): number {
    return this.#listeners.count(channel);
  }
}
