/**
 * Which channels of a client the hooks use, so that a channel the hooks attached is released when
 * the last hook on it goes — and never while another hook (useChannel, usePresence) still uses it:
 *
 *   hookChannel(client, name) ─▶ the channel; remembers whether the hooks made it (it was not there)
 *   holdChannel(client, name) ─▶ one more user; its release is deferred by a macrotask (StrictMode)
 *   last hold released        ─▶ channels.release(name), if the hooks made the channel
 *
 * A channel the application got itself before any hook is left alone (it may subscribe to it), and
 * so is one a session uses (`keepChannel`): a `UserSession` keeps its channel for the client's life.
 */
import type { Channel, ChannelOptions, Mooring } from '@mooring/client';
import { DeferredRelease } from './deferred-release.ts';

interface ChannelHold {
  readonly lifetime: DeferredRelease;
  /** The hooks made the channel (it was not in the client when the first hook asked for it). */
  owned: boolean;
  /** The channel the hooks were given, so that a channel made by someone else later is never released. */
  channel: Channel | undefined;
}

const holds = new WeakMap<Mooring, Map<string, ChannelHold>>();

function holdOf(client: Mooring, name: string): ChannelHold {
  let byName = holds.get(client);
  if (!byName) {
    byName = new Map();
    holds.set(client, byName);
  }
  const existing = byName.get(name);
  if (existing) return existing;
  const all = byName;
  const hold: ChannelHold = {
    owned: !client.channels.has(name),
    channel: undefined,
    lifetime: new DeferredRelease(() => {
      if (all.get(name) === hold) all.delete(name);
      if (hold.owned && hold.channel !== undefined && isCurrent(client, name, hold.channel))
        client.channels.release(name).catch(() => {}); // a lost connection detaches it anyway
    }),
  };
  byName.set(name, hold);
  return hold;
}

function isCurrent(client: Mooring, name: string, channel: Channel): boolean {
  return client.channels.has(name) && client.channels.get(name) === channel;
}

/** The channel `name` of `client` for a hook (`options` choose its first attach, if it is new). */
export function hookChannel(client: Mooring, name: string, options: ChannelOptions = {}): Channel {
  const hold = holdOf(client, name);
  const channel = client.channels.get(name, options);
  hold.channel ??= channel;
  return channel;
}

/** One more user of the channel until the returned function is called (once). */
export function holdChannel(client: Mooring, name: string): () => void {
  const { lifetime } = holdOf(client, name);
  lifetime.retain();
  let released = false;
  return () => {
    if (released) return;
    released = true;
    lifetime.release();
  };
}

/** The channel is used by something that keeps it (a session): the hooks never release it. */
export function keepChannel(client: Mooring, name: string): void {
  holdOf(client, name).owned = false;
}
