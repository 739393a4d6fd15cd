/**
 * `useChannel(name, options)`: a channel's messages folded into a list — each message once, in
 * serial order, grown by its appends and replaced by its updates (the client's `applyMessage` rule,
 * so a rolled-up catch-up and live deltas give the same result) — plus the channel's state and
 * position, and `publish`.
 *
 * One store per client, channel and (`event`, `limit`), shared by every hook with them: a channel
 * already attached delivers no catch-up to a new subscriber, so a hook mounted later (a second
 * component, a remount, a name switched back) shows the list the store folded since the first one.
 *
 *   first hook subscribes   ─▶ store listens to the channel (attaching it), holds it (channel-holds)
 *   last hook unsubscribes  ─▶ a macrotask later, unless a hook came back (StrictMode's
 *                              unmount → mount): store stops listening and is forgotten; the
 *                              channel is released once no hook holds it (if the hooks made it)
 *
 * Subscribing happens in `useSyncExternalStore`'s subscribe (after commit, in the browser), and a
 * re-delivered operation (version ≤ held) changes nothing, so nothing is lost or doubled. A
 * channel's first attach mode (`rewind`, `start`, `from`) is the one of the first user of the
 * channel; hooks with another `event` or `limit` on a channel already attached start from what
 * comes next.
 *
 * After a store restart (a new epoch with `kept`, PROTOCOL.md §6.2) the catch-up brings the new
 * epoch's copies of changed messages before `continuityLost` renames the held list into that epoch:
 * that catch-up is folded unshown and published with the rename, in one update, so no render holds
 * a message twice (its old serial and its new one) — a browser renders between two frames.
 */
import type {
  AttachResult,
  Channel,
  ChannelState,
  ContinuityLost,
  Mooring,
  MooringError,
  OperationOptions,
} from '@mooring/client';
import { applyMessage, keptMessages } from '@mooring/client';
import type { JsonValue, Message } from '@mooring/protocol';
import { parseSerial } from '@mooring/protocol';
import { useCallback, useMemo, useSyncExternalStore } from 'react';
import { holdChannel, hookChannel } from './channel-holds.ts';
import { DeferredRelease } from './deferred-release.ts';
import type { ClientHandle } from './mooring-provider.ts';
import { useClientHandle } from './mooring-provider.ts';

export interface UseChannelOptions {
  /** Only messages with this name. */
  event?: string;
  /** First attach: the last N messages (rolled up) before live ones. */
  rewind?: number;
  /** First attach: every retained message before live ones. */
  start?: boolean;
  /** First attach: resume after this serial. */
  from?: string;
  /** Keep at most this many messages (the newest). Default: all. */
  limit?: number;
}

export interface ChannelSnapshot {
  /** Folded messages in serial order (tombstones included: `action: 'delete'`). */
  messages: readonly Message[];
  state: ChannelState;
  /** The channel's position ('' before anything). */
  position: string;
  /** The last attach's result (resumed or not). */
  attach: AttachResult | undefined;
  /**
   * Set when a resume failed and the list may be wrong (trimmed, or changed by what the store lost):
   * reload it from history. Not set when the log went on in a new epoch having every message held
   * as held (a Redis restart): the list is then renamed into the new epoch by itself, without the
   * messages created in what the store lost.
   */
  continuityLost: ContinuityLost | undefined;
  error: MooringError | undefined;
}

export interface UseChannelResult extends ChannelSnapshot {
  /** The channel (undefined during server rendering). */
  channel: Channel | undefined;
  /** Publishes a message on the channel; resolves with its serial once stored. */
  publish(name: string, data?: JsonValue, options?: OperationOptions): Promise<string>;
}

const SERVER_SNAPSHOT: ChannelSnapshot = Object.freeze({
  messages: Object.freeze([]) as readonly Message[],
  state: 'initialized',
  position: '',
  attach: undefined,
  continuityLost: undefined,
  error: undefined,
}) as ChannelSnapshot;

class ChannelStore {
  readonly channel: Channel;
  readonly #client: Mooring;
  readonly #options: UseChannelOptions;
  readonly #held = new Map<string, Message>();
  readonly #listeners = new Set<() => void>();
  readonly #lifetime: DeferredRelease;
  #current: ChannelSnapshot;
  #offs: Array<() => void> = [];
  #closed = false;
  /** The position the channel's attach in flight resumes from. */
  #resumeFrom = '';
  /**
   * Set while a catch-up in another epoch than the one resumed from is folded into `#held` without
   * being shown: until `continuityLost` renames the held list into that epoch, the list would hold
   * the old copy of a changed message beside its new one (two serials, one message).
   */
  #settling = false;

  constructor(client: Mooring, name: string, options: UseChannelOptions, onClosed: () => void) {
    const { rewind, start, from } = options;
    this.#client = client;
    this.#options = options;
    this.channel = hookChannel(client, name, {
      ...(rewind === undefined ? {} : { rewind }),
      ...(start === undefined ? {} : { start }),
      ...(from === undefined ? {} : { from }),
    });
    this.#current = { ...SERVER_SNAPSHOT, state: this.channel.state, position: this.channel.position };
    this.#lifetime = new DeferredRelease(() => {
      this.#closed = true;
      for (const off of this.#offs.splice(0)) off();
      onClosed();
    });
  }

  /** Its last hook went away: a hook mounted from now on gets a new store. */
  get closed(): boolean {
    return this.#closed;
  }

  snapshot = (): ChannelSnapshot => this.#current;

  subscribe = (onChange: () => void): (() => void) => {
    this.#listeners.add(onChange);
    if (this.#lifetime.retain()) this.#start();
    return () => {
      this.#listeners.delete(onChange);
      this.#lifetime.release();
    };
  };

  #start(): void {
    const channel = this.channel;
    const onMessage = (message: Message) => this.#fold(message);
    const event = this.#options.event;
    this.#resumeFrom = channel.position;
    const unhold = holdChannel(this.#client, channel.name);
    if (event === undefined) channel.subscribe(onMessage).catch(() => {});
    else channel.subscribe(event, onMessage).catch(() => {});
    this.#offs = [
      () => channel.unsubscribe(onMessage),
      channel.on('statechange', ({ current, reason }) => {
        if (current === 'attaching') this.#resumeFrom = channel.position;
        this.#onState(current, reason);
      }),
      channel.on('attached', (attach) => this.#publish({ attach, position: channel.position })),
      channel.on('continuityLost', (continuityLost) => this.#onContinuityLost(continuityLost)),
      channel.on('error', (error) => this.#publish({ error })),
      unhold, // last: the channel may be released once nothing listens
    ];
    this.#onState(channel.state, undefined);
  }

  #onState(state: ChannelState, reason: MooringError | undefined): void {
    // settled without `continuityLost` (detached, failed, or attached as the server said): the
    // list shows what is held
    const settled = this.#settling && state !== 'attaching' && state !== 'suspended';
    if (settled) this.#settling = false;
    this.#publish({
      state,
      position: this.channel.position,
      ...(reason === undefined ? {} : { error: reason }),
      ...(settled ? { messages: this.#list() } : {}),
    });
  }

  #fold(incoming: Message): void {
    const held = this.#held.get(incoming.serial);
    const next = applyMessage(held, incoming);
    if (next === held) return;
    this.#held.set(incoming.serial, next);
    if (this.#settling || this.#otherEpoch(incoming)) {
      this.#settling = true; // shown once continuity is settled (#onContinuityLost, statechange)
      return;
    }
    const list = [...this.#current.messages];
    if (held !== undefined) {
      // an append or update of a message held: replace it where it is (newest first: appends
      // mostly grow the latest messages)
      for (let i = list.length - 1; i >= 0; i--)
        if (list[i]?.serial === incoming.serial) {
          list[i] = next;
          break;
        }
    } else {
      let at = list.length; // serials mostly arrive in order: insert from the end
      while (at > 0 && (list[at - 1]?.serial ?? '') > next.serial) at--;
      list.splice(at, 0, next);
      const limit = this.#options.limit;
      if (limit !== undefined && list.length > limit)
        for (const old of list.splice(0, list.length - limit)) this.#held.delete(old.serial);
    }
    this.#publish({ messages: list, position: this.channel.position });
  }

  /** A catch-up message of another epoch than the position the attach resumes from (PROTOCOL.md §6.2 `kept`). */
  #otherEpoch(incoming: Message): boolean {
    if (this.channel.state === 'attached') return false;
    const from = parseSerial(this.#resumeFrom);
    const version = parseSerial(incoming.version);
    return from !== undefined && version !== undefined && from.epoch !== version.epoch;
  }

  /** The held messages in serial order, the newest `limit` of them (the others are let go). */
  #list(): Message[] {
    const list = [...this.#held.values()].sort((a, b) => (a.serial < b.serial ? -1 : 1));
    const limit = this.#options.limit;
    if (limit !== undefined && list.length > limit)
      for (const old of list.splice(0, list.length - limit)) this.#held.delete(old.serial);
    return list;
  }

  /**
   * The log went on in a new epoch (`kept`) and has every message held here as held, but for those
   * created in what it lost: the list is renamed into it, without those — the log's own messages,
   * nothing to reload, and no `continuityLost` to show. Otherwise (a message held is in another
   * state in the new log, or there is no `kept`) the list may be wrong: `continuityLost` is set.
   */
  #onContinuityLost(continuityLost: ContinuityLost): void {
    const settling = this.#settling;
    this.#settling = false;
    const kept = keptMessages(this.#held.values(), continuityLost);
    if (!kept || kept.reread !== undefined) {
      this.#publish({ continuityLost, ...(settling ? { messages: this.#list() } : {}) });
      return;
    }
    this.#held.clear();
    for (const message of kept.messages) this.#held.set(message.serial, message);
    this.#publish({ messages: this.#list(), position: this.channel.position });
  }

  #publish(next: Partial<ChannelSnapshot>): void {
    this.#current = { ...this.#current, ...next };
    for (const listener of [...this.#listeners]) listener();
  }
}

const registry = new WeakMap<Mooring, Map<string, ChannelStore>>();

/** The shared store of `name` with these options on `client` (made on first use). */
function channelStore(client: Mooring, name: string, options: UseChannelOptions, key: string): ChannelStore {
  let stores = registry.get(client);
  if (!stores) {
    stores = new Map();
    registry.set(client, stores);
  }
  const id = `${name}\n${key}`;
  const existing = stores.get(id);
  if (existing && !existing.closed) return existing;
  const all = stores;
  const store: ChannelStore = new ChannelStore(client, name, options, () => {
    if (all.get(id) === store) all.delete(id);
  });
  stores.set(id, store);
  return store;
}

/**
 * A hook's way to its shared store: looked up on each call (the client is made lazily, and may
 * change under an `<Activity>` or a provider with options), kept while the hook is subscribed.
 */
function hookStore(handle: ClientHandle, name: string, options: UseChannelOptions, key: string) {
  let subscribed: ChannelStore | undefined;
  const current = (): ChannelStore =>
    subscribed && !subscribed.closed ? subscribed : channelStore(handle.get(), name, options, key);
  return {
    current,
    snapshot: (): ChannelSnapshot => current().snapshot(),
    subscribe: (onChange: () => void): (() => void) => {
      const store = current();
      subscribed = store;
      const off = store.subscribe(onChange);
      return () => {
        if (subscribed === store) subscribed = undefined;
        off();
      };
    },
  };
}

export function useChannel(name: string, options: UseChannelOptions = {}): UseChannelResult {
  const handle = useClientHandle();
  // the store is shared by hooks with the same event and limit; `rewind`, `start` and `from` are
  // read when the channel is first made (a channel's first attach is its first user's)
  const key = JSON.stringify([options.event, options.limit]);
  // biome-ignore lint/correctness/useExhaustiveDependencies: the options are keyed by value
  const store = useMemo(() => hookStore(handle, name, options, key), [handle, name, key]);
  const snapshot = useSyncExternalStore(store.subscribe, store.snapshot, () => SERVER_SNAPSHOT);
  const publish = useCallback(
    (event: string, data?: JsonValue, publishOptions?: OperationOptions) =>
      store.current().channel.publish(event, data, publishOptions),
    [store],
  );
  return useMemo(
    () => ({ ...snapshot, channel: handle.peek() ? store.current().channel : undefined, publish }),
    [snapshot, store, handle, publish],
  );
}
