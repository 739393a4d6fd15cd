/** Child process for the idle-connections measurement: a Mooring server that reports its memory over IPC. */
import { startServer } from '@mooring/server';

const server = await startServer({
  port: 0,
  host: '127.0.0.1',
  keys: ['bench:secret'],
  limits: { maxConnectionsPerKey: 100_000 },
  store: { kind: 'memory' },
});
process.on('message', (msg: { type: string }) => {
  if (msg.type === 'memory') {
    globalThis.gc?.();
    globalThis.gc?.();
    const m = process.memoryUsage();
    process.send?.({
      type: 'memory',
      rss: m.rss,
      heapUsed: m.heapUsed,
      external: m.external,
      connections: server.connections,
    });
  } else if (msg.type === 'stop') {
    void server.close().then(() => process.exit(0));
  }
});
process.send?.({ type: 'ready', port: server.port });
