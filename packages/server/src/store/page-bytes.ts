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

/** Collects messages into a page until `limit` messages or `maxBytes` of data (≥ 1 message). */
export class PageBudget {
  readonly #limit: number;
  readonly #maxBytes: number;
  #count = 0;
  #bytes = 0;

  constructor(limit: number, maxBytes: number | undefined) {
    this.#limit = Math.max(0, limit);
    this.#maxBytes = maxBytes === undefined || maxBytes <= 0 ? Number.POSITIVE_INFINITY : maxBytes;
  }

  /** True when the page can take another message. */
  get open(): boolean {
    return this.#count < this.#limit && (this.#count === 0 || this.#bytes < this.#maxBytes);
  }

  add(message: Message): void {
    this.#count++;
    this.#bytes += dataBytes(message);
  }
}
