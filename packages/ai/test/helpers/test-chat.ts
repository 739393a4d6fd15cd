/**
 * An AI SDK chat with a plain state, the way @ai-sdk/react builds `Chat` (an `AbstractChat` subclass
 * over a `ChatState`), without React.
 */
import type { ChatInit, ChatState, ChatStatus, UIMessage } from 'ai';
import { AbstractChat } from 'ai';

class PlainChatState<M extends UIMessage> implements ChatState<M> {
  status: ChatStatus = 'ready';
  error: Error | undefined = undefined;
  messages: M[];

  constructor(messages: M[]) {
    this.messages = messages;
  }

  pushMessage = (message: M) => {
    this.messages = [...this.messages, message];
  };

  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };

  replaceMessage = (index: number, message: M) => {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  };

  snapshot = <T>(value: T): T => structuredClone(value);
}

export class TestChat<M extends UIMessage = UIMessage> extends AbstractChat<M> {
  constructor({ messages, ...init }: ChatInit<M>) {
    super({ ...init, state: new PlainChatState(messages ?? []) });
  }
}
