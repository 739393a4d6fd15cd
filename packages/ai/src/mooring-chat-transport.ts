/**
 * The AI SDK v7 `ChatTransport` over a Mooring session: `useChat` (or any `AbstractChat`) talks to
 * agents through the channel instead of an HTTP endpoint.
 *
 *   sendMessages  submit-message   → ai.input (parent: the message before it)   ┐ then the stream of the
 *                 edit (messageId) → ai.input with forkOf                       ├ run that answers it,
 *                 regenerate       → ai.control regenerate                      ┘ rebuilt from the channel
 *                 continuation     → ai.control tool-approval / tool-output for the answers on the
 *                 (last: assistant)  message not sent yet, then the rest of the run (tail); when the
 *                                    run has ended and nothing is new: an AbortError (no loop)
 *   reconnectToStream              → the run in progress on the view, replayed from its start chunk
 *                                    (same messageId; `resumeStreamIsReplay`), or null
 *   stop()                         → ai.control cancel of every run the chat shows running (and of
 *                                    the run a pending request is waiting for)
 *
 * The abort signal NEVER cancels a run: the AI SDK aborts on `stop()`, but also on unmount, on a
 * StrictMode cleanup and on a superseding resume, and the transport cannot tell them apart. An abort
 * only detaches this chat from the stream; "the user pressed stop" is `transport.stop()` (which a
 * chat made by `mooringChat()` calls from its own `stop()`).
 *
 * The streams come from the session's fold, so a dropped connection, a reload or a second device
 * changes nothing: the chat gets every chunk once. Runs started elsewhere (another device, an
 * operator) reach the chat through `syncChat()` (built into `mooringChat()`).
 */
import { Emitter } from '@mooring/client';
import type { ChatTransport, UIMessage, UIMessageChunk } from 'ai';
import type { RunNode } from './conversation-tree.ts';
import type { RunStreamOptions } from './run-chunk-stream.ts';
import { listenerErrors } from './session-feed.ts';
import type { OutgoingMessage, UserSession } from './user-session.ts';

export interface MooringChatTransportOptions<M extends UIMessage = UIMessage> {
  /** The user session the chat shows (started by the transport when needed). */
  session: UserSession<M>;
}

export type MooringChatTransportEvents = {
  /**
   * An edit was sent: the chat's message `from` is input `to` on the session (input ids are unique
   * in the log, so an edit gets a new id). `mooringChat()` renames the chat's message at once.
   */
  edit: { from: string; to: string };
};

type SendOptions<M extends UIMessage> = Parameters<ChatTransport<M>['sendMessages']>[0];
type ReconnectOptions<M extends UIMessage> = Parameters<ChatTransport<M>['reconnectToStream']>[0];

export class MooringChatTransport<M extends UIMessage = UIMessage> implements ChatTransport<M> {
  /** A resumed stream replays the run from its start (the chat resets the message first). */
  readonly resumeStreamIsReplay = true;
  readonly session: UserSession<M>;
  /** Approvals and tool outputs already published (by id), so each is sent once. */
  readonly #sent = new Set<string>();
  /** Requests whose run has not started yet: what `stop()` must cancel when it does. */
  readonly #awaiting = new Set<(run: RunNode) => boolean>();
  /** Requests still publishing their input or regenerate: `stopped` once `stop()` was called. */
  readonly #publishing = new Set<{ stopped: boolean }>();
  readonly #emitter: Emitter<MooringChatTransportEvents>;

  constructor(options: MooringChatTransportOptions<M>) {
    this.session = options.session;
    this.#emitter = new Emitter(listenerErrors(options.session.channel));
  }

  on<K extends keyof MooringChatTransportEvents>(
    event: K,
    listener: (value: MooringChatTransportEvents[K]) => void,
  ): () => void {
    return this.#emitter.on(event, listener);
  }

  /**
   * The user pressed stop: cancels every run in progress on the view (from this device or any
   * other, before or after a reload), and the runs that pending requests are still waiting for as
   * soon as they start. Call it from the chat's stop button (`mooringChat()` does).
   */
  async stop(): Promise<void> {
    for (const request of this.#publishing) request.stopped = true;
    for (const match of this.#awaiting) this.#cancelWhenStarted(match);
    await this.session.stop();
  }

  #cancelWhenStarted(match: (run: RunNode) => boolean): void {
    const session = this.session;
    this.#awaiting.delete(match);
    const cancel = (run: RunNode) => {
      if (run.status === 'running') void session.cancel(run.id).catch(() => {});
    };
    const started = session.tree.runs.find(match);
    if (started) {
      cancel(started);
      return;
    }
    const unwatch = session.watch((change) => {
      if (change.kind !== 'run' || !match(change.node)) return;
      unwatch();
      cancel(change.node);
    });
  }

  /** Publishes a tool approval answer once (by approval id). */
  async sendApproval(answer: { runId: string; approvalId: string; approved: boolean; reason?: string }) {
    if (this.#sent.has(`approval:${answer.approvalId}`)) return;
    this.#sent.add(`approval:${answer.approvalId}`);
    await this.session.approveTool(answer);
  }

  /** Publishes a client-side tool's result once (by tool call id). */
  async sendToolOutput(result: { runId: string; toolCallId: string; output?: unknown; errorText?: string }) {
    if (this.#sent.has(`tool:${result.toolCallId}`)) return;
    this.#sent.add(`tool:${result.toolCallId}`);
    await this.session.toolOutput(result);
  }

  async sendMessages(options: SendOptions<M>): Promise<ReadableStream<UIMessageChunk>> {
    const request = { stopped: false };
    this.#publishing.add(request);
    try {
      return await this.#send(options, request);
    } finally {
      this.#publishing.delete(request);
    }
  }

  async #send(
    options: SendOptions<M>,
    request: { stopped: boolean },
  ): Promise<ReadableStream<UIMessageChunk>> {
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
      return this.#answer((r) => r.input === inputId && !known.has(r.id), abortSignal, request);
    }

    if (last?.role === 'assistant') return this.#continue(last, abortSignal);

    if (!last || last.role !== 'user')
      throw new TypeError('sendMessages: the last message is not a user message');
    let inputId: string;
    if (options.messageId !== undefined && session.tree.input(options.messageId)) {
      const { id: _id, ...rest } = last;
      inputId = await session.edit(options.messageId, rest as Omit<M, 'id' | 'role'>);
      this.#emitter.emit('edit', { from: last.id, to: inputId });
    } else {
      const previous = messages[messages.length - 2];
      const parent = previous && session.tree.node(previous.id) ? previous.id : undefined;
      // `last` is a user message (checked above): exactly what `send` takes.
      const message = last as unknown as OutgoingMessage<M>;
      inputId = await session.send(message, parent === undefined ? {} : { parent });
    }
    return this.#answer((r) => r.input === inputId && !known.has(r.id), abortSignal, request);
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

  /**
   * The chat continues an assistant message (`sendAutomaticallyWhen`, or `sendMessage()` after
   * `addToolApprovalResponse`): publishes the approvals and client-side tool results on it that were
   * not sent yet, then streams the rest of the run. A run that has ended has no rest: the request
   * ends with an AbortError, which the chat takes quietly (status `ready`, no automatic resend), so
   * a condition that stays true cannot spin the page in a loop of finished requests.
   */
  async #continue(last: M, signal: AbortSignal | undefined): Promise<ReadableStream<UIMessageChunk>> {
    const runId = last.id;
    for (const part of last.parts as ToolPartLike[]) {
      if (typeof part.toolCallId !== 'string' || !isToolPart(part)) continue;
      const approval = part.approval;
      if (approval && approval.approved !== undefined) {
        const answer: Parameters<MooringChatTransport['sendApproval']>[0] = {
          runId,
          approvalId: approval.id,
          approved: approval.approved,
        };
        if (approval.reason !== undefined) answer.reason = approval.reason;
        await this.sendApproval(answer);
      }
      if (part.providerExecuted) continue;
      if (part.state === 'output-available')
        await this.sendToolOutput({ runId, toolCallId: part.toolCallId, output: part.output });
      else if (part.state === 'output-error')
        await this.sendToolOutput({
          runId,
          toolCallId: part.toolCallId,
          errorText: part.errorText ?? 'error',
        });
    }
    if (this.session.tree.run(runId)?.status === 'running')
      return this.session.stream(runId, streamOptions('tail', signal));
    throw abortError(`run ${runId} has ended: nothing to continue`);
  }

  /** The stream of the first run matching `match` (waiting for an agent to start it). */
  #answer(
    match: (run: RunNode) => boolean,
    signal: AbortSignal | undefined,
    request: { stopped: boolean },
  ): ReadableStream<UIMessageChunk> {
    const session = this.session;
    // Stopped while the input was being published: its run is cancelled as soon as it starts.
    if (request.stopped) this.#cancelWhenStarted(match);
    const { readable, writable } = new TransformStream<UIMessageChunk, UIMessageChunk>();
    this.#awaiting.add(match);
    const found = new Promise<RunNode>((resolve, reject) => {
      const check = () => {
        const run = session.tree.runs.find(match);
        if (!run) return false;
        unwatch();
        this.#awaiting.delete(match);
        signal?.removeEventListener('abort', onAbort);
        resolve(run);
        return true;
      };
      const onAbort = () => {
        unwatch();
        // An abort is not a stop (see the header): a `stop()` made before it keeps its own watch.
        this.#awaiting.delete(match);
        reject(signal?.reason ?? abortError('the request was aborted'));
      };
      const unwatch = session.watch((change) => {
        if (change.kind === 'run') check();
      });
      if (check()) return;
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    found
      .then((run) => session.stream(run.id, streamOptions('replay', signal)).pipeTo(writable))
      .catch((err: unknown) => writable.abort(err).catch(() => {}));
    return readable;
  }
}

function streamOptions(mode: 'replay' | 'tail', signal: AbortSignal | undefined): RunStreamOptions {
  return signal === undefined ? { mode } : { mode, signal };
}

/** The parts of a tool UIMessage part the continuation reads. */
interface ToolPartLike {
  type: string;
  toolCallId?: unknown;
  state?: string;
  providerExecuted?: boolean;
  output?: unknown;
  errorText?: string;
  approval?: { id: string; approved?: boolean; reason?: string };
}

function isToolPart(part: ToolPartLike): part is ToolPartLike & { toolCallId: string } {
  return part.type === 'dynamic-tool' || part.type.startsWith('tool-');
}

function abortError(message: string): Error {
  const error = new Error(message);
  error.name = 'AbortError';
  return error;
}
