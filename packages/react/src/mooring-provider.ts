/**
 * `<MooringProvider>`: one Mooring client for the application below it.
 *
 *   <MooringProvider client={client}>     a client you made (and close) yourself
 *   <MooringProvider options={{ … }}>     the provider makes the client, once, and closes it when it
 *                                         unmounts for good
 *
 * With `options`, the client is made lazily the first time a hook reads it in the browser — never
 * during server rendering (hooks render their server snapshots there), and only once under
 * StrictMode, whose double render would otherwise make (and connect) two clients. Its close is
 * deferred by a macrotask so StrictMode's mount → unmount → mount keeps the same connection.
 */
import type { Mooring, MooringOptions } from '@mooring/client';
import { Mooring as MooringClient } from '@mooring/client';
import type { ReactNode } from 'react';
import { createContext, createElement, useContext, useEffect, useState, useSyncExternalStore } from 'react';
import { DeferredRelease } from './deferred-release.ts';
import { MooringReactError } from './errors.ts';

export type MooringProviderProps =
  | { client: Mooring; options?: never; children?: ReactNode }
  | { options: MooringOptions; client?: never; children?: ReactNode };

/** What hooks get from the provider: the client, made on first use. */
export class ClientHandle {
  readonly #make: () => Mooring;
  readonly #owned: boolean;
  #client: Mooring | undefined;
  readonly lifetime: DeferredRelease;

  constructor(source: Mooring | MooringOptions) {
    if (source instanceof MooringClient) {
      const client = source;
      this.#client = client;
      this.#make = () => client;
      this.#owned = false;
    } else {
      const options = source;
      this.#make = () => new MooringClient(options);
      this.#owned = true;
    }
    this.lifetime = new DeferredRelease(() => {
      if (this.#owned && this.#client) {
        this.#client.close();
        this.#client = undefined; // a later remount of the same provider makes a fresh one
      }
    });
  }

  /** The client (made now if needed). Call only in the browser: effects, subscriptions, snapshots. */
  get(): Mooring {
    this.#client ??= this.#make();
    return this.#client;
  }

  /** The client if it exists already (never makes one). */
  peek(): Mooring | undefined {
    return this.#client;
  }
}

const MooringContext = createContext<ClientHandle | undefined>(undefined);

export function MooringProvider(props: MooringProviderProps): ReactNode {
  const source = props.client ?? props.options;
  if (source === undefined)
    throw new MooringReactError('no_client', '<MooringProvider> needs a `client` or `options` prop');
  // One handle per provided client; with `options`, one per provider (options objects change on
  // every render of the parent: they are read once, like `useState`'s initial value).
  const [handle, setHandle] = useState(() => new ClientHandle(source));
  if (props.client !== undefined && handle.peek() !== props.client) setHandle(new ClientHandle(props.client));
  useEffect(() => {
    handle.lifetime.retain();
    handle.get(); // connect now, even when no hook asked yet (effects run in the browser only)
    return () => handle.lifetime.release();
  }, [handle]);
  return createElement(MooringContext.Provider, { value: handle }, props.children);
}

/** @internal The provider's handle; throws a clear error outside a provider. */
export function useClientHandle(): ClientHandle {
  const handle = useContext(MooringContext);
  if (!handle)
    throw new MooringReactError(
      'no_provider',
      'Mooring hooks must be used inside <MooringProvider client={…}> or <MooringProvider options={…}>',
    );
  return handle;
}

/**
 * The provider's Mooring client, for what the hooks don't cover. In the browser it is there from the
 * first render (made then, once); during server rendering (and hydration) it is `undefined`.
 */
export function useMooring(): Mooring | undefined {
  const handle = useClientHandle();
  return useSyncExternalStore(
    noSubscription,
    () => handle.get(),
    () => undefined,
  );
}

function noSubscription(): () => void {
  return () => {};
}
