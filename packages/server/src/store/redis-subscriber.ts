/**
 * The pub/sub connection of a single Redis, watched: a subscriber connection that stops getting
 * answers without being closed (a blackholed network) would otherwise stay subscribed to nothing for
 * ever — the hub would fall back to its slow position check and forwarded requests to this node
 * would time out — because node-redis only notices connections that close.
 *
 * Every `interval` ms it sends PING (allowed while subscribed); one not answered within the interval
 * replaces the connection with a new one, which subscribes every channel again and then calls the
 * `onReady` callbacks (what was published meanwhile is lost: the hub reads it back from the log). A
 * subscribe also has the deadline, so a caller never waits on a dead connection.
 */
import type { createClient } from 'redis';
import type { BusConnection, BusListener } from './redis-connection.ts';

type Client = ReturnType<typeof createClient>;

/**
 * Runs each channel's subscribes and unsubscribes one after the other, each once the one before it
 * was answered (and, keyed by path, each Durable Stream's writes: stream-redis-store.ts). node-redis takes a channel whose unsubscribe is still unanswered for subscribed: a
 * subscribe sent then only adds a listener, and the unsubscribe's answer leaves the connection
 * subscribed to nothing (a hub whose last subscriber left and a new one came at once received
 * nothing from the bus, 4 times in 30). Operations on different channels do not wait on each other.
 */
export class ChannelOrder {
  readonly #last = new Map<string, Promise<unknown>>();

  run<T>(channel: string, op: () => Promise<T>): Promise<T> {
    const before = this.#last.get(channel);
    const running = before === undefined ? op() : before.then(op, op);
    const settled = running.then(
      () => {},
      () => {},
    );
    this.#last.set(channel, settled);
    void settled.then(() => {
      if (this.#last.get(channel) === settled) this.#last.delete(channel);
    });
    return running;
  }
}

export class WatchedSubscriber implements BusConnection {
  #client: Client;
  readonly #make: () => Client;
  readonly #ms: number;
  readonly #onError: (err: unknown) => void;
  readonly #listeners = new Map<string, BusListener>();
  readonly #order = new ChannelOrder();
  readonly #ready: (() => void)[] = [];
  readonly #watch: NodeJS.Timeout;
  #destroyed = false;

  private constructor(first: Client, make: () => Client, ms: number, onError: (err: unknown) => void) {
    this.#client = first;
    this.#make = make;
    this.#ms = ms;
    this.#onError = onError;
    this.#watch = setInterval(() => this.#check(), ms);
    this.#watch.unref();
  }

  static async open(
    make: () => Client,
    ms: number,
    onError: (err: unknown) => void,
  ): Promise<WatchedSubscriber> {
    const first = make();
    // a connection made into a dead network never ends its handshake by itself
    try {
      await deadline(first.connect(), ms);
    } catch (err) {
      quietly(() => first.destroy());
      throw err;
    }
    const sub = new WatchedSubscriber(first, make, ms, onError);
    first.on('ready', () => sub.#fireReady(first));
    return sub;
  }

  subscribe(channel: string, listener: BusListener): Promise<void> {
    this.#listeners.set(channel, listener);
    return this.#order.run(channel, () => this.#deadline(this.#client.sSubscribe(channel, listener)));
  }

  unsubscribe(channel: string): Promise<void> {
    this.#listeners.delete(channel);
    return this.#order.run(channel, () => this.#deadline(this.#client.sUnsubscribe(channel)));
  }

  onReady(callback: () => void): void {
    this.#ready.push(callback);
  }

  destroy(): void {
    this.#destroyed = true;
    clearInterval(this.#watch);
    quietly(() => this.#client.destroy());
  }

  #fireReady(client: Client): void {
    if (this.#destroyed || client !== this.#client) return;
    for (const callback of this.#ready) callback();
  }

  #check(): void {
    const client = this.#client;
    if (!client.isReady) return; // node-redis is reconnecting it (a closed connection): its business
    this.#deadline(client.sendCommand(['PING'])).catch(() => this.#replace(client));
  }

  #replace(stale: Client): void {
    if (this.#destroyed || stale !== this.#client) return;
    const next = this.#make();
    this.#client = next;
    quietly(() => stale.destroy());
    next.on('ready', () => this.#fireReady(next));
    void (async () => {
      try {
        await this.#deadline(next.connect());
        for (const [channel, listener] of this.#listeners)
          await this.#deadline(next.sSubscribe(channel, listener));
        this.#fireReady(next);
      } catch (err) {
        this.#onError(err);
        // still no Redis: try a new connection a little later
        setTimeout(() => this.#replace(next), this.#ms).unref();
      }
    })();
  }

  #deadline<T>(command: Promise<T>): Promise<T> {
    return deadline(command, this.#ms);
  }
}

function deadline<T>(command: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`Redis did not answer the subscriber within ${ms} ms`)),
      ms,
    );
    command.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

function quietly(destroy: () => void): void {
  try {
    destroy();
  } catch {
    // already closed
  }
}
