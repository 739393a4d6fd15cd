/**
 * `usePresence(channel, { data })`: the channel's presence set, and this page's membership.
 *
 *   members   every member present (this client's own connections included), kept current from
 *             presence events; one store per channel, shared by every hook on it
 *   data      given: enter with it when the first such hook mounts, `update` when it changes, leave
 *             when the last one unmounts — exactly once each under StrictMode, whose
 *             mount → unmount → mount would otherwise be seen by everyone as enter, leave, enter
 *             (the leave is deferred by a macrotask and cancelled by the remount)
 *
 * The client restores the membership by itself after reconnects (see @mooring/client's presence).
 * The channel is held while a hook is mounted, so a `useChannel` unmounting does not release it
 * (channel-holds.ts); the leave is sent before the channel is released.
 */
import type { Channel, Mooring } from '@mooring/client';
import type { JsonValue, PresenceMember } from '@mooring/protocol';
import { useCallback, useEffect, useMemo, useSyncExternalStore } from 'react';
import { holdChannel, hookChannel } from './channel-holds.ts';
import { DeferredRelease } from './deferred-release.ts';
import { useClientHandle } from './mooring-provider.ts';

export interface UsePresenceOptions {
  /** Enter the set with this data while the component is mounted (JSON, compared by value). */
  data?: JsonValue;
}

export interface PresenceSnapshot {
  /** Members present, in the order first seen. */
  members: readonly PresenceMember[];
}

export interface UsePresenceResult extends PresenceSnapshot {
  /** This client's current connection id: `members.filter(m => m.connectionId === self)` is "you". */
  self: string | undefined;
  enter(data?: JsonValue): Promise<void>;
  update(data?: JsonValue): Promise<void>;
  leave(): Promise<void>;
}

const SERVER_SNAPSHOT: PresenceSnapshot = Object.freeze({
  members: Object.freeze([]) as readonly PresenceMember[],
});

interface PresenceStore {
  subscribe(onChange: () => void): () => void;
  snapshot(): PresenceSnapshot;
}

const stores = new WeakMap<Channel, PresenceStore>();
const holds = new WeakMap<Channel, { lifetime: DeferredRelease; data: string | undefined }>();

function presenceStore(channel: Channel): PresenceStore {
  let store = stores.get(channel);
  if (store) return store;
  const members = new Map<string, PresenceMember>();
  const listeners = new Set<() => void>();
  let current: PresenceSnapshot = SERVER_SNAPSHOT;
  let started = false;
  const publish = () => {
    current = { members: [...members.values()] };
    for (const listener of [...listeners]) listener();
  };
  const start = () => {
    if (started) return;
    started = true;
    channel.presence
      .subscribe(({ action, member }) => {
        if (action === 'leave') members.delete(member.connectionId);
        else members.set(member.connectionId, member);
        publish();
      })
      .catch(() => {});
    // the channel may have been attached (its snapshot delivered) before this listener
    channel.presence.get().then(
      (list) => {
        for (const member of list)
          if (!members.has(member.connectionId)) members.set(member.connectionId, member);
        publish();
      },
      () => {},
    );
  };
  store = {
    subscribe(onChange) {
      listeners.add(onChange);
      start();
      return () => listeners.delete(onChange);
    },
    snapshot: () => current,
  };
  stores.set(channel, store);
  return store;
}

function presenceHold(channel: Channel): { lifetime: DeferredRelease; data: string | undefined } {
  let hold = holds.get(channel);
  if (!hold) {
    const created: { lifetime: DeferredRelease; data: string | undefined } = {
      lifetime: new DeferredRelease(() => {
        created.data = undefined; // left: the next mount enters again
        channel.presence.leave().catch(() => {});
      }),
      data: undefined,
    };
    hold = created;
    holds.set(channel, hold);
  }
  return hold;
}

export function usePresence(name: string, options: UsePresenceOptions = {}): UsePresenceResult {
  const handle = useClientHandle();
  const channelOf = useCallback((client: Mooring) => hookChannel(client, name), [name]);
  const subscribe = useCallback(
    (onChange: () => void) => {
      const client = handle.get();
      const unhold = holdChannel(client, name); // a useChannel unmounting must not release it
      const off = presenceStore(channelOf(client)).subscribe(onChange);
      return () => {
        off();
        unhold();
      };
    },
    [handle, channelOf, name],
  );
  const getSnapshot = useCallback(
    () => presenceStore(channelOf(handle.get())).snapshot(),
    [handle, channelOf],
  );
  const snapshot = useSyncExternalStore(subscribe, getSnapshot, () => SERVER_SNAPSHOT);

  const data = options.data === undefined ? undefined : JSON.stringify(options.data);
  const entering = data !== undefined;
  useEffect(() => {
    if (!entering) return;
    const client = handle.get();
    const hold = presenceHold(channelOf(client));
    hold.lifetime.retain();
    const unhold = holdChannel(client, name);
    return () => {
      hold.lifetime.release(); // leaves a macrotask later: before the channel may be released
      unhold();
    };
  }, [handle, channelOf, entering, name]);
  useEffect(() => {
    if (data === undefined) return;
    const channel = channelOf(handle.get());
    const hold = presenceHold(channel);
    if (hold.data === data && hold.lifetime.held) return; // entered with this data already
    const first = hold.data === undefined;
    hold.data = data;
    const value = JSON.parse(data) as JsonValue;
    (first ? channel.presence.enter(value) : channel.presence.update(value)).catch(() => {});
  }, [handle, channelOf, data]);

  const actions = useMemo(
    () => ({
      enter: (value?: JsonValue) => channelOf(handle.get()).presence.enter(value),
      update: (value?: JsonValue) => channelOf(handle.get()).presence.update(value),
      leave: () => channelOf(handle.get()).presence.leave(),
    }),
    [handle, channelOf],
  );
  const self = useConnectionId();
  return useMemo(() => ({ ...snapshot, self, ...actions }), [snapshot, self, actions]);
}

/** The current connection id, re-rendering when a reconnect changes it. */
function useConnectionId(): string | undefined {
  const handle = useClientHandle();
  const subscribe = useCallback(
    (onChange: () => void) => handle.get().connection.on('statechange', onChange),
    [handle],
  );
  return useSyncExternalStore(
    subscribe,
    () => handle.get().connection.id,
    () => undefined,
  );
}
