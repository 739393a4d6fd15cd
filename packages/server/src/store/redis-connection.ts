/**
 * One way to talk to Redis for the store and the hub, whether it is a single Redis or a Redis
 * Cluster (node-redis `createClient` / `createCluster`): commands are routed by the key they name
 * (every key of a channel shares its `{<channel>}` hash tag, so a channel lives on one shard), and
 * a second connection carries sharded pub/sub (SSUBSCRIBE reaches the shard owning the channel).
 *
 * URLs: `redis://[user:pass@]host:port` (or `rediss://`) for one Redis;
 * `redis+cluster://[user:pass@]host:port,host:port,…` for a Cluster (any reachable nodes as seeds).
 *
 * Commands are never queued while disconnected (`disableOfflineQueue`): a publish must be refused at
 * once with a retryable error, not parked in memory and acknowledged later.
 *
 * Every command has a deadline (`commandTimeout`). A Redis that stops answering without closing the
 * connection (a blackholed network, a frozen host) would otherwise hold every publish for ever:
 * node-redis times out only commands not yet written. Past the deadline the command fails (the store
 * turns that into a retryable `store_unavailable`; the caller resends with the same ids, and
 * idempotency stores once what Redis may have run after all), and the command connection is replaced
 * by a new one: replies that may still come on the old one can never be matched to later commands.
 * The pub/sub connection of a single Redis is watched the same way (redis-subscriber.ts); on a
 * Cluster, node-redis restores the shard subscriptions and the hub's position check covers the rest.
 */
import { createClient, createCluster } from 'redis';
import { ChannelOrder, WatchedSubscriber } from './redis-subscriber.ts';

export interface RedisConnection {
  readonly cluster: boolean;
  /**
   * Grows whenever a new connection to Redis is ready (a reconnect, a replacement, a Cluster node
   * reconnecting): Redis may have lost its scripts meanwhile (a restart, a failover), so each is
   * sent in full once more (redis-script.ts). Absent: never re-sent in full.
   */
  readonly scriptEpoch?: number;
  /** Sends one command to the node owning `key` (any node when undefined). */
  send(key: string | undefined, args: string[], readonly?: boolean): Promise<unknown>;
  /** Sends one command to every master (one for a single Redis); resolves with their replies. */
  eachMaster(args: string[]): Promise<unknown[]>;
  /** A second connection, for sharded pub/sub. */
  subscriber(onError: (err: unknown) => void): Promise<BusConnection>;
  /** Waits for the replies in flight (the command deadline at most), then disconnects. */
  close(): Promise<void>;
  destroy(): void;
}

export type BusListener = (payload: string) => void;

export interface BusConnection {
  subscribe(channel: string, listener: BusListener): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
  /** Called after every (re)connection: what was published meanwhile is lost. */
  onReady(callback: () => void): void;
  destroy(): void;
}

const reconnectStrategy = (retries: number): number => Math.min(50 * 2 ** retries, 2_000);

/** The seed URLs of a `redis+cluster://` URL, or undefined for a single-Redis URL. */
export function clusterSeeds(url: string): string[] | undefined {
  const m = /^redis\+cluster(s?):\/\/(?:([^@/]*)@)?([^/?#]+)/.exec(url);
  if (!m) return undefined;
  const scheme = m[1] ? 'rediss' : 'redis';
  const auth = m[2] ? `${m[2]}@` : '';
  return m[3]!.split(',').map((host) => `${scheme}://${auth}${host.trim()}`);
}

/** Default deadline of one Redis command, ms. */
export const DEFAULT_COMMAND_TIMEOUT = 5_000;

export async function connectRedis(
  url: string,
  onError: (err: unknown) => void,
  commandTimeout: number = DEFAULT_COMMAND_TIMEOUT,
): Promise<RedisConnection> {
  const seeds = clusterSeeds(url);
  return seeds ? connectCluster(seeds, onError, commandTimeout) : connectSingle(url, onError, commandTimeout);
}

/** A Redis command that got no answer within its deadline. */
export class CommandTimeoutError extends Error {
  constructor(ms: number) {
    super(`Redis did not answer within ${ms} ms`);
    this.name = 'CommandTimeoutError';
  }
}

/**
 * The command client, replaced by a new one when a command misses its deadline (once per client:
 * every command waiting on the same dead connection times out together).
 */
class Replaceable<C extends { destroy(): void; connect(): Promise<unknown> }> {
  current: C;
  readonly #make: () => C;
  readonly #ms: number;
  readonly #onError: (err: unknown) => void;
  #closed = false;
  #handshake: NodeJS.Timeout | undefined;
  /** Replies not yet in, of every command sent (each settles within the deadline). */
  readonly #pending = new Set<Promise<unknown>>();

  constructor(first: C, make: () => C, ms: number, onError: (err: unknown) => void) {
    this.current = first;
    this.#make = make;
    this.#ms = ms;
    this.#onError = onError;
  }

  run<T>(command: (client: C) => Promise<T>): Promise<T> {
    const client = this.current;
    const reply = command(client);
    const answered = new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new CommandTimeoutError(this.#ms));
        this.#replace(client);
      }, this.#ms);
      reply.then(
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
    this.#pending.add(answered);
    const settled = () => this.#pending.delete(answered);
    answered.then(settled, settled);
    return answered;
  }

  /**
   * Stops replacing, waits for the replies of the commands sent (each within its deadline), then
   * drops the connection. Not node-redis's graceful `close()`: a client still in its handshake, or
   * reconnecting to a Redis that is gone, never finishes it, and cannot be destroyed after it.
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#handshake);
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    quietly(() => this.current.destroy());
  }

  destroy(): void {
    this.#closed = true;
    clearTimeout(this.#handshake);
    quietly(() => this.current.destroy());
  }

  #replace(stale: C): void {
    if (this.#closed || this.current !== stale) return;
    const next = this.#make();
    this.current = next;
    quietly(() => stale.destroy());
    // Connects in the background; until it is ready, commands fail at once (no offline queue). A
    // handshake into the same dead network never ends by itself: past the deadline, start over.
    let ready = false;
    clearTimeout(this.#handshake);
    const handshake = setTimeout(() => {
      if (!ready) this.#replace(next);
    }, this.#ms);
    handshake.unref();
    this.#handshake = handshake;
    next.connect().then(
      () => {
        ready = true;
        // its own watch only: a client destroyed in its handshake (replaced by the next one, whose
        // watch is already set) resolves its connect too
        clearTimeout(handshake);
      },
      (err: unknown) => {
        if (!this.#closed) this.#onError(err);
      },
    );
  }
}

/** Runs a destroy that throws when the client is already closed. */
function quietly(destroy: () => void): void {
  try {
    destroy();
  } catch {
    // already closed
  }
}

/** A client made by `make` and connected; one that cannot connect is destroyed, not left retrying. */
async function connected<C extends { connect(): Promise<unknown>; destroy(): void }>(
  make: () => C,
): Promise<C> {
  const client = make();
  try {
    await client.connect();
  } catch (err) {
    client.destroy();
    throw err;
  }
  return client;
}

async function connectSingle(
  url: string,
  onError: (err: unknown) => void,
  commandTimeout: number,
): Promise<RedisConnection> {
  let scriptEpoch = 0;
  const make = () => {
    const c = createClient({ url, disableOfflineQueue: true, socket: { reconnectStrategy } });
    c.on('error', onError);
    c.on('ready', () => scriptEpoch++);
    return c;
  };
  const clients = new Replaceable(await connected(make), make, commandTimeout, onError);
  return {
    cluster: false,
    get scriptEpoch() {
      return scriptEpoch;
    },
    send: (_key, args) => clients.run((client) => client.sendCommand(args)),
    eachMaster: async (args) => [await clients.run((client) => client.sendCommand(args))],
    subscriber: (onSubError) =>
      WatchedSubscriber.open(
        () => {
          const sub = clients.current.duplicate();
          sub.on('error', onSubError);
          return sub;
        },
        commandTimeout,
        onSubError,
      ),
    close: () => clients.close(),
    destroy: () => clients.destroy(),
  };
}

async function connectCluster(
  seeds: string[],
  onError: (err: unknown) => void,
  commandTimeout: number,
): Promise<RedisConnection> {
  const options = {
    rootNodes: seeds.map((url) => ({ url })),
    defaults: { disableOfflineQueue: true, socket: { reconnectStrategy } },
  };
  let scriptEpoch = 0;
  const make = () => {
    const c = createCluster(options);
    c.on('error', onError);
    // a node client reports its first ready only; a reconnect is seen as it starts
    c.on('node-ready', () => scriptEpoch++);
    c.on('node-reconnecting', () => scriptEpoch++);
    return c;
  };
  const clusters = new Replaceable(await connected(make), make, commandTimeout, onError);
  return {
    cluster: true,
    get scriptEpoch() {
      return scriptEpoch;
    },
    send: (key, args, readonly = false) =>
      clusters.run((cluster) => cluster.sendCommand(key, readonly, args)),
    eachMaster: async (args) =>
      clusters.run((cluster) => {
        // a replacement still discovering the cluster knows no masters: not an empty success
        if (cluster.masters.length === 0)
          return Promise.reject(new Error('not connected to the Redis Cluster'));
        return Promise.all(
          cluster.masters.map(async (master) => (await cluster.nodeClient(master)).sendCommand(args)),
        );
      }),
    async subscriber(onSubError) {
      const sub = clusters.current.duplicate();
      sub.on('error', onSubError);
      await sub.connect();
      const order = new ChannelOrder();
      return {
        subscribe: (channel, listener) => order.run(channel, () => sub.sSubscribe(channel, listener)),
        unsubscribe: (channel) => order.run(channel, () => sub.sUnsubscribe(channel)),
        // A shard's subscription is restored by node-redis on reconnect; the hub's periodic position
        // check finds what was published meanwhile.
        onReady: () => {},
        destroy: () => sub.destroy(),
      };
    },
    close: () => clusters.close(),
    destroy: () => clusters.destroy(),
  };
}

/**
 * Error replies a Redis gives while it cannot serve for a moment, not because of what a channel
 * holds: loading its data after a restart (`LOADING`), a script running too long (`BUSY`), a Cluster
 * down or resharding (`CLUSTERDOWN`, `TRYAGAIN`), a replica cut from its master or one that became a
 * replica in a failover (`MASTERDOWN`, `READONLY`), writes refused until persistence or replicas
 * recover (`MISCONF`, `NOREPLICAS`). A request that met one may succeed when sent again.
 */
const PASSING = /^(LOADING|BUSY|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|MISCONF|NOREPLICAS)\b/;

export function isPassingRedisError(message: string): boolean {
  return PASSING.test(message);
}
