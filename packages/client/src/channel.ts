/**
 * A channel as the application sees it: subscribe, publish, and a position that survives every kind
 * of interruption (PROTOCOL.md §4.2, §6.2).
 *
 * Position and exactly-once: the channel keeps the greatest `version` it delivered. Anything at or
 * below it is dropped (a catch-up overlapping live traffic, a resend), so listeners see each operation
 * once. On every new connection an attached channel attaches again:
 *
 *   position known          → { from: position }   resumed: true, or `continuityLost` (never a silent gap)
 *   attached before, no log → { start: true }      everything the new log holds
 *   first attach            → the mode asked for in channels.get(name, { rewind | start | from })
 *
 * Continuity check (PROTOCOL.md §6.3): once attached, the server sends every stored operation live,
 * and operations get consecutive sequence numbers, so each live message must carry the sequence
 * number after the position's. (Catch-up before `attached` is rolled up and skips numbers: it is not
 * checked.) A live message that skips one means something was lost on the way: the channel drops it
 * and everything after, detaches and resumes from its position — the `detached` answer marks where
 * the old attachment's frames end, so nothing after the hole is applied before the catch-up.
 *
 * Channel states: initialized → attaching → attached ⇄ (re-attaching on reconnect) …; detaching →
 * detached; suspended while the connection is; failed on a permanent attach error.
 */
import {
  type AttachedFrame,
  type AttachFrame,
  type JsonValue,
  type Message,
  type OperationInput,
  type PublishResult,
  type Ref,
  type ResumeFailure,
  sameEpoch,
  serialSeq,
} from '@mooring/protocol';
import { markRolledUp } from './apply-message.ts';
import type { ChannelHost, ChannelInternals } from './channel-host.ts';
import type { Listener } from './emitter.ts';
import { Emitter, reportListenerError } from './emitter.ts';
import type { MooringError } from './errors.ts';
import type { OperationOptions, UpdateFields } from './operations.ts';
import { appendOp, createOp, deleteOp, updateOp } from './operations.ts';
import type { PresenceInternals } from './presence.ts';
import { Presence } from './presence.ts';
import type { HistoryOptions, HistoryPage, PublishOptions } from './rest.ts';
import { TimerSlot } from './timers.ts';

export type ChannelState =
  | 'initialized'
  | 'attaching'
  | 'attached'
  | 'detaching'
  | 'detached'
  | 'suspended'
  | 'failed';

export interface ChannelOptions {
  /** Resume after this serial (a position saved earlier). */
  from?: string;
  /** Deliver the last N messages (rolled up) before live ones. 1–1000. */
  rewind?: number;
  /** Deliver every retained message (rolled up) before live ones. */
  start?: boolean;
  /**
   * `false`: the server leaves out of the live stream the operations this client published itself
   * (PROTOCOL.md §6.2 "Echo"): a publisher that knows what it wrote saves receiving it back. The
   * position still moves past them. Default `true`. Set before the first attach.
   */
  echo?: boolean;
}

export interface AttachResult {
  /** True when the attach resumed from the channel's position without a gap. */
  resumed: boolean;
  /** Why an attach from a position did not resume. */
  reason?: ResumeFailure;
  /** The channel's position once attached. */
  position: string;
}

export interface ContinuityLost {
  reason: ResumeFailure;
  /** The position the client tried to resume from. */
  previousPosition: string;
  /** The new position (the log's head; '' when the channel has no log). Reload state up to here. */
  position: string;
  /**
   * `epoch_changed` when the log went on in a new epoch (a Redis restart, a power loss): the
   * messages up to `previousPosition` are still there up to this serial of the new epoch (same
   * sequences), and what changed after it was delivered before this event. Undefined otherwise.
   */
  kept?: string;
}

export interface ChannelStateChange {
  previous: ChannelState;
  current: ChannelState;
  reason: MooringError | undefined;
}

export type ChannelEvents = {
  statechange: ChannelStateChange;
  attached: AttachResult;
  continuityLost: ContinuityLost;
  error: MooringError;
};

type Mode = { from: string } | { rewind: number } | { start: true } | Record<string, never>;

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: MooringError): void;
}

export class Channel {
  readonly name: string;
  /** This channel's presence set (ARCHITECTURE.md §8, PROTOCOL.md §6.4): enter, leave, members, events. */
  readonly presence: Presence;
  readonly #presence: PresenceInternals;
  readonly #host: ChannelHost;
  readonly #emitter: Emitter<ChannelEvents>;
  readonly #subscriptions = new Set<{ name: string | undefined; listener: Listener<Message> }>();
  #state: ChannelState = 'initialized';
  #position = '';
  #wanted = false;
  #everAttached = false;
  #initialMode: Mode;
  #echo = true;
  #attachRef: Ref | undefined;
  /** The position the attach in flight resumes from; undefined when it does not resume. */
  #fromSent: string | undefined;
  /** An attach sent with the connection request that is not the channel's (`#onPreattached`). */
  #staleRef: Ref | undefined;
  #attachWaiters: Waiter<AttachResult>[] = [];
  #detachRef: Ref | undefined;
  #detachWaiters: Waiter<void>[] = [];
  #lastAttach: AttachResult | undefined;
  /** Set while repairing a hole in the live stream: messages are dropped until this detach is answered. */
  #repairRef: Ref | undefined;
  /** Holes found in the live stream and repaired by resuming (diagnostics). */
  #gapsRepaired = 0;
  /** A live read-back is under way: its last `rolledUp` frame has not come yet (see `readingBack`). */
  #readingBack = false;
  /**
   * An attach refused for a moment (`retryable`: the store down, e.g. a Redis restart) is sent again
   * after a backoff, the channel still `attaching`; the refusals in a row so far.
   */
  readonly #retry: TimerSlot;
  #refusals = 0;
  /**
   * The attach in flight re-attaches with `start` a channel whose position is '' (attached before,
   * nothing delivered). Without `history`, the server refuses such a `start` (`forbidden`) once the
   * channel holds a message older than `connectionStateTtl` (PROTOCOL.md §6.2 "Reading back without
   * history"): the case a position gets `history_required` for.
   */
  #startingOver = false;
  /**
   * That `start` was refused: the channel attaches live instead, and the attach that lands reports
   * continuity lost (`history_required`, from '') — until then, also across reconnects.
   */
  #historyRequired = false;

  constructor(
    name: string,
    host: ChannelHost,
    options: ChannelOptions,
    register: (i: ChannelInternals) => void,
  ) {
    this.name = name;
    this.#host = host;
    this.#emitter = new Emitter(host.onListenerError);
    this.#retry = new TimerSlot(host.timers);
    let presence: PresenceInternals | undefined;
    this.presence = new Presence(
      name,
      {
        connection: host.connection,
        refusal: () => host.refusal(),
        ensureConnecting: () => host.ensureConnecting(),
        attach: () => this.attach(),
        report: (error) => this.#emitter.emit('error', error),
        timers: host.timers,
        retryIn: (attempt) => host.retryIn(attempt),
        onListenerError: host.onListenerError,
      },
      (i) => {
        presence = i;
      },
    );
    if (!presence) throw new Error('unreachable: presence registers its internals when constructed');
    this.#presence = presence;
    this.#initialMode = {};
    this.configure(options);
    register({
      preattach: () => (this.#wanted ? this.#attachFrame() : undefined),
      onConnected: () => {
        // A repair's detach sent on the previous connection is never answered on this one: waiting
        // for it would drop every message from now on. The attach below resumes from the position.
        this.#repairRef = undefined;
        // Likewise a detach: the connection that held the attachment is gone, so it is detached.
        if (this.#detachRef !== undefined) this.#onDetached(this.#detachRef, undefined);
        this.#retry.clear(); // attached again below
        const preattached = host.connection.preattached(this.name);
        if (preattached) this.#onPreattached(preattached);
        else if (this.#wanted) this.#sendAttach();
        this.#presence.onConnected(host.connection.details?.resumed === true);
      },
      onConnectionLost: (state, error) => this.#onConnectionLost(state, error),
      onAttached: (frame) => this.#onAttached(frame),
      onMessages: (messages, after, rolledUp, more) =>
        this.#onMessages(messages, after, rolledUp === true, more === true),
      onDetached: (ref, error) => this.#onDetached(ref, error),
      pendingDetach: () => this.#detachRef,
      onPresence: (frame) => {
        if (this.#wanted) this.#presence.onFrame(frame);
      },
      onAck: (ref) => this.#presence.onAck(ref),
      onError: (ref, error) => this.#presence.onError(ref, error) || this.#onError(ref, error),
      restore: (position) => {
        this.#position = position;
        if (position === '') this.#everAttached = true;
      },
      recoveryPosition: () => (this.#position !== '' || this.#everAttached ? this.#position : undefined),
    });
  }

  get state(): ChannelState {
    return this.#state;
  }

  /** The greatest `version` delivered on this channel ('' before anything). Save it to resume later. */
  get position(): string {
    return this.#position;
  }

  /** The identity this channel's client publishes as (the `clientId` the server stamped, once connected). */
  get clientId(): string | undefined {
    return this.#host.connection.details?.clientId;
  }

  /** False when the server leaves this client's own operations out of the live stream. */
  get echo(): boolean {
    return this.#echo;
  }

  /** How many times a hole in the live stream was found and repaired by resuming from the position. */
  get gapsRepaired(): number {
    return this.#gapsRepaired;
  }

  /**
   * True from a live `rolledUp` frame marked `more` until the read-back's last frame (PROTOCOL.md
   * §4.3): a node's read-back of what its bus lost, in pages in the order of each message's last
   * change, so the messages delivered so far need not be a prefix of the log. False again once
   * the channel leaves `attached` (a resume brings a catch-up instead).
   */
  get readingBack(): boolean {
    return this.#readingBack;
  }

  /**
   * Hands an exception an application listener threw to the client's `onListenerError`, or
   * re-throws it asynchronously when there is none — what the client does with its own listeners'.
   * For libraries built on a channel (`@mooring/ai`), so that their events' listeners are treated
   * the same.
   */
  reportListenerError(error: unknown, event: string): void {
    reportListenerError(this.#host.onListenerError, error, event);
  }

  on<K extends keyof ChannelEvents>(event: K, listener: Listener<ChannelEvents[K]>): () => void {
    return this.#emitter.on(event, listener);
  }

  off<K extends keyof ChannelEvents>(event: K, listener: Listener<ChannelEvents[K]>): void {
    this.#emitter.off(event, listener);
  }

  /** Sets the mode of the first attach. Ignored once the channel has been attached. */
  configure(options: ChannelOptions): void {
    if (this.#everAttached) return;
    if (options.from !== undefined) this.#position = options.from;
    if (options.echo !== undefined) this.#echo = options.echo;
    if (options.rewind !== undefined) this.#initialMode = { rewind: options.rewind };
    else if (options.start) this.#initialMode = { start: true };
  }

  /**
   * Makes the next attach replay the channel from the start of its retained log, forgetting the
   * position (one restored from a recovery key, or kept by `detach`): for an application that lost
   * the state that position stood for, such as a reloaded page rebuilding a conversation, which then
   * gets it in the attach's own catch-up, rolled up, instead of reading history first. Only while
   * nothing wants the channel attached (before `attach`/`subscribe`, or after `detach`); returns
   * false and changes nothing otherwise.
   */
  replayFromStart(): boolean {
    if (this.#state !== 'initialized' && this.#state !== 'detached') return false; // wanted
    this.#position = '';
    this.#everAttached = false;
    this.#historyRequired = false;
    this.#initialMode = { start: true };
    return true;
  }

  /**
   * Receives every message (or only those named `name`), live and caught up, each exactly once.
   * Attaches on the first subscription; the promise resolves once attached (ignoring it is safe).
   */
  subscribe(listener: Listener<Message>): Promise<AttachResult>;
  subscribe(name: string, listener: Listener<Message>): Promise<AttachResult>;
  subscribe(a: string | Listener<Message>, b?: Listener<Message>): Promise<AttachResult> {
    const name = typeof a === 'string' ? a : undefined;
    const listener = typeof a === 'string' ? b : a;
    if (!listener) throw new TypeError('subscribe needs a listener function');
    this.#subscriptions.add({ name, listener });
    const attached = this.attach();
    attached.catch(() => {}); // reported through the returned promise and the channel's state
    return attached;
  }

  /** Removes a listener (from one name, or everywhere), or every listener when called without one. */
  unsubscribe(listener?: Listener<Message>): void;
  unsubscribe(name: string, listener?: Listener<Message>): void;
  unsubscribe(a?: string | Listener<Message>, b?: Listener<Message>): void {
    const name = typeof a === 'string' ? a : undefined;
    const listener = typeof a === 'string' ? b : a;
    for (const sub of [...this.#subscriptions]) {
      if (name !== undefined && sub.name !== name) continue;
      if (listener !== undefined && sub.listener !== listener) continue;
      this.#subscriptions.delete(sub);
    }
  }

  /** Attaches (connecting if needed). Rejects when the connection is suspended, failed or closed. */
  attach(): Promise<AttachResult> {
    const refused = this.#host.refusal();
    if (refused) return Promise.reject(refused);
    if (this.#wanted && this.#state === 'attached' && this.#lastAttach)
      return Promise.resolve(this.#lastAttach);
    const promise = new Promise<AttachResult>((resolve, reject) =>
      this.#attachWaiters.push({ resolve, reject }),
    );
    const inFlight = this.#wanted && this.#state === 'attaching' && this.#attachRef !== undefined;
    this.#wanted = true;
    if (!inFlight) {
      if (this.#host.connection.state === 'connected') this.#sendAttach();
      else {
        this.#setState('attaching');
        this.#host.ensureConnecting();
      }
    }
    return promise;
  }

  /** Stops receiving and stops re-attaching. The position is kept (attach again to resume). */
  detach(): Promise<void> {
    this.#wanted = false;
    this.#attachRef = undefined;
    this.#retry.clear();
    const stopped =
      this.#host.refusal() ??
      this.#host.error('channel_detached', `detach() was called on ${this.name} before the attach completed`);
    this.#rejectAttach(stopped);
    this.#presence.onDetached(stopped);
    if (this.#state === 'initialized' || this.#state === 'detached' || this.#state === 'failed') {
      return Promise.resolve();
    }
    const ref = this.#host.connection.nextRef();
    if (!this.#host.connection.send({ type: 'detach', ref, channel: this.name })) {
      this.#setState('detached');
      return Promise.resolve();
    }
    this.#detachRef = ref;
    this.#setState('detaching');
    return new Promise((resolve, reject) => this.#detachWaiters.push({ resolve, reject }));
  }

  /** Creates a message; resolves with its serial once stored. */
  publish(name: string, data?: JsonValue, options: OperationOptions = {}): Promise<string> {
    return this.#one(createOp(options.id ?? this.#host.nextId(), name, data, options.headers));
  }

  /** Appends a string delta to message `serial` (and replaces its headers if given). */
  append(serial: string, delta: string, options: OperationOptions = {}): Promise<string> {
    return this.#one(appendOp(options.id ?? this.#host.nextId(), serial, delta, options.headers));
  }

  /** Replaces the fields given of message `serial`. */
  update(serial: string, fields: UpdateFields, options: { id?: string } = {}): Promise<string> {
    return this.#one(updateOp(options.id ?? this.#host.nextId(), serial, fields));
  }

  /** Turns message `serial` into a tombstone. */
  delete(serial: string, options: { id?: string } = {}): Promise<string> {
    return this.#one(deleteOp(options.id ?? this.#host.nextId(), serial));
  }

  /** Publishes several operations atomically (all stored, or none). Ids are added where missing. */
  publishBatch(ops: OperationInput[]): Promise<string[]> {
    return this.publishResults(ops).then((results) => results.map((r) => r.serial));
  }

  /**
   * Like `publishBatch`, resolving with the server's result per operation: its serial and, for an
   * id the channel had already stored (a retry), `duplicate: true` (PROTOCOL.md §7). `after`: store
   * them only if this publisher's operation with that id is stored (else `out_of_order`, nothing
   * stored) — for a publish sent before the previous one's ack.
   */
  publishResults(ops: OperationInput[], options: PublishOptions = {}): Promise<PublishResult[]> {
    const list = ops.map((op) => (op.id ? op : { ...op, id: this.#host.nextId() }));
    return this.#host.publish(this.name, list, options.after);
  }

  /** Rolled-up history over REST (PROTOCOL.md §11). */
  history(options?: HistoryOptions): Promise<HistoryPage> {
    return this.#host.rest.history(this.name, options);
  }

  #one(op: OperationInput): Promise<string> {
    return this.#host.publish(this.name, [op]).then((results) => {
      const first = results[0];
      if (!first) throw this.#host.error('protocol_error', 'the server acknowledged without a result');
      return first.serial;
    });
  }

  #mode(): Mode {
    if (this.#position !== '') return { from: this.#position };
    if (this.#everAttached) return this.#historyRequired ? {} : { start: true };
    return this.#initialMode;
  }

  #sendAttach(): void {
    const frame = this.#attachFrame();
    this.#attaching(frame);
    this.#host.connection.send(frame);
  }

  /** The attach this channel asks for now: from its position, else its mode; a fresh ref. */
  #attachFrame(): AttachFrame {
    return {
      type: 'attach',
      ref: this.#host.connection.nextRef(),
      channel: this.name,
      ...this.#mode(),
      ...(this.#echo ? {} : { echo: false as const }),
    };
  }

  /** `frame` is the channel's attach in flight: its answer is awaited. */
  #attaching(frame: AttachFrame): void {
    this.#attachRef = frame.ref;
    this.#fromSent = frame.from;
    this.#startingOver = frame.start === true && this.#everAttached && this.#position === '';
    this.#presence.onAttaching();
    this.#setState('attaching');
  }

  /**
   * The server is handling the attach the connection request carried for this channel. It is the
   * channel's attach when it still asks for what the channel wants (nothing can move the position
   * while disconnected; `configure` or `detach` may have changed the rest since). Otherwise it is
   * undone as a hole is repaired: a detach, what arrives until it is answered dropped, then (for a
   * channel still wanted) the attach the channel wants now.
   */
  #onPreattached(sent: AttachFrame): void {
    const now = this.#wanted ? this.#attachFrame() : undefined;
    if (
      now &&
      now.from === sent.from &&
      now.rewind === sent.rewind &&
      now.start === sent.start &&
      now.echo === sent.echo
    ) {
      this.#attaching(sent);
      return;
    }
    this.#staleRef = sent.ref; // its answer (attached, or attach_superseded) is no one's
    const ref = this.#host.connection.nextRef();
    if (!this.#host.connection.send({ type: 'detach', ref, channel: this.name })) return;
    this.#repairRef = ref;
    if (!now) return;
    this.#attaching(now);
    this.#host.connection.send(now);
  }

  #onAttached(frame: AttachedFrame): void {
    if (!this.#wanted || (frame.ref !== undefined && frame.ref !== this.#attachRef)) return;
    this.#refusals = 0;
    // a live attach standing in for a refused `start` from '' resumed nothing either
    const triedFrom = this.#historyRequired ? '' : this.#fromSent;
    let result: AttachResult;
    if (triedFrom !== undefined && !frame.resumed) {
      const reason = this.#historyRequired ? 'history_required' : (frame.reason ?? 'epoch_changed');
      this.#historyRequired = false;
      this.#position = frame.position;
      result = { resumed: false, reason, position: frame.position };
      // the position resumed from (a catch-up after `kept` has moved the channel's own since)
      const lost: ContinuityLost = { reason, previousPosition: triedFrom, position: frame.position };
      if (frame.kept !== undefined) lost.kept = frame.kept;
      this.#emitter.emit('continuityLost', lost);
    } else {
      if (frame.position > this.#position) this.#position = frame.position;
      result = { resumed: frame.resumed, position: this.#position };
    }
    this.#everAttached = true;
    this.#attachRef = undefined;
    this.#lastAttach = result;
    this.#setState('attached');
    for (const waiter of this.#attachWaiters.splice(0)) waiter.resolve(result);
    this.#emitter.emit('attached', result);
  }

  #onMessages(messages: Message[], after: string | undefined, rolledUp = false, more = false): void {
    if (!this.#wanted || this.#repairRef !== undefined) return;
    const live = this.#state === 'attached';
    // Rolled up from `after` (a node read back what its bus missed): complete from there, so its
    // skipping versions are no hole — for a client at `after` or past it; one behind it has a hole.
    const whole =
      rolledUp && after !== undefined && (this.#position === '' || wholeFrom(after, this.#position));
    // A read-back page that is not its last (`more`), or its last: a hole found below ends it anyway
    // (the resume leaves `attached`).
    if (live && whole) this.#readingBack = more;
    // The server left this client's own operations out up to `after` (echo: false): the position
    // moves past them, and the continuity check goes on from there.
    if (after !== undefined && live && !this.#echo && !rolledUp && after > this.#position)
      this.#position = after;
    // Rolled up (PROTOCOL.md §4.1: whole messages, not operations), so that `applyMessage` replaces a
    // held copy with them: a `rolledUp` frame, and a catch-up — what comes before `attached`, once
    // the frames of an attachment being detached (live ones) have ended with its `detached`.
    if (rolledUp || (!live && this.#detachRef === undefined)) markRolledUp(messages);
    for (const message of messages) {
      if (this.#position !== '' && message.version <= this.#position) continue;
      if (
        live &&
        this.#position !== '' &&
        (newLog(message.version, this.#position) || (!whole && !follows(message.version, this.#position)))
      ) {
        this.#repair();
        return;
      }
      // A catch-up of another log than the position's (epoch_changed: the `attached` that ends it
      // raises continuity lost and gives the position). Until then the position stays where the
      // resume was asked from: a connection lost before `attached` resumes from there again and is
      // told again, instead of resuming in the new log as if nothing had changed.
      if (live || this.#position === '' || !newLog(message.version, this.#position))
        this.#position = message.version;
      for (const sub of [...this.#subscriptions]) {
        if (sub.name !== undefined && sub.name !== message.name) continue;
        try {
          sub.listener(message);
        } catch (err) {
          reportListenerError(this.#host.onListenerError, err, 'message');
        }
      }
    }
  }

  /** A hole in the live stream: detach, then resume from the position (see the module header). */
  #repair(): void {
    this.#gapsRepaired++;
    const ref = this.#host.connection.nextRef();
    if (!this.#host.connection.send({ type: 'detach', ref, channel: this.name })) return;
    this.#repairRef = ref;
    this.#sendAttach();
  }

  #onDetached(ref: Ref | undefined, error: MooringError | undefined): void {
    if (ref !== undefined && ref === this.#repairRef) {
      this.#repairRef = undefined;
      return;
    }
    if (ref !== undefined && ref === this.#detachRef) {
      this.#detachRef = undefined;
      if (!this.#wanted) this.#setState('detached');
      for (const waiter of this.#detachWaiters.splice(0)) waiter.resolve();
      return;
    }
    // Detached by the server on its own.
    this.#wanted = false;
    this.#attachRef = undefined;
    this.#presence.onDetached(
      error ?? this.#host.error('channel_detached', `the server detached ${this.name}`),
    );
    this.#setState(error ? 'failed' : 'detached', error);
    if (error) {
      this.#rejectAttach(error);
      this.#emitter.emit('error', error);
    }
  }

  #onError(ref: Ref | undefined, error: MooringError): boolean {
    if (ref !== undefined && ref === this.#staleRef) return true; // e.g. attach_superseded
    if (ref !== undefined && ref === this.#repairRef) {
      this.#repairRef = undefined; // not attached any more: the attach that follows resumes anyway
      return true;
    }
    if (ref !== undefined && ref === this.#attachRef) {
      this.#attachRef = undefined;
      if (error.retryable && this.#wanted) {
        // refused for a moment (the store down: a Redis restart; the server stopping): still wanted,
        // sent again after a backoff — a channel left `failed` would freeze its view for good
        this.#refusals++;
        this.#retry.set(this.#host.retryIn(this.#refusals), () => {
          if (this.#wanted && this.#attachRef === undefined && this.#host.connection.state === 'connected')
            this.#sendAttach();
        });
        return true;
      }
      if (error.code === 'forbidden' && this.#startingOver && this.#wanted && !this.#historyRequired) {
        // reading back from '' needs `history` now: go on live, the gap reported as for a position
        this.#historyRequired = true;
        this.#sendAttach();
        return true;
      }
      // a re-attach (after a reconnect) has no caller waiting: the app hears of it here
      const unheard = this.#attachWaiters.length === 0;
      this.#wanted = false;
      this.#setState('failed', error);
      this.#rejectAttach(error);
      this.#presence.onDetached(error);
      if (unheard) this.#emitter.emit('error', error);
      return true;
    }
    if (ref !== undefined && ref === this.#detachRef) {
      this.#detachRef = undefined;
      this.#setState('detached');
      for (const waiter of this.#detachWaiters.splice(0)) waiter.resolve(); // e.g. not_attached: detached anyway
      return true;
    }
    if (ref !== undefined) return false;
    this.#emitter.emit('error', error);
    return true;
  }

  #onConnectionLost(state: 'suspended' | 'closed' | 'failed', error: MooringError): void {
    this.#attachRef = undefined;
    this.#retry.clear();
    this.#repairRef = undefined;
    this.#rejectAttach(error);
    this.#presence.onConnectionLost(state, error);
    for (const waiter of this.#detachWaiters.splice(0)) waiter.resolve();
    // Suspended or failed, a wanted channel stays wanted: it shows the connection's state and
    // attaches again from its position once `connect()` brings the connection back (after `failed`,
    // once the app fixed the cause) — the app's subscriptions hold, nothing has to subscribe again.
    // Only `close()` means detach.
    if (state !== 'closed') {
      if (this.#wanted) this.#setState(state, error);
      else if (this.#state === 'detaching') this.#setState('detached');
      return;
    }
    this.#wanted = false;
    if (this.#state !== 'initialized') this.#setState('detached', error);
  }

  #rejectAttach(error: MooringError): void {
    for (const waiter of this.#attachWaiters.splice(0)) waiter.reject(error);
  }

  #setState(state: ChannelState, reason?: MooringError): void {
    if (state === this.#state) return;
    const previous = this.#state;
    this.#state = state;
    if (state !== 'attached') this.#readingBack = false;
    this.#emitter.emit('statechange', { previous, current: state, reason });
  }
}

/** True when a frame rolled up from `after` covers everything after `position` (same epoch, not ahead of it). */
function wholeFrom(after: string, position: string): boolean {
  return after === '' || (sameEpoch(after, position) && serialSeq(after) <= serialSeq(position));
}

/**
 * True when `version` belongs to another log than `position` (another epoch: the log was lost and
 * made again, or its Redis came back with less). Even a frame rolled up from the log's start is then
 * no continuation: the channel resumes, and the server's `epoch_changed` raises `continuityLost`.
 */
function newLog(version: string, position: string): boolean {
  return serialSeq(version) >= 0 && serialSeq(position) >= 0 && !sameEpoch(version, position);
}

/** True when `version` is the operation right after `position`: same epoch, next sequence number. */
function follows(version: string, position: string): boolean {
  const next = serialSeq(version);
  const prev = serialSeq(position);
  if (next < 0 || prev < 0) return true; // not ours to judge: the version rule alone applies
  return sameEpoch(version, position) && next === prev + 1;
}
