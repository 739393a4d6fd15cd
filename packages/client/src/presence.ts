/**
 * `channel.presence` (ARCHITECTURE.md §8, PROTOCOL.md §6.4): enter / update / leave this channel's presence
 * set, read the set, and hear how it changes.
 *
 * Requests (enter, update, leave) wait in order until the server acknowledges them. On every new
 * connection the unacknowledged ones are sent again — they are idempotent on the server (entering
 * twice is an update, leaving twice is nothing) — and the membership this client holds is put back
 * when the server could not keep it:
 *
 *   new connection, resumed: true    the server kept the membership (same connectionId): only
 *                                    unacknowledged requests go out; other clients see nothing
 *   new connection, resumed: false   a new identity, so no membership: enter again with the last
 *                                    acknowledged data (the old identity leaves after its grace)
 *   a `sync` that lacks this         the grace ran out before the connection was recovered: enter
 *   connection while it should be in again (only visible while the channel is attached)
 *
 * A request whose frame is above the server's `maxFrameSize` is refused with `frame_too_large` and
 * never sent (the server would close the connection with 1009, and the resend would loop).
 *
 * The set itself (`get`, `subscribe`) comes from the channel's attachment: a `sync` snapshot after
 * each attach, then one event per change; `get` and `subscribe` attach the channel.
 */
import type { JsonValue, PresenceFrame, PresenceMember, PresenceRequestFrame, Ref } from '@mooring/protocol';
import type { Connection } from './connection.ts';
import type { Listener, ListenerErrorHandler } from './emitter.ts';
import { reportListenerError } from './emitter.ts';
import type { MooringError } from './errors.ts';
import { frameLimit, frameTooLarge, measure } from './frame-size.ts';
import type { PresenceAction, PresenceEvent } from './presence-members.ts';
import { PresenceMembers } from './presence-members.ts';
import type { Timers } from './timers.ts';
import { TimerSlot } from './timers.ts';

/** What presence needs from its channel and the client. */
export interface PresenceHost {
  readonly connection: Connection;
  /** The error a request gets in the current connection state, or undefined when it may proceed. */
  refusal(): MooringError | undefined;
  /** Connects when the connection has never been started. */
  ensureConnecting(): void;
  /** Attaches the channel: the snapshot and the events come with an attachment. */
  attach(): Promise<unknown>;
  /** An automatic re-enter failed: reported on the channel's `error` event. */
  report(error: MooringError): void;
  readonly timers: Timers;
  /** The delay before retry number `attempt` (1, 2, …): the connection's backoff, with jitter. */
  retryIn(attempt: number): number;
  /** Where an exception thrown by a presence listener goes (`MooringOptions.onListenerError`). */
  readonly onListenerError: ListenerErrorHandler | undefined;
}

/** How the channel drives its presence; handed over at construction. */
export interface PresenceInternals {
  /** A new connection is up (after the channel sent its attach). */
  onConnected(resumed: boolean): void;
  /** The channel sent an attach: the set is stale until the next `sync`. */
  onAttaching(): void;
  onFrame(frame: PresenceFrame): void;
  /** An `ack` on this channel; false when `ref` is not a presence request. */
  onAck(ref: Ref | undefined): boolean;
  /** An `error` on this channel; false when `ref` is not a presence request. */
  onError(ref: Ref | undefined, error: MooringError): boolean;
  /** The connection went suspended (membership kept, to enter again later), closed or failed (dropped). */
  onConnectionLost(state: 'suspended' | 'closed' | 'failed', error: MooringError): void;
  /** The channel is no longer attached (detach, or a failed attach): the set is unknown. */
  onDetached(error: MooringError): void;
}

interface PresenceRequest {
  action: PresenceAction;
  data: JsonValue | undefined;
  /** The ref of the latest send, and the connection generation it went out on. */
  ref: Ref | undefined;
  generation: number;
  /** Made by the client itself to restore the membership (nobody waits for it). */
  automatic: boolean;
  resolve(): void;
  reject(error: MooringError): void;
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: MooringError): void;
}

export class Presence {
  readonly channel: string;
  readonly #host: PresenceHost;
  readonly #members = new PresenceMembers();
  readonly #listeners = new Set<{ action: PresenceAction | undefined; listener: Listener<PresenceEvent> }>();
  readonly #requests: PresenceRequest[] = [];
  readonly #byRef = new Map<Ref, PresenceRequest>();
  /** Incremented on each new connection; a request is (re)sent once per generation. */
  #generation = 0;
  /** The membership the server last acknowledged (undefined: not a member). */
  #confirmed: { data: JsonValue | undefined } | undefined;
  /** True once the `sync` of the current attachment arrived. */
  #synced = false;
  /** An automatic re-enter refused for a moment (`retryable`) is made again after a backoff. */
  readonly #retry: TimerSlot;
  #refusals = 0;
  #syncWaiters: Waiter<PresenceMember[]>[] = [];

  constructor(channel: string, host: PresenceHost, register: (internals: PresenceInternals) => void) {
    this.channel = channel;
    this.#host = host;
    this.#retry = new TimerSlot(host.timers);
    register({
      onConnected: (resumed) => this.#onConnected(resumed),
      onAttaching: () => {
        this.#synced = false;
      },
      onFrame: (frame) => this.#onFrame(frame),
      onAck: (ref) => this.#onAck(ref),
      onError: (ref, error) => this.#onError(ref, error),
      onConnectionLost: (state, error) => this.#onConnectionLost(state, error),
      onDetached: (error) => this.#unsync(error),
    });
  }

  /**
   * Enters the presence set with `data` (or updates it, when already present). Resolves once the
   * server has it. The connection needs a `clientId`. Membership is per connection and is restored
   * by the client after any reconnect, until `leave()`.
   */
  enter(data?: JsonValue): Promise<void> {
    return this.#request('enter', data);
  }

  /** Replaces this client's presence data (entering when not present). */
  update(data?: JsonValue): Promise<void> {
    return this.#request('update', data);
  }

  /** Leaves the presence set; the client stops restoring the membership. */
  leave(): Promise<void> {
    return this.#request('leave', undefined);
  }

  /**
   * The members present now: attaches the channel if needed and waits for an up-to-date snapshot
   * (right away when attached and connected). Keyed by connection: one client on two devices is two
   * members with the same `clientId`.
   */
  get(): Promise<PresenceMember[]> {
    if (this.#synced && this.#host.connection.state === 'connected') {
      return Promise.resolve(this.#members.list());
    }
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      this.#syncWaiters.push(waiter);
      this.#host.attach().catch((err: MooringError) => {
        const i = this.#syncWaiters.indexOf(waiter);
        if (i < 0) return;
        this.#syncWaiters.splice(i, 1);
        reject(err);
      });
    });
  }

  /**
   * Hears every change of the set (or only `action`s): `enter`, `update`, `leave`. Members already
   * present when the channel attaches arrive as `enter`; after a re-attach only what changed while
   * away. Attaches the channel; the promise resolves once attached (ignoring it is safe).
   */
  subscribe(listener: Listener<PresenceEvent>): Promise<unknown>;
  subscribe(action: PresenceAction, listener: Listener<PresenceEvent>): Promise<unknown>;
  subscribe(a: PresenceAction | Listener<PresenceEvent>, b?: Listener<PresenceEvent>): Promise<unknown> {
    const action = typeof a === 'string' ? a : undefined;
    const listener = typeof a === 'string' ? b : a;
    if (!listener) throw new TypeError('subscribe needs a listener function');
    this.#listeners.add({ action, listener });
    const attached = this.#host.attach();
    attached.catch(() => {}); // reported through the returned promise and the channel's state
    return attached;
  }

  /** Removes a listener (from one action, or everywhere), or every listener when called without one. */
  unsubscribe(listener?: Listener<PresenceEvent>): void;
  unsubscribe(action: PresenceAction, listener?: Listener<PresenceEvent>): void;
  unsubscribe(a?: PresenceAction | Listener<PresenceEvent>, b?: Listener<PresenceEvent>): void {
    const action = typeof a === 'string' ? a : undefined;
    const listener = typeof a === 'string' ? b : a;
    for (const sub of [...this.#listeners]) {
      if (action !== undefined && sub.action !== action) continue;
      if (listener !== undefined && sub.listener !== listener) continue;
      this.#listeners.delete(sub);
    }
  }

  #request(action: PresenceAction, data: JsonValue | undefined): Promise<void> {
    const refused = this.#host.refusal();
    if (refused) return Promise.reject(refused);
    const tooLarge = this.#tooLarge(presenceFrame(0, this.channel, action, data)); // exact at the send
    if (tooLarge) return Promise.reject(tooLarge);
    return new Promise((resolve, reject) => {
      const request: PresenceRequest = {
        action,
        data,
        ref: undefined,
        generation: -1,
        automatic: false,
        resolve,
        reject,
      };
      // A membership's restore waiting out a refusal's backoff gives way to the app's own request,
      // as `#restore` does to a pending one: sent after a leave, it would enter the set again.
      for (const waiting of this.#requests.filter((r) => r.automatic && r.ref === undefined))
        this.#remove(waiting);
      this.#requests.push(request);
      if (this.#host.connection.state === 'connected') this.#send(request);
      else this.#host.ensureConnecting();
    });
  }

  #send(request: PresenceRequest): void {
    if (request.generation === this.#generation) return;
    const connection = this.#host.connection;
    const ref = connection.nextRef();
    const frame = presenceFrame(ref, this.channel, request.action, request.data);
    const tooLarge = this.#tooLarge(frame);
    if (tooLarge) {
      // Never sent, so never resent on the next connection (the server would close this one: 1009).
      this.#remove(request);
      request.reject(tooLarge);
      return;
    }
    if (!connection.send(frame)) return;
    if (request.ref !== undefined) this.#byRef.delete(request.ref);
    request.ref = ref;
    request.generation = this.#generation;
    this.#byRef.set(ref, request);
  }

  /**
   * Why `frame` must not be sent: `frame_too_large` above the server's `maxFrameSize` (PROTOCOL.md
   * §10), `bad_request` when it is not JSON; undefined when it may go.
   */
  #tooLarge(frame: PresenceRequestFrame): MooringError | undefined {
    const max = frameLimit(this.#host.connection.details?.limits);
    const bytes = measure(frame, 'presence data');
    if (typeof bytes !== 'number') return bytes;
    return bytes > max ? frameTooLarge('presence', bytes, max) : undefined;
  }

  #onConnected(resumed: boolean): void {
    this.#generation += 1;
    this.#byRef.clear(); // answers to earlier connections never come
    if (!resumed && this.#requests.length === 0) this.#restore();
    for (const request of [...this.#requests]) {
      if (this.#host.connection.state !== 'connected') break;
      this.#send(request);
    }
  }

  /**
   * Puts the acknowledged membership back (a new identity, or one whose grace ran out). Only when
   * nothing is pending: a pending enter/update enters by itself, a pending leave makes it moot.
   */
  #restore(): PresenceRequest | undefined {
    const confirmed = this.#confirmed;
    if (!confirmed || this.#requests.length > 0) return undefined;
    const request: PresenceRequest = {
      action: 'enter',
      data: confirmed.data,
      ref: undefined,
      generation: -1,
      automatic: true,
      resolve: () => {},
      reject: (error) => this.#host.report(error),
    };
    this.#requests.push(request);
    return request;
  }

  /** `#restore`, sent now on the current connection (the server lost the membership meanwhile). */
  #enterAgain(): void {
    const request = this.#restore();
    if (request) this.#send(request);
  }

  #onAck(ref: Ref | undefined): boolean {
    const request = ref === undefined ? undefined : this.#byRef.get(ref);
    if (!request) return false;
    this.#remove(request);
    this.#refusals = 0;
    this.#confirmed = request.action === 'leave' ? undefined : { data: request.data };
    request.resolve();
    return true;
  }

  #onError(ref: Ref | undefined, error: MooringError): boolean {
    const request = ref === undefined ? undefined : this.#byRef.get(ref);
    if (!request) return false;
    if (request.automatic && error.retryable) {
      // The membership's restore refused for a moment (the presence store down: a Redis restart):
      // made again after a backoff, as the attach is — not left out of the set until a reconnect.
      this.#byRef.delete(ref!);
      request.ref = undefined;
      request.generation = -1;
      this.#refusals++;
      this.#retry.set(this.#host.retryIn(this.#refusals), () => {
        if (this.#requests.includes(request) && this.#host.connection.state === 'connected')
          this.#send(request);
      });
      return true;
    }
    this.#remove(request);
    request.reject(error);
    return true;
  }

  #onFrame(frame: PresenceFrame): void {
    if (frame.action === 'sync') {
      const events = this.#members.sync(frame.members);
      this.#synced = true;
      const me = this.#host.connection.id;
      if (me !== undefined && !this.#members.has(me)) this.#enterAgain();
      for (const event of events) this.#emit(event);
      const members = this.#members.list();
      for (const waiter of this.#syncWaiters.splice(0)) waiter.resolve(members);
      return;
    }
    const event = this.#members.apply(frame.action, frame.member);
    if (event) this.#emit(event);
    // This client's own membership left without its asking (the server lost it: its node died
    // while the connection moved, a presence store that lost it): the client keeps it, so it
    // enters again, as when a snapshot lacks it.
    const me = this.#host.connection.id;
    if (frame.action === 'leave' && me !== undefined && frame.member.connectionId === me) this.#enterAgain();
  }

  #onConnectionLost(state: 'suspended' | 'closed' | 'failed', error: MooringError): void {
    // Like publishes: fail fast. A rejected request may have reached the server; repeating it is safe.
    // An automatic re-enter is simply made again on the next connection.
    this.#retry.clear();
    const requests = this.#requests.splice(0);
    this.#byRef.clear();
    for (const request of requests) if (!request.automatic) request.reject(error);
    if (state === 'suspended') {
      // Keep the stale set, so that the snapshot after the outage yields only what changed.
      this.#synced = false;
      for (const waiter of this.#syncWaiters.splice(0)) waiter.reject(error);
      return;
    }
    this.#confirmed = undefined; // the server ends a closed connection's membership; a failed one is gone
    this.#unsync(error);
  }

  /** The set can no longer be kept up to date: forget it (silently) and fail whoever waits for it. */
  #unsync(error: MooringError): void {
    this.#synced = false;
    this.#members.clear();
    for (const waiter of this.#syncWaiters.splice(0)) waiter.reject(error);
  }

  #remove(request: PresenceRequest): void {
    const i = this.#requests.indexOf(request);
    if (i >= 0) this.#requests.splice(i, 1);
    if (request.ref !== undefined) this.#byRef.delete(request.ref);
  }

  #emit(event: PresenceEvent): void {
    for (const { action, listener } of [...this.#listeners]) {
      if (action !== undefined && action !== event.action) continue;
      try {
        listener(event);
      } catch (err) {
        reportListenerError(this.#host.onListenerError, err, 'presence');
      }
    }
  }
}

function presenceFrame(
  ref: Ref,
  channel: string,
  action: PresenceAction,
  data: JsonValue | undefined,
): PresenceRequestFrame {
  const frame = { type: 'presence', ref, channel, action } as const;
  return data === undefined ? frame : { ...frame, data };
}
