/**
 * Durable Streams in memory (the memory store's `streams`): the rows of `StreamEngine` in maps, lost
 * with the process like the memory store's channels. Each engine call is synchronous, so `atomic`
 * has nothing to do: no other request runs in between.
 */
import { StreamEngine, type StreamTables } from './stream-engine.ts';
import type { ProducerState } from './stream-rules.ts';
import type { StreamChunk, StreamMeta } from './stream-store.ts';

interface Rows {
  chunks: StreamChunk[];
  producers: Map<string, ProducerState>;
}

class MemoryStreamTables implements StreamTables {
  readonly #metas = new Map<string, StreamMeta>();
  readonly #rows = new Map<number, Rows>();
  #key = 0;

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
    this.#rows.get(key)?.chunks.push(chunk);
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
    let bytes = 0;
    for (const rows of this.#rows.values()) for (const chunk of rows.chunks) bytes += chunk.data.length;
    return { streams: this.#metas.size, bytes };
  }
}

export function memoryStreamStore(): StreamEngine {
  return new StreamEngine(new MemoryStreamTables());
}
