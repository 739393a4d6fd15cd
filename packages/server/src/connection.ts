/**
 * One client connection, independent of its transport (PROTOCOL.md §5–8).
 *
 * Transports (WebSocket now; HTTP streaming and long-polling later) are thin adapters: they hand
 * inbound text to `receive()` and implement `TransportSink` for outbound frames. Everything else —
 * frame validation, attach/catch-up/live switching, publishing, acks, the send-buffer bound — is here,
 * so every transport behaves the same.
 *
 * Attaching, without gaps or duplicates:
 *
 *   subscribe to hub ──▶ live deliveries are buffered
 *   read catch-up pages from the store ──▶ send them, position = last version sent
 *   send `attached` ──▶ flush buffered deliveries with version > position ──▶ live
 */
import {
  type AttachFrame,
  type AuthFrame,
  type ClientFrame,
  type ErrorInfo,
  errorInfo,
  type Limits,
  type Message,
  type PresenceRequestFrame,
  type PublishFrame,
  type Ref,
  type ServerFrame,
  type TransportKind,
} from '@mooring/protocol';
import { clientFrameSchema } from '@mooring/protocol/schemas';
import type { Logger } from 'pino';
import { requireAccess } from './capabilities.ts';
import type { ChannelService } from './channel-service.ts';
import type { Identity } from './connection-registry.ts';
import { type Delivery, encodeMessagesFrame } from './hub.ts';
import { exceedsDepth } from './json-depth.ts';
import type { PresenceService } from './presence.ts';
import { isExpectedError, ServerError, toErrorInfo } from './server-error.ts';

export interface TransportSink {
  readonly kind: TransportKind;
  /**
   * True when the peer answers every heartbeat round (WebSocket pongs), so silence means it is gone.
   * HTTP transports watch their peers themselves (a closed stream, a poll that does not come back).
   */
  readonly answersHeartbeats: boolean;
  send(frame: Buffer): void;
  /** Bytes accepted by send() but not yet written to the network. */
  bufferedAmount(): number;
  /** Ends the transport with a close code (WebSocket) and reason, waiting briefly for the peer. */
  close(code: number, reason: string): void;
  /** Drops the transport at once: for peers that are not reading (slow, dead). */
  terminate(): void;
  /** A transport-level keepalive (WebSocket ping frame), when the transport has one. */
  ping?(): void;
}

interface Attachment {
  channel: string;
  state: 'attaching' | 'attached';
  position: string;
  buffered: Delivery[];
  bufferedCount: number;
  /** Drops the hub (and, once attached, presence) subscriptions. */
  unsubscribe: () => void;
}

export interface ConnectionOptions {
  id: string;
  key: string;
  identity: Identity;
  transport: TransportSink;
  channels: ChannelService;
  presence: PresenceService;
  limits: Limits;
  logger: Logger;
  /** Verifies a renewed token (an `auth` frame) into an identity. */
  verifyToken: (token: string) => Promise<Identity>;
}

/** Live operations held per attaching channel while its catch-up is read; beyond: slow consumer. */
const MAX_BUFFERED_WHILE_ATTACHING = 10_000;
const CATCHUP_PAGE = 200;
const CATCHUP_FRAME_BYTES = 64 * 1024;

export class Connection {
  readonly id: string;
  readonly key: string;
  #identity: Identity;
  #expiry: NodeJS.Timeout | undefined;
  readonly #verifyToken: (token: string) => Promise<Identity>;
  /** Publish rate limiting: a token bucket refilled at `maxPublishRate` per second. */
  #publishAllowance: number;
  #publishCheckedAt = Date.now();
  readonly transport: TransportSink;
  readonly #channels: ChannelService;
  readonly #presence: PresenceService;
  readonly #limits: Limits;
  readonly #log: Logger;
  readonly #attachments = new Map<string, Attachment>();
  #closed = false;
  /** True once the client asked to close (a `close` frame): its presence ends at once. */
  closedByClient = false;
  /** Why the server ended the connection, when it did (metrics). */
  closeReason: string | undefined;
  /** Set by the transport whenever anything arrives (frames, pongs); cleared by each heartbeat round. */
  alive = true;
  #missedHeartbeats = 0;

  constructor(options: ConnectionOptions) {
    this.id = options.id;
    this.key = options.key;
    this.#identity = options.identity;
    this.#verifyToken = options.verifyToken;
    this.#publishAllowance = options.identity.viaToken
      ? options.limits.maxPublishRate
      : options.limits.maxKeyPublishRate;
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

  send(frame: ServerFrame): void {
    this.#write(Buffer.from(JSON.stringify(frame)));
  }

  /** Handles one inbound text frame. Never throws: every problem becomes an `error` frame. */
  receive(text: string): void {
    this.alive = true;
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      this.#sendError(undefined, undefined, errorInfo('invalid_frame', 'frame is not valid JSON'));
      return;
    }
    this.receiveValue(raw);
  }

  /** Handles one inbound frame already parsed from JSON (HTTP upstream). Never throws. */
  receiveValue(raw: unknown): void {
    this.alive = true;
    if (exceedsDepth(raw, this.#limits.maxJsonDepth)) {
      this.#sendError(
        refOf(raw),
        undefined,
        errorInfo('invalid_frame', `frame is nested deeper than ${this.#limits.maxJsonDepth} levels`),
      );
      return;
    }
    let parsed: ReturnType<typeof clientFrameSchema.safeParse>;
    try {
      parsed = clientFrameSchema.safeParse(raw);
    } catch {
      // pathological input (e.g. JSON nested deeper than the validator's stack allows)
      this.#sendError(refOf(raw), undefined, errorInfo('invalid_frame', 'frame is nested too deeply'));
      return;
    }
    if (!parsed.success) {
      const ref = refOf(raw);
      const channel = channelOf(raw);
      const issue = parsed.error.issues[0];
      const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
      this.#sendError(
        ref,
        channel,
        errorInfo('invalid_frame', `${where}${issue?.message ?? 'invalid frame'}`),
      );
      return;
    }
    this.#dispatch(parsed.data).catch((err: unknown) => this.#fail(err, parsed.data));
  }

  /**
   * One heartbeat round (PROTOCOL.md §5.3): a `heartbeat` frame and a transport ping; a connection
   * that sent nothing back for two rounds is dropped so its resources are freed.
   */
  heartbeat(): void {
    if (this.#closed) return;
    this.#missedHeartbeats = this.alive ? 0 : this.#missedHeartbeats + 1;
    this.alive = false;
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
    if (this.#expiry) clearTimeout(this.#expiry);
    for (const attachment of this.#attachments.values()) attachment.unsubscribe();
    this.#attachments.clear();
  }

  async #dispatch(frame: ClientFrame): Promise<void> {
    switch (frame.type) {
      case 'attach':
        return this.#attach(frame);
      case 'detach': {
        const attachment = this.#attachments.get(frame.channel);
        if (!attachment) throw new ServerError('not_attached', `channel ${frame.channel} is not attached`);
        attachment.unsubscribe();
        this.#attachments.delete(frame.channel);
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

  /** An `auth` frame: a renewed token replaces the connection's, without a reconnect. */
  async #renewToken(frame: AuthFrame): Promise<void> {
    const next = await this.#verifyToken(frame.token);
    if (next.clientId !== this.#identity.clientId)
      throw new ServerError('forbidden', 'a renewed token must be for the same clientId as the connection');
    this.#identity = next;
    this.#scheduleExpiry();
    this.send(withRef({ type: 'authorized', expiresAt: next.expiresAt ?? 0 }, frame.ref));
  }

  /** A token-authenticated connection ends when its token expires unless renewed (close 4011). */
  #scheduleExpiry(): void {
    if (this.#expiry) clearTimeout(this.#expiry);
    this.#expiry = undefined;
    const expiresAt = this.#identity.expiresAt;
    if (expiresAt === undefined) return;
    // setTimeout holds at most ~24.8 days; tokens live at most 24 h
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
      Math.max(0, expiresAt - Date.now()),
    );
    this.#expiry.unref();
  }

  /** Takes `count` publishes from the bucket, or refuses them all with `rate_limited`. */
  #takePublishAllowance(count: number): void {
    const rate = this.#identity.viaToken ? this.#limits.maxPublishRate : this.#limits.maxKeyPublishRate;
    if (rate <= 0) return;
    const now = Date.now();
    this.#publishAllowance = Math.min(
      rate,
      this.#publishAllowance + ((now - this.#publishCheckedAt) / 1000) * rate,
    );
    this.#publishCheckedAt = now;
    if (this.#publishAllowance < count)
      throw new ServerError(
        'rate_limited',
        `more than ${rate} operations per second on this connection; slow down and retry`,
      );
    this.#publishAllowance -= count;
  }

  async #publish(frame: PublishFrame): Promise<void> {
    this.#takePublishAllowance(frame.ops.length);
    const results = await this.#channels.publish(frame.channel, frame.ops, {
      ...this.#identity,
      connectionId: this.id,
    });
    this.send(withRef({ type: 'ack', channel: frame.channel, results }, frame.ref));
  }

  #presenceRequest(frame: PresenceRequestFrame): void {
    requireAccess(this.#identity.access, frame.channel, 'presence');
    const clientId = this.#identity.clientId;
    if (clientId === undefined)
      throw new ServerError(
        'bad_request',
        'presence needs a clientId: connect with one (or a token that names one)',
      );
    if (frame.action === 'leave') this.#presence.leave(frame.channel, this.id);
    else {
      if (
        frame.data !== undefined &&
        Buffer.byteLength(JSON.stringify(frame.data)) > this.#limits.maxOperationSize
      )
        throw new ServerError(
          'operation_too_large',
          `presence data may be at most ${this.#limits.maxOperationSize} bytes`,
        );
      this.#presence.enter(frame.channel, this.id, clientId, frame.data);
    }
    this.send(withRef({ type: 'ack', channel: frame.channel, results: [] }, frame.ref));
  }

  async #attach(frame: AttachFrame): Promise<void> {
    const { channel } = frame;
    requireAccess(this.#identity.access, channel, 'subscribe');
    if (frame.rewind !== undefined || frame.start) requireAccess(this.#identity.access, channel, 'history');
    const previous = this.#attachments.get(channel);
    if (!previous && this.#attachments.size >= this.#limits.maxChannelsPerConnection)
      throw new ServerError(
        'too_many_channels',
        `a connection may attach at most ${this.#limits.maxChannelsPerConnection} channels; detach some first`,
      );
    previous?.unsubscribe();
    const attachment: Attachment = {
      channel,
      state: 'attaching',
      position: '',
      buffered: [],
      bufferedCount: 0,
      unsubscribe: () => {},
    };
    this.#attachments.set(channel, attachment);
    attachment.unsubscribe = this.#channels.hub.subscribe(channel, (delivery) =>
      this.#onLive(attachment, delivery),
    );
    const current = () => !this.#closed && this.#attachments.get(channel) === attachment;

    let resumed = false;
    let reason: AttachedReason;
    let epoch = '';
    let position = '';
    if (frame.from !== undefined) {
      const check = await this.#channels.checkResume(channel, frame.from);
      epoch = check.epoch;
      position = check.head;
      if (check.resumed) {
        resumed = true;
        position = await this.#catchUp(attachment, frame.from, current);
      } else {
        reason = check.reason;
      }
    } else if (frame.rewind !== undefined) {
      const page = await this.#channels.rewind(channel, frame.rewind);
      if (!current()) throw superseded(channel);
      epoch = page.epoch;
      position = page.head;
      await this.#sendCatchUp(channel, page.messages, current);
    } else if (frame.start) {
      const info = await this.#channels.store.info(channel);
      epoch = info?.epoch ?? '';
      position = await this.#catchUp(attachment, undefined, current);
    } else {
      const info = await this.#channels.store.info(channel);
      epoch = info?.epoch ?? '';
      position = info?.head ?? '';
    }
    await this.#drained(current);
    if (!current()) throw superseded(channel);
    if (epoch === '' && position !== '') epoch = position.split('.')[0] ?? '';

    const mode =
      frame.from !== undefined
        ? 'resume'
        : frame.rewind !== undefined
          ? 'rewind'
          : frame.start
            ? 'start'
            : 'live';
    this.#channels.metrics.attaches.inc({ mode, resumed: String(resumed) });
    if (reason !== undefined) this.#channels.metrics.resumeFailures.inc({ reason });
    const attached: ServerFrame = { type: 'attached', channel, resumed, epoch, position };
    if (reason !== undefined) attached.reason = reason;
    this.send(withRef(attached, frame.ref));

    attachment.state = 'attached';
    attachment.position = position;
    const buffered = attachment.buffered;
    attachment.buffered = [];
    for (const delivery of buffered) this.#deliver(attachment, delivery);

    // presence: the whole set now, then every change
    const members = this.#presence.members(channel);
    this.send({ type: 'presence', channel, action: 'sync', members });
    const unsubscribeHub = attachment.unsubscribe;
    const unsubscribePresence = this.#presence.subscribe(channel, (encoded) => this.#write(encoded));
    attachment.unsubscribe = () => {
      unsubscribeHub();
      unsubscribePresence();
    };
  }

  /** Sends every message changed after `after`, page by page; returns the position reached. */
  async #catchUp(attachment: Attachment, after: string | undefined, current: () => boolean): Promise<string> {
    let position = after ?? '';
    for (;;) {
      const page = await this.#channels.readSince(attachment.channel, position || undefined, CATCHUP_PAGE);
      if (!current()) return position;
      const fresh = page.messages.filter((m) => m.version > position);
      if (fresh.length > 0) {
        await this.#sendCatchUp(attachment.channel, fresh, current);
        position = fresh[fresh.length - 1]!.version;
      }
      if (!page.more || fresh.length === 0) return position > page.head ? position : page.head || position;
    }
  }

  /**
   * Sends catch-up messages in frames of about CATCHUP_FRAME_BYTES, each only once the send buffer
   * has room: a large catch-up is paced by the client's reading speed, not refused as slow.
   */
  async #sendCatchUp(channel: string, messages: Message[], current: () => boolean): Promise<void> {
    this.#channels.metrics.catchUpMessages.inc(messages.length);
    let batch: Message[] = [];
    let bytes = 0;
    for (const message of messages) {
      batch.push(message);
      bytes += approximateSize(message);
      if (bytes >= CATCHUP_FRAME_BYTES) {
        await this.#drained(current);
        if (!current()) return;
        this.#write(encodeMessagesFrame(channel, batch));
        batch = [];
        bytes = 0;
      }
    }
    if (batch.length === 0) return;
    await this.#drained(current);
    if (current()) this.#write(encodeMessagesFrame(channel, batch));
  }

  #onLive(attachment: Attachment, delivery: Delivery): void {
    if (attachment.state === 'attaching') {
      attachment.buffered.push(delivery);
      attachment.bufferedCount += delivery.messages.length;
      if (attachment.bufferedCount > MAX_BUFFERED_WHILE_ATTACHING) this.#slowConsumer();
      return;
    }
    this.#deliver(attachment, delivery);
  }

  #deliver(attachment: Attachment, delivery: Delivery): void {
    const last = delivery.messages[delivery.messages.length - 1];
    if (!last || last.version <= attachment.position) return;
    const first = delivery.messages[0]!;
    if (first.version > attachment.position) {
      this.#write(delivery.frame);
    } else {
      const fresh = delivery.messages.filter((m) => m.version > attachment.position);
      this.#write(encodeMessagesFrame(delivery.channel, fresh));
    }
    attachment.position = last.version;
  }

  #write(frame: Buffer): void {
    if (this.#closed) return;
    if (this.transport.bufferedAmount() > this.#limits.maxSendBuffer) {
      this.#slowConsumer();
      return;
    }
    this.transport.send(frame);
  }

  #slowConsumer(): void {
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

  /** Waits until the transport's buffer has room for another catch-up page. */
  async #drained(current: () => boolean): Promise<void> {
    const threshold = this.#limits.maxSendBuffer / 2;
    while (current() && this.transport.bufferedAmount() > threshold) {
      await new Promise((resolve) => setTimeout(resolve, 5));
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

function superseded(channel: string): ServerError {
  return new ServerError('attach_superseded', `a later attach or detach of ${channel} replaced this attach`);
}

type AttachedReason = 'epoch_changed' | 'position_trimmed' | 'position_ahead' | undefined;

function withRef<F extends ServerFrame & { ref?: Ref }>(frame: F, ref: Ref | undefined): F {
  if (ref !== undefined) frame.ref = ref;
  return frame;
}

function approximateSize(message: Message): number {
  const data = message.data;
  return (
    200 + (typeof data === 'string' ? data.length : data === undefined ? 0 : JSON.stringify(data).length)
  );
}

function refOf(raw: unknown): Ref | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const ref = (raw as { ref?: unknown }).ref;
  if (typeof ref === 'string' && ref.length <= 64) return ref;
  if (typeof ref === 'number' && Number.isInteger(ref)) return ref;
  return undefined;
}

function channelOf(raw: unknown): string | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const channel = (raw as { channel?: unknown }).channel;
  return typeof channel === 'string' && channel.length <= 256 ? channel : undefined;
}
