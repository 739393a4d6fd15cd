/**
 * Keeps an AI SDK chat (`useChat`'s `Chat`, or any `AbstractChat`) showing the session's view when
 * things happen elsewhere: a message sent from another device, a regenerate or branch switch there,
 * an operator's reply, a run started by another tab.
 *
 *   whenever the session changes and the chat is idle (status ready or error):
 *     chat.messages ≠ the view  →  chat.messages = the view
 *     a run is in progress on the view  →  chat.resumeStream()   (a replay from its start chunk with
 *                                           the same messageId: it replaces the partial message)
 *     …unless this device is cancelling it (a stop): the chat stays stopped until the run ends
 *
 * While the chat streams its own request, it is left alone: the transport's stream drives it.
 */
import type { UIMessage } from 'ai';
import type { UserSession } from './user-session.ts';

/** The part of an AI SDK chat that `syncChat` uses (`AbstractChat` has it). */
export interface SyncableChat<M extends UIMessage> {
  readonly status: 'submitted' | 'streaming' | 'ready' | 'error';
  messages: M[];
  resumeStream(): Promise<void>;
}

/** Starts following the session; returns the function that stops it. */
export function syncChat<M extends UIMessage>(chat: SyncableChat<M>, session: UserSession<M>): () => void {
  let resuming = false;
  let stopped = false;
  const sync = () => {
    if (stopped || resuming || !session.settled) return;
    if (chat.status === 'submitted' || chat.status === 'streaming') return;
    const view = session.messages;
    if (!sameMessages(chat.messages, view)) chat.messages = view;
    const running = session.tree
      .view()
      .some((n) => n.kind === 'run' && n.status === 'running' && !session.cancelling(n.id));
    if (running) {
      resuming = true;
      void chat.resumeStream().finally(() => {
        resuming = false;
        queueMicrotask(sync);
      });
    }
  };
  const off = session.on('change', sync);
  queueMicrotask(sync);
  return () => {
    stopped = true;
    off();
  };
}

function sameMessages(a: readonly UIMessage[], b: readonly UIMessage[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.id !== y.id || x.parts.length !== y.parts.length) return false;
  }
  const lx = a[a.length - 1];
  const ly = b[b.length - 1];
  return lx === ly || JSON.stringify(lx) === JSON.stringify(ly);
}
