/**
 * Byte-bounded pages (Store.readSince / HistoryQuery.maxBytes): how much of a page a message takes,
 * and when a page is full. A page always holds at least one message, so any message can be read.
 */
import type { Message } from '@mooring/protocol';

/** Bytes of a message's data as sent (UTF-8 for strings, JSON for structured data). */
export function dataBytes(message: Message): number {
  const data = message.data;
  if (data === undefined) return 0;
  return typeof data === 'string' ? Buffer.byteLength(data) : Buffer.byteLength(JSON.stringify(data));
}

/**
 * Collects messages into a page: at most `limit` of them, and no more than `maxBytes` of data — except
 * that the first message is always taken, however big (the same rule in every store).
 */
export class PageBudget {
  readonly #limit: number;
  readonly #maxBytes: number;
  readonly #maxWork: number;
  #count = 0;
  #bytes = 0;
  #work = 0;

  /**
   * `maxWork`: how much work (a store's own measure: SQLite counts the appends it joined) the page's
   * messages may cost before it takes no more; the message that crosses it is kept.
   */
  constructor(limit: number, maxBytes: number | undefined, maxWork = Number.POSITIVE_INFINITY) {
    this.#limit = Math.max(0, limit);
    this.#maxBytes = maxBytes === undefined || maxBytes <= 0 ? Number.POSITIVE_INFINITY : maxBytes;
    this.#maxWork = maxWork;
  }

  /** True when the page holds `limit` messages, or its messages cost `maxWork`. */
  get full(): boolean {
    return this.#count >= this.#limit || this.#work >= this.#maxWork;
  }

  /** Counts work done for the page (reading a message it may take). */
  spend(work: number): void {
    this.#work += work;
  }

  /** Takes `message` when it fits (the first always does); false: the page is full by bytes. */
  take(message: Message): boolean {
    const size = dataBytes(message);
    if (this.#count > 0 && this.#bytes + size > this.#maxBytes) return false;
    this.#count++;
    this.#bytes += size;
    return true;
  }
}
