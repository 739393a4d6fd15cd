/**
 * One "device" for the useChat tests: its own Mooring client and UserSession, and the REAL `useChat`
 * of `@ai-sdk/react` rendered with React Testing Library under StrictMode, over a chat made by
 * `mooringChat()` (or a plain `useChat({ transport })`). The transport counts the SDK's calls.
 */
import './dom.ts';
import type { TestContext } from 'node:test';
import type { UseChatHelpers, UseChatOptions } from '@ai-sdk/react';
import { Chat, useChat } from '@ai-sdk/react';
import { renderHook } from '@testing-library/react';
import type { UIMessage } from 'ai';
import { createElement, type ReactNode, StrictMode, useMemo } from 'react';
import type { MooringChatOptions } from '../../src/mooring-chat.ts';
import { mooringChat } from '../../src/mooring-chat.ts';
import { MooringChatTransport } from '../../src/mooring-chat-transport.ts';
import { UserSession } from '../../src/user-session.ts';
import { client } from './fixture.ts';

// Updates arrive from sockets, outside act(): let React schedule them as in a browser, quietly.
Object.assign(globalThis, { IS_REACT_ACT_ENVIRONMENT: false });

export class CountingTransport<M extends UIMessage = UIMessage> extends MooringChatTransport<M> {
  sends = 0;
  reconnects = 0;
  override sendMessages(options: Parameters<MooringChatTransport<M>['sendMessages']>[0]) {
    // A request loop would spin the test process for ever (it never yields to timers): break it.
    if (++this.sends > 20) return Promise.reject(new Error('request loop: more than 20 requests'));
    return super.sendMessages(options);
  }
  override reconnectToStream(options: Parameters<MooringChatTransport<M>['reconnectToStream']>[0]) {
    this.reconnects++;
    return super.reconnectToStream(options);
  }
}

function strict({ children }: { children: ReactNode }) {
  return createElement(StrictMode, null, children);
}

export interface Device {
  session: UserSession;
  transport: CountingTransport;
  /** What `useChat` returned at the last render. */
  readonly chat: UseChatHelpers<UIMessage>;
  unmount(): void;
}

export interface DeviceOptions {
  /** `useChat({ resume })`. */
  resume?: boolean;
  /** `useChat({ experimental_throttle })`. */
  throttle?: number;
  /** The device id (the same id = the same tab after a reload). */
  device?: string;
  /** A plain `useChat({ id, transport })`, no `mooringChat()`. */
  plain?: boolean;
  /** The session's agents (default `['assistant']`). */
  agents?: string[];
  /** More options for `mooringChat()` (onToolCall, sendAutomaticallyWhen, onData, id, messages…). */
  chat?: Partial<MooringChatOptions<UIMessage>>;
}

export function device(t: TestContext, url: string, name: string, options: DeviceOptions = {}): Device {
  const sessionOptions: ConstructorParameters<typeof UserSession>[0] = {
    channel: client(t, url).channels.get(name, { start: true }),
    agents: options.agents ?? ['assistant'],
  };
  if (options.device !== undefined) sessionOptions.device = options.device;
  const session = new UserSession(sessionOptions);
  t.after(() => session.close());
  const transport = new CountingTransport({ session });
  const hookOptions: UseChatOptions<UIMessage> = {};
  if (options.resume !== undefined) hookOptions.resume = options.resume;
  if (options.throttle !== undefined) hookOptions.experimental_throttle = options.throttle;
  const plain = options.plain === true;
  const extra = options.chat;
  const view = renderHook(
    plain
      ? () => useChat({ ...hookOptions, id: name, transport })
      : () => {
          // As an app writes it: made during render (twice under StrictMode: one chat per session).
          const chat = useMemo(() => mooringChat(Chat, { ...extra, session, transport }), []);
          return useChat({ ...hookOptions, chat });
        },
    { wrapper: strict },
  );
  let mounted = true;
  const unmount = () => {
    if (!mounted) return;
    mounted = false;
    view.unmount();
  };
  t.after(unmount);
  return {
    session,
    transport,
    get chat() {
      return view.result.current;
    },
    unmount,
  };
}
