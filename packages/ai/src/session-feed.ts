/**
 * Feeds a session channel into a conversation tree and keeps it whole: every message the channel
 * delivers (live and caught up, each once) is folded; when the server cannot resume the channel
 * (`continuityLost`: the log was recreated or trimmed), the tree is reloaded from history up to the
 * new position, with live messages that arrive meanwhile held back and applied after — never a
 * silent gap, never a stale node.
 *
 *   subscribe ──catch-up──▶ attached ──▶ live ──continuityLost──▶ reloading (history) ──▶ live …
 *
 * "Live" means: attached, and neither catching up nor reloading — the tree then holds a prefix of
 * the log in order, which is when run streams may emit (see `run-chunk-stream.ts`).
 * A history read that fails with a retryable error is retried until it succeeds.
 * Both session sides (user and agent) and any custom client use it. A feed started on a channel
 * that this client already follows (so the catch-up went to another subscriber) reads the history
 * itself the same way.
 */
import type { Channel, ContinuityLost } from '@mooring/client';
import { Emitter } from '@mooring/client';
import type { Message } from '@mooring/protocol';
import type { ConversationTree, TreeChange } from './conversation-tree.ts';
import type { RunStreamSource } from './run-chunk-stream.ts';

export type SessionFeedEvents = {
  /** The tree is live again (after an attach, a catch-up or a reload). */
  live: undefined;
  /** Reloaded from history after continuity was lost. */
  reloaded: ContinuityLost;
  /**
   * Loading history failed. A retryable failure is retried (live messages held meanwhile); after a
   * permanent one the tree keeps what it has and carries on live.
   */
  error: Error;
};

export class SessionFeed implements RunStreamSource {
  readonly channel: Channel;
  readonly tree: ConversationTree;
  readonly #emitter = new Emitter<SessionFeedEvents>();
  readonly #watchers = new Set<(c: TreeChange | { kind: 'live' }) => void>();
  #held: Message[] | undefined;
  #closed = false;
  #started: Promise<void> | undefined;
  #offs: Array<() => void> = [];
  readonly #onMessage = (message: Message) => {
    if (this.#held) this.#held.push(message);
    else this.tree.apply(message);
  };

  constructor(channel: Channel, tree: ConversationTree) {
    this.channel = channel;
    this.tree = tree;
  }

  on<K extends keyof SessionFeedEvents>(
    event: K,
    listener: (value: SessionFeedEvents[K]) => void,
  ): () => void {
    return this.#emitter.on(event, listener);
  }

  /** True while attached, not catching up and not reloading. */
  get live(): boolean {
    return this.#started !== undefined && this.channel.state === 'attached' && !this.#held;
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
    for (const message of messages) this.#onMessage(message);
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
    // A channel this client already follows (another subscriber got its history): this feed reads
    // the history itself, holding live messages back meanwhile.
    const joined = this.channel.position !== '' || this.channel.state === 'attached';
    if (joined) this.#held = [];
    await this.channel.subscribe(this.#onMessage);
    if (joined) await this.#load(this.channel.position);
    this.#becameLive();
  }

  /**
   * Folds history up to `position`, then what was held back meanwhile. A read that fails with a
   * retryable error (the server restarting, a dead link) is retried with backoff, from a clean tree,
   * for as long as the feed is open: going live without the conversation would be a silent gap.
   */
  async #load(position: string): Promise<void> {
    try {
      for (let attempt = 0; position !== '' && !this.#closed; attempt++) {
        try {
          if (attempt > 0) this.tree.reset();
          let page = await this.channel.history({ direction: 'forwards', until: position, limit: 1000 });
          for (;;) {
            for (const m of page.items) this.tree.apply(m);
            const next = await page.next();
            if (!next) break;
            page = next;
          }
          break;
        } catch (err) {
          this.#emitter.emit('error', err instanceof Error ? err : new Error(String(err)));
          if ((err as { retryable?: unknown }).retryable !== true) break;
          await new Promise((r) => setTimeout(r, Math.min(5000, 500 * 2 ** attempt)));
        }
      }
    } finally {
      const held = this.#held ?? [];
      this.#held = undefined;
      for (const m of held) this.tree.apply(m);
    }
  }

  #becameLive(): void {
    if (!this.live) return;
    this.#emitter.emit('live', undefined);
    for (const fn of [...this.#watchers]) fn({ kind: 'live' });
  }

  async #reload(lost: ContinuityLost): Promise<void> {
    this.#held ??= [];
    this.tree.reset();
    await this.#load(lost.position);
    this.#emitter.emit('reloaded', lost);
    this.#becameLive();
  }
}
