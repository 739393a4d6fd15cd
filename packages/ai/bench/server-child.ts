/**
 * The Mooring server for the AI benchmark, in its own process so its CPU time is its own. Reports
 * `{ type: 'ready', port }` over IPC, stops on `{ type: 'stop' }`, exits when the parent goes away.
 * argv[2]: store kind (`memory` | `sqlite`), argv[3]: data directory for sqlite.
 */
import { startServer } from '@mooring/server';
import { BENCH_KEY } from './bench-key.ts';

if (!process.send) throw new Error('server-child: start it with fork() (needs IPC)');
process.on('disconnect', () => process.exit(0));
const kind = process.argv[2] === 'sqlite' ? 'sqlite' : 'memory';
const server = await startServer({
  port: 0,
  host: '127.0.0.1',
  keys: [BENCH_KEY],
  store:
    kind === 'sqlite'
      ? { kind: 'sqlite', path: `${process.argv[3] ?? '/tmp'}/ai-bench.db` }
      : { kind: 'memory' },
});
process.on('message', (message: { type: string }) => {
  if (message.type === 'stop') {
    const timer = setTimeout(() => process.exit(0), 3000);
    void server.close().finally(() => {
      clearTimeout(timer);
      process.exit(0);
    });
  }
});
process.send({ type: 'ready', port: server.port });
