/**
 * The AI SDK v7 `ChatTransport` over a Mooring session: `useChat` (or any `AbstractChat`) talks to
 * agents through the channel instead of an HTTP endpoint.
 *
 *   sendMessages  submit-message   → ai.input (parent: the message before it)   ┐ then the stream of the
 *                 edit (messageId) → ai.input with forkOf                       ├ run that answers it,
 *                 regenerate       → ai.control regenerate                      ┘ rebuilt from the channel
 *                 approval answers → ai.control tool-approval, then the run's continuation
 *                 abortSignal      → ai.control cancel of that run
 *   reconnectToStream              → the run in progress on the view, replayed from its start chunk
 *                                    (same messageId; `resumeStreamIsReplay`), or null
 *
 * The streams come from the session's fold, so a dropped connection, a reload or a second device
 * changes nothing: the chat gets every chunk once. Runs started elsewhere (another device, an
 * operator) reach the chat through `syncChat()`.
 */
import type { ChatTransport, UIMessage, UIMessageChunk } from 'ai';
import type { RunNode } from './conversation-tree.ts';
import type { RunStreamOptions } from './run-chunk-stream.ts';
import type { OutgoingMessage, UserSession } from './user-session.ts';

export interface MooringChatTransportOptions<M extends UIMessage = UIMessage> {
  /** The user session the chat shows (started by the transport when needed). */
  session: UserSession<M>;
}

type SendOptions<M extends UIMessage> = Parameters<ChatTransport<M>['sendMessages']>[0];
type ReconnectOptions<M extends UIMessage> = Parameters<ChatTransport<M>['reconnectToStream']>[0];

export class MooringChatTransport<M extends UIMessage = UIMessage> implements ChatTransport<M> {
  /** A resumed stream replays the run from its start (the chat resets the message first). */
  readonly resumeStreamIsReplay = true;
  readonly session: UserSession<M>;
  readonly #sentApprovals = new Set<string>();

  constructor(options: MooringChatTransportOptions<M>) {
    this.session = options.session;
  }

  async sendMessages(options: SendOptions<M>): Promise<ReadableStream<UIMessageChunk>> {
    const session = this.session;
    await session.start();
    const { messages, abortSignal } = options;
    const last = messages[messages.length - 1];
    const known = new Set(session.tree.runs.map((r) => r.id));

    if (options.trigger === 'regenerate-message') {
      const target =
        options.messageId !== undefined && session.tree.run(options.messageId) ? options.messageId : last?.id;
      if (target === undefined) throw new TypeError('regenerate: no message to regenerate');
      const inputId = session.tree.run(target)?.input ?? target;
      await session.regenerate(target);
      return this.#answer((r) => r.input === inputId && !known.has(r.id), abortSignal);
    }

    if (last?.role === 'assistant') {
      // The chat continues an assistant message: tool approvals were answered on it.
      for (const part of last.parts) {
        const approval = (part as { approval?: { id: string; approved?: boolean; reason?: string } })
          .approval;
        if (!approval || approval.approved === undefined || this.#sentApprovals.has(approval.id)) continue;
        this.#sentApprovals.add(approval.id);
        const answer: Parameters<UserSession['approveTool']>[0] = {
          runId: last.id,
          approvalId: approval.id,
          approved: approval.approved,
        };
        if (approval.reason !== undefined) answer.reason = approval.reason;
        await session.approveTool(answer);
      }
      const run = session.tree.run(last.id);
      if (run?.status === 'running') {
        const stream = session.stream(last.id, streamOptions('tail', abortSignal));
        return this.#cancelOnAbort(stream, () => last.id, abortSignal);
      }
      return finishedStream(last.id);
    }

    if (!last || last.role !== 'user')
      throw new TypeError('sendMessages: the last message is not a user message');
    let inputId: string;
    if (options.messageId !== undefined && session.tree.input(options.messageId)) {
      const { id: _id, ...rest } = last;
      inputId = await session.edit(options.messageId, rest as Omit<M, 'id' | 'role'>);
    } else {
      const previous = messages[messages.length - 2];
      const parent = previous && session.tree.node(previous.id) ? previous.id : undefined;
      // `last` is a user message (checked above): exactly what `send` takes.
      const message = last as unknown as OutgoingMessage<M>;
      inputId = await session.send(message, parent === undefined ? {} : { parent });
    }
    return this.#answer((r) => r.input === inputId && !known.has(r.id), abortSignal);
  }

  async reconnectToStream(options: ReconnectOptions<M>): Promise<ReadableStream<UIMessageChunk> | null> {
    await this.session.ready();
    const running = this.session.tree
      .view()
      .filter((n): n is RunNode => n.kind === 'run' && n.status === 'running');
    const run = running[running.length - 1];
    if (!run) return null;
    return this.session.stream(run.id, streamOptions('replay', options.abortSignal));
  }

  /** The stream of the first run matching `match` (waiting for an agent to start it). */
  #answer(match: (run: RunNode) => boolean, signal: AbortSignal | undefined): ReadableStream<UIMessageChunk> {
    const session = this.session;
    let runId: string | undefined;
    const { readable, writable } = new TransformStream<UIMessageChunk, UIMessageChunk>();
    const found = new Promise<RunNode>((resolve, reject) => {
      const check = () => {
        const run = session.tree.runs.find(match);
        if (!run) return false;
        unwatch();
        signal?.removeEventListener('abort', onAbort);
        resolve(run);
        return true;
      };
      const onAbort = () => {
        unwatch();
        reject(signal?.reason ?? abortError());
      };
      const unwatch = session.watch((change) => {
        if (change.kind === 'run') check();
      });
      if (check()) return;
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    found
      .then((run) => {
        runId = run.id;
        return session.stream(run.id, streamOptions('replay', signal)).pipeTo(writable);
      })
      .catch((err: unknown) => writable.abort(err).catch(() => {}));
    return this.#cancelOnAbort(readable, () => runId, signal, match);
  }

  /** On abort, cancels the run (once it is known: a run that starts after the abort is cancelled too). */
  #cancelOnAbort(
    stream: ReadableStream<UIMessageChunk>,
    runId: () => string | undefined,
    signal: AbortSignal | undefined,
    match?: (run: RunNode) => boolean,
  ): ReadableStream<UIMessageChunk> {
    if (!signal) return stream;
    const session = this.session;
    const cancel = () => {
      const id = runId();
      if (id !== undefined) {
        if (session.tree.run(id)?.status === 'running') void session.cancel(id).catch(() => {});
        return;
      }
      if (!match) return;
      const unwatch = session.watch((change) => {
        if (change.kind !== 'run' || !match(change.node)) return;
        unwatch();
        if (change.node.status === 'running') void session.cancel(change.node.id).catch(() => {});
      });
    };
    if (signal.aborted) cancel();
    else signal.addEventListener('abort', cancel, { once: true });
    return stream;
  }
}

function streamOptions(mode: 'replay' | 'tail', signal: AbortSignal | undefined): RunStreamOptions {
  return signal === undefined ? { mode } : { mode, signal };
}

function finishedStream(messageId: string): ReadableStream<UIMessageChunk> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue({ type: 'start', messageId });
      controller.enqueue({ type: 'finish' });
      controller.close();
    },
  });
}

function abortError(): Error {
  const error = new Error('the request was aborted');
  error.name = 'AbortError';
  return error;
}
