/**
 * Child process for the idle-connections and fuzz measurements: a Mooring server that reports its
 * memory over IPC. `MOORING_BENCH_LIMITS` (JSON) overrides limits; `{ type: 'memory', gc: false }`
 * reads RSS without forcing a collection (cheap enough to sample under load).
 * `MOORING_BENCH_REDIS_URL`: the Redis store on that redis-server; `MOORING_BENCH_SQLITE_PATH`: the
 * SQLite store in that file (default: the memory store).
 * `MOORING_BENCH_PORT` (default 0) and `MOORING_BENCH_REUSE_PORT=1`: several of these on one port.
 * `MOORING_BENCH_HEARTBEAT_SLICE`: connections per turn of a heartbeat round (A/B runs; a number
 * above the connections = the whole round in one turn).
 * `{ type: 'loop' }` answers how late the event loop ran (`LoopDelay`, ms) since the last `loop`.
 * `{ type: 'snapshot', path }` writes a heap snapshot there (after a forced GC) and answers once written.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import { startServer } from '@mooring/server';
import { loopDelay } from '../servers/server-child.ts';

const overrides = JSON.parse(process.env.MOORING_BENCH_LIMITS ?? '{}') as Record<string, number>;

const server = await startServer({
  port: Number(process.env.MOORING_BENCH_PORT ?? 0),
  reusePort: process.env.MOORING_BENCH_REUSE_PORT === '1',
  host: '127.0.0.1',
  keys: ['bench:secret'],
  limits: { maxConnectionsPerKey: 100_000, ...overrides },
  store: process.env.MOORING_BENCH_REDIS_URL
    ? { kind: 'redis', url: process.env.MOORING_BENCH_REDIS_URL }
    : process.env.MOORING_BENCH_SQLITE_PATH
      ? { kind: 'sqlite', path: process.env.MOORING_BENCH_SQLITE_PATH }
      : { kind: 'memory' },
  ...(process.env.MOORING_BENCH_HEARTBEAT_SLICE
    ? { heartbeatSlice: Number(process.env.MOORING_BENCH_HEARTBEAT_SLICE) }
    : {}),
  // short live reads, so that the fuzz run's Durable Streams requests never wait long
  durableStreams: { longPollTimeout: 250, sseMaxDuration: 250 },
});
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();
process.on('message', (msg: { type: string; gc?: boolean; path?: string }) => {
  if (msg.type === 'snapshot') {
    globalThis.gc?.();
    process.send?.({ type: 'snapshot', path: writeHeapSnapshot(msg.path) });
  } else if (msg.type === 'loop') {
    process.send?.({ type: 'loop', delay: loopDelay(loop) });
    loop.reset();
  } else if (msg.type === 'memory') {
    if (msg.gc !== false) {
      globalThis.gc?.();
      globalThis.gc?.();
    }
    const m = process.memoryUsage();
    process.send?.({
      type: 'memory',
      rss: m.rss,
      heapUsed: m.heapUsed,
      external: m.external,
      youngGeneration: getHeapSpaceStatistics()
        .filter((space) => space.space_name === 'new_space' || space.space_name === 'new_large_object_space')
        .reduce((sum, space) => sum + space.physical_space_size, 0),
      connections: server.connections,
    });
  } else if (msg.type === 'stop') {
    void server.close().then(() => process.exit(0));
  }
});
process.send?.({ type: 'ready', port: server.port });
