/**
 * `<ConnectionStatus />`: an unstyled status line for the provider's connection —
 *
 *   connecting…  ·  connected  ·  Reconnecting in 4 s… [retry now]  ·  Offline [retry now]  ·
 *   Connection failed: <reason> [retry now]
 *
 * A `<span role="status">` with `data-state` (the connection state) and a `<button>` while a retry
 * is pending; the countdown ticks once a second. Pass `children` (a render function) to draw your
 * own from the same state. Styling is the application's.
 */
import type { ReactNode } from 'react';
import { createElement, useEffect, useState } from 'react';
import type { ConnectionStateResult } from './use-connection-state.ts';
import { useConnectionState } from './use-connection-state.ts';

export interface ConnectionStatusProps {
  className?: string;
  /** Draws the status yourself; `secondsToRetry` counts down to the next automatic retry. */
  children?: (state: ConnectionStateResult, secondsToRetry: number | undefined) => ReactNode;
}

export function ConnectionStatus(props: ConnectionStatusProps): ReactNode {
  const state = useConnectionState();
  const seconds = useSecondsUntil(state.retryAt);
  if (props.children) return props.children(state, seconds);
  const retryable = state.state === 'disconnected' || state.state === 'suspended' || state.state === 'failed';
  return createElement(
    'span',
    { role: 'status', className: props.className, 'data-state': state.state },
    label(state, seconds),
    retryable ? ' ' : null,
    retryable
      ? createElement('button', { type: 'button', onClick: () => state.connect() }, 'retry now')
      : null,
  );
}

function label(state: ConnectionStateResult, seconds: number | undefined): string {
  switch (state.state) {
    case 'initialized':
    case 'connecting':
      return state.reconnects > 0 || state.previous === 'disconnected' ? 'Reconnecting…' : 'Connecting…';
    case 'connected':
      return 'Connected';
    case 'disconnected':
      return seconds !== undefined && seconds > 0 ? `Reconnecting in ${seconds} s…` : 'Reconnecting…';
    case 'suspended':
      return seconds !== undefined && seconds > 0 ? `Offline — retrying in ${seconds} s` : 'Offline';
    case 'failed':
      return `Connection failed${state.error ? `: ${state.error.message}` : ''}`;
    case 'closing':
    case 'closed':
      return 'Disconnected';
    default:
      return state.state;
  }
}

/** Whole seconds until `at` (ms since 1970), ticking every second; undefined without a time. */
function useSecondsUntil(at: number | undefined): number | undefined {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (at === undefined) return;
    setNow(Date.now());
    const timer = setInterval(() => {
      const t = Date.now();
      setNow(t);
      if (t >= at) clearInterval(timer);
    }, 1000);
    return () => clearInterval(timer);
  }, [at]);
  if (at === undefined) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}
