/**
 * One `UserSession` per (client, channel), shared by every `useSession` / `useMooringChat` on that
 * channel, with a snapshot that stays the same object until the session changes.
 *
 *   first hook subscribes ─▶ session made and started (the channel from its start)
 *   session `change`      ─▶ one new snapshot (view, messages, running runs, holder)
 *   last hook unsubscribes ─▶ session closed a macrotask later, unless a hook came back (StrictMode)
 *
 * `view()` and `messages` of a UserSession build new arrays on every call, which
 * `useSyncExternalStore` would take for a change on every read ("Maximum update depth exceeded"):
 * the snapshot is built once per `change` event instead.
 */
import type { Handover, RunNode, UserSessionOptions, ViewNode } from '@mooring/ai';
import { UserSession } from '@mooring/ai';
import type { Mooring } from '@mooring/client';
import type { UIMessage } from 'ai';
import { keepChannel } from './channel-holds.ts';
import { DeferredRelease } from './deferred-release.ts';

export interface SessionSnapshot<M extends UIMessage = UIMessage> {
  /** The path shown: inputs and runs with their messages and sibling ids. */
  view: readonly ViewNode<M>[];
  /** The view's UIMessages, in order. */
  messages: readonly M[];
  /** Runs in progress (anywhere in the tree), in serial order. */
  running: readonly RunNode[];
  /** Who holds the session: the AI, or a human operator (handover). */
  holder: Handover;
  /** Attached, caught up and every run message rebuilt: the view is the log's. */
  settled: boolean;
  /** The last error the session reported (malformed messages, history failures). */
  error: Error | undefined;
}

export interface SessionStoreOptions {
  /** Follow branch selections (‹ ›) made on other devices. Default false. */
  sharedSelection?: boolean;
  /** The agents' clientIds: runs started by anyone else are not shown. */
  agents?: readonly string[];
  /** The clientIds allowed to hand the session over: a handover by anyone else changes nothing. */
  operators?: readonly string[];
  /** The operator identity for `handover` / `reply`. Default: the client's clientId. */
  clientId?: string;
  /** This device's id (client-side tools run on the device that asked). Default: one per session object. */
  device?: string;
}

const closers = new WeakMap<object, Array<() => void>>();

/** Runs `fn` when the shared session closes (its last hook went away). */
export function whenClosed(session: object, fn: () => void): void {
  const list = closers.get(session) ?? [];
  list.push(fn);
  closers.set(session, list);
}

export const EMPTY_SESSION: SessionSnapshot = Object.freeze({
  view: Object.freeze([]) as readonly ViewNode[],
  messages: Object.freeze([]) as readonly UIMessage[],
  running: Object.freeze([]) as readonly RunNode[],
  holder: Object.freeze({ holder: 'ai', operator: undefined, serial: '' }) as Handover,
  settled: false,
  error: undefined,
}) as SessionSnapshot;

export class SessionStore<M extends UIMessage = UIMessage> {
  readonly session: UserSession<M>;
  readonly #listeners = new Set<() => void>();
  readonly #lifetime: DeferredRelease;
  #current: SessionSnapshot<M>;
  #error: Error | undefined;
  #offs: Array<() => void> = [];
  #closed = false;

  constructor(session: UserSession<M>, onClosed: () => void) {
    this.session = session;
    this.#current = this.#build();
    this.#lifetime = new DeferredRelease(() => {
      this.#closed = true;
      for (const off of this.#offs.splice(0)) off();
      for (const fn of closers.get(session) ?? []) fn();
      closers.delete(session);
      session.close();
      onClosed();
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  snapshot = (): SessionSnapshot<M> => this.#current;

  subscribe = (onChange: () => void): (() => void) => {
    this.#listeners.add(onChange);
    if (this.#lifetime.retain() && this.#offs.length === 0) {
      this.#offs.push(
        this.session.on('change', () => this.#refresh()),
        this.session.on('error', (error) => {
          this.#error = error;
          this.#refresh();
        }),
      );
      this.session.start().then(
        () => this.#refresh(),
        (error: unknown) => {
          this.#error = error instanceof Error ? error : new Error(String(error));
          this.#refresh();
        },
      );
    }
    return () => {
      this.#listeners.delete(onChange);
      this.#lifetime.release();
    };
  };

  #refresh(): void {
    this.#current = this.#build();
    for (const listener of [...this.#listeners]) listener();
  }

  #build(): SessionSnapshot<M> {
    const view = this.session.view();
    return {
      view,
      messages: view.map((n) => n.message),
      running: this.session.running(),
      holder: this.session.holder,
      settled: this.session.settled,
      error: this.#error,
    };
  }
}

const registry = new WeakMap<Mooring, Map<string, SessionStore<UIMessage>>>();

/** The shared store of `channel`'s session on `client` (made on first use, with `options`). */
export function sessionStore<M extends UIMessage>(
  client: Mooring,
  channel: string,
  options: SessionStoreOptions,
): SessionStore<M> {
  let stores = registry.get(client);
  if (!stores) {
    stores = new Map();
    registry.set(client, stores);
  }
  const existing = stores.get(channel);
  if (existing && !existing.closed) return existing as unknown as SessionStore<M>;
  keepChannel(client, channel); // a session keeps its channel: useChannel hooks on it never release it
  const sessionOptions: UserSessionOptions = {
    channel: client.channels.get(channel, { start: true }),
    // read when replying or taking over: the token's clientId is known once connected
    get clientId() {
      return options.clientId ?? client.clientId;
    },
  } as UserSessionOptions;
  if (options.sharedSelection !== undefined) sessionOptions.sharedSelection = options.sharedSelection;
  if (options.agents !== undefined) sessionOptions.agents = options.agents;
  if (options.operators !== undefined) sessionOptions.operators = options.operators;
  if (options.device !== undefined) sessionOptions.device = options.device;
  const all = stores;
  const store: SessionStore<M> = new SessionStore<M>(new UserSession<M>(sessionOptions), () => {
    if (all.get(channel) === (store as unknown as SessionStore<UIMessage>)) all.delete(channel);
  });
  stores.set(channel, store as unknown as SessionStore<UIMessage>);
  return store;
}
