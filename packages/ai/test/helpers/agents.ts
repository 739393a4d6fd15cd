/** Small agents for tests: they answer with text built from the input, by hand-written parts. */
import type { TestContext } from 'node:test';
import type { UIMessage } from 'ai';
import type { AgentSessionOptions } from '../../src/agent-session.ts';
import { AgentSession } from '../../src/agent-session.ts';
import { client } from './fixture.ts';

export function textOf(message: UIMessage | undefined): string {
  return (message?.parts ?? []).map((p) => (p.type === 'text' ? p.text : '')).join('');
}

/** An agent that answers "<agent>#<n>: <input text>" (n counts its runs). */
export async function echoAgent(
  t: TestContext,
  url: string,
  channelName: string,
  options: Partial<AgentSessionOptions> = {},
): Promise<AgentSession> {
  let n = 0;
  const agentName = options.agent ?? 'assistant';
  const agent = new AgentSession({
    channel: client(t, url, { clientId: agentName }).channels.get(channelName, { start: true }),
    agent: agentName,
    onInput: (input, run) => {
      run.writeText(`${agentName}#${++n}: ${textOf(input.message)}`);
    },
    ...options,
  });
  t.after(() => agent.close());
  await agent.start();
  return agent;
}
