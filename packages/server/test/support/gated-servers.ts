/**
 * Servers over a `GatedStore` of each kind, for tests that hold or refuse a store call on purpose:
 * memory, SQLite (a fresh file each) and Redis (one redis-server for the test file, when installed;
 * a key prefix per server, its RedisHub reading the real store — a hub's own start and repairs are
 * not what the gate holds). `gatedServers(name)` registers the file's `before`/`after` hooks: call it
 * at the top level of a test file.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { type RedisServer, redisSkipReason, startRedis } from '@mooring/testkit';
import type { ServerOptions } from '../../src/index.ts';
import { RedisHub } from '../../src/redis-hub.ts';
import { MemoryStore } from '../../src/store/memory-store.ts';
import { RedisStore } from '../../src/store/redis-store.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';
import { TEST_KEY } from './fixture.ts';
import { GatedStore } from './gated-store.ts';

export type StoreKind = 'memory' | 'sqlite' | 'redis';

export interface GatedServers {
  /** Why the Redis cases cannot run here (no redis-server), or false. */
  readonly redisSkip: string | false;
  /** A gated store of `kind`, and the server options that run it. */
  optionsFor(kind: StoreKind): Promise<{ store: GatedStore; options: ServerOptions }>;
}

export function gatedServers(name: string): GatedServers {
  const dirs: string[] = [];
  const redisSkip = redisSkipReason() || false;
  let redis: RedisServer | undefined;
  let prefixes = 0;
  before(async () => {
    if (!redisSkip) redis = await startRedis();
  });
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    await redis?.close();
  });
  return {
    redisSkip,
    async optionsFor(kind) {
      const base = { host: '127.0.0.1', port: 0, keys: [TEST_KEY] };
      if (kind === 'memory') {
        const store = new GatedStore(new MemoryStore());
        return { store, options: { ...base, store } };
      }
      if (kind === 'sqlite') {
        const dir = await mkdtemp(join(tmpdir(), `mooring-${name}-`));
        dirs.push(dir);
        const store = new GatedStore(new SqliteStore({ path: join(dir, 'mooring.db') }));
        return { store, options: { ...base, store } };
      }
      if (!redis) throw new Error(`no redis-server: ${redisSkip}`);
      const inner = await RedisStore.open({ url: redis.url, prefix: `${name}${++prefixes}` });
      const store = new GatedStore(inner);
      return { store, options: { ...base, store, hub: () => RedisHub.open({ store: inner }) } };
    },
  };
}
