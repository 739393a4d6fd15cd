/**
 * A store wrapper whose next read of a chosen kind is held on a gate the test controls: the read
 * runs on the real store either before the gate (`snapshot: 'early'`: its result reflects the store
 * when the read was made, and reaches the caller only once released — a slow, asynchronous store)
 * or after it (`snapshot: 'late'`: everything stored meanwhile is in it). Forces the window between
 * a catch-up read and the hand-over to live on any real store. It can also refuse one append just as
 * the next one reaches it (`refuseNextAppendWhenOvertaken`).
 */
import type {
  AppendOptions,
  AppendResult,
  ChannelInfo,
  HistoryQuery,
  LeaseRecords,
  NewOperation,
  RolledUpPage,
  Store,
} from '../../src/store/store.ts';

export type GatedRead = 'info' | 'readSince' | 'history';

interface Gate {
  read: GatedRead;
  snapshot: 'early' | 'late';
  reached: () => void;
  released: Promise<void>;
}

export class GatedStore implements Store {
  readonly inner: Store;
  readonly leases?: LeaseRecords;
  #gate: Gate | undefined;
  #failure: { read: GatedRead; error: Error } | undefined;
  #refusal: { error: Error; done: () => void; held?: () => void } | undefined;

  constructor(inner: Store) {
    this.inner = inner;
    if (inner.leases) this.leases = inner.leases;
  }

  get kind(): string {
    return this.inner.kind;
  }

  /**
   * Arms the gate for the next `read`. Returns `reached` (resolves when that read is held) and
   * `release` (lets it answer).
   */
  arm(read: GatedRead, snapshot: 'early' | 'late'): { reached: Promise<void>; release: () => void } {
    let reached!: () => void;
    let release!: () => void;
    const reachedP = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.#gate = { read, snapshot, reached, released };
    return { reached: reachedP, release };
  }

  /** Makes the next `read` reject with `error`. */
  failNext(read: GatedRead, error: Error): void {
    this.#failure = { read, error };
  }

  async #gated<T>(read: GatedRead, run: () => Promise<T>): Promise<T> {
    const failure = this.#failure;
    if (failure && failure.read === read) {
      this.#failure = undefined;
      throw failure.error;
    }
    const gate = this.#gate;
    if (!gate || gate.read !== read) return run();
    this.#gate = undefined;
    if (gate.snapshot === 'late') {
      gate.reached();
      await gate.released;
      return run();
    }
    const result = await run();
    gate.reached();
    await gate.released;
    return result;
  }

  /**
   * Holds the next append (nothing of it stored) until the one after it reaches the store, then
   * refuses it with `error` and lets that next one through: a publish refused for a moment (the store
   * down, then back) with another already sent behind it. Resolves once both happened.
   */
  refuseNextAppendWhenOvertaken(error: Error): Promise<void> {
    let done!: () => void;
    const happened = new Promise<void>((resolve) => {
      done = resolve;
    });
    this.#refusal = { error, done };
    return happened;
  }

  append(channel: string, ops: NewOperation[], options: AppendOptions): Promise<AppendResult> {
    const refusal = this.#refusal;
    if (refusal === undefined) return this.inner.append(channel, ops, options);
    if (refusal.held === undefined) {
      return new Promise((_, reject) => {
        refusal.held = () => reject(refusal.error);
      });
    }
    this.#refusal = undefined;
    refusal.held();
    const next = this.inner.append(channel, ops, options);
    next.then(refusal.done, refusal.done);
    return next;
  }

  info(channel: string): Promise<ChannelInfo | undefined> {
    return this.#gated('info', () => this.inner.info(channel));
  }

  readSince(
    channel: string,
    after: string | undefined,
    limit: number,
    maxBytes?: number,
  ): Promise<RolledUpPage> {
    return this.#gated('readSince', () => this.inner.readSince(channel, after, limit, maxBytes));
  }

  history(channel: string, query: HistoryQuery): Promise<RolledUpPage> {
    return this.#gated('history', () => this.inner.history(channel, query));
  }

  trim(now?: number): Promise<number> {
    return this.inner.trim(now);
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
