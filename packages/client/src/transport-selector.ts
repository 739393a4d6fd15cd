/**
 * Which transport a connection uses (ARCHITECTURE.md §5 "Transports and fallback", PROTOCOL.md §12). Nothing
 * to configure: WebSocket first, HTTP streaming (SSE) when WebSocket does not get through, long-polling
 * when streamed bytes do not arrive either.
 *
 *   one connection attempt = a chain, tried in order within the `connecting` state:
 *     [the kind that worked last (remembered), …the allowed kinds after it]
 *
 *   websocket ── refused (non-101), error before `connected`, ──▶ sse
 *                or no `connected` within webSocketOpenTimeout
 *   sse       ── no `connected` within sseOpenTimeout (a buffering ──▶ longpoll
 *                proxy holds the stream), refused by a non-Mooring
 *                answer, stream ended early
 *
 *   never falls back: a Mooring error answer (the server spoke: 401 is permanent, 503 is retried
 *   as is) or an unreachable server (no HTTP answer at all: no other transport would reach it)
 *
 * The kind that reached `connected` is remembered (`localStorage` in browsers, memory otherwise) and
 * starts the next chain. While connected on anything but the first allowed kind, the connection
 * retries that kind in the background every `upgradeInterval` (`upgradeFrom`).
 */

import { isTransportKind, TRANSPORT_KINDS } from '@mooring/protocol';
import type { StorageLike } from './browser-environment.ts';
import { MooringError } from './errors.ts';
import type { Transport, TransportCloseInfo, TransportFactory, TransportKind } from './transport.ts';

export interface TransportChoice {
  kind: string;
  /** The endpoint the attempt's URL is built on (query added per attempt). */
  endpoint: string;
  create(): Transport;
  /** How long to wait for `connected` before the next choice of the chain is tried, ms. */
  fallbackTimeout: number;
}

/** What the connection asks about transports. */
export interface TransportPlan {
  /** The transports to try, in order, for one connection attempt. Never empty. */
  chain(): TransportChoice[];
  /** A transport of this kind reached `connected`: start from it next time. */
  worked(kind: string): void;
  /** The better transport to try in the background while connected on `kind`, if there is one. */
  upgradeFrom(kind: string): TransportChoice | undefined;
}

/** One transport, no fallback: `options.transport` (custom transports, tests). */
export function fixedTransport(endpoint: string, create: TransportFactory): TransportPlan {
  const choice: TransportChoice = { kind: 'custom', endpoint, create, fallbackTimeout: 0 };
  return { chain: () => [choice], worked: () => {}, upgradeFrom: () => undefined };
}

export interface TransportSelectorOptions {
  /** The allowed kinds, best first. */
  kinds: readonly TransportKind[];
  endpoints: Record<TransportKind, string>;
  create(kind: TransportKind): Transport;
  fallbackTimeouts: Record<TransportKind, number>;
  /** Where the kind that worked is remembered; undefined: only in this object. */
  storage: StorageLike | undefined;
  storageKey: string;
}

export class TransportSelector implements TransportPlan {
  readonly #o: TransportSelectorOptions;
  #remembered: TransportKind | undefined;

  constructor(options: TransportSelectorOptions) {
    if (options.kinds.length === 0) throw new Error('at least one transport kind is needed');
    this.#o = options;
  }

  /** The kind a new chain starts from. */
  get remembered(): TransportKind | undefined {
    let stored: string | null = null;
    try {
      stored = this.#o.storage?.getItem(this.#o.storageKey) ?? null;
    } catch {
      // storage denied (privacy modes): what this object remembers is enough
    }
    const kind = stored ?? this.#remembered;
    return isTransportKind(kind) && this.#o.kinds.includes(kind) ? kind : undefined;
  }

  chain(): TransportChoice[] {
    const kinds = this.#o.kinds;
    const remembered = this.remembered;
    const start = remembered === undefined ? 0 : kinds.indexOf(remembered);
    return kinds.slice(Math.max(0, start)).map((kind) => this.#choice(kind));
  }

  worked(kind: string): void {
    if (!isTransportKind(kind)) return;
    this.#remembered = kind;
    try {
      this.#o.storage?.setItem(this.#o.storageKey, kind);
    } catch {
      // quota or privacy mode: remembered in memory only
    }
  }

  upgradeFrom(kind: string): TransportChoice | undefined {
    const best = this.#o.kinds[0];
    if (best === undefined || kind === best || !isTransportKind(kind) || !this.#o.kinds.includes(kind))
      return undefined;
    return this.#choice(best);
  }

  #choice(kind: TransportKind): TransportChoice {
    return {
      kind,
      endpoint: this.#o.endpoints[kind],
      create: () => this.#o.create(kind),
      fallbackTimeout: this.#o.fallbackTimeouts[kind],
    };
  }
}

/**
 * Whether a transport that failed before `connected` should make way for the next one of the chain.
 * `timeout`: it did not deliver `connected` in time (refused silently, or a buffering proxy).
 */
export function shouldFallBack(failure: TransportCloseInfo | 'timeout'): boolean {
  if (failure === 'timeout') return true;
  // The server itself answered with an error: it is reachable on this transport, and its answer
  // (401 permanent, 503 temporary…) stands whatever the transport.
  if (failure.error !== undefined) return false;
  // Nothing answered at all (DNS, refused, reset): no other transport would reach it either.
  if (failure.unreachable === true) return false;
  return true;
}

export { isTransportKind } from '@mooring/protocol';

/** Checks `options.transports`. */
export function transportKinds(value: readonly string[] | undefined): TransportKind[] {
  if (value === undefined) return [...TRANSPORT_KINDS];
  const kinds: TransportKind[] = [];
  for (const kind of value) {
    if (!isTransportKind(kind)) {
      throw new MooringError(
        'bad_request',
        `unknown transport ${JSON.stringify(kind)} in options.transports; use ${TRANSPORT_KINDS.map((k) => `'${k}'`).join(', ')}`,
      );
    }
    if (!kinds.includes(kind)) kinds.push(kind);
  }
  if (kinds.length === 0) {
    throw new MooringError(
      'bad_request',
      'options.transports is empty; leave it out to allow every transport',
    );
  }
  return kinds;
}

const memory = new Map<string, string>();

/**
 * Where to remember the transport that worked: `localStorage` in browsers (so the next page load
 * starts from it), else a map shared by the clients of this process.
 */
export function defaultTransportStorage(): StorageLike {
  try {
    const local = (globalThis as { localStorage?: StorageLike }).localStorage;
    if (local && typeof local.getItem === 'function') return local;
  } catch {
    // accessing localStorage throws in some privacy modes
  }
  return {
    getItem: (key) => memory.get(key) ?? null,
    setItem: (key, value) => {
      memory.set(key, value);
    },
    removeItem: (key) => {
      memory.delete(key);
    },
  };
}
