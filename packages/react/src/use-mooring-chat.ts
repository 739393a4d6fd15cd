/**
 * `useMooringChat(options)` (entry `@mooring/react/chat`): the AI SDK's `useChat` over a Mooring
 * session — everything `useChat` returns, plus the session (`useSession`'s result).
 *
 *   the chat      `mooringChat(Chat, { session })` of @mooring/ai (one per session), handed to
 *                 `useChat({ chat })`: stop cancels from any device, tool approvals and client-side
 *                 tool outputs reach the agent while the run streams, `onToolCall` runs on one
 *                 device, one resume per load, and `syncChat` shows runs started elsewhere
 *   unmount       never cancels anything: `useChat` does not stop a chat it did not make, so a
 *                 route change leaves the agent answering; the chat goes with the session, when
 *                 the last hook on its channel unmounts
 *   server        a plain chat with no messages (the session does not exist there)
 *
 * Callbacks (`onError`, `onFinish`, `onToolCall`, `onData`, `sendAutomaticallyWhen`) are read on
 * each call, so they may change between renders; other chat options are read once per session.
 * It is a separate entry because `@ai-sdk/react` is an optional peer dependency.
 */
import type { UseChatHelpers } from '@ai-sdk/react';
import { Chat, useChat } from '@ai-sdk/react';
import type { MooringChatOptions } from '@mooring/ai';
import { mooringChat } from '@mooring/ai';
import type { ChatInit, UIMessage } from 'ai';
import { useMemo, useRef } from 'react';
import { whenClosed } from './session-store.ts';
import type { UseSessionOptions, UseSessionResult } from './use-session.ts';
import { useSession } from './use-session.ts';

export type UseMooringChatOptions<M extends UIMessage = UIMessage> = Omit<
  ChatInit<M>,
  'transport' | 'messages' | 'id'
> & {
  /** The session's channel, e.g. `session:<id>`. */
  channel: string;
  /** The chat's id. Default: the channel name. */
  id?: string;
  /** How the session is made (shared with `useSession` on the same channel). */
  session?: UseSessionOptions;
  /** `useChat`'s throttle of message updates, ms. */
  throttle?: number;
  /** @deprecated `useChat`'s old name for `throttle`. */
  experimental_throttle?: number;
};

export type UseMooringChatResult<M extends UIMessage = UIMessage> = UseChatHelpers<M> & {
  /** The session: its view (run status, alternatives, holder) and controls. */
  session: UseSessionResult<M>;
};

export function useMooringChat<M extends UIMessage = UIMessage>(
  options: UseMooringChatOptions<M>,
): UseMooringChatResult<M> {
  const { channel, id, session: sessionOptions, throttle, experimental_throttle, ...init } = options;
  const session = useSession<M>(channel, sessionOptions);
  const latest = useRef(init);
  latest.current = init;
  const userSession = session.session;

  const chat = useMemo(() => {
    const callbacks: Partial<ChatInit<M>> = {
      onError: (error) => latest.current.onError?.(error),
      onFinish: (arg) => latest.current.onFinish?.(arg),
      onData: (arg) => latest.current.onData?.(arg),
      sendAutomaticallyWhen: (arg) => latest.current.sendAutomaticallyWhen?.(arg) ?? false,
    };
    if (latest.current.onToolCall) callbacks.onToolCall = (arg) => latest.current.onToolCall?.(arg);
    const chatId = id ?? channel;
    if (!userSession) return new Chat<M>({ ...latest.current, ...callbacks, id: chatId });
    const made = mooringChat<M, Chat<M>>(Chat, {
      ...latest.current,
      ...callbacks,
      id: chatId,
      session: userSession,
    } as MooringChatOptions<M>);
    whenClosed(userSession, () => made.mooring.close());
    return made;
  }, [userSession, channel, id]);

  const helpers = useChat<M>({
    chat,
    ...(throttle === undefined ? {} : { throttle }),
    ...(experimental_throttle === undefined ? {} : { experimental_throttle }),
  });

  return useMemo(
    () => ({
      id: helpers.id,
      messages: helpers.messages,
      setMessages: helpers.setMessages,
      error: helpers.error,
      status: helpers.status,
      sendMessage: helpers.sendMessage,
      regenerate: helpers.regenerate,
      stop: helpers.stop,
      resumeStream: helpers.resumeStream,
      addToolResult: helpers.addToolResult,
      addToolOutput: helpers.addToolOutput,
      addToolApprovalResponse: helpers.addToolApprovalResponse,
      clearError: helpers.clearError,
      experimental_queuedMessages: helpers.experimental_queuedMessages,
      experimental_removeQueuedMessage: helpers.experimental_removeQueuedMessage,
      experimental_sendQueuedMessageNow: helpers.experimental_sendQueuedMessageNow,
      session,
    }),
    [helpers, session],
  );
}
