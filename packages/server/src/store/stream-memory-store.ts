/**
 * Durable Streams in memory (the memory store's `streams`): lost with the process, like its channels.
 * Every method runs its decision and its writes in one synchronous step, so two requests on a stream
 * never interleave between validation and write (stream-store.ts).
 */
import { decideAppend, isExpired, newMeta, type ProducerState, sameCreate } from './stream-rules.ts';
import type {
  AppendOutcome,
  AppendSpec,
  CreateOutcome,
  CreateSpec,
  ReadPage,
  StreamChunk,
  StreamMeta,
  StreamStore,
} from './stream-store.ts';

interface MemStream {
  meta: StreamMeta;
  chunks: StreamChunk[];
  producers: Map<string, ProducerState>;
}

export class MemoryStreamStore implements StreamStore {
  readonly #streams = new Map<string, MemStream>();

  #live(path: string, now: number): MemStream | undefined {
    const stream = this.#streams.get(path);
    if (stream && isExpired(stream.meta, now)) {
      this.#streams.delete(path);
      return undefined;
    }
    return stream;
  }

  async get(path: string, now: number): Promise<StreamMeta | undefined> {
    return this.#live(path, now)?.meta;
  }

  async create(path: string, spec: CreateSpec, now: number): Promise<CreateOutcome> {
    const existing = this.#live(path, now);
    if (existing)
      return sameCreate(existing.meta, spec)
        ? { kind: 'exists', meta: existing.meta }
        : { kind: 'conflict', meta: existing.meta };
    const meta = newMeta(path, spec, now);
    const chunks: StreamChunk[] = [];
    if (spec.data.length > 0) {
      chunks.push({ start: 0, end: spec.data.length, data: spec.data });
      meta.tail = spec.data.length;
    }
    this.#streams.set(path, { meta, chunks, producers: new Map() });
    return { kind: 'created', meta };
  }

  async append(path: string, spec: AppendSpec, now: number): Promise<AppendOutcome> {
    const stream = this.#live(path, now);
    if (!stream) return { kind: 'not_found' };
    const producer = spec.producer ? stream.producers.get(spec.producer.id) : undefined;
    const { outcome, writes } = decideAppend(stream.meta, producer, spec, now);
    if (writes) {
      if (writes.data)
        stream.chunks.push({ start: stream.meta.tail, end: writes.meta.tail, data: writes.data });
      if (writes.producer) stream.producers.set(writes.producer.id, writes.producer.state);
      stream.meta = writes.meta;
    }
    return outcome;
  }

  async read(path: string, after: number, maxBytes: number, now: number): Promise<ReadPage | undefined> {
    const stream = this.#live(path, now);
    if (!stream) return undefined;
    stream.meta = { ...stream.meta, touchedAt: now };
    const { chunks } = stream;
    // first chunk that ends after `after` (chunks are sorted by position)
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
      if (page.length > 0 && bytes + chunk.data.length > maxBytes) break;
      page.push(chunk);
      bytes += chunk.data.length;
    }
    const last = page.at(-1);
    return { meta: stream.meta, chunks: page, upToDate: (last?.end ?? after) >= stream.meta.tail };
  }

  async touch(path: string, now: number): Promise<void> {
    const stream = this.#live(path, now);
    if (stream) stream.meta = { ...stream.meta, touchedAt: now };
  }

  async delete(path: string): Promise<boolean> {
    return this.#streams.delete(path);
  }

  async sweep(now: number): Promise<number> {
    let removed = 0;
    for (const [path, stream] of this.#streams)
      if (isExpired(stream.meta, now)) {
        this.#streams.delete(path);
        removed++;
      }
    return removed;
  }

  async stats(): Promise<{ streams: number; bytes: number }> {
    let bytes = 0;
    for (const stream of this.#streams.values()) bytes += stream.meta.tail;
    return { streams: this.#streams.size, bytes };
  }
}
