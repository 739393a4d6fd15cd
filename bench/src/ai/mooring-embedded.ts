/**
 * Mooring with the agents in its own process: `startServer` (memory store, or `sqlite`: a file in a
 * fresh temporary directory) and the agents of agents.ts connected over the in-process transport
 * (`transport: server.localTransport`, PROTOCOL.md §5.5). The users connect over WebSocket as to
 * any Mooring server. The same server settings as servers/mooring-server.ts.
 *
 *   node mooring-embedded.ts <memory|sqlite> <json MooringAgentConfig without url>
 */
import { startServer } from '@mooring/server';
import { BENCH_KEY } from '../bench-config.ts';
import { benchStore } from '../servers/bench-store.ts';
import { serveChild } from '../servers/server-child.ts';
import { type MooringAgentConfig, startAgents } from './agents.ts';

const kind = process.argv[2] === 'sqlite' ? 'sqlite' : 'memory';
const config = JSON.parse(process.argv[3] ?? '{}') as Omit<MooringAgentConfig, 'url'>;

await serveChild(async () => {
  const { store, cleanup } = benchStore(kind);
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    store,
    keys: [BENCH_KEY],
    limits: { maxPublishRate: 1e9 },
    logger: 'error',
  });
  const agents = await startAgents({ ...config, url: server.url }, server.localTransport);
  return {
    port: server.port,
    close: async () => {
      await agents.close();
      await server.close();
      cleanup();
    },
  };
});
