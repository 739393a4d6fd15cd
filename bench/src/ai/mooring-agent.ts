/**
 * The Mooring side's app in a process of its own (like one AI worker), connected to the Mooring
 * server over WebSocket: the agents of agents.ts.
 *
 *   node mooring-agent.ts <json MooringAgentConfig>
 */
import { serveChild } from '../servers/server-child.ts';
import { type MooringAgentConfig, startAgents } from './agents.ts';

export type { MooringAgentConfig } from './agents.ts';

const config = JSON.parse(process.argv[2] ?? '{}') as MooringAgentConfig;

await serveChild(async () => {
  const agents = await startAgents(config);
  return { port: 0, close: () => agents.close() };
});
