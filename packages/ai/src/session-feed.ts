/**
 * Feeds a session channel into a conversation tree and keeps it whole: every message the channel
 * delivers (live and caught up, each once) is folded; when the server cannot resume the channel
 * (`continuityLost`: the log was recreated or trimmed), the tree is reloaded from history up to the
 * new position, with live messages that arrive meanwhile held back and applied after — never a
 * silent gap, never a stale node.
 *
 *   subscribe ──catch-up──▶ attached ──▶ live ──continuityLost──▶ reloading (history) ──▶ live …
 *
 * "Live" means: attached, and neither catching up nor reloading nor folding a `rolledUp` frame (a
 * node's read-back of what its bus lost, in last-change order like a catch-up), nor between the
 * frames of a read-back that comes in several (`channel.readingBack`) — the tree then holds a
 * prefix of the log in order, which is when run streams may emit (see `run-chunk-stream.ts`).
 * A history read that fails with a retryable error is retried until it succeeds.
 * Both session sides (user and agent) and any custom client use it. A feed started on a channel
 * that nothing has attached yet but that has a position (a recovery key's) makes it replay from the
 * start (`replayFromStart`): the catch-up then is the whole conversation, one round trip. A feed
 * started on a channel already attached or attaching with a position (another subscriber's: the
 * catch-up does not bring what came before it) reads the history up to that position itself, the
 * same way as a reload; that read starts with the attach instead of after it.
 * A reload supersedes a load still under way: the older one stops folding and leaves the held
 * messages to the newer one, so a stale page never lands in a reset tree.
 * A holder without the `history` capability cannot reload: on `history_required` (PROTOCOL.md §6.2,
 * "Reading back without history") the tree is kept as it is — everything it holds up to the old
 * position is still the log's — and goes on live; a reload whose history read is refused
 * `forbidden` folds back what the tree held before. Either way the gap is reported (`error`,
 * `history_gap`, then `reloaded`): a viewer keeps its conversation instead of an empty view.
 */
import type { Channel, ContinuityLost, HistoryPage } from '@mooring/client';
import { Emitter, isRolledUp, keptMessages } from '@mooring/client';
import type { Message } from '@mooring/protocol';
import { formatSerial, parseSerial } from '@mooring/protocol';
import type { ConversationTree, TreeChange } from './conversation-tree.ts';
import { MooringAiError } from './errors.ts';
import type { RunStreamSource } from './run-chunk-stream.ts';

export type SessionFeedEvents = {
  /** The tree is live again (after an attach, a catch-up or a reload). */
  live: undefined;
  /**
   * Reloaded from history after continuity was lost — or, without `history` (`history_required`, or
   * the read refused `forbidden`), kept as it was, after an `error` `history_gap`.
   */
  reloaded: ContinuityLost;
  /**
   * Loading history failed. A retryable failure is retried (live messages held meanwhile); after a
   * permanent one the tree keeps what it has and carries on live. `history_gap` (MooringAiError):
   * continuity was lost and cannot be filled without `history`; the tree is kept as it was.
   */
  error: Error;
};

export class SessionFeed implements RunStreamSource {
  readonly channel: Channel;
  readonly tree: ConversationTree;
  readonly #emitter: Emitter<SessionFeedEvents>;
  readonly #watchers = new Set<(c: TreeChange | { kind: 'live' }) => void>();
  #held: Message[] | undefined;
  /** Incremented by each reload: a load of an earlier generation stops folding. */
  #generation = 0;
  #closed = false;
  #started: Promise<void> | undefined;
  #offs: Array<() => void> = [];
  /** The epoch of the log the tree was last refolded or reloaded into after continuity was lost. */
  #epoch: string | undefined;
  /**
   * True while a `rolledUp` frame is being folded: a node read back what its bus lost (PROTOCOL.md
   * §4.3), and its messages come in the order of their last change, so until the frame is folded
   * whole the tree need not hold a prefix of the log. Not live meanwhile; live again once it is —
   * unless the read-back goes on in a further frame (`channel.readingBack`): then after its last.
   */
  #rolling = false;
  readonly #onMessage = (message: Message) => {
    if (this.#held) {
      this.#held.push(message);
      return;
    }
    if (!this.#rolling && this.channel.state === 'attached' && isRolledUp(message)) {
      this.#rolling = true;
      // the client delivers a frame's messages in one go: this runs once all of them are folded
      queueMicrotask(() => {
        this.#rolling = false;
        if (!this.#closed) this.#becameLive();
      });
    }
    this.tree.apply(message);
  };

  constructor(channel: Channel, tree: ConversationTree) {
    this.channel = channel;
    this.#emitter = new Emitter(listenerErrors(channel));
    this.tree = tree;
  }

  on<K extends keyof SessionFeedEvents>(
    event: K,
    listener: (value: SessionFeedEvents[K]) => void,
  ): () => void {
    return this.#emitter.on(event, listener);
  }

  /** True while attached, not catching up, not reloading and not amid a read-back (`rolledUp` frames). */
  get live(): boolean {
    return (
      this.#started !== undefined &&
      this.channel.state === 'attached' &&
      !this.#held &&
      !this.#rolling &&
      !this.channel.readingBack
    );
  }

  /** True while reloading from history. */
  get reloading(): boolean {
    return this.#held !== undefined;
  }

  /** Subscribes; resolves once attached (the log so far folded). Idempotent. */
  start(): Promise<void> {
    this.#started ??= this.#start();
    return this.#started;
  }

  /**
   * Folds operations this client published and the channel does not deliver back (`echo: false`),
   * in the order they were stored; held back like live messages while reloading.
   */
  applyOwn(messages: Message[]): void {
    for (const message of messages) this.#onMessage(this.#inEpoch(message));
  }

  /**
   * An own operation on a message it names by its serial of the epoch the log went on from (a
   * publisher keeps the serial its create got; the server reads it as the same sequence in the new
   * epoch), stored in the epoch the tree was refolded or reloaded into: it is folded onto that
   * message under its new serial, which is the one the tree holds now.
   */
  #inEpoch(message: Message): Message {
    const epoch = this.#epoch;
    if (epoch === undefined) return message;
    const serial = parseSerial(message.serial);
    if (!serial || serial.epoch === epoch || parseSerial(message.version)?.epoch !== epoch) return message;
    return { ...message, serial: formatSerial(epoch, serial.seq) };
  }

  /** Tree changes, and `{ kind: 'live' }` each time the feed becomes live. */
  watch(fn: (change: TreeChange | { kind: 'live' }) => void): () => void {
    this.#watchers.add(fn);
    return () => this.#watchers.delete(fn);
  }

  close(): void {
    this.#closed = true;
    this.channel.unsubscribe(this.#onMessage);
    for (const off of this.#offs.splice(0)) off();
    this.#watchers.clear();
  }

  async #start(): Promise<void> {
    this.#offs.push(
      this.tree.on('change', (change) => {
        for (const fn of [...this.#watchers]) fn(change);
      }),
      this.channel.on('statechange', ({ current }) => {
        if (current === 'attached' && !this.#held) this.#becameLive();
      }),
      this.channel.on('continuityLost', (lost) => void this.#reload(lost)),
    );
    // A channel nothing has attached yet, with a position (a recovery key's): the tree is empty, so
    // the attach replays the log from its start instead, and the catch-up brings the whole
    // conversation in the attach's own round trip (with the connection request, on a reload).
    if (this.channel.position !== '' && this.tree.inputs.length === 0 && this.tree.runs.length === 0)
      this.channel.replayFromStart();
    // A channel that already has a position (another subscriber's, which got the catch-up, or one
    // attaching from a recovery key's): this feed reads the history up to it itself, holding live
    // messages back meanwhile. The read goes out now, beside the attach: both take a round trip,
    // and neither needs the other.
    const joined = this.channel.position !== '' || this.channel.state === 'attached';
    const position = this.channel.position;
    const generation = this.#generation;
    let first: Promise<HistoryPage> | undefined;
    if (joined) {
      this.#held = [];
      if (position !== '') {
        first = this.#historyUpTo(position);
        first.catch(() => {}); // handled in #load (retried), or dropped if a reload took over
      }
    }
    await this.channel.subscribe(this.#onMessage);
    if (joined && generation === this.#generation) {
      // the attach resumed from `position` (or a reload has taken over: generation changed)
      await this.#load(position !== '' ? position : this.channel.position, first);
    }
    this.#becameLive();
  }

  /**
   * Folds history up to `position` (from `range.from` on, after `range.base`), then what was held
   * back meanwhile. A read that fails with a retryable error (the server restarting, a dead link) is
   * retried with backoff, from a clean tree (and `base`), for as long as the feed is open: going
   * live without the conversation would be a silent gap.
   */
  async #load(
    position: string,
    first?: Promise<HistoryPage>,
    range: { from?: string; base?: Message[]; before?: Message[] } = {},
  ): Promise<void> {
    const generation = this.#generation;
    const current = () => generation === this.#generation && !this.#closed;
    try {
      for (let attempt = 0; position !== '' && current(); attempt++) {
        try {
          if (attempt > 0) {
            this.tree.reset();
            for (const m of range.base ?? []) this.tree.apply(m);
          }
          let page =
            attempt === 0 && first !== undefined
              ? await first
              : await this.#historyUpTo(position, range.from);
          for (;;) {
            if (!current()) return; // a reload took over: it folds from a clean tree
            for (const m of page.items) this.tree.apply(m);
            const next = await page.next();
            if (!next) break;
            page = next;
          }
          break;
        } catch (err) {
          if (!current()) return;
          this.#emitter.emit('error', err instanceof Error ? err : new Error(String(err)));
          if (range.before !== undefined && (err as { code?: unknown }).code === 'forbidden') {
            this.#keep(range.before); // no `history`: what the tree held beats an empty one
            break;
          }
          if ((err as { retryable?: unknown }).retryable !== true) break;
          await new Promise((r) => setTimeout(r, Math.min(5000, 500 * 2 ** attempt)));
        }
      }
    } finally {
      if (current()) {
        const held = this.#held ?? [];
        this.#held = undefined;
        for (const m of held) this.tree.apply(m);
      }
    }
  }

  /** The first page of the log up to `position` (from `from`), oldest first. */
  #historyUpTo(position: string, from?: string): Promise<HistoryPage> {
    return this.channel.history({
      direction: 'forwards',
      ...(from === undefined ? {} : { from }),
      until: position,
      limit: 1000,
    });
  }

  #becameLive(): void {
    if (!this.live) return;
    this.#emitter.emit('live', undefined);
    for (const fn of [...this.#watchers]) fn({ kind: 'live' });
  }

  /**
   * Continuity lost: the tree is folded again from what the log now has. After a new epoch with
   * `kept` (a Redis restart, a SQLite file after a power loss) most of what the tree holds is still
   * true, renamed into the new epoch (`keptMessages`): only messages changed in what the log lost
   * are read again — nothing at all when it lost nothing this feed had — so a store restart is not
   * every session re-reading its conversation at once. Otherwise: the history up to the position.
   */
  async #reload(lost: ContinuityLost): Promise<void> {
    if (lost.reason === 'history_required' && this.#held === undefined) {
      this.#goOnWithGap(lost);
      return;
    }
    this.#generation++;
    this.#epoch = parseSerial(lost.position)?.epoch;
    const before = this.tree.held();
    const kept = this.#held === undefined ? keptMessages(before, lost) : undefined;
    this.#held ??= [];
    this.tree.reset();
    if (kept) {
      for (const message of kept.messages) this.tree.apply(message);
      if (kept.reread !== undefined)
        await this.#load(lost.kept!, undefined, { from: kept.reread, base: kept.messages, before });
      else await this.#load('');
    } else await this.#load(lost.position, undefined, { before });
    this.#emitter.emit('reloaded', lost);
    this.#becameLive();
  }

  /**
   * `history_required`: the server went on live from the head because this holder may not read
   * what it missed (it has `subscribe` but not `history`). The log is the same one, so the tree is
   * still true up to the old position: it is kept, and what comes live is folded onto it.
   */
  #goOnWithGap(lost: ContinuityLost): void {
    this.tree.markGap();
    this.#reportGap(lost);
    this.#emitter.emit('reloaded', lost);
    this.#becameLive();
  }

  /** A reload refused for want of `history`: the tree as it was before, then the gap reported. */
  #keep(before: readonly Message[]): void {
    this.tree.reset();
    for (const message of before) this.tree.apply(message);
    this.tree.markGap();
    this.#reportGap(undefined);
  }

  #reportGap(lost: ContinuityLost | undefined): void {
    const what =
      lost === undefined
        ? 'the history read was refused'
        : `continuity was lost (${lost.reason}) between ${lost.previousPosition || 'the start'} and ${lost.position || 'the head'}`;
    this.#emitter.emit(
      'error',
      new MooringAiError(
        'history_gap',
        `${this.channel.name}: ${what}, and these credentials do not allow history: the conversation is kept as it was, without what was published in between, and goes on live`,
      ),
    );
  }
}

/**
 * Where an exception thrown by a listener of a session's events goes: where the channel's client
 * sends its own listeners' (`onListenerError`, else re-thrown asynchronously), so that one setting
 * keeps a bad listener from ending an agent's process.
 */
export function listenerErrors(channel: Channel): (error: unknown, event: string) => void {
  return (error, event) => channel.reportListenerError(error, event);
}
