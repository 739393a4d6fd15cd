/**
 * A model-free reply: a `ReadableStream` of AI SDK `UIMessageChunk`s shaped like what
 * `toUIMessageStream()` gives for a real model (start, steps, a reasoning line, text tokens, tool
 * calls, finish), paced like one — 20–50 tokens/s with pauses at sentence ends — so that a person has
 * time to reload, go offline or switch device in the middle of an answer.
 *
 * Chunks are produced on demand (`pull`): nothing is made ahead of the reader, and cancelling the
 * stream or aborting `signal` stops it at once. `onChunk` sees every chunk handed to the reader, which
 * is what the agent published.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { UIMessageChunk } from 'ai';
import type { ReplyScript } from './reply-scripts.ts';

export interface ScriptedReplyOptions {
  /** Multiplies every pause: 1 ≈ 30 tokens/s (a 300-word answer takes about 15 s), 0 = no pauses. */
  pace?: number;
  /** Stops the stream (the run was cancelled). */
  signal?: AbortSignal;
  /** For jitter; default `Math.random`. */
  random?: () => number;
  /** Every chunk as it is handed to the reader. */
  onChunk?: (chunk: UIMessageChunk) => void;
  /** The user's answer to a `tool-approval-request` (a tool with `needsApproval`). Default: approved. */
  approval?: (approvalId: string) => Promise<{ approved: boolean; reason?: string | undefined }>;
}

/** Milliseconds per token on average at pace 1. */
const TOKEN_MS = 33;

export function scriptedReply(
  script: ReplyScript,
  options: ScriptedReplyOptions = {},
): ReadableStream<UIMessageChunk> {
  const chunks = generate(script, options);
  return new ReadableStream<UIMessageChunk>({
    async pull(controller) {
      try {
        const next = await chunks.next();
        if (next.done) {
          controller.close();
          return;
        }
        options.onChunk?.(next.value);
        controller.enqueue(next.value);
      } catch (err) {
        if (options.signal?.aborted) controller.close();
        else controller.error(err);
      }
    },
    async cancel() {
      await chunks.return(undefined);
    },
  });
}

async function* generate(script: ReplyScript, options: ScriptedReplyOptions): AsyncGenerator<UIMessageChunk> {
  const pace = options.pace ?? 1;
  const random = options.random ?? Math.random;
  const wait = async (ms: number) => {
    options.signal?.throwIfAborted();
    if (pace > 0 && ms > 0)
      await sleep(ms * pace, undefined, options.signal ? { signal: options.signal } : {});
  };

  yield { type: 'start' };
  yield { type: 'start-step' };
  await wait(350 + random() * 300); // time to first token

  yield { type: 'reasoning-start', id: 'reasoning-0' };
  for (const token of tokens(script.reasoning)) {
    await wait(TOKEN_MS * 0.6 * (0.6 + random() * 0.8));
    yield { type: 'reasoning-delta', id: 'reasoning-0', delta: token };
  }
  yield { type: 'reasoning-end', id: 'reasoning-0' };

  let texts = 0;
  let tools = 0;
  let approved: boolean | undefined;
  for (const segment of script.segments) {
    if ('text' in segment) {
      if (segment.when !== undefined && segment.when !== approved) continue;
      const id = `text-${texts++}`;
      yield { type: 'text-start', id };
      let previous = '';
      for (const token of tokens(segment.text)) {
        await wait(rhythm(previous, token, random));
        yield { type: 'text-delta', id, delta: token };
        previous = token;
      }
      yield { type: 'text-end', id };
      continue;
    }
    const { name, input, output, needsApproval } = segment.tool;
    const toolCallId = `call_${tools++}`;
    yield { type: 'tool-input-start', toolCallId, toolName: name };
    for (const piece of splitEvery(JSON.stringify(input), 6)) {
      await wait(TOKEN_MS * (0.5 + random()));
      yield { type: 'tool-input-delta', toolCallId, inputTextDelta: piece };
    }
    yield { type: 'tool-input-available', toolCallId, toolName: name, input };
    if (needsApproval) {
      const approvalId = `approval_${toolCallId}`;
      yield { type: 'tool-approval-request', approvalId, toolCallId };
      const answer = options.approval
        ? await abortable(options.approval(approvalId), options.signal)
        : { approved: true };
      approved = answer.approved;
      if (!approved) {
        yield { type: 'tool-output-denied', toolCallId };
        yield { type: 'finish-step' };
        yield { type: 'start-step' };
        continue;
      }
    }
    await wait(700 + random() * 600); // the tool runs
    yield { type: 'tool-output-available', toolCallId, output };
    yield { type: 'finish-step' };
    yield { type: 'start-step' };
    await wait(300 + random() * 200);
  }
  yield { type: 'finish-step' };
  yield { type: 'finish', finishReason: 'stop' };
}

/** `promise`, or a rejection as soon as `signal` aborts (a cancel while waiting for an approval). */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * Splits text into model-like tokens: a word with its leading whitespace, long words in two; joined
 * back they give the text exactly.
 */
export function tokens(text: string): string[] {
  const out: string[] = [];
  for (const word of text.match(/\s*\S+|\s+$/g) ?? []) {
    const bare = word.trimStart();
    if (bare.length > 9) {
      const cut = word.length - bare.length + Math.ceil(bare.length / 2);
      out.push(word.slice(0, cut), word.slice(cut));
    } else out.push(word);
  }
  return out;
}

/** Typing rhythm: a jittered token time, longer after a sentence, longer still before a paragraph. */
function rhythm(previous: string, token: string, random: () => number): number {
  let ms = TOKEN_MS * (0.6 + random() * 0.8);
  if (token.startsWith('\n\n')) ms += 250 + random() * 250;
  if (/[.!?]$/.test(previous)) ms += 80 + random() * 160;
  else if (/[,;:]$/.test(previous)) ms += 30 + random() * 60;
  return ms;
}

function splitEvery(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}
