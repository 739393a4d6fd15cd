/**
 * A run's assistant `UIMessage`, rebuilt from its parts by the AI SDK's own message processor
 * (`readUIMessageStream` over the replayed chunks), so it is exactly what `useChat` would have built
 * from the original stream. Text arrives as one delta per part, so a rebuild costs O(parts), not
 * O(tokens).
 */
import type { UIMessage, UIMessageChunk } from 'ai';
import { readUIMessageStream } from 'ai';
import type { ConversationTree, RunNode } from './conversation-tree.ts';
import { RunChunkEmitter } from './run-chunk-emitter.ts';
import type { PartRecord } from './wire.ts';

/** The chunks of a full replay of the run as it stands. */
export function replayRun(run: RunNode, parts: readonly PartRecord[]): UIMessageChunk[] {
  return new RunChunkEmitter().sync(run, parts);
}

/** The run's UIMessage as it stands (resolves after the AI SDK processed the replay). */
export async function buildRunMessage<M extends UIMessage = UIMessage>(
  run: RunNode,
  parts: readonly PartRecord[],
): Promise<M> {
  const chunks = replayRun(run, parts);
  const stream = new ReadableStream<UIMessageChunk>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  let last: M | undefined;
  // Errors (an `error` chunk, a malformed part) do not stop the rebuild: the message is what it is.
  for await (const message of readUIMessageStream<M>({ stream, onError: () => {} })) last = message;
  return last ?? emptyRunMessage<M>(run.id);
}

/** A run's message with nothing in it yet (no parts built, or none written). */
export function emptyRunMessage<M extends UIMessage>(runId: string): M {
  return { id: runId, role: 'assistant', parts: [] } as unknown as M;
}

/**
 * The conversation from its first message to `nodeId` (an input, usually), as UIMessages: user
 * inputs and the runs' assistant messages on the way — ready for `convertToModelMessages`.
 */
export async function historyOf<M extends UIMessage = UIMessage>(
  tree: ConversationTree,
  nodeId: string,
): Promise<M[]> {
  const out: M[] = [];
  for (const node of tree.ancestry(nodeId)) {
    if (node.kind === 'input') out.push(node.message as M);
    else out.push(await buildRunMessage<M>(node, tree.parts(node.id)));
  }
  return out;
}
