/**
 * `useMooringChat(options)` (entry `@mooring/react/chat`): the AI SDK's `useChat` over a Mooring
 * session — everything `useChat` returns, plus the session (`useSession`'s result).
 *
 *   the chat      an `@ai-sdk/react` `Chat` per session, talking through `MooringChatTransport`
 *                 and handed to `useChat({ chat })`; kept in step with the session by `syncChat`
 *                 (runs started on other devices, an operator's reply, a reload mid-answer: the
 *                 chat shows them and resumes the run in progress — once, so no `resume: true`)
 *   unmount       never cancels anything: the chat is managed here, so `useChat`'s unmount `stop()`
 *                 does not run, and a route change leaves the agent answering
 *   stop()        stops the chat and cancels the view's runs in progress on the agent, whichever
 *                 device started them (a resumed stream's abort alone cancels nothing)
 *   addToolApprovalResponse()  also answers the run directly when it is still running (the SDK
 *                 sends nothing while the chat streams; an agent waiting for the answer would wait)
 *
 * It is a separate entry because `@ai-sdk/react` is an optional peer dependency.
 */

import type { UseChatHelpers } from '@ai-sdk/react';
import { Chat, useChat } from '@ai-sdk/react';
import type { MooringChatTransportOptions } from '@mooring/ai';
import { MooringChatTransport, syncChat } from '@mooring/ai';
import type { ChatInit, ChatTransport, UIMessage } from 'ai';
import { useCallback, useEffect, useMemo, useRef } from 'react';
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

type ApprovalAnswer = Parameters<UseChatHelpers<UIMessage>['addToolApprovalResponse']>[0];

export function useMooringChat<M extends UIMessage = UIMessage>(
  options: UseMooringChatOptions<M>,
): UseMooringChatResult<M> {
  const { channel, id, session: sessionOptions, throttle, experimental_throttle, ...init } = options;
  const session = useSession<M>(channel, sessionOptions);
  const latest = useRef(init);
  latest.current = init;
  const sessionRef = useRef(session.session);
  sessionRef.current = session.session;

  // One chat per channel, made without touching the session (it does not exist during server
  // rendering): the transport is resolved when the chat first talks to it.
  const chat = useMemo(() => {
    let transport: MooringChatTransport<M> | undefined;
    const current = (): MooringChatTransport<M> => {
      const s = sessionRef.current;
      if (!s) throw new Error('useMooringChat: the session is not available during server rendering');
      if (transport?.session !== s)
        transport = new MooringChatTransport<M>({ session: s } as MooringChatTransportOptions<M>);
      return transport;
    };
    const lazy: ChatTransport<M> & { readonly resumeStreamIsReplay: boolean } = {
      resumeStreamIsReplay: true,
      sendMessages: (o) => current().sendMessages(o),
      reconnectToStream: (o) => current().reconnectToStream(o),
    };
    const chatInit: ChatInit<M> = {
      ...latest.current,
      id: id ?? channel,
      transport: lazy,
      onError: (error) => latest.current.onError?.(error),
      onToolCall: (arg) => latest.current.onToolCall?.(arg),
      onFinish: (arg) => latest.current.onFinish?.(arg),
      onData: (arg) => latest.current.onData?.(arg),
      sendAutomaticallyWhen: (arg) => latest.current.sendAutomaticallyWhen?.(arg) ?? false,
    };
    return new Chat<M>(chatInit);
  }, [channel, id]);

  useEffect(() => {
    if (!session.session) return;
    return syncChat(chat, session.session);
  }, [chat, session.session]);

  const helpers = useChat<M>({
    chat,
    ...(throttle === undefined ? {} : { throttle }),
    ...(experimental_throttle === undefined ? {} : { experimental_throttle }),
  });

  const stop = useCallback(async () => {
    const s = sessionRef.current;
    const running = s ? s.tree.view().filter((n) => n.kind === 'run' && n.status === 'running') : [];
    await chat.stop();
    if (s) await Promise.all(running.map((run) => s.cancel(run.id)));
  }, [chat]);

  const addToolApprovalResponse = useCallback(
    async (answer: ApprovalAnswer) => {
      await chat.addToolApprovalResponse(answer);
      const s = sessionRef.current;
      if (!s) return;
      for (const node of s.view()) {
        if (node.kind !== 'run' || node.status !== 'running') continue;
        const asks = node.message.parts.some(
          (part) => (part as { approval?: { id?: string } }).approval?.id === answer.id,
        );
        if (!asks) continue;
        const control: Parameters<typeof s.approveTool>[0] = {
          runId: node.id,
          approvalId: answer.id,
          approved: answer.approved,
        };
        if (answer.reason !== undefined) control.reason = answer.reason;
        await s.approveTool(control);
      }
    },
    [chat],
  );

  return useMemo(
    () => ({
      id: helpers.id,
      messages: helpers.messages,
      setMessages: helpers.setMessages,
      error: helpers.error,
      status: helpers.status,
      sendMessage: helpers.sendMessage,
      regenerate: helpers.regenerate,
      resumeStream: helpers.resumeStream,
      addToolResult: helpers.addToolResult,
      addToolOutput: helpers.addToolOutput,
      clearError: helpers.clearError,
      experimental_queuedMessages: helpers.experimental_queuedMessages,
      experimental_removeQueuedMessage: helpers.experimental_removeQueuedMessage,
      experimental_sendQueuedMessageNow: helpers.experimental_sendQueuedMessageNow,
      stop,
      addToolApprovalResponse,
      session,
    }),
    [helpers, stop, addToolApprovalResponse, session],
  );
}
