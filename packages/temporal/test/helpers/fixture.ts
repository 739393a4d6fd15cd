/**
 * Real parts for the Temporal helper tests: a Mooring server on 127.0.0.1 port 0, clients closed when
 * the test ends, a fresh session per test, and a scripted "model" (a chunk stream that can stall or
 * throw where a test wants it).
 */
import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import type { MooringOptions } from '@mooring/client';
import { Mooring } from '@mooring/client';
import type { MooringServer, ServerOptions } from '@mooring/server';
import { startServer } from '@mooring/server';
import { waitFor } from '@mooring/testkit';
import type { UIMessage, UIMessageChunk } from 'ai';

export const KEY = 'test:secret';

export async function realServer(
  t: TestContext,
  options: Partial<ServerOptions> = {},
): Promise<MooringServer> {
  const server = await startServer({
    port: 0,
    host: '127.0.0.1',
    keys: [KEY],
    store: { kind: 'memory' },
    ...options,
  });
  t.after(() => server.close());
  return server;
}

export function client(t: TestContext, url: string, options: Partial<MooringOptions> = {}): Mooring {
  const c = new Mooring({
    url,
    key: KEY,
    environment: null,
    initialRetryDelay: 10,
    disconnectedRetryTimeout: 100,
    ...options,
  });
  t.after(() => c.close());
  return c;
}

export function sessionName(): string {
  return `session:${randomUUID()}`;
}

export function textOf(message: UIMessage | undefined): string {
  return (message?.parts ?? []).map((p) => (p.type === 'text' ? p.text : '')).join('');
}

/** The model's answer, as tokens. */
export const ANSWER = [
  'Durable ',
  'execution ',
  'meets ',
  'durable ',
  'sessions: ',
  'this ',
  'text ',
  'once.',
];

export interface ScriptedModel {
  stream: ReadableStream<UIMessageChunk>;
  /** Chunks handed out so far. */
  readonly pulled: number;
  /** True once the consumer cancelled the stream (a cancelled activity stops its model). */
  readonly cancelled: boolean;
  /** Ends a stall with an error (nothing if the stream is not stalled): a test lets its model go. */
  release(): void;
}

/**
 * The chunks of `ANSWER` (start, text-start, deltas, text-end, finish). `failAfter`: throw after that
 * many chunks (a model call that dies mid-stream); `stallAfter`: stop producing after that many (a
 * model that goes quiet). `delay` between chunks, ms.
 */
export function scriptedModel(
  options: { failAfter?: number; stallAfter?: number; delay?: number } = {},
): ScriptedModel {
  const chunks: UIMessageChunk[] = [
    { type: 'start' },
    { type: 'text-start', id: 't0' },
    ...ANSWER.map((delta): UIMessageChunk => ({ type: 'text-delta', id: 't0', delta })),
    { type: 'text-end', id: 't0' },
    { type: 'finish', finishReason: 'stop' },
  ];
  let pulled = 0;
  let cancelled = false;
  let release = () => {};
  const stream = new ReadableStream<UIMessageChunk>({
    async pull(controller) {
      if (options.delay) await new Promise((resolve) => setTimeout(resolve, options.delay));
      if (options.failAfter !== undefined && pulled >= options.failAfter) {
        controller.error(new Error('model connection reset'));
        return;
      }
      if (options.stallAfter !== undefined && pulled >= options.stallAfter) {
        return new Promise<void>((resolve) => {
          release = () => {
            controller.error(new Error('the model was released by the test'));
            resolve();
          };
        });
      }
      const next = chunks[pulled++];
      if (next) controller.enqueue(next);
      else controller.close();
    },
    cancel() {
      cancelled = true;
    },
  });
  return {
    stream,
    get pulled() {
      return pulled;
    },
    get cancelled() {
      return cancelled;
    },
    release: () => release(),
  };
}

export { waitFor };

export { restartRedis, within } from '@mooring/testkit';
