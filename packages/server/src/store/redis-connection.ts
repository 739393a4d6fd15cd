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
 */
import { createClient, createCluster } from 'redis';

export interface RedisConnection {
  readonly cluster: boolean;
  /** Sends one command to the node owning `key` (any node when undefined). */
  send(key: string | undefined, args: string[], readonly?: boolean): Promise<unknown>;
  /** Sends one command to every master (one for a single Redis); resolves with their replies. */
  eachMaster(args: string[]): Promise<unknown[]>;
  /** A second connection, for sharded pub/sub. */
  subscriber(onError: (err: unknown) => void): Promise<BusConnection>;
  /** Waits for the replies in flight, then disconnects. */
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

export async function connectRedis(url: string, onError: (err: unknown) => void): Promise<RedisConnection> {
  const seeds = clusterSeeds(url);
  return seeds ? connectCluster(seeds, onError) : connectSingle(url, onError);
}

async function connectSingle(url: string, onError: (err: unknown) => void): Promise<RedisConnection> {
  const client = createClient({ url, disableOfflineQueue: true, socket: { reconnectStrategy } });
  client.on('error', onError);
  try {
    await client.connect();
  } catch (err) {
    client.destroy();
    throw err;
  }
  return {
    cluster: false,
    send: (_key, args) => client.sendCommand(args),
    eachMaster: async (args) => [await client.sendCommand(args)],
    async subscriber(onSubError) {
      const sub = client.duplicate();
      sub.on('error', onSubError);
      await sub.connect();
      return {
        subscribe: (channel, listener) => sub.sSubscribe(channel, listener),
        unsubscribe: (channel) => sub.sUnsubscribe(channel),
        onReady: (callback) => sub.on('ready', callback),
        destroy: () => sub.destroy(),
      };
    },
    close: async () => {
      await client.close();
    },
    destroy: () => client.destroy(),
  };
}

async function connectCluster(seeds: string[], onError: (err: unknown) => void): Promise<RedisConnection> {
  const options = {
    rootNodes: seeds.map((url) => ({ url })),
    defaults: { disableOfflineQueue: true, socket: { reconnectStrategy } },
  };
  const cluster = createCluster(options);
  cluster.on('error', onError);
  try {
    await cluster.connect();
  } catch (err) {
    cluster.destroy();
    throw err;
  }
  return {
    cluster: true,
    send: (key, args, readonly = false) => cluster.sendCommand(key, readonly, args),
    eachMaster: async (args) =>
      Promise.all(
        cluster.masters.map(async (master) => (await cluster.nodeClient(master)).sendCommand(args)),
      ),
    async subscriber(onSubError) {
      const sub = cluster.duplicate();
      sub.on('error', onSubError);
      await sub.connect();
      return {
        subscribe: (channel, listener) => sub.sSubscribe(channel, listener),
        unsubscribe: (channel) => sub.sUnsubscribe(channel),
        // A shard's subscription is restored by node-redis on reconnect; the hub's periodic position
        // check finds what was published meanwhile.
        onReady: () => {},
        destroy: () => sub.destroy(),
      };
    },
    close: async () => {
      await cluster.close();
    },
    destroy: () => cluster.destroy(),
  };
}
