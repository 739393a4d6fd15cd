/**
 * `useSession(channel, options)`: an AI session (`UserSession` of @mooring/ai) as React state — the
 * conversation view, the runs in progress, who holds the session — and its controls: send, cancel,
 * steer, regenerate, edit, select, approve a tool, hand over, reply as a human.
 *
 * Every hook on the same channel (and `useMooringChat`) shares one session per client; it starts
 * with the first and closes after the last unmounts (see `session-store.ts`). Options are read
 * when the session is made.
 */
import type { OutgoingMessage, UserSession } from '@mooring/ai';
import type { UIMessage } from 'ai';
import { useCallback, useMemo, useRef, useSyncExternalStore } from 'react';
import { useClientHandle } from './mooring-provider.ts';
import type { SessionSnapshot, SessionStoreOptions } from './session-store.ts';
import { EMPTY_SESSION, sessionStore } from './session-store.ts';

export interface UseSessionOptions extends SessionStoreOptions {}

export interface SessionControls<M extends UIMessage = UIMessage> {
  /** Sends a user message after the view's last node; resolves with its input id. */
  send(message: OutgoingMessage<M>, options?: { parent?: string }): Promise<string>;
  /** Cancels a run, or every run in progress. */
  cancel(runId?: string): Promise<void>;
  /** Sends a message into a running run (barge-in). */
  steer(runId: string, message: OutgoingMessage<M>): Promise<void>;
  /** Another answer to the same input (a sibling run). */
  regenerate(nodeId: string): Promise<void>;
  /** A sibling input (the view switches to it). */
  edit(inputId: string, message: OutgoingMessage<M>): Promise<string>;
  /** Shows another alternative (‹ ›). */
  select(nodeId: string): Promise<void>;
  /** Answers a tool approval request. */
  approveTool(answer: {
    runId?: string;
    approvalId: string;
    approved: boolean;
    reason?: string;
  }): Promise<void>;
  /** Hands the session to a human operator (agents stop answering) or back to the AI. */
  handover(to: 'human' | 'ai', options?: { operator?: string }): Promise<void>;
  /** Replies as a human operator (a run by `human:<clientId>`); resolves with its run id. */
  reply(text: string, options?: { input?: string }): Promise<string>;
}

export interface UseSessionResult<M extends UIMessage = UIMessage>
  extends SessionSnapshot<M>,
    SessionControls<M> {
  /** The session (undefined during server rendering). */
  session: UserSession<M> | undefined;
}

export function useSession<M extends UIMessage = UIMessage>(
  channel: string,
  options: UseSessionOptions = {},
): UseSessionResult<M> {
  const handle = useClientHandle();
  const optionsRef = useRef(options); // read when the session is made
  optionsRef.current = options;
  const store = useCallback(
    () => sessionStore<M>(handle.get(), channel, optionsRef.current),
    [handle, channel],
  );
  const subscribe = useCallback((onChange: () => void) => store().subscribe(onChange), [store]);
  const getSnapshot = useCallback(() => store().snapshot(), [store]);
  const snapshot = useSyncExternalStore(
    subscribe,
    getSnapshot,
    () => EMPTY_SESSION as unknown as SessionSnapshot<M>,
  );
  const controls = useMemo<SessionControls<M>>(() => {
    const s = () => store().session;
    return {
      send: (message, o) => s().send(message, o),
      cancel: (runId) => s().cancel(runId),
      steer: (runId, message) => s().steer(runId, message),
      regenerate: (nodeId) => s().regenerate(nodeId),
      edit: (inputId, message) => s().edit(inputId, message),
      select: (nodeId) => s().select(nodeId),
      approveTool: (answer) => s().approveTool(answer),
      handover: (to, o) => s().handover(to, o),
      reply: (text, o) => s().reply(text, o),
    };
  }, [store]);
  const session = handle.peek() ? store().session : undefined;
  return useMemo(() => ({ ...snapshot, ...controls, session }), [snapshot, controls, session]);
}
