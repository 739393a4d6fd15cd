/**
 * Durable Streams in memory (the memory store's `streams`): the rows of `StreamEngine` in maps, lost
 * with the process like the memory store's channels. Each engine call is synchronous, so `atomic`
 * has nothing to do: no other request runs in between.
 *
 * The bytes held are counted as chunks are added and streams removed, so `stats()` (each `/metrics`
 * scrape) costs nothing however many chunks there are, instead of a walk over all of them.
 */
import { StreamEngine, type StreamTables } from './stream-engine.ts';
import type { ProducerState } from './stream-rules.ts';
import type { StreamChunk, StreamMeta } from './stream-store.ts';

interface Rows {
  chunks: StreamChunk[];
  producers: Map<string, ProducerState>;
}

export class MemoryStreamTables implements StreamTables {
  readonly #metas = new Map<string, StreamMeta>();
  readonly #rows = new Map<number, Rows>();
  #key = 0;
  /** Bytes of every stream's own chunks (what `stats()` answers). */
  #bytes = 0;

  atomic<T>(fn: () => T): T {
    return fn();
  }

  meta(path: string): StreamMeta | undefined {
    const meta = this.#metas.get(path);
    return meta && { ...meta };
  }

  nextKey(): number {
    return ++this.#key;
  }

  saveMeta(meta: StreamMeta): void {
    this.#metas.set(meta.path, { ...meta });
    if (!this.#rows.has(meta.key)) this.#rows.set(meta.key, { chunks: [], producers: new Map() });
  }

  remove(meta: StreamMeta): void {
    this.#metas.delete(meta.path);
    for (const chunk of this.#rows.get(meta.key)?.chunks ?? []) this.#bytes -= chunk.data.length;
    this.#rows.delete(meta.key);
  }

  chunks(key: number, after: number, cap: number, maxBytes: number): StreamChunk[] {
    const chunks = this.#rows.get(key)?.chunks ?? [];
    // the first chunk that ends after `after` (chunks are sorted by position)
    let lo = 0;
    let hi = chunks.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((chunks[mid]?.end ?? 0) <= after) lo = mid + 1;
      else hi = mid;
    }
    const page: StreamChunk[] = [];
    let bytes = 0;
    for (let i = lo; i < chunks.length; i++) {
      const chunk = chunks[i] as StreamChunk;
      if (chunk.end > cap || (page.length > 0 && bytes + chunk.data.length > maxBytes)) break;
      page.push(chunk);
      bytes += chunk.data.length;
    }
    return page;
  }

  addChunk(key: number, chunk: StreamChunk): void {
    const rows = this.#rows.get(key);
    if (!rows) return;
    rows.chunks.push(chunk);
    this.#bytes += chunk.data.length;
  }

  producer(key: number, id: string): ProducerState | undefined {
    return this.#rows.get(key)?.producers.get(id);
  }

  saveProducer(key: number, id: string, state: ProducerState): void {
    this.#rows.get(key)?.producers.set(id, state);
  }

  removeProducer(key: number, id: string): void {
    this.#rows.get(key)?.producers.delete(id);
  }

  paths(): string[] {
    return [...this.#metas.keys()];
  }

  stats(): { streams: number; bytes: number } {
    return { streams: this.#metas.size, bytes: this.#bytes };
  }
}

export function memoryStreamStore(): StreamEngine {
  return new StreamEngine(new MemoryStreamTables());
}
