/**
 * Scripted language models (the edge we cannot run: a paid model API). Each step is the list of
 * stream parts one model call returns; `gate` lets a test hold the stream at chunk boundaries (to
 * cancel mid-run, or to break the network between two chunks).
 */
import type { UIMessage, UIMessageChunk } from 'ai';
import { readUIMessageStream } from 'ai';
import { MockLanguageModelV4 } from 'ai/test';

/** A language model stream part (LanguageModelV4StreamPart, without depending on @ai-sdk/provider). */
export type LanguageModelV4StreamPart = Awaited<
  ReturnType<MockLanguageModelV4['doStream']>
>['stream'] extends ReadableStream<infer P>
  ? P
  : never;

export const usage = {
  inputTokens: { total: 3, noCache: 3, cacheRead: 0, cacheWrite: 0 },
  outputTokens: { total: 10, text: 10, reasoning: 0 },
};

export interface ScriptOptions {
  /** Called before each chunk is emitted (await it to pace the stream). */
  gate?: (index: number, part: LanguageModelV4StreamPart) => Promise<void> | void;
  /** Every abort signal the model received, for assertions. */
  signals?: AbortSignal[];
}

/** A model whose n-th call streams `steps[n]` (the last step repeats). */
export function scriptedModel(
  steps: LanguageModelV4StreamPart[][],
  options: ScriptOptions = {},
): MockLanguageModelV4 {
  let call = 0;
  return new MockLanguageModelV4({
    doStream: async ({ abortSignal }) => {
      if (abortSignal) options.signals?.push(abortSignal);
      const parts = steps[Math.min(call++, steps.length - 1)] ?? [];
      let i = 0;
      const stream = new ReadableStream<LanguageModelV4StreamPart>({
        async pull(controller) {
          if (abortSignal?.aborted) {
            controller.error(abortSignal.reason);
            return;
          }
          const part = parts[i];
          if (!part) {
            controller.close();
            return;
          }
          await options.gate?.(i, part);
          i++;
          controller.enqueue(part);
        },
      });
      return { stream };
    },
  });
}

/**
 * The steer tests' model: counts to three, then (its next call) answers in French. Its first
 * answer holds before its fourth part until `release()`, so a steer lands while the run streams.
 */
export function heldCountingModel(): { model: MockLanguageModelV4; release: () => void } {
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const model = scriptedModel(
    [
      [...textParts('a', 'Counting: one two three'), finish()],
      [...textParts('b', 'OK, in French: un deux trois'), finish()],
    ],
    { gate: (i) => (i === 3 ? held : undefined) },
  );
  return { model, release };
}

/** Text as a text-start / deltas (one per word) / text-end sequence. */
export function textParts(id: string, text: string): LanguageModelV4StreamPart[] {
  const words = text.match(/\S+\s*/g) ?? [];
  return [
    { type: 'text-start', id },
    ...words.map((delta): LanguageModelV4StreamPart => ({ type: 'text-delta', id, delta })),
    { type: 'text-end', id },
  ];
}

export function finish(unified: 'stop' | 'tool-calls' = 'stop'): LanguageModelV4StreamPart {
  return { type: 'finish', usage, finishReason: { unified, raw: unified } };
}

/** The UIMessage the AI SDK builds from a chunk list (the reference for equality). */
export async function messageFrom(chunks: UIMessageChunk[], id: string): Promise<UIMessage> {
  const stream = new ReadableStream<UIMessageChunk>({
    start(c) {
      for (const chunk of chunks) c.enqueue(chunk);
      c.close();
    },
  });
  let last: UIMessage | undefined;
  for await (const m of readUIMessageStream({ stream, onError: () => {} })) last = m;
  return normalize({ ...(last ?? { role: 'assistant', parts: [] }), id } as UIMessage);
}

/** JSON round trip: what survives the wire (undefined-valued keys do not). */
export function normalize<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

export async function collect<T>(stream: ReadableStream<T>): Promise<T[]> {
  const out: T[] = [];
  const reader = stream.getReader();
  for (;;) {
    const r = await reader.read();
    if (r.done) return out;
    out.push(r.value);
  }
}
