/**
 * The Mooring side's app: the agents of an AI run, one `AgentSession` per session channel `ai:<r>`
 * (attached with `echo: false`: its own tokens are not sent back to it), a few sessions per realtime
 * connection, like one AI worker. Each input starts a run whose text is the model stub's stream,
 * written chunk by chunk as `text-delta`s; the run publisher coalesces them within `coalesceMs`
 * (0 = one append per read from the model). Run in a process of their own (mooring-agent.ts) or in
 * the server's (mooring-embedded.ts, over the in-process transport).
 */
import { AgentSession } from '@mooring/ai';
import { Mooring, type MooringOptions } from '@mooring/client';
import { modelText } from './model-client.ts';

export interface MooringAgentConfig {
  url: string;
  key: string;
  stubPort: number;
  responses: number;
  tokens: number;
  rate: number;
  coalesceMs: number;
  /** Sessions served per connection. */
  perConnection: number;
}

/** Starts the agents; resolves once every session is attached. */
export async function startAgents(
  config: MooringAgentConfig,
  transport?: MooringOptions['transport'],
): Promise<{ close(): Promise<void> }> {
  const clients: Mooring[] = [];
  const agents: AgentSession[] = [];
  for (let r = 0; r < config.responses; r++) {
    if (r % config.perConnection === 0) {
      clients.push(
        new Mooring({
          url: config.url,
          key: config.key,
          clientId: `agent-${clients.length}`,
          environment: null,
          ...(transport === undefined ? {} : { transport }),
        }),
      );
    }
    const client = clients[clients.length - 1]!;
    const agent = new AgentSession({
      channel: client.channels.get(`ai:${r}`, { start: true, echo: false }),
      agent: 'assistant',
      coalesceMs: config.coalesceMs,
      onInput: async (_input, run) => {
        // as the AI SDK's streamText does: the text part starts with its first delta
        let started = false;
        for await (const delta of modelText(config.stubPort, r, config.tokens, config.rate)) {
          if (run.signal.aborted) break;
          if (!started) run.write({ type: 'text-start', id: 't' });
          started = true;
          run.write({ type: 'text-delta', id: 't', delta });
        }
        if (started) run.write({ type: 'text-end', id: 't' });
      },
    });
    agent.on('error', (error) => process.stdout.write(`agent ai:${r}: ${String(error)}\n`));
    agents.push(agent);
  }
  await Promise.all(agents.map((a) => a.start()));
  return {
    close: async () => {
      await Promise.all(agents.map((a) => a.close()));
      for (const c of clients) c.close();
    },
  };
}
