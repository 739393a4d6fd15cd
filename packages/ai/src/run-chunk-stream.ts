/**
 * A run's `UIMessageChunk` stream rebuilt from the channel, for the AI SDK (a `ChatTransport`
 * returns these). It reconciles the run's folded state with what it already emitted
 * (`RunChunkEmitter`) each time the run changes — but only while the channel is live, never in the
 * middle of a catch-up, so parts always come out in the agent's order — and closes after the run's
 * terminal chunks.
 *
 *   mode 'replay': start {messageId: runId}, every part so far whole, then live   (resume = replay)
 *   mode 'tail':   start {messageId: runId}, then only what the run adds from now  (continuations)
 */
import type { UIMessageChunk } from 'ai';
import type { ConversationTree, TreeChange } from './conversation-tree.ts';
import { RunChunkEmitter } from './run-chunk-emitter.ts';

/** What a run stream needs from a session: its tree, whether it is live, and change notices. */
export interface RunStreamSource {
  readonly tree: ConversationTree;
  /** True while the channel is attached and not reloading. */
  readonly live: boolean;
  /** Calls `fn` after each tree change and each time the session becomes live; returns an unsubscribe. */
  watch(fn: (change: TreeChange | { kind: 'live' }) => void): () => void;
}

export interface RunStreamOptions {
  /** Default 'replay'. */
  mode?: 'replay' | 'tail';
  /** Closes the stream (without ending the run). */
  signal?: AbortSignal;
}

export function runChunkStream(
  source: RunStreamSource,
  runId: string,
  options: RunStreamOptions = {},
): ReadableStream<UIMessageChunk> {
  const emitter = new RunChunkEmitter();
  let stop = () => {};
  return new ReadableStream<UIMessageChunk>({
    start(controller) {
      let closed = false;
      let seen = false;
      let tail = options.mode === 'tail';
      const close = () => {
        if (closed) return;
        closed = true;
        stop();
        controller.close();
      };
      const pump = () => {
        if (closed || !source.live) return;
        const run = source.tree.run(runId);
        if (!run) {
          if (seen) {
            // Reloaded after continuity was lost, and the run went with the old log.
            controller.enqueue({ type: 'abort', reason: 'continuity lost' });
            close();
          }
          return;
        }
        seen = true;
        const parts = source.tree.parts(runId);
        if (tail) {
          tail = false;
          controller.enqueue({ type: 'start', messageId: runId });
          emitter.skip(parts);
        }
        for (const chunk of emitter.sync(run, parts)) controller.enqueue(chunk);
        if (emitter.finished) close();
      };
      const unwatch = source.watch((change) => {
        if (
          change.kind === 'live' ||
          (change.kind === 'part' && change.runId === runId) ||
          (change.kind === 'run' && change.node.id === runId)
        )
          pump();
      });
      const onAbort = () => close();
      stop = () => {
        unwatch();
        options.signal?.removeEventListener('abort', onAbort);
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      if (options.signal?.aborted) return close();
      pump();
    },
    cancel() {
      stop();
    },
  });
}
