/**
 * An AI SDK chat (`Chat` of `@ai-sdk/react`, or of Vue/Svelte — any `AbstractChat` subclass) wired
 * to a Mooring session, for `useChat({ chat })`: everything `useChat` does keeps its meaning, on
 * every device and across reloads.
 *
 *   the chat's …                 with mooringChat()
 *   stop()                       cancels the runs it shows running (`transport.stop()`), from any
 *                                device, before or after a reload; then detaches as usual
 *   unmount, StrictMode cleanup  nothing: `useChat({ chat })` never stops an external chat, and an
 *   superseding resume           abort alone never cancels (see the transport)
 *   addToolApprovalResponse      the answer reaches the agent at once, even while the run streams
 *   addToolOutput                the result reaches the agent (a `tool-output` control; the agent
 *                                writes it into the run, so every device and every reload shows it)
 *   onToolCall                   runs on ONE device: the one that sent the input the run answers
 *                                (`UserSession.device`), once per tool call, and not when the run
 *                                already holds the tool's result (a replay after a reload)
 *   resumeStream()               one request at a time: `resume: true`, StrictMode's second mount
 *                                and the session sync share the one in flight (one replay per load)
 *   an edit (messageId)          the chat's message takes the new input's id at once
 *   runs started elsewhere       shown, and resumed, by `syncChat` for as long as the session lives
 *
 * One chat per session: calling it again with the same session returns the same chat (React calls
 * `useMemo`/`useState` initialisers twice under StrictMode), so the options of the first call win.
 */
import type { AbstractChat, ChatInit, ChatOnToolCallCallback, UIMessage } from 'ai';
import type { RunNode } from './conversation-tree.ts';
import { MooringChatTransport } from './mooring-chat-transport.ts';
import { syncChat } from './sync-chat.ts';
import type { UserSession } from './user-session.ts';
import type { PartRecord } from './wire.ts';

export interface MooringChatOptions<M extends UIMessage = UIMessage> extends Omit<ChatInit<M>, 'transport'> {
  /** The session the chat shows; started by the chat when needed (no `ready()` to await first). */
  session: UserSession<M>;
  /** Default: a new `MooringChatTransport` over `session`. */
  transport?: MooringChatTransport<M>;
}

/** A chat made by `mooringChat()`: the chat itself, with its session and transport. */
export type MooringChat<C, M extends UIMessage = UIMessage> = C & {
  /** The session and transport behind the chat; `close()` stops following the session. */
  readonly mooring: {
    readonly session: UserSession<M>;
    readonly transport: MooringChatTransport<M>;
    close(): void;
  };
};

const chats = new WeakMap<object, unknown>();

/**
 * Makes (once per session) a chat of class `Chat` wired to the session. Pass it to
 * `useChat({ chat })`. The chat's id defaults to the session's channel name, its initial messages
 * to the session's view (filled in by the sync once the session has caught up).
 */
export function mooringChat<M extends UIMessage, C extends AbstractChat<M>>(
  Chat: new (init: ChatInit<M>) => C,
  options: MooringChatOptions<M>,
): MooringChat<C, M> {
  const { session, transport: given, onToolCall, ...init } = options;
  const existing = chats.get(session);
  if (existing) return existing as MooringChat<C, M>;
  const transport = given ?? new MooringChatTransport<M>({ session });
  void session.start().catch(() => {}); // failures surface as session `error` events and in requests

  const toolCalls = new Set<string>();
  const chatInit: ChatInit<M> = {
    ...init,
    id: init.id ?? session.channel.name,
    messages: init.messages ?? session.messages,
    transport,
  };
  if (onToolCall) {
    const runOnce: ChatOnToolCallCallback<M> = (arg) => {
      const { toolCallId } = arg.toolCall;
      const run = runOfToolCall(session, toolCallId);
      if (!run || toolCalls.has(toolCallId)) return;
      if (session.tree.input(run.input)?.device !== session.device) return;
      if (hasToolResult(session.tree.parts(run.id), toolCallId)) return;
      toolCalls.add(toolCallId);
      return onToolCall(arg);
    };
    chatInit.onToolCall = runOnce;
  }
  const chat = new Chat(chatInit);

  const stop = chat.stop;
  chat.stop = async () => {
    const cancelled = transport.stop(); // marks the runs as cancelling at once: the sync leaves them
    await stop();
    await cancelled;
  };
  chat.dispose = async () => {
    close();
    await stop(); // going away is not "stop": the runs go on for everyone else
  };

  const addToolOutput = chat.addToolOutput;
  chat.addToolOutput = (async (arg: Parameters<typeof addToolOutput>[0]) => {
    const run = runOfToolCall(session, arg.toolCallId);
    if (run?.status === 'running') {
      const result: Parameters<MooringChatTransport['sendToolOutput']>[0] =
        arg.state === 'output-error'
          ? { runId: run.id, toolCallId: arg.toolCallId, errorText: arg.errorText }
          : { runId: run.id, toolCallId: arg.toolCallId, output: arg.output };
      void transport.sendToolOutput(result).catch(report);
    }
    return addToolOutput(arg);
  }) as typeof addToolOutput;
  chat.addToolResult = chat.addToolOutput;

  const addApproval = chat.addToolApprovalResponse;
  chat.addToolApprovalResponse = async (arg) => {
    const run = runOfApproval(session, arg.id);
    if (run?.status === 'running') {
      const answer: Parameters<MooringChatTransport['sendApproval']>[0] = {
        runId: run.id,
        approvalId: arg.id,
        approved: arg.approved,
      };
      if (arg.reason !== undefined) answer.reason = arg.reason;
      void transport.sendApproval(answer).catch(report);
    }
    return addApproval(arg);
  };

  const resumeStream = chat.resumeStream;
  let resuming: Promise<void> | undefined;
  chat.resumeStream = (requestOptions) => {
    resuming ??= resumeStream(requestOptions).finally(() => {
      resuming = undefined;
    });
    return resuming;
  };

  const offEdit = transport.on('edit', ({ from, to }) => {
    if (chat.messages.some((m) => m.id === from))
      chat.messages = chat.messages.map((m) => (m.id === from ? { ...m, id: to } : m));
  });
  const unsync = syncChat(chat, session);
  function close(): void {
    unsync();
    offEdit();
    chats.delete(session);
  }
  function report(err: unknown): void {
    init.onError?.(err instanceof Error ? err : new Error(String(err)));
  }

  const mooring = { session, transport, close };
  Object.defineProperty(chat, 'mooring', { value: mooring });
  chats.set(session, chat);
  return chat as MooringChat<C, M>;
}

/** The run that made a tool call (its `tool-input` part, or a chunk part naming the call). */
function runOfToolCall<M extends UIMessage>(
  session: UserSession<M>,
  toolCallId: string,
): RunNode | undefined {
  return findRun(
    session,
    (p) => (p.kind === 'tool-input' && p.partId === toolCallId) || p.headers.toolCallId === toolCallId,
  );
}

/** The run that asked for an approval (its `tool-approval-request` chunk). */
function runOfApproval<M extends UIMessage>(
  session: UserSession<M>,
  approvalId: string,
): RunNode | undefined {
  return findRun(session, (p) => {
    const chunk = p.chunk as { type: string; approvalId?: unknown } | undefined;
    return chunk?.type === 'tool-approval-request' && chunk.approvalId === approvalId;
  });
}

function findRun<M extends UIMessage>(
  session: UserSession<M>,
  test: (part: PartRecord) => boolean,
): RunNode | undefined {
  const runs = session.tree.runs;
  for (let i = runs.length - 1; i >= 0; i--) {
    const run = runs[i]!;
    if (session.tree.parts(run.id).some(test)) return run;
  }
  return undefined;
}

function hasToolResult(parts: readonly PartRecord[], toolCallId: string): boolean {
  return parts.some((p) => {
    const chunk = p.chunk as { type: string; toolCallId?: unknown } | undefined;
    return (
      chunk?.toolCallId === toolCallId &&
      (chunk.type === 'tool-output-available' ||
        chunk.type === 'tool-output-error' ||
        chunk.type === 'tool-output-denied')
    );
  });
}
