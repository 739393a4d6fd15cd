/**
 * `client.connection`: runs the state machine of `connection-state-machine.ts` against real
 * transports. It owns the timers of the connection (retry, opening timeouts, dead-connection
 * detection, graceful close; the upgrade's are in `transport-upgrade.ts`) and turns what happens to
 * the transport into machine events:
 *
 *   transport ended ──classifyClose──▶ lost | fatal     `connected` frame ──▶ opened
 *   no frame for maxIdleInterval + idleGrace ──▶ lost    a failed send ──▶ lost
 *   browser online / visible ──▶ online (or a liveness probe while connected)
 *
 * Transports (`transport-selector.ts`): an attempt tries a chain of transports within `connecting`
 * (WebSocket → SSE → long-polling), each with its own opening timeout, falling back on a failure that
 * is the transport's fault. While connected on a fallback, `transport-upgrade.ts` tries a better
 * transport in the background and moves the connection to it without a state change.
 *
 * Entry actions run before listeners hear about a change, so that, on `connected`, re-attaches and
 * resent publishes go out before anything an application does in its `statechange` listener.
 */
import {
  type AttachFrame,
  type ClientFrame,
  type ConnectedFrame,
  type DisconnectFrame,
  MAX_CONNECT_ATTACH_CHARS,
  type ServerFrame,
} from '@mooring/protocol';
import { classifyClose } from './close-classification.ts';
import type { ConnectionState, MachineEvent, MachineState } from './connection-state-machine.ts';
import { INITIAL_STATE, transition } from './connection-state-machine.ts';
import type { Listener, ListenerErrorHandler } from './emitter.ts';
import { Emitter } from './emitter.ts';
import { connectUrl } from './endpoints.ts';
import { MooringError } from './errors.ts';
import type { Timers } from './timers.ts';
import { TimerSlot } from './timers.ts';
import type { Timings } from './timings.ts';
import type { Transport, TransportCloseInfo, TransportHandlers } from './transport.ts';
import type { TransportChoice, TransportPlan } from './transport-selector.ts';
import { shouldFallBack } from './transport-selector.ts';
import { TransportUpgrade } from './transport-upgrade.ts';

export interface ConnectionStateChange {
  previous: ConnectionState;
  current: ConnectionState;
  /** The error behind the change (`disconnected`, `suspended`, `failed`), if any. */
  reason: MooringError | undefined;
  /** Milliseconds until the next automatic retry (`disconnected`, `suspended`). */
  retryIn: number | undefined;
}

/** The connection now runs on another kind of transport (`websocket`, `sse`, `longpoll`). */
export interface TransportChange {
  /** undefined for the first connection. */
  previous: string | undefined;
  current: string;
}

export type ConnectionEvents = {
  statechange: ConnectionStateChange;
  error: MooringError;
  transport: TransportChange;
} & {
  [S in ConnectionState]: ConnectionStateChange;
};

/** What the client does around the connection; called before application listeners. */
export interface ConnectionHooks {
  onConnected(frame: ConnectedFrame): void;
  /**
   * The attaches to ask for with the next connection request (PROTOCOL.md §5.1), each with its
   * ref; asked once per transport opened. Those the server confirms are `preattached` while
   * `onConnected` runs.
   */
  preattach?(): AttachFrame[];
  /** A frame for channels or publishes; returns false when nothing took it. */
  onFrame(frame: ServerFrame): boolean;
  onStateChange(change: ConnectionStateChange): void;
}

export interface ConnectionDeps {
  /** Which transports to try, in which order, and which to upgrade to (`transport-selector.ts`). */
  transports: TransportPlan;
  /**
   * Query parameters for each attempt (credentials, clientId). May be async (a token from
   * `authCallback`/`authUrl`): asked once per attempt, before its first transport opens, within
   * `realtimeRequestTimeout`. A rejection with a retryable `MooringError` (or any other error) is a
   * failed attempt, retried with backoff; a `MooringError` that is not retryable ends in `failed`.
   */
  params: () => Promise<Record<string, string>> | Record<string, string>;
  /** A previous connection's key, to keep its identity (PROTOCOL.md §5.4). */
  recover: string | undefined;
  timers: Timers;
  random: () => number;
  timings: Timings;
  /** Use the `connectionStateTtl` the server announces instead of `timings.connectionStateTtl`. */
  adoptServerTtl: boolean;
  hooks: ConnectionHooks;
  /** Where an exception thrown by a listener of the connection goes (`MooringOptions.onListenerError`). */
  onListenerError?: ListenerErrorHandler | undefined;
}

export class Connection {
  readonly #deps: ConnectionDeps;
  readonly #emitter: Emitter<ConnectionEvents>;
  #machine: MachineState = INITIAL_STATE;
  readonly #queue: MachineEvent[] = [];
  #dispatching = false;

  #transport: Transport | undefined;
  /** The chain of the current attempt and the index of the transport being tried. */
  #chain: TransportChoice[] = [];
  #attempt = 0;
  /** The credentials being obtained for the current attempt (stale once it changed). */
  #pendingParams: Promise<Record<string, string>> | undefined;
  /** The query parameters of the current attempt, shared by the transports of its chain. */
  #params: Record<string, string> = {};
  /** The kind of transport the connection runs on (the last that reached `connected`). */
  #kind: string | undefined;
  readonly #upgrade: TransportUpgrade;
  #disconnect: DisconnectFrame | undefined;
  #details: ConnectedFrame | undefined;
  #recover: string | undefined;
  /** The attaches sent with the transport being opened, by channel (`preattach`). */
  #preattaching: Map<string, AttachFrame> | undefined;
  /** Those the server confirmed it handles (`attaching` in `connected`), while entering `connected`. */
  #preattached: Map<string, AttachFrame> | undefined;
  #nextRef = 0;
  readonly #pings = new Map<
    number,
    { sentAt: number; resolve: (rtt: number) => void; reject: (e: Error) => void }
  >();

  readonly #retryTimer: TimerSlot;
  readonly #openTimer: TimerSlot;
  readonly #idleTimer: TimerSlot;
  /** Dead-connection detection (`#armIdle`): the last activity, and what the idle timer runs for. */
  #activeAt = 0;
  #idleSilence = 0;
  #idleOrdinary = false;
  readonly #closeTimer: TimerSlot;

  constructor(deps: ConnectionDeps) {
    this.#deps = deps;
    this.#emitter = new Emitter(deps.onListenerError);
    this.#recover = deps.recover;
    this.#retryTimer = new TimerSlot(deps.timers);
    this.#openTimer = new TimerSlot(deps.timers);
    this.#idleTimer = new TimerSlot(deps.timers);
    this.#closeTimer = new TimerSlot(deps.timers);
    this.#upgrade = new TransportUpgrade({
      plan: deps.transports,
      timers: deps.timers,
      timings: deps.timings,
      params: deps.params,
      connected: () => this.state === 'connected',
      key: () => this.#recover,
      current: () => this.#transport,
      handlersFor: (transport) => this.#handlersFor(transport),
      adopt: (candidate, frame) => {
        this.#transport = candidate;
        this.#details = frame;
        this.#recover = frame.connectionKey;
        this.#disconnect = undefined;
        this.#rejectPings();
        this.#armIdle();
      },
      switched: (candidate, frame) => {
        this.#deps.transports.worked(candidate.kind);
        this.#deps.hooks.onConnected(frame);
        if (this.#transport !== candidate) return; // a resend failed: the connection is reconnecting
        this.#setKind(candidate.kind);
        this.#upgrade.schedule(candidate.kind);
      },
      lost: (info) => this.#dispatch(classifyClose(info, this.#disconnect)),
    });
  }

  get state(): ConnectionState {
    return this.#machine.state;
  }

  /**
   * The kind of transport the connection runs on: `websocket`, `sse` or `longpoll` (or a custom
   * transport's kind); undefined before the first connection. The `transport` event tells changes.
   */
  get transport(): string | undefined {
    return this.#kind;
  }

  /** The server's id for this connection, once connected. */
  get id(): string | undefined {
    return this.#details?.connectionId;
  }

  /** The secret key that lets a later connection take this one's identity (and goes in a recovery key). */
  get key(): string | undefined {
    return this.#details?.connectionKey ?? this.#recover;
  }

  /** The latest `connected` frame: clientId, heartbeat interval, limits. */
  get details(): ConnectedFrame | undefined {
    return this.#details;
  }

  /** The error behind the current state, if any. */
  get errorReason(): MooringError | undefined {
    return this.#machine.reason;
  }

  /** Milliseconds until the next automatic retry, while `disconnected` or `suspended`. */
  get retryIn(): number | undefined {
    return this.#machine.retryIn;
  }

  on<K extends keyof ConnectionEvents>(event: K, listener: Listener<ConnectionEvents[K]>): () => void {
    return this.#emitter.on(event, listener);
  }

  once<K extends keyof ConnectionEvents>(event: K, listener: Listener<ConnectionEvents[K]>): () => void {
    return this.#emitter.once(event, listener);
  }

  off<K extends keyof ConnectionEvents>(event: K, listener: Listener<ConnectionEvents[K]>): void {
    this.#emitter.off(event, listener);
  }

  /** Connects; from `disconnected` or `suspended` retries now; from `failed` or `closed` starts again. */
  connect(): void {
    this.#dispatch({ type: 'connect' });
  }

  /** Closes the connection and discards its server-side state. Pending publishes are rejected. */
  close(): void {
    this.#dispatch({ type: 'close' });
  }

  /** Round trip to the server, in ms. Rejects when not connected or without an answer in time. */
  ping(): Promise<number> {
    return new Promise((resolve, reject) => {
      const ref = this.nextRef();
      if (!this.send({ type: 'ping', ref })) {
        reject(new MooringError('disconnected', `cannot ping while ${this.state}; wait for connected`));
        return;
      }
      const timer = new TimerSlot(this.#deps.timers);
      const settle = () => {
        timer.clear();
        this.#pings.delete(ref);
      };
      this.#pings.set(ref, {
        sentAt: this.#deps.timers.now(),
        resolve: (rtt) => {
          settle();
          resolve(rtt);
        },
        reject: (err) => {
          settle();
          reject(err);
        },
      });
      timer.set(this.#deps.timings.realtimeRequestTimeout, () =>
        this.#pings.get(ref)?.reject(new MooringError('timeout', 'no pong from the server in time')),
      );
    });
  }

  /**
   * The attach of `channel` that the server is handling because the connection request carried it
   * (PROTOCOL.md §5.1): its answers come as an `attach` frame's would. Only while the connection
   * enters `connected` (`onConnected`); undefined otherwise, and for channels the request left out.
   */
  preattached(channel: string): AttachFrame | undefined {
    return this.#preattached?.get(channel);
  }

  /** Allocates a request ref, unique for the life of the client. */
  nextRef(): number {
    this.#nextRef += 1;
    return this.#nextRef;
  }

  /**
   * Sends a frame if connected. Returns false when it could not be sent; a send that fails on an
   * open transport means the transport is dead, and the connection reconnects.
   */
  send(frame: ClientFrame, json?: string): boolean {
    const transport = this.#transport;
    if (this.state !== 'connected' || transport === undefined || this.#upgrade.switching) return false;
    try {
      transport.send(frame, json);
      return true;
    } catch (err) {
      this.#dispatch({
        type: 'lost',
        error: new MooringError('disconnected', 'a send failed; reconnecting automatically', { cause: err }),
      });
      return false;
    }
  }

  /**
   * Reports a problem that is not a state change (e.g. a failed token renewal while connected) to
   * the `error` listeners. For the client's own parts.
   */
  reportError(error: MooringError): void {
    this.#emitter.emit('error', error);
  }

  /** Network or page-visibility change reported by the environment (browsers). */
  networkChanged(kind: 'online' | 'offline' | 'visible'): void {
    if (this.state === 'connected') this.#probe();
    else if (kind !== 'offline') this.#dispatch({ type: 'online' });
  }

  #dispatch(event: MachineEvent): void {
    this.#queue.push(event);
    if (this.#dispatching) return;
    this.#dispatching = true;
    try {
      for (let next = this.#queue.shift(); next !== undefined; next = this.#queue.shift()) this.#apply(next);
    } finally {
      this.#dispatching = false;
    }
  }

  #apply(event: MachineEvent): void {
    const previous = this.#machine;
    const { timings } = this.#deps;
    const serverTtl = this.#deps.adoptServerTtl ? this.#details?.connectionStateTtl : undefined;
    const ctx = {
      now: this.#deps.timers.now(),
      random: this.#deps.random,
      timings: serverTtl === undefined ? timings : { ...timings, connectionStateTtl: serverTtl },
    };
    const next = transition(previous, event, ctx);
    if (next === undefined) return;
    this.#machine = next;
    this.#enter(next);
    const change: ConnectionStateChange = {
      previous: previous.state,
      current: next.state,
      reason: next.reason,
      retryIn: next.retryIn,
    };
    this.#deps.hooks.onStateChange(change);
    this.#emitter.emit('statechange', change);
    this.#emitter.emit(next.state, change);
  }

  /** Entry actions of each state. */
  #enter(next: MachineState): void {
    this.#retryTimer.clear();
    this.#openTimer.clear();
    this.#idleTimer.clear();
    this.#closeTimer.clear();
    this.#upgrade.cancel();
    this.#pendingParams = undefined;
    const { timings } = this.#deps;
    switch (next.state) {
      case 'connecting':
        this.#drop();
        this.#open();
        break;
      case 'connected': {
        this.#armIdle();
        if (this.#details) this.#deps.hooks.onConnected(this.#details);
        this.#preattached = undefined;
        const kind = this.#transport?.kind;
        if (kind !== undefined) {
          this.#deps.transports.worked(kind);
          this.#setKind(kind);
          this.#upgrade.schedule(kind);
        }
        break;
      }
      case 'disconnected':
      case 'suspended':
        this.#drop();
        this.#retryTimer.set(next.retryIn ?? 0, () => this.#dispatch({ type: 'retryDue' }));
        break;
      case 'closing': {
        // Ask the server to discard the connection's state; it answers by closing (1000).
        const transport = this.#transport;
        if (transport === undefined) {
          this.#dispatch({ type: 'closed' });
          break;
        }
        try {
          transport.send({ type: 'close' });
        } catch {
          transport.close(1000, 'client closed');
        }
        this.#closeTimer.set(timings.realtimeRequestTimeout, () => this.#dispatch({ type: 'closed' }));
        break;
      }
      case 'closed':
      case 'failed':
      case 'initialized':
        this.#drop();
        break;
    }
  }

  /**
   * Gets the attempt's credentials (a token may have to be fetched), then opens the chain. The
   * transports' own opening timeouts start only then: a slow auth callback is no reason to fall back.
   */
  #open(): void {
    const timeout = this.#deps.timings.realtimeRequestTimeout;
    const pending = Promise.resolve().then(() => this.#deps.params());
    this.#pendingParams = pending;
    const current = () => this.#pendingParams === pending && this.state === 'connecting';
    this.#openTimer.set(timeout, () => {
      if (!current()) return;
      this.#pendingParams = undefined;
      this.#dispatch({
        type: 'lost',
        error: new MooringError('timeout', `no credentials (token) within ${timeout} ms; retrying`),
      });
    });
    pending.then(
      (params) => {
        if (!current()) return;
        this.#pendingParams = undefined;
        this.#params = params;
        this.#chain = this.#deps.transports.chain();
        this.#openChoice(0);
      },
      (err: unknown) => {
        if (!current()) return;
        this.#pendingParams = undefined;
        const error =
          err instanceof MooringError
            ? err
            : new MooringError(
                'auth_failed',
                `could not get credentials: ${err instanceof Error ? err.message : String(err)}`,
                { cause: err },
              );
        this.#dispatch({ type: error.retryable ? 'lost' : 'fatal', error });
      },
    );
  }

  /** Opens the transport `index` of the current chain, with its own opening timeout. */
  #openChoice(index: number): void {
    const choice = this.#chain[index];
    if (choice === undefined) return;
    const { timings } = this.#deps;
    const transport = choice.create();
    this.#attempt = index;
    this.#transport = transport;
    this.#disconnect = undefined;
    const last = index === this.#chain.length - 1;
    const timeout = last
      ? timings.realtimeRequestTimeout
      : Math.min(choice.fallbackTimeout, timings.realtimeRequestTimeout);
    this.#openTimer.set(timeout, () => this.#openFailed(transport, 'timeout', timeout));
    const attach = this.#preattach();
    transport.open(
      connectUrl(choice.endpoint, this.#params, this.#recover, attach),
      this.#handlersFor(transport),
    );
  }

  /**
   * The `attach` parameter of a connection request: the attaches the channels want, as many as fit
   * in `MAX_CONNECT_ATTACH_CHARS` (the others attach with frames once connected).
   */
  #preattach(): string | undefined {
    this.#preattaching = undefined;
    const frames = this.#deps.hooks.preattach?.() ?? [];
    if (frames.length === 0) return undefined;
    const sent = new Map<string, AttachFrame>();
    const entries: string[] = [];
    let length = 1;
    for (const frame of frames) {
      const { type: _, ...entry } = frame;
      const json = JSON.stringify(entry);
      if (length + json.length + 1 > MAX_CONNECT_ATTACH_CHARS) continue;
      length += json.length + 1;
      entries.push(json);
      sent.set(frame.channel, frame);
    }
    if (entries.length === 0) return undefined;
    this.#preattaching = sent;
    return `[${entries.join(',')}]`;
  }

  /** The transport being opened failed or timed out: the next one of the chain, or a lost attempt. */
  #openFailed(transport: Transport, failure: TransportCloseInfo | 'timeout', timeout = 0): void {
    if (this.#transport !== transport || this.state !== 'connecting') return;
    if (this.#attempt + 1 < this.#chain.length && shouldFallBack(failure)) {
      transport.abort();
      this.#openChoice(this.#attempt + 1);
      return;
    }
    if (failure === 'timeout') {
      this.#dispatch({
        type: 'lost',
        error: new MooringError('timeout', `the server did not answer within ${timeout} ms; retrying`),
      });
      return;
    }
    this.#transport = undefined;
    this.#dispatch(classifyClose(failure, this.#disconnect));
  }

  /** Handlers for a transport this connection opened; only the current transport is heard. */
  #handlersFor(transport: Transport): TransportHandlers {
    return {
      onOpen: () => {},
      onActivity: () => {
        if (transport === this.#transport && this.state === 'connected') this.#armIdle();
      },
      onFrame: (frame) => {
        if (transport === this.#transport) this.#onFrame(frame);
      },
      onProtocolError: (message) => {
        if (transport !== this.#transport) return;
        this.#emitter.emit('error', new MooringError('protocol_error', `the server sent ${message}`));
      },
      onClose: (info) => {
        if (transport === this.#transport) this.#onTransportClose(transport, info);
      },
    };
  }

  #onFrame(frame: ServerFrame): void {
    if (this.state === 'connected') this.#armIdle();
    switch (frame.type) {
      case 'connected':
        if (this.state !== 'connecting') return;
        this.#details = frame;
        this.#recover = frame.connectionKey;
        // a server that does not say `attaching` ignored the request's attaches: send them as frames
        this.#preattached = frame.attaching === undefined ? undefined : this.#preattaching;
        this.#preattaching = undefined;
        this.#dispatch({ type: 'opened' });
        return;
      case 'heartbeat':
        return;
      case 'pong':
        if (typeof frame.ref === 'number') {
          const ping = this.#pings.get(frame.ref);
          ping?.resolve(this.#deps.timers.now() - ping.sentAt);
        }
        return;
      case 'disconnect': {
        if (frame.reason === 'replaced') {
          // our own upgrade candidate took the connection over: its loss is held as usual
          if (this.#upgrade.opening) return;
          // Another client took this connection over with its key (two instances started from one
          // recovery key). Taking it back would drop that one, which would take it back in turn, for
          // ever: continue as a new connection instead (channels resume from their positions).
          // Unless a candidate of ours failed lately: it may have reached the server all the same,
          // and this is then an ordinary loss (the reconnect takes the connection back from it).
          if (!this.#upgrade.failedLately) this.#recover = undefined;
        }
        this.#disconnect = frame;
        const classified = classifyClose({ code: 1006, reason: frame.reason }, frame);
        this.#dispatch(classified);
        return;
      }
      default: {
        if (this.state !== 'connected' && this.state !== 'closing') return;
        if (this.#deps.hooks.onFrame(frame) || frame.type !== 'error') return;
        // An error answering nothing we track (e.g. a frame we sent was malformed): surface it.
        this.#emitter.emit('error', MooringError.fromInfo(frame.error));
      }
    }
  }

  #onTransportClose(transport: Transport, info: TransportCloseInfo): void {
    if (this.state === 'connecting') {
      this.#openFailed(transport, info);
      return;
    }
    this.#transport = undefined;
    if (this.state === 'closing') {
      this.#dispatch({ type: 'closed' });
      return;
    }
    // While an upgrade opens a candidate, this is most likely the server moving the connection to it.
    if (this.state === 'connected' && this.#disconnect === undefined && this.#upgrade.hold(transport, info))
      return;
    this.#dispatch(classifyClose(info, this.#disconnect));
  }

  #setKind(kind: string): void {
    const previous = this.#kind;
    if (kind === previous) return;
    this.#kind = kind;
    this.#emitter.emit('transport', { previous, current: kind });
  }

  /**
   * (Re)starts dead-connection detection: silence for maxIdleInterval + idleGrace means dead; `ms`
   * (a probe) gives the connection that long to show it lives.
   *
   * Activity only moves `#activeAt` while the ordinary timer runs: the timer, when it fires, starts
   * again for what is left of the silence since the last activity. A busy connection (a frame per
   * token) so makes no timer per frame.
   */
  #armIdle(ms?: number): void {
    const details = this.#details;
    if (!details) return;
    const now = this.#deps.timers.now();
    this.#activeAt = now;
    const silence = ms ?? details.maxIdleInterval + this.#deps.timings.idleGrace;
    const ordinary = ms === undefined;
    if (ordinary && this.#idleOrdinary && this.#idleSilence === silence && this.#idleTimer.pending) return;
    this.#idleOrdinary = ordinary;
    this.#idleSilence = silence;
    this.#setIdle(silence, now);
  }

  #setIdle(silence: number, from: number): void {
    this.#idleTimer.set(silence - (this.#deps.timers.now() - from), () => {
      if (this.#idleOrdinary && this.#activeAt > from) {
        this.#setIdle(silence, this.#activeAt); // active since: what is left of the silence
        return;
      }
      this.#dispatch({
        type: 'lost',
        error: new MooringError(
          'timeout',
          `no frame from the server for ${silence} ms; reconnecting automatically`,
        ),
      });
    });
  }

  /** After a network change: ask for a pong and give the connection `probeTimeout` to show it lives. */
  #probe(): void {
    if (this.send({ type: 'ping', ref: this.nextRef() })) this.#armIdle(this.#deps.timings.probeTimeout);
  }

  /** Forgets the current transport, dropping it at once. Pings in flight fail. */
  #drop(): void {
    const transport = this.#transport;
    this.#transport = undefined;
    transport?.abort();
    this.#rejectPings();
  }

  #rejectPings(): void {
    for (const ping of [...this.#pings.values()]) {
      ping.reject(new MooringError('disconnected', 'the connection dropped before the pong arrived'));
    }
  }
}
