/**
 * Wakes of Durable Streams live readers across nodes, over Redis sharded pub/sub: after an append,
 * a close or a delete, the node SPUBLISHes a small message on the stream's wake channel
 * (`<prefix>:dsw:{<path>}`, its own hash tag, so wakes spread over a Cluster's shards); a node
 * subscribes a stream's channel only while it has live readers of it (StreamWaiters asks).
 *
 * Best effort by design: a wake carries no data (readers always re-read the store), so a lost one
 * only delays a reader to its next poll, and after the bus reconnects every local reader is woken
 * once. A node ignores its own wakes (it woke its readers already): the payload is the node's id.
 * The subscriber connection is opened on the first watch, not before.
 */
import { randomUUID } from 'node:crypto';
import type { BusConnection, RedisConnection } from './redis-connection.ts';
import type { StreamWakeBus } from './stream-store.ts';

export interface RedisStreamWakesOptions {
  connection: RedisConnection;
  prefix: string;
  closed: () => boolean;
  onError?: (err: unknown) => void;
}

export class RedisStreamWakes implements StreamWakeBus {
  readonly #o: RedisStreamWakesOptions;
  readonly #id = randomUUID();
  readonly #reconnect: (() => void)[] = [];
  #bus: Promise<BusConnection> | undefined;
  #destroyed = false;
  /** Wakes published (for tests and metrics). */
  published = 0;

  constructor(options: RedisStreamWakesOptions) {
    this.#o = options;
  }

  channel(path: string): string {
    return `${this.#o.prefix}:dsw:{${path}}`;
  }

  publish(path: string): void {
    if (this.#o.closed()) return;
    const channel = this.channel(path);
    this.published++;
    this.#o.connection
      .send(channel, ['SPUBLISH', channel, this.#id])
      .catch((err: unknown) => this.#o.onError?.(err));
  }

  async watch(path: string, onWake: () => void): Promise<void> {
    const bus = await this.#open();
    await bus.subscribe(this.channel(path), (payload) => {
      if (payload !== this.#id) onWake();
    });
  }

  unwatch(path: string): void {
    if (!this.#bus) return;
    this.#bus
      .then((bus) => bus.unsubscribe(this.channel(path)))
      .catch((err: unknown) => this.#o.onError?.(err));
  }

  onReconnect(callback: () => void): void {
    this.#reconnect.push(callback);
  }

  /** Drops the subscriber connection (the store is closing). */
  destroy(): void {
    this.#destroyed = true;
    this.#bus?.then(
      (bus) => bus.destroy(),
      () => {},
    );
  }

  #open(): Promise<BusConnection> {
    if (this.#destroyed) return Promise.reject(new Error('the Redis store is closed'));
    if (!this.#bus) {
      const bus = this.#o.connection
        .subscriber((err) => this.#o.onError?.(err))
        .then((opened) => {
          if (this.#destroyed) opened.destroy();
          else opened.onReady(() => this.#woken());
          return opened;
        });
      this.#bus = bus;
      // a failed open is retried by the next watch
      bus.catch(() => {
        if (this.#bus === bus) this.#bus = undefined;
      });
    }
    return this.#bus;
  }

  #woken(): void {
    for (const callback of this.#reconnect) callback();
  }
}
