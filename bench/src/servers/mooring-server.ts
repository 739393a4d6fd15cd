/**
 * Mooring itself, through its public entry point `startServer`, with the memory store or (argv
 * `sqlite`) a SQLite file in a fresh temporary directory that is removed on close, or (argv
 * `redis <url>`) the Redis store on a redis-server the parent started. With
 * `no-publish-limit`, the per-connection publish rate limit (1,000 operations/s by default) is
 * lifted, for scenarios whose one publisher may go faster than that (saturated fan-out to a few
 * hundred subscribers). With `max-connections=<n>`, one key may hold n connections (the growth
 * bench's 10,000 subscribers and their publisher on one key; the default is 10,000). Everything else
 * keeps its defaults.
 *
 *   node mooring-server.ts [memory|sqlite|redis <url>] [no-publish-limit] [max-connections=<n>]
 */
import { startServer } from '@mooring/server';
import { BENCH_KEY } from '../bench-config.ts';
import { benchStore } from './bench-store.ts';
import { serveChild } from './server-child.ts';

const kind = process.argv[2] === 'sqlite' || process.argv[2] === 'redis' ? process.argv[2] : 'memory';
const redisUrl = process.argv[3] ?? '';
const noPublishLimit = process.argv.includes('no-publish-limit');
const maxConnections = Number(
  process.argv.find((arg) => arg.startsWith('max-connections='))?.slice('max-connections='.length) ??
    Number.NaN,
);

await serveChild(async () => {
  const { store, cleanup } = benchStore(kind, redisUrl);
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    store,
    keys: [BENCH_KEY],
    limits: {
      ...(noPublishLimit ? { maxPublishRate: 1e9 } : {}),
      ...(Number.isFinite(maxConnections) ? { maxConnectionsPerKey: maxConnections } : {}),
    },
    // Errors only (on stdout, forwarded to the bench's stderr): a failing publish says why.
    logger: 'error',
  });
  return {
    port: server.port,
    close: async () => {
      await server.close();
      cleanup();
    },
  };
});
