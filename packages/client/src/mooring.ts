/**
 * `new Mooring(options)`: the client. It wires the connection (state machine + transport), the
 * channels, the queue of unacknowledged publishes and the REST helper together:
 *
 *   on every `connected`:  re-attach wanted channels from their positions, then resend the whole
 *                          publish queue in order with the same ids (server dedup ⇒ exactly once)
 *   on `suspended`:        reject pending publishes and attaches (fail fast); channels keep their
 *                          positions and resume when the connection is back
 *   on `failed`/`closed`:  reject everything pending; channels detach
 */
import type { OperationInput, PublishResult } from '@mooring/protocol';
import { COMPACT_FRAMES, DEFAULT_LIMITS, FRAMES_PARAM } from '@mooring/protocol';
import type { AuthCallback, AuthConnection } from './auth.ts';
import { authUrlSource, callbackSource, TokenAuth } from './auth.ts';
import type { BrowserEnvironment, StorageLike } from './browser-environment.ts';
import { detectBrowserEnvironment } from './browser-environment.ts';
import type { ChannelHost } from './channel-host.ts';
import type { ChannelRouter } from './channels.ts';
import { Channels } from './channels.ts';
import { Connection } from './connection.ts';
import { defaultWebSocket } from './default-websocket.ts';
import type { ListenerErrorHandler } from './emitter.ts';
import { endpoints } from './endpoints.ts';
import type { MooringErrorCode } from './errors.ts';
import { MooringError } from './errors.ts';
import { frameLimit } from './frame-size.ts';
import { IdGenerator } from './ids.ts';
import { LongPollTransport } from './long-poll-transport.ts';
import { PublishQueue } from './publish-queue.ts';
import type { RecoveryState } from './recovery-key.ts';
import { decodeRecoveryKey, encodeRecoveryKey } from './recovery-key.ts';
import type { FetchLike } from './rest.ts';
import { Rest } from './rest.ts';
import { SseTransport } from './sse-transport.ts';
import type { Timers } from './timers.ts';
import { systemTimers } from './timers.ts';
import type { Timings } from './timings.ts';
import { DEFAULT_CLIENT_TIMINGS, retryDelay } from './timings.ts';
import type { Transport, TransportFactory, TransportKind } from './transport.ts';
import type { TransportPlan } from './transport-selector.ts';
import {
  defaultTransportStorage,
  fixedTransport,
  TransportSelector,
  transportKinds,
} from './transport-selector.ts';
import type { WebSocketConstructor } from './websocket-transport.ts';
import { WebSocketTransport } from './websocket-transport.ts';

export interface MooringOptions extends Partial<Timings> {
  /** The server: `https://host`, `wss://host`, or either with `/v1/connect`. */
  url: string;
  /**
   * API key `<keyName>:<secret>` (trusted backends and agents). Credentials: exactly one of `key`,
   * `token`, `authCallback`, `authUrl`.
   */
  key?: string | undefined;
  /**
   * Identity stamped on this client's publishes (allowed with an API key). With token auth the
   * identity is the token's: this is passed to `authCallback`/`authUrl`, and the server refuses a
   * token for another clientId (`forbidden`).
   */
  clientId?: string;
  /** A fixed token (JWT). It is not renewed: once it expires the connection fails (`token_expired`). */
  token?: string | undefined;
  /**
   * Token auth (browsers): returns a token — the JWT, or `{ token, expiresAt }` as `POST /v1/tokens`
   * answers — before a connection and before the current token expires (it is then renewed over the
   * live connection). Throwing is retried with backoff; an error with `status` 401/403 (or a
   * non-retryable `MooringError`) ends in `failed`.
   */
  authCallback?: AuthCallback | undefined;
  /**
   * Token auth (browsers): a URL answering a token — the JWT as text, or JSON `{ token, expiresAt }`.
   * Asked like `authCallback`; 401/403 ends in `failed`, other failures are retried with backoff.
   */
  authUrl?: string | undefined;
  /** `authUrl` request method. Default `GET`. */
  authMethod?: 'GET' | 'POST';
  /** Headers of the `authUrl` request (e.g. a session cookie's CSRF token). */
  authHeaders?: Record<string, string>;
  /** Sent to `authUrl` as query parameters (GET) or in the JSON body (POST), with `clientId` when given. */
  authParams?: Record<string, string | number | boolean>;
  /** A recovery key from `client.recoveryKey()`: continue that client's connection and positions. */
  recover?: string;
  /** Browsers: save a recovery key to `sessionStorage` on `pagehide` and use it on the next load. Default false. */
  recoverOnReload?: boolean;
  /** Connect in the constructor. Default true (otherwise on `connect()`, the first attach or publish). */
  autoConnect?: boolean;
  /**
   * Ask for the channels to attach in the connection request itself (PROTOCOL.md §5.1 `attach`): a
   * reconnect or a reload gets its catch-up one round trip sooner. Default true. `false` attaches
   * with frames only, for deployments whose proxies log URLs and must not see channel names and
   * positions there.
   */
  attachWithConnection?: boolean;
  /**
   * Ask the server for compact `messages` frames (PROTOCOL.md §6.5): the same messages in about a
   * third fewer bytes (a streamed token: ~170 instead of ~270). Default true. `false` keeps every
   * frame plain JSON, e.g. to read them in the browser's network panel.
   */
  compactFrames?: boolean;
  /** Operations kept while not connected; beyond, publishes reject with `queue_full`. Default 1 000. */
  maxQueuedOps?: number;
  /**
   * The transports the client may use, best first. Default `['websocket', 'sse', 'longpoll']`: WebSocket,
   * falling back to HTTP streaming, then long-polling, automatically (see the README, "Transports").
   * Pass one kind to force it, or a shorter list to restrict the fallback.
   */
  transports?: TransportKind[];
  /**
   * Where the transport that worked is remembered, so the next connection starts from it. Default:
   * `localStorage` in browsers, memory shared by the clients of the process otherwise; `null`: only
   * this client remembers.
   */
  transportStorage?: StorageLike | null;
  /** WebSocket constructor. Default: `ws` in Node, the global `WebSocket` elsewhere. */
  WebSocket?: WebSocketConstructor;
  /** Advanced: makes a transport per connection attempt (tests, custom transports); no fallback then. */
  transport?: TransportFactory;
  /** `fetch` for REST and the HTTP transports (SSE, long-polling). Default: the global one. */
  fetch?: FetchLike;
  /** Clock and timers. Default: the system's. */
  timers?: Timers;
  /** Random source in [0, 1) for backoff jitter and ids. Default `Math.random`. */
  random?: () => number;
  /** Browser hooks (network, visibility, pagehide, sessionStorage). Default: detected; `null` disables. */
  environment?: BrowserEnvironment | null;
  /**
   * Gets the exception a listener of this client threw — a `subscribe` handler, a presence listener,
   * an `on(…)` of the connection or a channel — with the event's name (`message`, `presence`,
   * `statechange`…). The other listeners and the connection go on either way. Default: re-thrown
   * asynchronously, as Node's EventEmitter would: an `uncaughtException`, which ends a Node process
   * that does not handle it (a long-lived agent with one bad message handler). A hook that throws
   * has its own error re-thrown so.
   */
  onListenerError?: ListenerErrorHandler | undefined;
}

const DEFAULT_MAX_QUEUED_OPS = 1_000;

export class Mooring {
  readonly connection: Connection;
  readonly #requestedClientId: string | undefined;
  readonly channels: Channels;
  readonly rest: Rest;
  readonly #timers: Timers;
  readonly #ids: IdGenerator;
  readonly #queue: PublishQueue;
  readonly #router: ChannelRouter;
  readonly #storageKey: string;
  readonly #timings: Timings;
  readonly #random: () => number;
  readonly #environment: BrowserEnvironment | undefined;
  readonly #recoverOnReload: boolean;
  readonly #onListenerError: ListenerErrorHandler | undefined;
  /**
   * Removes the browser listeners (`#watch`); undefined while there are none. A closed client
   * listens to nothing: the page's `window` and `document` would otherwise keep it reachable, with
   * its channels and presence, for the life of the tab (a provider remounted on every login).
   */
  #unwatch: (() => void) | undefined;

  constructor(options: MooringOptions) {
    checkCredentials(options);
    this.#requestedClientId = options.clientId;
    const urls = endpoints(options.url);
    const timers = options.timers ?? systemTimers;
    const random = options.random ?? Math.random;
    const timings = timingsFrom(options);
    const environment =
      options.environment === null ? undefined : (options.environment ?? detectBrowserEnvironment());
    this.#timers = timers;
    this.#timings = timings;
    this.#random = random;
    this.#environment = environment;
    this.#recoverOnReload = options.recoverOnReload === true;
    if (options.onListenerError !== undefined && typeof options.onListenerError !== 'function')
      throw new MooringError('bad_request', 'options.onListenerError must be a function (error, event)');
    this.#onListenerError = options.onListenerError;
    this.#ids = new IdGenerator(random);
    this.#storageKey = `mooring:recovery:${urls.websocket}`;

    const recovery = this.#recoveryFrom(options, environment);
    const fetchImpl = options.fetch ?? ((url: string, init: RequestInit) => globalThis.fetch(url, init));
    const auth = tokenAuth(options, fetchImpl, timers, timings, {
      get state() {
        return connection.state;
      },
      send: (frame) => connection.send(frame),
      nextRef: () => connection.nextRef(),
      reportError: (error) => connection.reportError(error),
    });
    this.rest = new Rest({
      baseUrl: urls.http,
      key: options.key,
      ...(auth ? { auth } : {}),
      ...(!auth && options.clientId !== undefined ? { clientId: options.clientId } : {}),
      fetch: fetchImpl,
      nextId: () => this.#ids.next(this.clientId === undefined),
      timers,
      requestTimeout: timings.realtimeRequestTimeout,
    });

    const webSocket = options.WebSocket ?? defaultWebSocket;
    const transports = options.transport
      ? fixedTransport(urls.websocket, options.transport)
      : transportPlan(options, urls, timings, (kind) => {
          if (kind === 'websocket') return new WebSocketTransport(webSocket);
          const deps = { fetch: fetchImpl, timers, requestTimeout: timings.realtimeRequestTimeout };
          return kind === 'sse' ? new SseTransport(deps) : new LongPollTransport(deps);
        });
    const params: Record<string, string> = {};
    if (options.key !== undefined) params.key = options.key;
    if (options.clientId !== undefined) params.clientId = options.clientId;
    // compact `messages` frames (PROTOCOL.md §6.5): a third fewer bytes per streamed token; the
    // transports expand them, and a server that does not know them sends plain ones
    const formats: Record<string, string> =
      options.compactFrames === false ? {} : { [FRAMES_PARAM]: COMPACT_FRAMES };
    Object.assign(params, formats);

    let router: ChannelRouter | undefined;
    const connection: Connection = new Connection({
      transports,
      params: auth ? async () => ({ ...(await auth.params()), ...formats }) : () => params,
      recover: recovery?.connectionKey || undefined,
      timers,
      random,
      timings,
      adoptServerTtl: options.connectionStateTtl === undefined,
      onListenerError: options.onListenerError,
      hooks: {
        preattach: () => (options.attachWithConnection === false ? [] : this.#router.preattach()),
        onConnected: (frame) => {
          auth?.onConnected(frame);
          this.#router.onConnected();
          this.#queue.onConnected();
        },
        onFrame: (frame) => {
          if (auth?.onFrame(frame)) return true;
          if (frame.type === 'ack' && this.#queue.onAck(frame)) return true; // else: presence (channels)
          if (frame.type === 'error' && this.#queue.onError(frame)) return true;
          return this.#router.onFrame(frame);
        },
        onStateChange: (change) => {
          auth?.onStateChange(change);
          // listening to the page while the client may connect: from `closed` (close()), no more
          if (change.current === 'closed') this.#stopWatching();
          else if (change.previous === 'closed') this.#watch();
          if (change.current !== 'connected') this.#queue.onDisconnected();
          const state = change.current;
          if (state === 'suspended' || state === 'failed' || state === 'closed') {
            const error = this.#refusal() as MooringError;
            this.#queue.rejectAll(error);
            this.#router.onConnectionLost(state, error);
          }
        },
      },
    });
    this.connection = connection;
    this.#queue = new PublishQueue({
      send: (frame, json) => this.connection.send(frame, json),
      nextRef: () => this.connection.nextRef(),
      maxQueuedOps: options.maxQueuedOps ?? DEFAULT_MAX_QUEUED_OPS,
      maxFrameSize: () => frameLimit(this.connection.details?.limits),
      takesAfter: () => this.connection.details?.publishAfter === true,
    });
    this.channels = new Channels(this.#host(), recovery?.channels ?? {}, (r) => {
      router = r;
    });
    if (!router) throw new Error('unreachable: channels register their router when constructed');
    this.#router = router;

    this.#watch();
    if (options.autoConnect ?? true) this.connection.connect();
  }

  /** Shorthand for `connection.connect()`. */
  connect(): void {
    this.connection.connect();
  }

  /** Shorthand for `connection.close()`. */
  close(): void {
    this.connection.close();
  }

  /**
   * A string from which `new Mooring({ recover })` continues this client: its connection identity
   * (within `connectionStateTtl`) and each channel's position (for as long as the server retains it).
   */
  /**
   * The identity this client publishes as: the `clientId` the server stamped (from a token, or the
   * one asked for with a key), once connected; before that, the one asked for, if any.
   */
  get clientId(): string | undefined {
    return this.connection.details?.clientId ?? this.#requestedClientId;
  }

  recoveryKey(): string {
    return encodeRecoveryKey({
      connectionKey: this.connection.key ?? '',
      channels: this.#router.positions(),
      savedAt: this.#timers.now(),
    });
  }

  /** The error an operation gets in the current connection state, or undefined when it may proceed. */
  #refusal(): MooringError | undefined {
    const connection = this.connection;
    switch (connection.state) {
      case 'suspended':
        return new MooringError(
          'connection_suspended',
          'the connection has been failing for longer than connectionStateTtl (suspended); ' +
            'call client.connection.connect() to retry now, then try again',
          { cause: connection.errorReason },
        );
      case 'failed':
        return new MooringError(
          'connection_failed',
          `the connection failed permanently (${connection.errorReason?.message ?? 'unknown error'}); ` +
            'fix the cause (e.g. the key), then call client.connection.connect()',
          { cause: connection.errorReason, status: connection.errorReason?.status ?? 400 },
        );
      case 'closing':
      case 'closed':
        return new MooringError(
          'connection_closed',
          'the client was closed; call client.connection.connect() first',
        );
      default:
        return undefined;
    }
  }

  #host(): ChannelHost {
    return {
      connection: this.connection,
      rest: this.rest,
      publish: (channel, ops, after) => this.#publish(channel, ops, after),
      // without a clientId, this client may share its dedup scope with others: ids they cannot guess
      nextId: () => this.#ids.next(this.clientId === undefined),
      ensureConnecting: () => {
        if (this.connection.state === 'initialized') this.connection.connect();
      },
      refusal: () => this.#refusal(),
      error: (code: MooringErrorCode, message: string) => new MooringError(code, message),
      timers: this.#timers,
      retryIn: (attempt) => retryDelay(attempt, this.#timings, this.#random),
      onListenerError: this.#onListenerError,
    };
  }

  #publish(channel: string, ops: OperationInput[], after?: string): Promise<PublishResult[]> {
    const refused = this.#refusal();
    if (refused) return Promise.reject(refused);
    const max = this.connection.details?.limits.maxOpsPerPublish ?? DEFAULT_LIMITS.maxOpsPerPublish;
    if (ops.length === 0 || ops.length > max) {
      return Promise.reject(
        new MooringError('bad_request', `a publish carries 1 to ${max} operations; split the batch`),
      );
    }
    if (this.connection.state === 'initialized') this.connection.connect();
    return this.#queue.add(channel, ops, after);
  }

  #recoveryFrom(
    options: MooringOptions,
    environment: BrowserEnvironment | undefined,
  ): RecoveryState | undefined {
    if (options.recover !== undefined) return decodeRecoveryKey(options.recover);
    if (!options.recoverOnReload || !environment?.storage) return undefined;
    const saved = environment.storage.getItem(this.#storageKey);
    if (saved === null) return undefined;
    environment.storage.removeItem(this.#storageKey);
    try {
      return decodeRecoveryKey(saved);
    } catch {
      return undefined; // a stale or foreign entry: start fresh rather than fail the page
    }
  }

  /** Listens to the page (network, visibility, pagehide), unless it already does or there is none. */
  #watch(): void {
    const environment = this.#environment;
    if (!environment || this.#unwatch) return;
    const offs = [
      environment.on('online', () => this.connection.networkChanged('online')),
      environment.on('offline', () => this.connection.networkChanged('offline')),
      environment.on('visible', () => this.connection.networkChanged('visible')),
    ];
    if (this.#recoverOnReload && environment.storage) {
      const storage = environment.storage;
      offs.push(environment.on('pagehide', () => storage.setItem(this.#storageKey, this.recoveryKey())));
    }
    this.#unwatch = () => {
      for (const off of offs) off();
    };
  }

  #stopWatching(): void {
    const unwatch = this.#unwatch;
    this.#unwatch = undefined;
    unwatch?.();
  }
}

const CREDENTIALS = ['key', 'token', 'authCallback', 'authUrl'] as const;

/** Exactly one kind of credentials (PROTOCOL.md §5.1, §14). */
function checkCredentials(options: MooringOptions): void {
  const given = CREDENTIALS.filter((name) => options[name] !== undefined);
  if (given.length !== 1) {
    throw new MooringError(
      'bad_request',
      given.length === 0
        ? 'no credentials: pass one of options.key (trusted backends), options.authCallback or options.authUrl (browsers: tokens), or options.token'
        : `pass only one of options.key, options.token, options.authCallback, options.authUrl (got ${given.join(', ')})`,
    );
  }
  if (options.key !== undefined && (typeof options.key !== 'string' || options.key === ''))
    throw new MooringError('bad_request', 'options.key must be an API key, <keyName>:<secret>');
  if (options.token !== undefined && (typeof options.token !== 'string' || options.token === ''))
    throw new MooringError('bad_request', 'options.token must be a non-empty string (a JWT)');
  if (options.authCallback !== undefined && typeof options.authCallback !== 'function')
    throw new MooringError('bad_request', 'options.authCallback must be a function returning a token');
  if (options.authMethod !== undefined && options.authMethod !== 'GET' && options.authMethod !== 'POST')
    throw new MooringError('bad_request', "options.authMethod must be 'GET' or 'POST'");
  if (
    options.authUrl === undefined &&
    (options.authMethod !== undefined ||
      options.authHeaders !== undefined ||
      options.authParams !== undefined)
  )
    throw new MooringError(
      'bad_request',
      'options.authMethod, authHeaders and authParams go with options.authUrl',
    );
}

/** Token auth for `token`, `authCallback` or `authUrl`; undefined with an API key. */
function tokenAuth(
  options: MooringOptions,
  fetchImpl: FetchLike,
  timers: Timers,
  timings: Timings,
  connection: AuthConnection & { reportError(error: MooringError): void },
): TokenAuth | undefined {
  if (options.key !== undefined) return undefined;
  const request =
    options.authCallback !== undefined
      ? callbackSource(options.authCallback)
      : options.authUrl !== undefined
        ? authUrlSource({
            url: options.authUrl,
            method: options.authMethod ?? 'GET',
            headers: options.authHeaders,
            params: options.authParams,
            fetch: fetchImpl,
          })
        : undefined;
  return new TokenAuth({
    request,
    ...(options.token !== undefined ? { token: options.token } : {}),
    clientId: options.clientId,
    timers,
    timings,
    connection,
    onError: (error) => connection.reportError(error),
  });
}

function transportPlan(
  options: MooringOptions,
  urls: ReturnType<typeof endpoints>,
  timings: Timings,
  create: (kind: TransportKind) => Transport,
): TransportPlan {
  return new TransportSelector({
    kinds: transportKinds(options.transports),
    endpoints: { websocket: urls.websocket, sse: urls.sse, longpoll: urls.longpoll },
    create,
    fallbackTimeouts: {
      websocket: timings.webSocketOpenTimeout,
      sse: timings.sseOpenTimeout,
      longpoll: timings.realtimeRequestTimeout,
    },
    storage:
      options.transportStorage === null ? undefined : (options.transportStorage ?? defaultTransportStorage()),
    storageKey: `mooring:transport:${urls.http}`,
  });
}

function timingsFrom(options: MooringOptions): Timings {
  const out: Timings = { ...DEFAULT_CLIENT_TIMINGS };
  for (const name of Object.keys(DEFAULT_CLIENT_TIMINGS) as (keyof Timings)[]) {
    const value = options[name];
    if (value === undefined) continue;
    if (!(typeof value === 'number' && value >= 0)) {
      throw new MooringError('bad_request', `options.${name} must be a number of milliseconds ≥ 0`);
    }
    out[name] = value;
  }
  return out;
}
