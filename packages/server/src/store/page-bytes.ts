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
  #count = 0;
  #bytes = 0;

  constructor(limit: number, maxBytes: number | undefined) {
    this.#limit = Math.max(0, limit);
    this.#maxBytes = maxBytes === undefined || maxBytes <= 0 ? Number.POSITIVE_INFINITY : maxBytes;
  }

  /** True when the page holds `limit` messages. */
  get full(): boolean {
    return this.#count >= this.#limit;
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
