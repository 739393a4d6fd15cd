/**
 * Activities: each model call streams into the session with `streamToSession`. The "model" here is a
 * scripted stream so the example runs without an API key; swap in `streamText` (see README). With
 * `DEMO_FAIL_FIRST_ATTEMPT=1` the first attempt of every answer dies half-way, and Temporal's retry
 * resumes the same run in place.
 */
import { Mooring } from '@mooring/client';
import { streamToSession } from '@mooring/temporal';
import type { UIMessageChunk } from 'ai';

const rest = new Mooring({
  url: process.env.MOORING_URL ?? 'http://127.0.0.1:8080',
  key: process.env.MOORING_KEY ?? '',
  clientId: 'temporal-worker',
  autoConnect: false,
}).rest;

export interface AnswerArgs {
  channel: string;
  input: string;
  runId: string;
  agent: string;
  /** What the agent says (the scripted model's answer). */
  text: string;
  /** A tool call that needs the user's approval, shown in the answer. */
  approval?: { approvalId: string; toolName: string; input: Record<string, string> };
}

export async function answer(args: AnswerArgs): Promise<string> {
  const result = await streamToSession({
    rest,
    channel: args.channel,
    input: args.input,
    runId: args.runId,
    agent: args.agent,
    stream: ({ attempt }) => scripted(args, attempt),
  });
  return result.status;
}

async function* scripted(args: AnswerArgs, attempt: number): AsyncGenerator<UIMessageChunk> {
  yield { type: 'start', messageId: args.runId };
  yield { type: 'text-start', id: 't' };
  const words = args.text.split(/(?<= )/);
  for (const [i, delta] of words.entries()) {
    await new Promise((resolve) => setTimeout(resolve, 60));
    if (process.env.DEMO_FAIL_FIRST_ATTEMPT === '1' && attempt === 1 && i === Math.floor(words.length / 2))
      throw new Error('model connection reset (demo)');
    yield { type: 'text-delta', id: 't', delta };
  }
  yield { type: 'text-end', id: 't' };
  if (args.approval) {
    const toolCallId = `${args.runId}:tool`;
    yield {
      type: 'tool-input-available',
      toolCallId,
      toolName: args.approval.toolName,
      input: args.approval.input,
    };
    yield { type: 'tool-approval-request', approvalId: args.approval.approvalId, toolCallId };
  }
  yield { type: 'finish', finishReason: 'stop' };
}
