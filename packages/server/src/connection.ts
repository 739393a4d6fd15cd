/**
 * One client connection, independent of its transport (PROTOCOL.md §5–8).
 *
 * Transports (WebSocket, HTTP streaming, long-polling) are thin adapters: they hand inbound text to
 * `receive()` (or parsed upstream frames to `receiveValue()`), pace their reading by `inbound`,
 * and implement `TransportSink` for outbound frames. Everything else —
 * frame validation, publishing, acks, the send-buffer bound, slow consumers — is here, so every
 * transport behaves the same. Attaching (catch-up and the hand-over to live) is ChannelAttachment's
 * (channel-attachment.ts); this file checks the capability, sends `attached` and joins presence.
 *
 * Bounded memory per connection: at most `maxSendBuffer` bytes queued in the transport, and at most
 * as many bytes of live deliveries held while channels catch up; beyond either, and for a transport
 * whose queue stops draining for two heartbeat rounds, the connection ends as a slow consumer.
 */
import {
  type AckFrame,
  type AttachFrame,
  type AuthFrame,
  type ClientFrame,
  type ErrorInfo,
  errorInfo,
  type Limits,
  type PresenceMember,
  type PresenceRequestFrame,
  type PublishFrame,
  type Ref,
  type ServerFrame,
  type TransportKind,
} from '@mooring/protocol';
import { clientFrameSchema } from '@mooring/protocol/schemas';
import type { Logger } from 'pino';
import { requireAccess } from './capabilities.ts';
import { type AttachOutlet, CATCHUP_QUEUE_BYTES, type ChannelAttachment } from './channel-attachment.ts';
import {
  type ChannelService,
  mayTakeLeases,
  type PublishIdentity,
  publisherScope,
} from './channel-service.ts';
import type { Identity } from './connection-registry.ts';
import { DrainWaiters } from './drain-waiters.ts';
import { holderKey, type IdentityBudgets, type RateBudgets } from './identity-budgets.ts';
import type { InboundBudget, Pace } from './inbound-budget.ts';
import { exceedsDepth } from './json-depth.ts';
import { encodeSync, type Presence } from './presence.ts';
import { PublishOrder } from './publish-order.ts';
import { isExpectedError, issueText, ServerError, toErrorInfo } from './server-error.ts';
import { simplePublishFrame } from './simple-publish-frame.ts';
import { TokenBucket } from './token-bucket.ts';

/** How a connection reaches its client: a realtime transport, or `local` (in-process, local-transport.ts). */
export type ConnectionKind = TransportKind | 'local';

export interface TransportSink {
  readonly kind: ConnectionKind;
  /**
   * True when the peer answers every heartbeat round (WebSocket pongs, an SSE client's upstream
   * `ping`), so silence means it is gone. Long-polling watches its peer itself (a poll that does not
   * come back); the in-process transport has no network to lose.
   */
  readonly answersHeartbeats: boolean;
  send(frame: Buffer): void;
  /**
   * Like `send`, but the frame may wait until the end of the current event-loop turn to share one
   * write with the turn's other frames (acks, heartbeats, replies, presence events; never deliveries,
   * which go out at once). Order with `send` is kept. Transports without it send at once.
   */
  sendSoon?(frame: Buffer): void;
  /**
   * An in-process peer's acks as objects, not bytes: the transport hands the client a copy (the
   * frame holds nothing the server keeps), in order with what `send` delivers.
   */
  sendAck?(frame: AckFrame): void;
  /** Bytes accepted by send() but not yet written to the network. */
  bufferedAmount(): number;
  /**
   * Calls `drained` once, when the bytes queued (`bufferedAmount`) have been written out or may
   * have fallen: the socket's `'drain'`, a poll taking the queue. Asked once per round for all the
   * catch-ups of a connection waiting for room (`Connection.#drained`); a transport that cannot tell
   * when its queue empties calls it a little later, and the waiters look again.
   */
  whenDrained(drained: () => void): void;
  /**
   * Bytes a catch-up may leave queued here before it waits (`CATCHUP_QUEUE_BYTES` when absent; never
   * past half of `maxSendBuffer`): long-polling's queue is what each poll carries away.
   */
  readonly catchUpQueue?: number;
  /** Ends the transport with a close code (WebSocket) and reason, waiting briefly for the peer. */
  close(code: number, reason: string): void;
  /** Drops the transport at once: for peers that are not reading (slow, dead). */
  terminate(): void;
  /** A transport-level keepalive (WebSocket ping frame), when the transport has one. */
  ping?(): void;
  /**
   * The connection request's attaches (PROTOCOL.md §5.1) are answered once `answered` settles: a
   * transport whose first answer carries `connected` (long-polling) may hold that answer until
   * then, so the catch-up comes with it, bounded by `maxBytes` queued and a short time.
   */
  holdFirstAnswer?(answered: Promise<unknown>, maxBytes: number): void;
  /**
   * HTTP transports: the id the client gave this transport when opening it (`transport=`), which
   * its polls and POSTs repeat. A late request from an earlier transport of the same (recovered)
   * connection names another id and is refused, so it can never take frames meant for this one.
   */
  readonly transportId?: string | undefined;
}

function noop(): void {}

/** Where every connection's catch-up turns begin (one settled promise, not one per connection). */
const NO_TURN: Promise<void> = Promise.resolve();

/** What a catch-up leaves queued on `transport` at most before it waits (`TransportSink.catchUpQueue`). */
export function catchUpQueueOf(transport: TransportSink, maxSendBuffer: number): number {
  return Math.min(transport.catchUpQueue ?? CATCHUP_QUEUE_BYTES, maxSendBuffer / 2);
}

export interface ConnectionOptions {
  id: string;
  key: string;
  identity: Identity;
  transport: TransportSink;
  channels: ChannelService;
  presence: Presence;
  limits: Limits;
  /** Publish budgets per identity, shared with REST and the identity's other connections. */
  budgets: RateBudgets;
  /** Presence data bytes per holder on this node, decided at once (`presenceRules`). */
  presenceBytes?: IdentityBudgets;
  /**
   * Where a token renewal is counted before its signature is verified: the identity's
   * connection-request budget (`connectRules`). None: not counted.
   */
  renewals?: RateBudgets;
  logger: Logger;
  /** Verifies a renewed token (an `auth` frame) into an identity. */
  verifyToken: (token: string) => Promise<Identity>;
  /** Send `messages` frames in the compact form (the request asked for it, PROTOCOL.md §6.5). */
  compact?: boolean;
  /** Inbound bytes per token identity on this node, read before parsing (`maxInboundBytesRate`). */
  inbound?: InboundBudget;
}

export class Connection {
  readonly id: string;
  readonly key: string;
  #identity: Identity;
  /** `#identity` with this connection's id, as every publish passes it: made once per identity. */
  #publisher: PublishIdentity | undefined;
  /** A token holder's share of the node's inbound bytes (see `inbound`); moved by a renewal. */
  #inbound: { budget: InboundBudget; key: string } | undefined;
  /** Its publishes are stored in the order they were sent, whatever its identity is renewed to. */
  readonly #order = new PublishOrder();
  #expiry: NodeJS.Timeout | undefined;
  readonly #verifyToken: (token: string) => Promise<Identity>;
  readonly #budgets: RateBudgets;
  readonly #presenceBytes: IdentityBudgets | undefined;
  readonly #renewals: RateBudgets | undefined;
  /** Frames other than publishes (ping, attach, presence, …): `maxFrameRate` per second. */
  readonly #frameBudget: TokenBucket;
  /**
   * Refusals the connection may collect (a burst, refilled at the same rate); past them it is
   * dropped. Created full at the first refusal, as the presence budget is at the first presence
   * frame: the same as full since the connect, and most connections never need them.
   */
  #refusalBudget: TokenBucket | undefined;
  /** Presence frames: `maxPresenceRate` per second, a burst of entering every allowed channel once (or a second's worth). */
  #presenceBudget: TokenBucket | undefined;
  readonly transport: TransportSink;
  readonly #channels: ChannelService;
  readonly #presence: Presence;
  readonly #limits: Limits;
  readonly #log: Logger;
  readonly #attachments = new Map<string, ChannelAttachment>();
  /** Bytes of live deliveries held by attachments still catching up; bounded by `maxSendBuffer`. */
  #heldBytes = 0;
  /** Bytes handed to the transport so far, and how many of them it had written at the last heartbeat. */
  #sentBytes = 0;
  #drainedAtHeartbeat = 0;
  #stalledRounds = 0;
  readonly #outlet: AttachOutlet = {
    compact: false,
    write: (frame, soon) => this.#write(frame, soon),
    drained: (current) => this.#drained(current),
    stopWaiting: (current) => this.#drainWaiters?.wake(current),
    hold: (delta) => {
      this.#heldBytes += delta;
      if (delta > 0 && this.#heldBytes > this.#limits.maxSendBuffer) this.#slowConsumer();
    },
    turn: (run) => {
      const turn = this.#catchUpTurns.then(run);
      this.#catchUpTurns = turn.then(noop, noop);
      return turn;
    },
    // made when a catch-up reads, not kept per connection
    reader: () => holderKey(this.#identity),
  };
  /** Catch-ups waiting for room in the transport's queue (`#drained`): made by the first to wait. */
  #drainWaiters: DrainWaiters | undefined;
  /** The catch-up pages of this connection's channels, one after another (`AttachOutlet.turn`). */
  #catchUpTurns: Promise<void> = NO_TURN;
  #closed = false;
  /** True once the client asked to close (a `close` frame): its presence ends at once. */
  closedByClient = false;
  /** Why the server ended the connection, when it did (metrics). */
  closeReason: string | undefined;
  /** Set by the transport whenever anything arrives (frames, pongs); cleared by each heartbeat round. */
  alive = true;
  /** Upstream HTTP requests whose body is still arriving: the peer lives while one does. */
  upstreamRequests = 0;
  #missedHeartbeats = 0;

  constructor(options: ConnectionOptions) {
    this.id = options.id;
    this.key = options.key;
    this.#identity = options.identity;
    this.#verifyToken = options.verifyToken;
    this.#outlet.compact = options.compact === true;
    this.#budgets = options.budgets;
    this.#presenceBytes = options.presenceBytes;
    this.#renewals = options.renewals;
    if (options.inbound && options.identity.viaToken) {
      this.#inbound = { budget: options.inbound, key: holderKey(options.identity) };
      options.inbound.hold(this.#inbound.key);
    }
    this.#frameBudget = new TokenBucket(options.limits.maxFrameRate, options.limits.maxFrameBurst);
    this.#scheduleExpiry();
    this.transport = options.transport;
    this.#channels = options.channels;
    this.#presence = options.presence;
    this.#limits = options.limits;
    this.#log = options.logger;
  }

  get identity(): Identity {
    return this.#identity;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get attachedChannels(): number {
    return this.#attachments.size;
  }

  /** Sends a reply or notice (not a delivery): it may share the turn's write (`sendSoon`). */
  send(frame: ServerFrame): void {
    if (frame.type === 'ack' && this.transport.sendAck !== undefined) {
      if (!this.#closed) this.transport.sendAck(frame);
      return;
    }
    this.#write(Buffer.from(JSON.stringify(frame)), true);
  }

  /** Handles one inbound text frame. Never throws: every problem becomes an `error` frame. */
  receive(text: string): void {
    this.alive = true;
    if (this.#closed) return;
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      this.receiveUnreadable('frame is not valid JSON');
      return;
    }
    this.receiveValue(raw);
  }

  /**
   * Its holder's inbound budget and key in it (`holderKey`), for a token identity while
   * `maxInboundBytesRate` is on (API keys are not counted): a transport paces its reading by it.
   * The key changes when a token without a clientId is renewed (the new token is the holder).
   */
  get inbound(): { readonly budget: InboundBudget; readonly key: string } | undefined {
    return this.#inbound;
  }

  /**
   * Reads a request body of this connection (an upstream POST) through `read`, at the pace of its
   * identity's inbound budget and among its `BODIES_PER_IDENTITY` bodies read at once; without a
   * pace for API keys.
   */
  readPaced<T>(read: (pace?: Pace) => Promise<T>): Promise<T> {
    return this.#inbound ? this.#inbound.budget.reading(this.#inbound.key, read) : read();
  }

  /**
   * A frame that cannot be read at all (not JSON, binary): answered `invalid_frame`, and drawn from
   * the frame budget like any frame that is not a publish, so a flood of them ends in 4028.
   */
  receiveUnreadable(why: string): void {
    this.alive = true;
    if (this.#closed) return;
    if (!this.#admitFrame(undefined, undefined)) return;
    this.#sendError(undefined, undefined, errorInfo('invalid_frame', why));
  }

  /**
   * Handles one inbound frame already parsed from JSON (HTTP upstream). Never throws. Returns a
   * promise settled once the frame is answered, when its handler runs asynchronously.
   */
  receiveValue(raw: unknown): Promise<void> | undefined {
    this.alive = true;
    if (this.#closed) return;
    if (exceedsDepth(raw, this.#limits.maxJsonDepth)) {
      if (!this.#admitFrame(refOf(raw), undefined)) return;
      this.#sendError(
        refOf(raw),
        undefined,
        errorInfo('invalid_frame', `frame is nested deeper than ${this.#limits.maxJsonDepth} levels`),
      );
      return;
    }
    // the hot publish shapes are checked by hand; everything else (and every error) by the schema
    const frame = simplePublishFrame(raw) ?? this.#parseFrame(raw);
    if (frame === undefined) return;
    // publishes have their own budget (per identity); a close is always welcome
    if (frame.type !== 'publish' && frame.type !== 'close') {
      if (
        !this.#admitFrame(
          'ref' in frame ? frame.ref : undefined,
          'channel' in frame ? frame.channel : undefined,
        )
      )
        return;
    }
    return this.#dispatch(frame).catch((err: unknown) => this.#fail(err, frame));
  }

  /** Validates `raw` with the full schema; undefined once the `invalid_frame` error is answered. */
  #parseFrame(raw: unknown): ClientFrame | undefined {
    let parsed: ReturnType<typeof clientFrameSchema.safeParse>;
    try {
      parsed = clientFrameSchema.safeParse(raw);
    } catch {
      // pathological input (e.g. JSON nested deeper than the validator's stack allows)
      if (!this.#admitFrame(refOf(raw), undefined)) return undefined;
      this.#sendError(refOf(raw), undefined, errorInfo('invalid_frame', 'frame is nested too deeply'));
      return undefined;
    }
    if (parsed.success) return parsed.data;
    const ref = refOf(raw);
    const channel = channelOf(raw);
    if (!this.#admitFrame(ref, channel)) return undefined;
    this.#sendError(
      ref,
      channel,
      errorInfo(
        issueCode(raw, parsed.error.issues[0]?.path),
        issueText(parsed.error.issues, 'invalid frame'),
      ),
    );
    return undefined;
  }

  /**
   * The per-connection budget of frames other than publishes, so that a flood of pings (or bad
   * frames) from one connection cannot take the event loop from everyone else. A refused frame gets
   * `rate_limited`; a connection that keeps sending at more than twice the rate collects refusals
   * faster than they are forgiven and, past a whole burst of them, is dropped (close 4028) rather
   * than answered forever.
   */
  #admitFrame(ref: Ref | undefined, channel: string | undefined): boolean {
    if (this.#frameBudget.take()) return true;
    this.#refusalBudget ??= new TokenBucket(this.#limits.maxFrameRate, this.#limits.maxFrameBurst);
    if (!this.#refusalBudget.take()) {
      this.#channels.metrics.errors.inc({ code: 'rate_limited' });
      this.disconnect(
        'rate_limited',
        4028,
        true,
        errorInfo('rate_limited', 'too many frames: the connection kept sending past its frame budget'),
      );
      return false;
    }
    this.#sendError(
      ref,
      channel,
      errorInfo(
        'rate_limited',
        `more than ${this.#limits.maxFrameRate} frames per second besides publishes; slow down and retry`,
      ),
    );
    return false;
  }

  /**
   * One heartbeat round (PROTOCOL.md §5.3): a `heartbeat` frame and a transport ping; a connection
   * that sent nothing back for two rounds is dropped so its resources are freed.
   */
  heartbeat(): void {
    if (this.#closed) return;
    this.#missedHeartbeats = this.alive || this.upstreamRequests > 0 ? 0 : this.#missedHeartbeats + 1;
    this.alive = false;
    // A peer that stopped reading cannot read the heartbeats it would answer either: the stall,
    // checked first, names the cause (slow_consumer) where the silence would only say it is gone.
    if (this.#stalled()) {
      this.#slowConsumer();
      return;
    }
    if (this.transport.answersHeartbeats && this.#missedHeartbeats >= 2) {
      this.closeReason = 'heartbeat_timeout';
      this.transport.terminate();
      this.dispose();
      return;
    }
    this.send({ type: 'heartbeat', serverTime: Date.now() });
    this.transport.ping?.();
  }

  /**
   * True when the transport has had bytes queued and written none of them for two heartbeat rounds:
   * a peer that stopped reading (an SSE client whose socket is paused, a catch-up waiting for room
   * that never comes). Bytes written = bytes handed over - bytes still queued.
   */
  #stalled(): boolean {
    const queued = this.transport.bufferedAmount();
    const drained = this.#sentBytes - queued;
    const progressed = drained > this.#drainedAtHeartbeat;
    this.#drainedAtHeartbeat = Math.max(this.#drainedAtHeartbeat, drained);
    this.#stalledRounds = queued > 0 && !progressed ? this.#stalledRounds + 1 : 0;
    return this.#stalledRounds >= 2;
  }

  /**
   * Sends `disconnect` and closes the transport. With `abort`, the transport is dropped at once
   * instead of waiting for a close handshake from a peer that is not reading anyway.
   */
  disconnect(reason: string, code: number, reconnect: boolean, error?: ErrorInfo, abort = false): void {
    if (this.#closed) return;
    this.closeReason = reason;
    const frame: ServerFrame = { type: 'disconnect', reason, reconnect };
    if (error) frame.error = error;
    try {
      this.transport.send(Buffer.from(JSON.stringify(frame)));
    } catch {
      // the transport is already failing; closing below is all that is left to do
    }
    if (abort) this.transport.terminate();
    else this.transport.close(code, reason);
    this.dispose();
  }

  /** Called by the transport when it is gone. Drops hub subscriptions; idempotent. */
  dispose(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#inbound) this.#inbound.budget.release(this.#inbound.key);
    if (this.#expiry) clearTimeout(this.#expiry);
    for (const attachment of this.#attachments.values()) attachment.close();
    this.#attachments.clear();
    // no catch-up is left waiting for a drain that will never come
    this.#drainWaiters?.wakeAll();
  }

  async #dispatch(frame: ClientFrame): Promise<void> {
    switch (frame.type) {
      case 'attach':
        return this.#attach(frame);
      case 'detach': {
        const attachment = this.#attachments.get(frame.channel);
        if (!attachment) throw new ServerError('not_attached', `channel ${frame.channel} is not attached`);
        attachment.close();
        this.#attachments.delete(frame.channel);
        this.#channels.metrics.health.detached(frame.channel, this.id);
        this.send(withRef({ type: 'detached', channel: frame.channel }, frame.ref));
        return;
      }
      case 'publish':
        return this.#publish(frame);
      case 'presence':
        return this.#presenceRequest(frame);
      case 'auth':
        return this.#renewToken(frame);
      case 'ping':
        this.send(withRef({ type: 'pong', serverTime: Date.now() }, frame.ref));
        return;
      case 'close':
        this.closedByClient = true;
        this.transport.close(1000, 'closed by client');
        this.dispose();
        return;
    }
  }

  /**
   * An `auth` frame: a renewed token replaces the connection's, without a reconnect (PROTOCOL.md
   * §14). It must name the same clientId and be signed by the same key: the connection stays counted
   * against the key it opened with, so connection accounting stays exact. Rights the new token does
   * not grant end now: attached channels it may not subscribe to are detached (`detached` with
   * `forbidden`), presence it may not hold is left, and leases on channels where it may not take
   * them (`mayTakeLeases`) run out as after a drop.
   */
  async #renewToken(frame: AuthFrame): Promise<void> {
    // A renewal costs a signature check, as a connection request does, and is counted with them
    // (per token clientId; a key's anonymous tokens together). The frame budget alone let each of a
    // holder's connections ask for 100 a second: enough connections kept the server verifying.
    const counted = this.#renewals?.take(this.#identity, 1, 0);
    if (counted) await counted;
    if (this.#closed) return;
    const next = await this.#verifyToken(frame.token);
    if (this.#closed) return;
    if (next.clientId !== this.#identity.clientId)
      throw new ServerError('forbidden', 'a renewed token must be for the same clientId as the connection');
    if (next.keyName !== this.#identity.keyName)
      throw new ServerError(
        'forbidden',
        `a renewed token must be signed by the key the connection opened with (${this.#identity.keyName}); reconnect to change keys`,
      );
    this.#identity = next;
    this.#publisher = undefined;
    this.#moveInbound(holderKey(next));
    this.#scheduleExpiry();
    for (const [channel, attachment] of [...this.#attachments]) {
      if (next.access.allows(channel, 'subscribe')) continue;
      attachment.close();
      this.#attachments.delete(channel);
      this.#channels.metrics.health.detached(channel, this.id);
      this.send({
        type: 'detached',
        channel,
        error: errorInfo('forbidden', `the renewed token does not allow subscribe on ${channel}`),
      });
    }
    for (const channel of this.#presence.channelsOf(this.id))
      if (!next.access.allows(channel, 'presence')) this.#presence.leave(channel, this.id);
    // a run it may no longer write runs out as if it had dropped, rather than "streaming" for ever
    this.#channels.leases.holderLetGo(this.id, (channel) =>
      mayTakeLeases(next.access, channel, next.clientId),
    );
    this.send(withRef({ type: 'authorized', expiresAt: next.expiresAt ?? 0 }, frame.ref));
  }

  /**
   * A renewed token without a clientId is a new holder: the connection's bytes and bodies count
   * from now on against its budget (the transport's gate follows at its next read).
   */
  #moveInbound(key: string): void {
    const inbound = this.#inbound;
    if (inbound === undefined || inbound.key === key) return;
    inbound.budget.hold(key);
    inbound.budget.release(inbound.key);
    this.#inbound = { budget: inbound.budget, key };
  }

  /** A token-authenticated connection ends when its token expires unless renewed (close 4011). */
  #scheduleExpiry(): void {
    if (this.#expiry) clearTimeout(this.#expiry);
    this.#expiry = undefined;
    const expiresAt = this.#identity.expiresAt;
    if (expiresAt === undefined) return;
    const wait = expiresAt - Date.now();
    const MAX_TIMER_DELAY = 2 ** 31 - 1;
    // setTimeout holds at most 2^31-1 ms (~24.8 days) and fires at once beyond: a token may expire
    // later than that (tokens not minted here have any `exp`), so wait in steps and look again.
    if (wait > MAX_TIMER_DELAY) {
      this.#expiry = setTimeout(() => this.#scheduleExpiry(), MAX_TIMER_DELAY);
      this.#expiry.unref();
      return;
    }
    this.#expiry = setTimeout(
      () =>
        this.disconnect(
          'token_expired',
          4011,
          true,
          errorInfo(
            'token_expired',
            'the token expired: get a new one and reconnect (or renew it before expiry)',
          ),
        ),
      Math.max(0, wait),
    );
    this.#expiry.unref();
  }

  async #publish(frame: PublishFrame): Promise<void> {
    // the identity's budget (shared); decided in frame order, so the publishes stay in order when
    // one waits for Redis
    const decided = this.#budgets.take(this.#identity, frame.ops.length, frame.ops);
    if (decided) await decided;
    this.#publisher ??= {
      ...this.#identity,
      connectionId: this.id,
      scope: publisherScope(this.#identity),
      order: this.#order,
    };
    const results = await this.#channels.publish(frame.channel, frame.ops, this.#publisher, frame.after);
    this.send(withRef({ type: 'ack', channel: frame.channel, results }, frame.ref));
  }

  async #presenceRequest(frame: PresenceRequestFrame): Promise<void> {
    requireAccess(this.#identity.access, frame.channel, 'presence');
    const clientId = this.#identity.clientId;
    if (clientId === undefined)
      throw new ServerError(
        'bad_request',
        'presence needs a clientId: connect with one (or a token that names one)',
      );
    this.#presenceBudget ??= new TokenBucket(
      this.#limits.maxPresenceRate,
      Math.max(this.#limits.maxPresenceRate, this.#limits.maxPresenceChannelsPerConnection),
    );
    if (!this.#presenceBudget.take())
      throw new ServerError(
        'rate_limited',
        `more than ${this.#limits.maxPresenceRate} presence frames per second on this connection; slow down and retry`,
      );
    if (frame.action === 'leave') this.#presence.leave(frame.channel, this.id);
    else {
      // serialised once: the size is what the budget counts, and the text is what presence keeps
      const json = frame.data === undefined ? undefined : JSON.stringify(frame.data);
      const size = json === undefined ? 0 : Buffer.byteLength(json);
      if (size > this.#limits.maxOperationSize)
        throw new ServerError(
          'operation_too_large',
          `presence data may be at most ${this.#limits.maxOperationSize} bytes`,
        );
      // written to every subscriber, as a publish is: its bytes count as the holder's (at once)
      if (size > 0) this.#presenceBytes?.take(this.#identity, 0, size);
      await this.#presence.enter(frame.channel, this.id, clientId, frame.data, size, json);
    }
    this.send(withRef({ type: 'ack', channel: frame.channel, results: [] }, frame.ref));
  }

  async #attach(frame: AttachFrame): Promise<void> {
    const { channel } = frame;
    const access = this.#identity.access;
    requireAccess(access, channel, 'subscribe');
    // `start` and `from` without history read back only what a dropped connection can have missed
    if (frame.rewind !== undefined) requireAccess(access, channel, 'history');
    const withoutHistory = !access.allows(channel, 'history');
    const previous = this.#attachments.get(channel);
    if (!previous && this.#attachments.size >= this.#limits.maxChannelsPerConnection)
      throw new ServerError(
        'too_many_channels',
        `a connection may attach at most ${this.#limits.maxChannelsPerConnection} channels; detach some first`,
      );
    previous?.close();
    const attachment = this.#channels.attach(
      channel,
      this.#outlet,
      frame.echo === false ? this.id : undefined,
    );
    this.#attachments.set(channel, attachment);
    if (this.#closed) attachment.close();
    let outcome: Awaited<ReturnType<ChannelAttachment['catchUp']>>;
    try {
      outcome = await attachment.catchUp(frame, withoutHistory);
    } catch (err) {
      // a failed attach (store error, superseded) leaves nothing behind: no subscription holding
      // live deliveries for a channel that will never go live
      attachment.close();
      if (this.#attachments.get(channel) === attachment) this.#attachments.delete(channel);
      throw err;
    }
    const attached: ServerFrame = {
      type: 'attached',
      channel,
      resumed: outcome.resumed,
      epoch: outcome.epoch,
      position: outcome.position,
    };
    if (outcome.reason !== undefined) attached.reason = outcome.reason;
    if (outcome.kept !== undefined) attached.kept = outcome.kept;
    this.#channels.metrics.health.attached(
      channel,
      {
        connectionId: this.id,
        clientId: this.#identity.clientId,
        transport: this.transport.kind,
        holder: holderKey(this.#identity),
      },
      frame.from !== undefined,
      outcome,
    );
    this.send(withRef(attached, frame.ref));
    attachment.goLive();

    // Presence: the whole set now, then every change. Listening starts before the set is read, and
    // what arrives meanwhile follows the sync (the attachment holds it): on a shared presence (Redis)
    // a change made while the set was being read could otherwise fall between the read and the
    // listener. A change already in the set arrives once more, which a client applies as the same
    // state (PROTOCOL.md §6.4).
    const unsubscribe = this.#presence.subscribe(channel, attachment.presenceListener());
    attachment.onClose(unsubscribe);
    // the sync frame as the presence encodes it from its members' JSON (no parsing), when it can
    let sync: Buffer;
    try {
      if (this.#presence.syncFrame) sync = await this.#presence.syncFrame(channel);
      else {
        const members: PresenceMember[] = await this.#presence.members(channel);
        sync = encodeSync(
          channel,
          members.map((m) => JSON.stringify(m)),
        );
      }
    } catch (err) {
      unsubscribe();
      throw err;
    }
    this.#write(sync, true);
    attachment.presenceSynced();
  }

  #write(frame: Buffer, soon = false): void {
    if (this.#closed) return;
    if (this.transport.bufferedAmount() > this.#limits.maxSendBuffer) {
      this.#slowConsumer();
      return;
    }
    this.#sentBytes += frame.length;
    if (soon && this.transport.sendSoon) this.transport.sendSoon(frame);
    else this.transport.send(frame);
  }

  #slowConsumer(): void {
    if (this.#closed) return;
    this.#log.info({ connectionId: this.id }, 'slow consumer disconnected');
    this.disconnect(
      'slow_consumer',
      4008,
      true,
      errorInfo(
        'slow_consumer',
        'the connection fell too far behind; reconnect and resume from your position',
      ),
      true,
    );
  }

  /**
   * Waits until the transport's queue has room for another catch-up frame. A catch-up is paced by
   * its reader: one that stops reading holds no more than the transport's `catchUpQueue`, a frame
   * and the page being sent (not `maxSendBuffer` each, as many as its identity has connections).
   * The waiters of a connection sleep until its transport drains, it ends, or their attachment
   * closes (`DrainWaiters`): none polls, however many attaches wait on a reader that stopped.
   */
  async #drained(current: () => boolean): Promise<void> {
    const threshold = catchUpQueueOf(this.transport, this.#limits.maxSendBuffer);
    while (current() && !this.#closed && this.transport.bufferedAmount() > threshold) {
      this.#drainWaiters ??= new DrainWaiters();
      await this.#drainWaiters.wait(current, (drained) => this.transport.whenDrained(drained));
    }
  }

  #fail(err: unknown, frame: ClientFrame): void {
    if (!isExpectedError(err))
      this.#log.error({ err, connectionId: this.id, frame: frame.type }, 'frame handler failed');
    const ref = 'ref' in frame ? frame.ref : undefined;
    const channel = 'channel' in frame ? frame.channel : undefined;
    this.#sendError(ref, channel, toErrorInfo(err));
  }

  #sendError(ref: Ref | undefined, channel: string | undefined, error: ErrorInfo): void {
    this.#channels.metrics.errors.inc({ code: error.code });
    const frame: ServerFrame = { type: 'error', error };
    if (ref !== undefined) frame.ref = ref;
    if (channel !== undefined) frame.channel = channel;
    this.send(frame);
  }
}

function withRef<F extends ServerFrame & { ref?: Ref }>(frame: F, ref: Ref | undefined): F {
  if (ref !== undefined) frame.ref = ref;
  return frame;
}

/** The `ref` of a frame the server answers, when it has a usable one. */
export function refOf(raw: unknown): Ref | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const ref = (raw as { ref?: unknown }).ref;
  if (typeof ref === 'string' && ref.length <= 64) return ref;
  if (typeof ref === 'number' && Number.isInteger(ref)) return ref;
  return undefined;
}

/**
 * The code of a frame the schema refused (PROTOCOL.md §9): a channel name or a serial that is a
 * string but not a valid one is `invalid_channel` / `invalid_serial`, as on REST; anything else,
 * a missing or mistyped field among them, is `invalid_frame`.
 */
function issueCode(
  raw: unknown,
  path: readonly PropertyKey[] | undefined,
): 'invalid_channel' | 'invalid_serial' | 'invalid_frame' {
  if (path === undefined || path.length === 0) return 'invalid_frame';
  let value: unknown = raw;
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return 'invalid_frame';
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  if (typeof value !== 'string') return 'invalid_frame';
  const last = path[path.length - 1];
  if (path.length === 1 && last === 'channel') return 'invalid_channel';
  if ((path.length === 1 && last === 'from') || (path[0] === 'ops' && last === 'serial'))
    return 'invalid_serial';
  return 'invalid_frame';
}

function channelOf(raw: unknown): string | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const channel = (raw as { channel?: unknown }).channel;
  return typeof channel === 'string' && channel.length <= 256 ? channel : undefined;
}
