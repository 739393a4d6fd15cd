/**
 * `StreamEngine`: the Durable Streams logic of the memory and SQLite stores, written once over
 * `StreamTables` — synchronous rows (metadata, chunks, producer states) and an `atomic` step (SQLite:
 * one transaction). Every method runs as one atomic step, so validation and write never interleave
 * with another request, and an append's chunk, tail, closure, Stream-Seq and producer state are
 * stored together or not at all.
 *
 * Forks share their source's offsets: a fork at offset F reads the source's chunks that end at or
 * before F (recursively, through the source's own source), then its own chunks, which start at F. A
 * sub-offset is resolved at creation by copying the first k bytes (or k JSON messages) of the
 * source's chunk at F as the fork's first own chunk, once the requester paid for it (`subOffsetCost`,
 * `ForkSpec.allowance`). A stream with forks is soft-deleted when deleted
 * or expired (its rows stay for the forks' reads); removing the last fork of a soft-deleted source
 * removes the source too, up the chain.
 */
import {
  decideAppend,
  forkExpiry,
  isExpired,
  isJsonStream,
  jsonMessagesEnd,
  mediaType,
  newMeta,
  type ProducerState,
  producerKey,
  type ResolvedCreate,
  sameCreate,
} from './stream-rules.ts';
import {
  type AppendOutcome,
  type AppendSpec,
  type CreateOutcome,
  type CreateSpec,
  type DeleteOutcome,
  offsetPosition,
  type ProducerClaim,
  type ReadPage,
  type StreamChunk,
  type StreamMeta,
  type StreamStore,
} from './stream-store.ts';

/** Reads and removals walk fork chains recursively: their depth is bounded. */
export const MAX_FORK_DEPTH = 64;

export interface StreamTables {
  /**
   * Runs `fn` as one atomic step (rolled back if it throws). May run `fn` more than once (Redis:
   * optimistic, rerun on fresh rows), so `fn` changes nothing but the rows it writes through here.
   */
  atomic<T>(fn: () => T): T | Promise<T>;
  meta(path: string): StreamMeta | undefined;
  /** A key for a new stream's rows. */
  nextKey(): number;
  /**
   * The generation a new stream's offsets start in (absent or 0: generation 0, memory and SQLite).
   * Redis: one per Redis run and per FLUSHALL, so a stream lost with its Redis and created again at
   * its path names none of the lost one's offsets.
   */
  newGeneration?(): number;
  saveMeta(meta: StreamMeta): void;
  /** Removes the stream's metadata, chunks and producer states. */
  remove(meta: StreamMeta): void;
  /** Own chunks with `end > after` and `end <= cap`, by position, stopping after ~maxBytes (≥ 1). */
  chunks(key: number, after: number, cap: number, maxBytes: number): StreamChunk[];
  addChunk(key: number, chunk: StreamChunk): void;
  /** A producer's state by `producerKey`. */
  producer(key: number, id: string): ProducerState | undefined;
  saveProducer(key: number, id: string, state: ProducerState): void;
  removeProducer(key: number, id: string): void;
  paths(): string[];
  /** Streams and bytes held, as committed: kept as counters, never a walk over the streams. */
  stats(): { streams: number; bytes: number };
}

export class StreamEngine implements StreamStore {
  readonly #t: StreamTables;

  constructor(tables: StreamTables) {
    this.#t = tables;
  }

  async get(path: string, now: number): Promise<StreamMeta | undefined> {
    return this.#t.atomic(() => this.#live(path, now));
  }

  async create(path: string, spec: CreateSpec, now: number): Promise<CreateOutcome> {
    return this.#t.atomic(() => {
      let resolved: ResolvedCreate = {
        contentType: spec.contentType ?? 'application/octet-stream',
        closed: spec.closed,
        ...(spec.ttlSeconds === undefined ? {} : { ttlSeconds: spec.ttlSeconds }),
        ...(spec.expiresAt === undefined ? {} : { expiresAt: spec.expiresAt }),
      };
      let source: StreamMeta | undefined;
      if (spec.fork) {
        source = this.#live(spec.fork.source, now);
        if (!source) return { kind: 'source_not_found' };
        if (source.softDeleted) return { kind: 'source_gone' };
        if (this.#depth(source) >= MAX_FORK_DEPTH)
          return { kind: 'bad_fork', reason: `a fork chain is at most ${MAX_FORK_DEPTH} streams deep` };
        if (spec.contentType !== undefined && mediaType(spec.contentType) !== mediaType(source.contentType))
          return { kind: 'fork_type_mismatch' };
        if (spec.fork.offsetToken !== undefined && offsetPosition(source, spec.fork.offsetToken) === 'gone')
          return {
            kind: 'bad_fork',
            reason:
              'Stream-Fork-Offset names data the source no longer holds (its Redis came back without it)',
          };
        const offset = spec.fork.offset ?? source.tail;
        resolved = {
          contentType: spec.contentType ?? source.contentType,
          closed: spec.closed,
          ...forkExpiry(spec, source),
          fork: {
            source: spec.fork.source,
            offset,
            subOffset: spec.fork.subOffset,
            ...(spec.fork.offset === undefined ? {} : { requestedOffset: spec.fork.offset }),
          },
        };
      }
      const existing = this.#live(path, now);
      if (existing) {
        if (existing.softDeleted) return { kind: 'path_in_use' };
        return sameCreate(existing, resolved)
          ? { kind: 'exists', meta: existing }
          : { kind: 'conflict', meta: existing };
      }
      // the body was prepared for the content type the request saw; a fork's is only known here
      if (spec.data.length > 0 && spec.dataJson !== undefined && spec.dataJson !== isJsonStream(resolved))
        return { kind: 'source_changed' };
      const meta = newMeta(this.#t.nextKey(), path, resolved, now);
      const generation = this.#t.newGeneration?.() ?? 0;
      if (generation > 0) meta.generations = [[generation, 0]];
      const own: Uint8Array[] = [];
      if (source && resolved.fork) {
        if (resolved.fork.offset > source.tail)
          return { kind: 'bad_fork', reason: "Stream-Fork-Offset is beyond the source stream's tail" };
        if (resolved.fork.subOffset > 0) {
          const prefix = this.#subOffsetPrefix(
            source,
            resolved.fork.offset,
            resolved.fork.subOffset,
            spec.fork?.allowance ?? Number.POSITIVE_INFINITY,
          );
          if (typeof prefix === 'string') return { kind: 'bad_fork', reason: prefix };
          if ('unpaid' in prefix) return { kind: 'fork_unpaid', bytes: prefix.unpaid };
          if (prefix.length > 0) own.push(prefix);
        }
        // its offsets up to the fork offset are the source's, of the generations that wrote them;
        // its own (past it) are in a new stream's generation (Redis: a fork lost with its Redis and
        // made again names none of the lost one's offsets past its fork offset)
        if (source.generations !== undefined || generation > 0) {
          const offset = resolved.fork.offset;
          const inherited = (source.generations ?? [[0, 0]]).filter(([, from]) => from < offset);
          if (generation > (inherited.at(-1)?.[0] ?? -1)) inherited.push([generation, offset]);
          meta.generations = inherited;
        }
        source.refCount++;
        this.#t.saveMeta(source);
      }
      if (spec.data.length > 0) own.push(spec.data);
      this.#t.saveMeta(meta);
      for (const data of own) {
        this.#t.addChunk(meta.key, { start: meta.tail, end: meta.tail + data.length, data });
        meta.tail += data.length;
      }
      this.#t.saveMeta(meta);
      return { kind: 'created', meta };
    });
  }

  async append(path: string, spec: AppendSpec, now: number): Promise<AppendOutcome> {
    return this.#t.atomic(() => {
      const meta = this.#live(path, now);
      if (!meta) return { kind: 'not_found' };
      if (meta.softDeleted) return { kind: 'gone' };
      const found = spec.producer ? this.#producer(meta.key, spec.producer) : undefined;
      const { outcome, writes } = decideAppend(meta, found?.state, spec, now);
      if (writes) {
        if (writes.data)
          this.#t.addChunk(meta.key, { start: meta.tail, end: writes.meta.tail, data: writes.data });
        if (writes.producer && spec.producer) {
          this.#t.saveProducer(meta.key, producerKey(spec.producer), writes.producer.state);
          if (found?.legacy) this.#t.removeProducer(meta.key, spec.producer.id);
        }
        this.#t.saveMeta(writes.meta);
      }
      return outcome;
    });
  }

  async read(path: string, after: number, maxBytes: number, now: number): Promise<ReadPage | undefined> {
    return this.#t.atomic(() => {
      const meta = this.#live(path, now);
      if (!meta || meta.softDeleted) return undefined;
      if (meta.ttlSeconds !== undefined) {
        meta.touchedAt = now;
        this.#t.saveMeta(meta);
      }
      const chunks = this.#stitched(meta, after, Number.POSITIVE_INFINITY, { left: maxBytes, taken: 0 });
      return { meta, chunks, upToDate: (chunks.at(-1)?.end ?? after) >= meta.tail };
    });
  }

  async touch(path: string, now: number): Promise<void> {
    await this.#t.atomic(() => {
      const meta = this.#live(path, now);
      if (meta && !meta.softDeleted && meta.ttlSeconds !== undefined) {
        meta.touchedAt = now;
        this.#t.saveMeta(meta);
      }
    });
  }

  async delete(path: string, now: number): Promise<DeleteOutcome> {
    return this.#t.atomic(() => {
      const meta = this.#live(path, now);
      if (!meta) return 'not_found';
      if (meta.softDeleted) return 'gone';
      if (meta.refCount > 0) {
        meta.softDeleted = true;
        this.#t.saveMeta(meta);
      } else {
        this.#removeCascade(meta);
      }
      return 'deleted';
    });
  }

  async sweep(now: number): Promise<number> {
    return this.#t.atomic(() => {
      let removed = 0;
      for (const path of this.#t.paths()) {
        const meta = this.#t.meta(path);
        if (meta && !meta.softDeleted && isExpired(meta, now)) {
          this.#expire(meta);
          removed++;
        }
      }
      return removed;
    });
  }

  /** Kept as the tables write (memory, SQLite): read without a step, at no cost per stream. */
  async stats(): Promise<{ streams: number; bytes: number }> {
    return this.#t.stats();
  }

  /**
   * A producer's state: its own (`producerKey`), else, for a scoped producer, a state an older
   * version stored under the bare Producer-Id (`legacy`). So a producer that was mid-stream across
   * the upgrade goes on where it was; its first accepted append moves the state to its scoped key
   * and removes the bare one, which then misleads no other holder reusing that Producer-Id. (The
   * first holder to append with that Producer-Id after the upgrade takes it over: the window the
   * old sharing left open closes there.)
   */
  #producer(key: number, claim: ProducerClaim): { state: ProducerState; legacy: boolean } | undefined {
    const own = this.#t.producer(key, producerKey(claim));
    if (own) return { state: own, legacy: false };
    if (claim.scope === undefined) return undefined;
    const legacy = this.#t.producer(key, claim.id);
    return legacy && { state: legacy, legacy: true };
  }

  /** The stream, expiring it first when its time has passed (removed, or soft-deleted if forked). */
  #live(path: string, now: number): StreamMeta | undefined {
    const meta = this.#t.meta(path);
    if (!meta || meta.softDeleted || !isExpired(meta, now)) return meta;
    return this.#expire(meta) ? meta : undefined;
  }

  /** Returns true when the stream stays (soft-deleted for its forks). */
  #expire(meta: StreamMeta): boolean {
    if (meta.refCount > 0) {
      meta.softDeleted = true;
      this.#t.saveMeta(meta);
      return true;
    }
    this.#removeCascade(meta);
    return false;
  }

  #removeCascade(meta: StreamMeta): void {
    this.#t.remove(meta);
    if (meta.forkedFrom === undefined) return;
    const source = this.#t.meta(meta.forkedFrom);
    if (!source) return;
    source.refCount = Math.max(0, source.refCount - 1);
    if (source.refCount === 0 && source.softDeleted) this.#removeCascade(source);
    else this.#t.saveMeta(source);
  }

  /** Chunks after `after` up to `cap`: the inherited ones (through the source chain), then own. */
  #stitched(
    meta: StreamMeta,
    after: number,
    cap: number,
    budget: { left: number; taken: number },
  ): StreamChunk[] {
    const out: StreamChunk[] = [];
    if (meta.forkedFrom !== undefined && meta.forkOffset !== undefined && after < meta.forkOffset) {
      const source = this.#t.meta(meta.forkedFrom);
      const limit = Math.min(cap, meta.forkOffset);
      if (source) out.push(...this.#stitched(source, after, limit, budget));
      // a page that ended inside the inherited part (its byte bound reached, or the next inherited
      // chunk too big for what is left) goes on there next time, not at the fork's own chunks
      if (budget.taken > 0 && (budget.left <= 0 || (out.at(-1)?.end ?? limit) < limit)) return out;
    }
    // the tables bound the page (always ≥ 1 chunk); after inherited chunks, that one may not fit
    const taken = budget.taken;
    const own = this.#t.chunks(meta.key, after, cap, Math.max(0, budget.left));
    for (const chunk of own) {
      if (taken > 0 && budget.taken === taken && chunk.data.length > budget.left) {
        budget.left = 0;
        break;
      }
      out.push(chunk);
      budget.taken++;
      budget.left -= chunk.data.length;
    }
    return out;
  }

  /** How many sources stand behind `meta` (0 for a stream that is not a fork). */
  #depth(meta: StreamMeta): number {
    let depth = 0;
    let at: StreamMeta | undefined = meta;
    while (at?.forkedFrom !== undefined && depth < MAX_FORK_DEPTH) {
      at = this.#t.meta(at.forkedFrom);
      depth++;
    }
    return depth;
  }

  /**
   * The prefix a sub-offset fork inherits from the chunk at `offset`, why it cannot, or what it
   * costs when that is more than `allowance` (nothing is scanned or copied then).
   */
  #subOffsetPrefix(
    source: StreamMeta,
    offset: number,
    subOffset: number,
    allowance: number,
  ): Uint8Array | string | { unpaid: number } {
    const [chunk] = this.#stitched(source, offset, Number.POSITIVE_INFINITY, { left: 0, taken: 0 });
    if (!chunk || chunk.start !== offset)
      return 'there is no append at Stream-Fork-Offset to take a sub-offset of';
    const json = isJsonStream(source);
    if (!json && subOffset > chunk.data.length)
      return `Stream-Fork-Sub-Offset is past the append's ${chunk.data.length} bytes`;
    const cost = subOffsetCost(chunk.data.length, subOffset, json);
    if (cost > allowance) return { unpaid: cost };
    // a view, not a copy: the memory store keeps it (sharing the source's bytes, which outlive the
    // fork's rows), SQLite and Redis write it to a row of the fork's own
    if (!json) return chunk.data.subarray(0, subOffset);
    const split = jsonMessagesEnd(chunk.data, subOffset);
    if ('messages' in split) return `Stream-Fork-Sub-Offset is past the append's ${split.messages} messages`;
    return chunk.data.subarray(0, split.end);
  }
}

/**
 * What a sub-offset fork costs the requester's publish bytes budget (`maxPublishBytesRate`, the one
 * its appends draw on), taken before anything is copied, so a holder forks no faster than it could
 * write: of a byte stream, the bytes copied; of a JSON stream, the whole append it splits. The JSON
 * prefix's length is only known after scanning for the end of message k, and that scan (through up
 * to the whole append) is work to be paid for before it runs; the append's length is known without
 * it, and bounds both the scan and the copy. (It charges more than is copied when a few messages of
 * a large append are taken: the price of never working unpaid.)
 */
export function subOffsetCost(appendBytes: number, subOffset: number, json: boolean): number {
  return json ? appendBytes : subOffset;
}
