/**
 * The demo's agent: one `AgentSession` per session channel, in this process, over one Mooring
 * connection (an API key). Each input gets a scripted reply (no model) piped into the session with
 * `run.pipe()`; a cancel from any device aborts `run.signal`, which stops the stream at once.
 *
 * It keeps a transcript of what each run published — the text of each text part and how the run
 * ended — so that tests can compare what a browser shows with what the agent wrote.
 */
import type { AgentRun } from '@mooring/ai';
import { AgentSession } from '@mooring/ai';
import { Mooring, type MooringOptions } from '@mooring/client';
import type { UIMessageChunk } from 'ai';
import { scriptFor } from './reply-scripts.ts';
import { scriptedReply } from './scripted-reply.ts';

export interface DemoAgentsOptions {
  /** The Mooring server, `http://host:port`. */
  url: string;
  /** An API key `<name>:<secret>` the server accepts. */
  key: string;
  /** Multiplies the reply's pauses (see `scriptedReply`). Default 1. */
  pace?: number;
  /** Where errors outside a run go. Default: stderr. */
  onError?: (error: Error) => void;
  /**
   * How the agents' client reaches the server: the server's in-process transport when they run in
   * its process (`server.localTransport`, as `npm start` does). Default: WebSocket to `url`.
   */
  transport?: MooringOptions['transport'];
}

/** What one run published. */
export interface RunTranscript {
  runId: string;
  channel: string;
  /** The text of each text part, in order. */
  textParts: string[];
  /** The reasoning text. */
  reasoning: string;
  /** Tool names called, in order. */
  tools: string[];
  /** `running` until the run ended. */
  status: 'running' | 'complete' | 'cancelled' | 'error';
}

export const AGENT_NAME = 'assistant';

export class DemoAgents {
  readonly #client: Mooring;
  readonly #o: DemoAgentsOptions;
  readonly #sessions = new Map<string, Promise<AgentSession>>();
  readonly #transcripts = new Map<string, RunTranscript>();

  constructor(options: DemoAgentsOptions) {
    this.#o = options;
    this.#client = new Mooring({
      url: options.url,
      key: options.key,
      clientId: 'demo-agent',
      environment: null,
      ...(options.transport === undefined ? {} : { transport: options.transport }),
    });
  }

  /** Starts the agent of a session channel (once); resolves when it listens. */
  ensure(channel: string): Promise<void> {
    let session = this.#sessions.get(channel);
    if (!session) {
      session = this.#start(channel);
      this.#sessions.set(channel, session);
      session.catch(() => this.#sessions.delete(channel));
    }
    return session.then(() => undefined);
  }

  /** What a run published so far. */
  transcript(runId: string): RunTranscript | undefined {
    const t = this.#transcripts.get(runId);
    return t && { ...t, textParts: [...t.textParts], tools: [...t.tools] };
  }

  /** Stops answering: runs in progress are cancelled, then the connection closes. */
  async close(): Promise<void> {
    const sessions = await Promise.allSettled(this.#sessions.values());
    await Promise.all(sessions.map((s) => (s.status === 'fulfilled' ? s.value.close() : undefined)));
    this.#client.close();
  }

  async #start(channel: string): Promise<AgentSession> {
    // echo: false — the agent's own tokens are not sent back to it (it folds them from the acks)
    const sessionChannel = this.#client.channels.get(channel, { start: true, echo: false });
    const session = new AgentSession({
      channel: sessionChannel,
      agent: AGENT_NAME,
      // A session joined after a restart: answer a question that arrived while no agent listened.
      answerMissed: true,
      onInput: (input, run) => this.#answer(channel, promptOf(input.message.parts), run),
    });
    session.on('error', (err) => this.#report(err));
    await session.start();
    // shown in the page's "Who's here" panel
    sessionChannel.presence
      .enter({ role: AGENT_NAME, since: Date.now() })
      .catch((err: Error) => this.#report(err));
    return session;
  }

  async #answer(channel: string, prompt: string, run: AgentRun): Promise<void> {
    const transcript: RunTranscript = {
      runId: run.runId,
      channel,
      textParts: [],
      reasoning: '',
      tools: [],
      status: 'running',
    };
    this.#transcripts.set(run.runId, transcript);
    run.on('end', (status) => {
      transcript.status = status === 'abandoned' ? 'error' : status;
    });
    const options: Parameters<typeof scriptedReply>[1] = {
      signal: run.signal,
      onChunk: (chunk) => record(transcript, chunk),
      // a tool that asks first: the run stays open until a user answers on any device
      approval: (approvalId) => run.waitForApproval(approvalId),
    };
    if (this.#o.pace !== undefined) options.pace = this.#o.pace;
    await run.pipe(scriptedReply(scriptFor(prompt), options));
  }

  #report(error: Error): void {
    if (this.#o.onError) this.#o.onError(error);
    else process.stderr.write(`demo agent: ${error.message}\n`);
  }
}

function record(t: RunTranscript, chunk: UIMessageChunk): void {
  switch (chunk.type) {
    case 'text-start':
      t.textParts.push('');
      break;
    case 'text-delta':
      t.textParts[t.textParts.length - 1] += chunk.delta;
      break;
    case 'reasoning-delta':
      t.reasoning += chunk.delta;
      break;
    case 'tool-input-start':
      t.tools.push(chunk.toolName);
      break;
    default:
      break;
  }
}

function promptOf(parts: ReadonlyArray<{ type: string; text?: string }>): string {
  return parts
    .filter((p) => p.type === 'text')
    .map((p) => p.text ?? '')
    .join('\n');
}
