/**
 * `useConnectionState()`: the provider's connection as a stable snapshot — state, the previous one,
 * when the next retry happens, the transport, the last error — enough to draw
 * "Reconnecting in 4 s… [retry now]" (see `<ConnectionStatus />`).
 *
 * One snapshot object per client, replaced only when the connection emits `statechange`,
 * `transport` or `error`, so `useSyncExternalStore` sees the same object until something changed
 * (a new object per read would re-render forever). On the server the snapshot is `initialized`.
 */
import type { ConnectionState, Mooring, MooringError } from '@mooring/client';
import { useCallback, useMemo, useSyncExternalStore } from 'react';
import { useClientHandle } from './mooring-provider.ts';

export interface ConnectionSnapshot {
  state: ConnectionState;
  /** The state before this one (undefined before the first change). */
  previous: ConnectionState | undefined;
  /** Milliseconds until the next automatic retry, as announced with the change (`disconnected`, `suspended`). */
  retryIn: number | undefined;
  /** When that retry happens (`Date.now()` based), for a countdown. */
  retryAt: number | undefined;
  /** The transport in use: `websocket`, `sse` or `longpoll` (undefined before the first connection). */
  transport: string | undefined;
  /** The error behind the current state, or the last one the connection reported. */
  error: MooringError | undefined;
  /** The server's id of the current connection (presence members carry it). */
  connectionId: string | undefined;
  /** Connections that reached `connected` after the first one. */
  reconnects: number;
}

export interface ConnectionStateResult extends ConnectionSnapshot {
  /** Retry now (`disconnected`, `suspended`, `failed`) or connect a closed client. */
  connect(): void;
}

const SERVER_SNAPSHOT: ConnectionSnapshot = Object.freeze({
  state: 'initialized',
  previous: undefined,
  retryIn: undefined,
  retryAt: undefined,
  transport: undefined,
  error: undefined,
  connectionId: undefined,
  reconnects: 0,
}) as ConnectionSnapshot;

interface ConnectionStore {
  subscribe(onChange: () => void): () => void;
  snapshot(): ConnectionSnapshot;
}

const stores = new WeakMap<Mooring, ConnectionStore>();

function connectionStore(client: Mooring): ConnectionStore {
  let store = stores.get(client);
  if (store) return store;
  const connection = client.connection;
  const listeners = new Set<() => void>();
  let everConnected = connection.state === 'connected';
  let current: ConnectionSnapshot = {
    ...SERVER_SNAPSHOT,
    state: connection.state,
    retryIn: connection.retryIn,
    retryAt: connection.retryIn === undefined ? undefined : Date.now() + connection.retryIn,
    transport: connection.transport,
    error: connection.errorReason,
    connectionId: connection.id,
  };
  const publish = (next: Partial<ConnectionSnapshot>) => {
    current = { ...current, ...next };
    for (const listener of listeners) listener();
  };
  // Listening from the first use for the client's whole life (a WeakMap entry): a change that
  // happens while no component is subscribed (between StrictMode's passes) is not missed.
  connection.on('statechange', (change) => {
    if (change.current === 'connected') {
      if (everConnected) current = { ...current, reconnects: current.reconnects + 1 };
      everConnected = true;
    }
    publish({
      state: change.current,
      previous: change.previous,
      retryIn: change.retryIn,
      retryAt: change.retryIn === undefined ? undefined : Date.now() + change.retryIn,
      transport: connection.transport,
      error: change.reason ?? (change.current === 'connected' ? undefined : current.error),
      connectionId: connection.id,
    });
  });
  connection.on('transport', ({ current: transport }) => publish({ transport }));
  connection.on('error', (error) => publish({ error }));
  store = {
    subscribe(onChange) {
      listeners.add(onChange);
      return () => listeners.delete(onChange);
    },
    snapshot: () => current,
  };
  stores.set(client, store);
  return store;
}

export function useConnectionState(): ConnectionStateResult {
  const handle = useClientHandle();
  const subscribe = useCallback(
    (onChange: () => void) => connectionStore(handle.get()).subscribe(onChange),
    [handle],
  );
  const getSnapshot = useCallback(() => connectionStore(handle.get()).snapshot(), [handle]);
  const snapshot = useSyncExternalStore(subscribe, getSnapshot, () => SERVER_SNAPSHOT);
  const connect = useCallback(() => handle.get().connect(), [handle]);
  return useMemo(() => ({ ...snapshot, connect }), [snapshot, connect]);
}
