/**
 * One channel attached on one connection, for every transport: the catch-up read and the hand-over
 * to live (PROTOCOL.md §6.2), without a gap or a duplicate for ANY interleaving of live deliveries
 * and store reads — a hub whose deliveries arrive asynchronously (Redis) may hand over an operation
 * before, during or after the catch-up read that also contains it.
 *
 *   subscribe to the hub ──▶ live deliveries are held, in order (bounded in bytes, per connection)
 *   read catch-up pages (bounded in bytes) ──▶ send them; position = last version sent, or the head read
 *   `attached` ──▶ hand-over: every held delivery, in order, only what has version > position ──▶ live
 *
 * Because the hub was subscribed before the first read, every operation after the head of the last
 * read arrives live, and every one up to it was in a read: filtering by `version > position` is all
 * it takes to deliver each once. Live operations then arrive with consecutive sequence numbers
 * (one per stored operation), which is what lets a client check continuity (PROTOCOL.md §6.3).
 *
 * Echo (`echo: false`, PROTOCOL.md §6.2): live operations published by the attaching connection
 * itself are left out; the next frame sent carries `after`, the version its first message follows,
 * so the client's continuity check still holds. Only a contiguous run of own operations is left
 * out: one that does not follow the position is delivered, and the client sees the hole.
 *
 * Large catch-ups never hold the event loop: pages are bounded in bytes, frames are ~64 KiB (or one
 * message), each is written only once the transport has room, and the loop yields between frames.
 */
import type { AttachFrame, Message, ResumeFailure } from '@mooring/protocol';
import { sameEpoch, serialSeq } from '@mooring/protocol';
import type { ChannelService } from './channel-service.ts';
import { type Delivery, encodeMessagesFrame, frameOf } from './hub.ts';
import { originOf } from './message-origin.ts';
import { ServerError } from './server-error.ts';
import type { Span } from './tracing.ts';

/** What an attachment needs from its connection, whatever the transport. */
export interface AttachOutlet {
  /** The connection reads compact `messages` frames (PROTOCOL.md §6.5). */
  compact: boolean;
  /**
   * Writes one encoded frame (the connection applies its send-buffer bound). `soon`: it may share
   * the socket's write with the rest of the turn's frames (`cork-for-turn.ts`), as presence events
   * do: a pass writing several changes to each subscriber then makes one write per subscriber.
   */
  write(frame: Buffer, soon?: boolean): void;
  /**
   * Resolves once the transport has room for another catch-up frame, or `current()` turned false
   * (which the attachment tells with `stopWaiting`).
   */
  drained(current: () => boolean): Promise<void>;
  /** The catch-up of `current` ended (its attachment closed): its wait in `drained` ends now. */
  stopWaiting(current: () => boolean): void;
  /**
   * Runs `run` once the connection's other catch-ups are not reading or sending a page: one page at
   * a time per connection, in the order asked. A page is held while its reader takes it, so a
   * connection catching up many channels for a reader that stopped holds one page, not one each.
   */
  turn<T>(run: () => Promise<T>): Promise<T>;
  /**
   * Who reads (a holder key, `holderKey`: one token without a clientId is a reader of its own):
   * its catch-up reads take their share of the slots (read-limiter.ts).
   */
  reader(): string;
  /**
   * Bytes of live deliveries held while catching up changed by `delta` (negative: released). The
   * connection bounds the total over its channels and ends as a slow consumer beyond it.
   */
  hold(delta: number): void;
}

export interface AttachOutcome {
  resumed: boolean;
  epoch: string;
  position: string;
  reason?: ResumeFailure;
  /** `epoch_changed` from the epoch the log had before: where the catch-up started (see ResumeCheck). */
  kept?: string;
}

/**
 * Messages per catch-up page, and the byte bound of a page (always ≥ 1 message). A page is held
 * while it is sent, for as long as its reader takes: small enough that connections whose readers
 * stopped do not add up to much, large enough that a store read is cheap beside its bytes.
 */
export const CATCHUP_PAGE = 200;
export const CATCHUP_PAGE_BYTES = 256 * 1024;
/**
 * How many times a resume is checked again when its log went on in a new epoch between the check
 * and a catch-up read; past this the catch-up is read as the store has it.
 */
const MAX_RECHECKS = 3;
/** A rewind sends the last N messages, or fewer when they hold more data than this (always ≥ 1). */
export const REWIND_BYTES = 4 * 1024 * 1024;
/** Catch-up frames are cut at about this many bytes (a bigger single message makes its own frame). */
export const CATCHUP_FRAME_BYTES = 64 * 1024;
/**
 * Bytes a catch-up leaves queued on a WebSocket or SSE connection before it waits to write the next
 * frame or read the next page (`TransportSink.catchUpQueue` for others; never past half of
 * `maxSendBuffer`). The kernel's socket buffer carries the throughput beyond it. A catch-up that
 * fits never waits: a fresh TCP connection accepts little at first, and a bound of 64 KiB made a
 * catch-up of 85 KB wait for its socket (+30 % on the catch-up bench's 10-minute gap, when waits
 * still polled every 5 ms; they now wake at the transport's drain, `DrainWaiters`).
 */
export const CATCHUP_QUEUE_BYTES = 256 * 1024;

export class ChannelAttachment {
  readonly channel: string;
  readonly #channels: ChannelService;
  readonly #outlet: AttachOutlet;
  #state: 'attaching' | 'live' | 'closed' = 'attaching';
  #position = '';
  /** `echo: false`: the connection whose own operations are left out. */
  readonly #leaveOut: string | undefined;
  /** The greatest version the client was sent (below `#position` after own operations left out). */
  #sent = '';
  /** Live deliveries held while catching up: made by the first (most catch-ups see none). */
  #held: Delivery[] | undefined;
  #heldBytes = 0;
  /** Ends the hub subscription. */
  readonly #unsubscribe: () => void;
  /** What else runs at the close (`onClose`: the presence subscription), when anything does. */
  #onClose: (() => void) | undefined;
  /** `current()` for the outlet's `drained`: made for a catch-up, dropped once live or closed. */
  #currentCheck: (() => boolean) | undefined;
  /**
   * Presence frames that came before the channel's sync was written (`presenceSynced`), in order;
   * undefined before the presence subscription and after the sync.
   */
  #presenceHeld: Buffer[] | undefined;

  constructor(channels: ChannelService, channel: string, outlet: AttachOutlet, leaveOut?: string) {
    this.channel = channel;
    this.#leaveOut = leaveOut;
    this.#channels = channels;
    this.#outlet = outlet;
    // subscribe BEFORE any read: what is stored after the read's head can only arrive live.
    // Bound, not an arrow: an arrow would keep a context object per attachment besides the function.
    this.#unsubscribe = channels.hub.subscribe(channel, this.#onLive.bind(this));
  }

  /** The greatest version sent on this channel. */
  get position(): string {
    return this.#position;
  }

  /**
   * Reads and sends what the attach asks for (resume, rewind, start or nothing) and waits until the
   * transport took it; then the caller sends `attached` and calls `goLive()`. Throws
   * `attach_superseded` if the attachment was closed meanwhile (a later attach, a detach, the end).
   */
  async catchUp(frame: AttachFrame, withoutHistory = false): Promise<AttachOutcome> {
    const { tracing } = this.#channels.metrics;
    if (!tracing) return this.#catchUp(frame, withoutHistory, undefined);
    const span = tracing.start('mooring.attach', {
      'mooring.channel': this.channel,
      'mooring.mode': modeOf(frame),
    });
    try {
      const outcome = await this.#catchUp(frame, withoutHistory, span);
      span.setAttribute('mooring.resumed', outcome.resumed);
      if (outcome.reason !== undefined) span.setAttribute('mooring.resume_failure', outcome.reason);
      span.end();
      return outcome;
    } catch (err) {
      tracing.fail(span, err);
      throw err;
    }
  }

  /**
   * `withoutHistory`: the holder may subscribe but not read history, so a resume or `start` may read
   * back only what a dropped connection can have missed (`ChannelService.readsTooFarBack`).
   */
  async #catchUp(
    frame: AttachFrame,
    withoutHistory: boolean,
    span: Span | undefined,
  ): Promise<AttachOutcome> {
    const { channel } = this;
    const channels = this.#channels;
    const catchUpSince = async (after: string | undefined, epoch?: string) => {
      const reading = channels.metrics.tracing?.start('mooring.catchup', {}, span);
      try {
        const position = await this.#catchUpSince(after, epoch);
        reading?.end();
        return position;
      } catch (err) {
        channels.metrics.tracing?.fail(reading, err);
        throw err;
      }
    };
    let outcome: AttachOutcome;
    if (frame.from !== undefined) {
      // `from`, then the position the catch-up reached if the log went on in a new epoch between
      // the check and a read (a Redis's first publish after a restart): checked again from there
      let from = frame.from;
      let replaced = false;
      for (let attempt = 0; ; attempt++) {
        const check = await channels.checkResume(channel, from);
        if (!check.resumed && check.kept === undefined) {
          outcome = { resumed: false, epoch: check.epoch, position: check.head, reason: check.reason };
          break;
        }
        const after = check.resumed ? from : check.kept!;
        if (withoutHistory && (await channels.readsTooFarBack(channel, after))) {
          // a position older than any gap of a dropped connection: live from here, continuity lost
          outcome = { resumed: false, epoch: check.epoch, position: check.head, reason: 'history_required' };
          break;
        }
        // what changed after the position (or after the client's messages that are still there:
        // nothing new is skipped), read in the epoch checked, never in a log that replaced it
        const caught = await catchUpSince(after, attempt < MAX_RECHECKS ? check.epoch : undefined);
        if (caught.replaced) {
          from = caught.position;
          replaced = true;
          continue;
        }
        const position = caught.position;
        if (!check.resumed)
          outcome = { resumed: false, epoch: check.epoch, position, reason: check.reason, kept: after };
        else if (replaced)
          outcome = { resumed: false, epoch: check.epoch, position, reason: 'epoch_changed' };
        else outcome = { resumed: true, epoch: check.epoch, position };
        break;
      }
    } else if (frame.rewind !== undefined) {
      const rewind = frame.rewind;
      outcome = await this.#outlet.turn(async () => {
        await this.#outlet.drained(this.#current);
        const page = await channels.rewind(channel, rewind, REWIND_BYTES, this.#outlet.reader());
        this.#ensureCurrent();
        await this.#send(page.messages);
        return { resumed: false, epoch: page.epoch, position: page.head };
      });
    } else if (frame.start) {
      if (withoutHistory && (await channels.readsTooFarBack(channel, undefined)))
        throw new ServerError(
          'forbidden',
          `attaching ${channel} with start needs history: it holds messages older than a dropped connection can have missed`,
        );
      const info = await channels.info(channel);
      const { position } = await catchUpSince(undefined);
      outcome = { resumed: false, epoch: info?.epoch ?? '', position };
    } else {
      const info = await channels.info(channel);
      outcome = { resumed: false, epoch: info?.epoch ?? '', position: info?.head ?? '' };
    }
    await this.#outlet.drained(this.#current);
    this.#ensureCurrent();
    if (outcome.epoch === '' && outcome.position !== '') outcome.epoch = outcome.position.split('.')[0] ?? '';
    this.#position = outcome.position;
    this.#sent = outcome.position;
    channels.metrics.attaches.inc({ mode: modeOf(frame), resumed: String(outcome.resumed) });
    if (outcome.reason !== undefined) channels.metrics.resumeFailures.inc({ reason: outcome.reason });
    return outcome;
  }

  /** The hand-over: every delivery held while catching up, in order, then live. Call after `attached`. */
  goLive(): void {
    if (this.#state !== 'attaching') return;
    this.#state = 'live';
    this.#currentCheck = undefined;
    const held = this.#held;
    this.#held = undefined;
    this.#release();
    if (held) for (const delivery of held) this.#deliver(delivery);
  }

  /** Runs `cleanup` when the attachment closes (e.g. a presence subscription). */
  onClose(cleanup: () => void): void {
    if (this.#state === 'closed') {
      cleanup();
      return;
    }
    const before = this.#onClose;
    this.#onClose =
      before === undefined
        ? cleanup
        : () => {
            before();
            cleanup();
          };
  }

  /**
   * The listener for the channel's presence frames (to subscribe before its sync is read): it holds
   * what comes until `presenceSynced()`, then writes each as it comes.
   */
  presenceListener(): (frame: Buffer) => void {
    this.#presenceHeld = [];
    return this.#onPresence.bind(this);
  }

  /** The presence sync was written: what came meanwhile follows it, in order, then each as it comes. */
  presenceSynced(): void {
    const held = this.#presenceHeld;
    this.#presenceHeld = undefined;
    if (held) for (const frame of held) this.#outlet.write(frame, true);
  }

  /** Detaches: no more deliveries; a catch-up in progress stops. Idempotent. */
  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    const waiting = this.#currentCheck;
    this.#currentCheck = undefined;
    if (waiting !== undefined) this.#outlet.stopWaiting(waiting);
    this.#held = undefined;
    this.#release();
    this.#unsubscribe();
    const cleanup = this.#onClose;
    this.#onClose = undefined;
    cleanup?.();
  }

  /** True until the attachment closes: what a catch-up's waits check (`AttachOutlet.drained`). */
  get #current(): () => boolean {
    this.#currentCheck ??= () => this.#state !== 'closed';
    return this.#currentCheck;
  }

  #ensureCurrent(): void {
    if (this.#state === 'closed')
      throw new ServerError(
        'attach_superseded',
        `a later attach or detach of ${this.channel} replaced this attach`,
      );
  }

  /**
   * Sends every message changed after `after`, page by page, each page in a turn of the connection's
   * (read once the transport has room, sent before the next catch-up's page); returns the position
   * reached. With `epoch`, a page of another log (the log went on in a new epoch, or was lost, since
   * the resume was checked) is not sent: `replaced`, and the position reached in `epoch`.
   */
  async #catchUpSince(
    after: string | undefined,
    epoch?: string,
  ): Promise<{ position: string; replaced?: true }> {
    let position = after ?? '';
    for (;;) {
      const head = await this.#outlet.turn(async () => {
        await this.#outlet.drained(this.#current);
        this.#ensureCurrent();
        const page = await this.#channels.readSince(
          this.channel,
          position || undefined,
          CATCHUP_PAGE,
          CATCHUP_PAGE_BYTES,
          this.#outlet.reader(),
        );
        this.#ensureCurrent();
        if (epoch !== undefined && page.epoch !== epoch) return null;
        const fresh = page.messages.filter((m) => m.version > position);
        if (fresh.length > 0) {
          await this.#send(fresh);
          this.#ensureCurrent();
          position = fresh[fresh.length - 1]!.version;
        }
        return !page.more || fresh.length === 0 ? page.head : undefined;
      });
      if (head === null) return { position, replaced: true };
      if (head !== undefined) return { position: position > head ? position : head || position };
    }
  }

  /**
   * Sends catch-up messages in frames of about CATCHUP_FRAME_BYTES, each only once the transport
   * has room, yielding to the event loop after each: a large catch-up is paced by the client's
   * reading speed and never stalls other clients.
   */
  async #send(messages: Message[]): Promise<void> {
    this.#channels.metrics.catchUpMessages.inc(messages.length);
    let batch: Message[] = [];
    let bytes = 0;
    for (let i = 0; i < messages.length; i++) {
      const message = messages[i]!;
      batch.push(message);
      bytes += approximateSize(message);
      if (bytes < CATCHUP_FRAME_BYTES && i < messages.length - 1) continue;
      await this.#outlet.drained(this.#current);
      if (!this.#current()) return;
      const frame = encodeMessagesFrame(this.channel, batch, this.#outlet.compact);
      this.#channels.metrics.health.caughtUp(this.channel, batch.length, frame.length);
      this.#outlet.write(frame);
      batch = [];
      bytes = 0;
      await yieldToLoop();
    }
  }

  #onLive(delivery: Delivery): void {
    if (this.#state === 'live') this.#deliver(delivery);
    else if (this.#state === 'attaching') {
      this.#held ??= [];
      this.#held.push(delivery);
      const bytes = frameOf(delivery, this.#outlet.compact).length;
      this.#heldBytes += bytes;
      this.#outlet.hold(bytes);
    }
  }

  #onPresence(frame: Buffer): void {
    if (this.#presenceHeld === undefined) this.#outlet.write(frame, true);
    else this.#presenceHeld.push(frame);
  }

  #release(): void {
    if (this.#heldBytes === 0) return;
    this.#outlet.hold(-this.#heldBytes);
    this.#heldBytes = 0;
  }

  #deliver(delivery: Delivery): void {
    const last = delivery.messages[delivery.messages.length - 1];
    if (!last || last.version <= this.#position) return;
    if (delivery.rolledUp) {
      // every change after what the hub delivered before, which this attachment has: complete from
      // its position on, whose versions may skip (own operations included: read back, not echoed).
      // A page that is not the read-back's last says so: the next delivery, with higher versions
      // only, reaches this client too, so the page without `more` always does.
      this.#write(
        delivery.messages.filter((m) => m.version > this.#position),
        this.#position,
        delivery.more ? 'more' : true,
      );
      this.#position = last.version;
      return;
    }
    if (this.#leaveOut !== undefined && anyFrom(delivery.messages, this.#leaveOut)) {
      this.#deliverOthers(delivery);
      return;
    }
    const first = delivery.messages[0]!;
    if (first.version > this.#position && this.#sent === this.#position) {
      this.#outlet.write(frameOf(delivery, this.#outlet.compact));
      this.#sent = last.version;
    } else {
      this.#write(
        delivery.messages.filter((m) => m.version > this.#position),
        this.#position,
      );
    }
    this.#position = last.version;
  }

  /**
   * `echo: false`: the delivery without this connection's own operations, each run of others' in
   * one frame. An own operation is left out only if it follows the position (see the header).
   */
  #deliverOthers(delivery: Delivery): void {
    // allocated only once another's operation comes: an agent's own tokens cost no array each
    let run: Message[] | undefined;
    let runAfter = this.#position;
    for (const message of delivery.messages) {
      if (message.version <= this.#position) continue;
      const own = originOf(message) === this.#leaveOut && follows(message.version, this.#position);
      if (own) {
        if (run) this.#write(run, runAfter);
        run = undefined;
      } else {
        if (!run) {
          run = [];
          runAfter = this.#position;
        }
        run.push(message);
      }
      this.#position = message.version;
    }
    if (run) this.#write(run, runAfter);
  }

  /**
   * Writes messages that follow `after`, telling the client `after` when it has not seen it (or
   * always, for messages rolled up from `after`; `more`: a read-back page that is not its last).
   */
  #write(messages: Message[], after: string, rolledUp: boolean | 'more' = false): void {
    const last = messages[messages.length - 1];
    if (!last) return;
    const extras = rolledUp
      ? { after, rolledUp: true, more: rolledUp === 'more' }
      : { after: after !== this.#sent ? after : undefined, rolledUp: false };
    this.#outlet.write(encodeMessagesFrame(this.channel, messages, this.#outlet.compact, extras));
    this.#sent = last.version;
  }
}

/** True when one of `messages` was published by the connection `connectionId` on this node. */
function anyFrom(messages: Message[], connectionId: string): boolean {
  for (const message of messages) if (originOf(message) === connectionId) return true;
  return false;
}

/** True when `version` is the operation right after `position` (or the first of a channel). */
function follows(version: string, position: string): boolean {
  if (position === '') return true;
  return sameEpoch(version, position) && serialSeq(version) === serialSeq(position) + 1;
}

function modeOf(frame: AttachFrame): 'resume' | 'rewind' | 'start' | 'live' {
  if (frame.from !== undefined) return 'resume';
  if (frame.rewind !== undefined) return 'rewind';
  return frame.start ? 'start' : 'live';
}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function approximateSize(message: Message): number {
  const data = message.data;
  return (
    200 + (typeof data === 'string' ? data.length : data === undefined ? 0 : JSON.stringify(data).length)
  );
}
