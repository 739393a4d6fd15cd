/**
 * Small agents for tests: they answer with text built from the input, by hand-written parts, or with
 * a scripted model through the AI SDK.
 */
import type { TestContext } from 'node:test';
import type { MooringOptions } from '@mooring/client';
import type { ToolSet, UIMessage, UIMessageChunk } from 'ai';
import { convertToModelMessages, stepCountIs, streamText, toUIMessageStream } from 'ai';
import type { AgentSessionOptions } from '../../src/agent-session.ts';
import { AgentSession } from '../../src/agent-session.ts';
import { client } from './fixture.ts';
import { collect, type scriptedModel } from './models.ts';

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

/**
 * An agent (clientId `agent`) that answers each input with `model` through `streamText` (its tools,
 * up to 3 steps, sources sent), and keeps every run's chunks as the model produced them, to compare
 * with what users rebuild from the channel.
 */
export async function modelAgent(
  t: TestContext,
  url: string,
  channelName: string,
  model: ReturnType<typeof scriptedModel>,
  options: { tools?: ToolSet; coalesceMs?: number; transport?: MooringOptions['transport'] } = {},
): Promise<{ agent: AgentSession; produced: Promise<UIMessageChunk[]>[] }> {
  const produced: Promise<UIMessageChunk[]>[] = [];
  const agent = new AgentSession({
    channel: client(t, url, {
      clientId: 'agent',
      ...(options.transport === undefined ? {} : { transport: options.transport }),
    }).channels.get(channelName, { start: true }),
    agent: 'assistant',
    ...(options.coalesceMs === undefined ? {} : { coalesceMs: options.coalesceMs }),
    onInput: async (input, run) => {
      const result = streamText({
        model,
        messages: await convertToModelMessages(await input.history()),
        ...(options.tools === undefined ? {} : { tools: options.tools }),
        stopWhen: stepCountIs(3),
        abortSignal: run.signal,
      });
      const [toSession, toTest] = toUIMessageStream({ stream: result.stream, sendSources: true }).tee();
      produced.push(collect(toTest));
      await run.pipe(toSession);
    },
  });
  t.after(() => agent.close());
  await agent.start();
  return { agent, produced };
}

/** The words a gated agent answers with (`gatedAgent`), and the one before which it waits. */
export const WORDS = Array.from({ length: 20 }, (_, i) => `w${i} `);
export const HALF = WORDS.length / 2;

/**
 * An agent (clientId `clientId`) that answers each input with WORDS, one flushed delta at a time,
 * waiting before word HALF for `release()` (and before word `early`, when given, for a first
 * `release()`): a run held mid-answer while a test breaks something.
 */
export async function gatedAgent(
  t: TestContext,
  url: string,
  name: string,
  early?: number,
  clientId = 'agent',
) {
  const gates: Array<() => void> = [];
  const gate = () => new Promise<void>((resolve) => gates.push(resolve));
  const releases = [gate(), ...(early === undefined ? [] : [gate()])];
  const release = () => {
    gates.shift()?.();
  };
  const agent = new AgentSession({
    channel: client(t, url, { clientId }).channels.get(name, { start: true }),
    agent: 'assistant',
    coalesceMs: 0,
    onInput: async (_input, run) => {
      run.write({ type: 'text-start', id: 't' });
      for (const [i, word] of WORDS.entries()) {
        if (i === early) await releases[0];
        if (i === HALF) await releases[releases.length - 1];
        run.write({ type: 'text-delta', id: 't', delta: word });
        await run.flush();
      }
      run.write({ type: 'text-end', id: 't' });
    },
  });
  t.after(() => {
    for (const open of gates.splice(0)) open(); // a run still waiting would hold the agent's close
    return agent.close();
  });
  await agent.start();
  return { agent, release };
}
