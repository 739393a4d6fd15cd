/**
 * Fixtures on a Redis the test started (a redis-server or a Cluster, from @mooring/testkit): an
 * in-process server node on it (127.0.0.1, port 0, the test key), and a Redis store for the store
 * conformance suite. The several-node, cluster, trouble and forwarding tests all start their nodes
 * here, so a node of one test is the same as a node of another.
 */
import { type MooringServer, type ServerOptions, startServer } from '../../src/index.ts';
import { RedisHub, type RedisHubOptions } from '../../src/redis-hub.ts';
import { RedisPresence, type RedisPresenceOptions } from '../../src/redis-presence.ts';
import { connectRedis } from '../../src/store/redis-connection.ts';
import { RedisStore } from '../../src/store/redis-store.ts';
import type { StoreFixture, StoreFixtureOptions } from '../store-conformance.ts';
import { TEST_KEY } from './fixture.ts';

/** A server node on the Redis at `url`; `commandTimeout` is the store's (default its own). */
export function redisNode(
  url: string,
  options: Partial<ServerOptions> = {},
  commandTimeout?: number,
): Promise<MooringServer> {
  return startServer({
    host: '127.0.0.1',
    port: 0,
    keys: [TEST_KEY],
    store: { kind: 'redis', url, ...(commandTimeout === undefined ? {} : { commandTimeout }) },
    ...options,
  });
}

/**
 * Two nodes on the Redis at `url`, closed after the test: `lossy`, whose bus drops every message with
 * `LOST` in it, so that it reads back what it missed, and `other`, a plain node. No periodic check:
 * the next message's jump alone starts the read-back (`readBackPage` messages a page). `repairs()`:
 * the read-backs the lossy node has made so far. The AI and Temporal suites use it too (their
 * sessions across a node whose bus lost messages), so that their lossy node is this one.
 */
export async function lossyNodes(
  t: { after(fn: () => unknown): void },
  url: string,
  options: Pick<RedisHubOptions, 'readBackPage'> = {},
): Promise<{ lossy: MooringServer; other: MooringServer; repairs(): number }> {
  let hub: RedisHub | undefined;
  const lossy = await redisNode(url, {
    hub: async (store) => {
      hub = await RedisHub.open({
        store: store as RedisStore,
        checkInterval: 60_000,
        ...options,
        filter: (_channel, payload) => !payload.includes('LOST'),
      });
      return hub;
    },
  });
  t.after(() => lossy.close());
  const other = await redisNode(url);
  t.after(() => other.close());
  return { lossy, other, repairs: () => hub?.stats.repairs ?? 0 };
}

/**
 * A presence node alone (no server) on the Redis at `url`, closed after the test: for the tests that
 * drive `RedisPresence` across nodes by hand. Errors go to `onError` (default: ignored).
 */
export async function presenceNode(
  t: { after(fn: () => unknown): void },
  url: string,
  options: Pick<RedisPresenceOptions, 'prefix' | 'grace' | 'maxDroppedBytesPerClient'> &
    Partial<Pick<RedisPresenceOptions, 'maxMembersPerClient' | 'nodeTtl' | 'sweepInterval'>> & {
      onError?: (err: unknown) => void;
    },
): Promise<RedisPresence> {
  const onError = options.onError ?? (() => {});
  const connection = await connectRedis(url, onError);
  const presence = new RedisPresence({
    connection,
    maxMembers: 100,
    maxChannelsPerConnection: 10,
    maxBytesPerConnection: 1000,
    recoverWithin: 60_000,
    ...options,
    onError,
  });
  t.after(async () => {
    await presence.close();
    await connection.close();
  });
  return presence;
}

/**
 * A fresh Redis store for one conformance case: its own key prefix on a shared server (fresh and
 * isolated, no FLUSHALL); `reopen` opens the same prefix again.
 */
export async function redisStoreFixture(
  url: string,
  prefix: string,
  options: StoreFixtureOptions = {},
): Promise<StoreFixture> {
  const open = () => RedisStore.open({ url, prefix, ...options });
  let store = await open();
  return {
    store,
    reopen: async () => {
      await store.close();
      store = await open();
      return store;
    },
    cleanup: () => store.close(),
  };
}
