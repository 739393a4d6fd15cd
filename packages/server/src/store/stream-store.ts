/**
 * Durable Streams storage (PROTOCOL.md §16.2, ARCHITECTURE.md §18): the seam every store implements to
 * carry Durable Streams beside its channels. A Durable Stream is its own kind of log — immutable bytes
 * at offsets — kept in the store's own space for streams (memory: maps; SQLite: the `ds_*` tables of
 * the same database file), never in the channel log, whose appends roll messages up.
 *
 * Guarantees every implementation keeps (test/durable-streams/stream-store.test.ts runs the same cases on each):
 * - An append is one atomic step: the chunk, the new tail, the closed flag, the Stream-Seq and the
 *   producer state are stored together or not at all (SQLite: one transaction), so a retry after a
 *   crash is recognised as a duplicate, never stored twice.
 * - Validation and append of one request happen without interleaving with another request on the
 *   same stream (the decision is taken on the state the write applies to).
 * - Offsets are strictly increasing and the bytes before an offset never change; a chunk is never
 *   rewritten. A read after offset X returns exactly the chunks stored after X.
 * - A stream past its TTL or Expires-At is gone for every operation (and its path can be reused).
 *
 * A store without this seam (`Store.streams` undefined) makes the endpoint answer 501. Redis
 * (stream-redis-store.ts) runs the same engine with optimistic steps: a compare-and-set script
 * writes each step's rows together, or nothing when another node changed the stream first.
 */

/**
 * Offsets look like `0000000000000000_0000000000000042`: the generation (16 digits), then the tail
 * position (16 digits). A stream's first generation is 0 (Redis: the generation of the Redis run,
 * and of the FLUSHALL, it was created after: stream-redis-store.ts); the Redis store starts another one when a
 * stream is first written on a Redis that is not the one that wrote it last (restarted, restored from
 * a snapshot, failed over: it may hold less than was acknowledged), so that appends made after it
 * never reuse an offset handed out for data that Redis lost (see `StreamMeta.generations`).
 */
export const ZERO_OFFSET = '0000000000000000_0000000000000000';

/** The offset of `position` in a stream (in the generation that wrote it). */
export function formatOffset(position: number, meta?: Pick<StreamMeta, 'generations'>): string {
  const generation = generationAt(meta?.generations, position);
  return `${String(generation).padStart(16, '0')}_${String(position).padStart(16, '0')}`;
}

/** The tail position an offset names, or undefined when it is not one of ours. */
export function parseOffset(offset: string): number | undefined {
  return splitOffset(offset)?.[1];
}

/**
 * The position a reader's offset names in this stream, or 'gone' when it names data the stream no
 * longer holds: an offset of a generation past whose end it lies (written after the snapshot that
 * Redis came back from), or of a generation the stream does not know (started on a Redis whose
 * writes were lost). Undefined when it is not one of ours.
 */
export function offsetPosition(
  meta: Pick<StreamMeta, 'generations'>,
  offset: string,
): number | 'gone' | undefined {
  const split = splitOffset(offset);
  if (!split) return undefined;
  const [generation, position] = split;
  const generations = meta.generations;
  if (!generations || generations.length === 0) return generation === 0 ? position : 'gone';
  const i = generations.findIndex(([g]) => g === generation);
  if (i < 0) return 'gone';
  const next = generations[i + 1];
  return next !== undefined && position > next[1] ? 'gone' : position;
}

/**
 * The generations after a stream was first written on another Redis, at tail `tail`: a new one,
 * after every one before (its number from the clock, like channel epochs), naming the positions past
 * `tail`. A last one that named no position yet (the stream did not grow since it started) is
 * replaced: whatever it named was lost with the Redis that wrote it.
 */
export function nextGeneration(
  generations: readonly [number, number][] | undefined,
  tail: number,
  now: number,
): [number, number][] {
  const list: [number, number][] = generations && generations.length > 0 ? [...generations] : [[0, 0]];
  const last = list.at(-1) as [number, number];
  const started: [number, number] = [Math.max(now, last[0] + 1), tail];
  if (list.length > 1 && last[1] === tail) list[list.length - 1] = started;
  else list.push(started);
  return list;
}

/** The generation whose offsets name `position`: the last one starting before it (the first for 0). */
function generationAt(generations: readonly [number, number][] | undefined, position: number): number {
  if (!generations || generations.length === 0) return 0;
  let generation = generations[0]![0];
  for (const [g, from] of generations) {
    if (from >= position) break;
    generation = g;
  }
  return generation;
}

function splitOffset(offset: string): [number, number] | undefined {
  const match = /^(\d{16})_(\d{16})$/.exec(offset);
  if (!match) return undefined;
  const generation = Number(match[1]);
  const position = Number(match[2]);
  return Number.isSafeInteger(position) && Number.isSafeInteger(generation)
    ? [generation, position]
    : undefined;
}

export interface ProducerClaim {
  /** `Producer-Id` as sent. */
  id: string;
  epoch: number;
  seq: number;
  /**
   * Whose producer it is: the requester's publisher scope (`publisherScope`, channel-service.ts);
   * absent on the open namespace. Producer state is kept per (stream, scope, id): `producerKey`.
   */
  scope?: string;
}

export interface StreamMeta {
  /** The store's own key for the stream's rows (not part of the protocol). */
  key: number;
  path: string;
  /** As given at creation (parameters kept); compared case-insensitively without parameters. */
  contentType: string;
  ttlSeconds?: number;
  /** As given at creation (RFC 3339). */
  expiresAt?: string;
  createdAt: number;
  /** Last read or write (TTL is sliding from it). */
  touchedAt: number;
  /** Position of the tail (bytes of data for a byte stream; bytes of stored JSON text for JSON). */
  tail: number;
  closed: boolean;
  /** The producer request that closed the stream, so its retry is a duplicate. */
  closedBy?: ProducerClaim;
  /** The last Stream-Seq accepted. */
  lastSeq?: string;
  /** A fork: the source's path; data before `forkOffset` is the source's. */
  forkedFrom?: string;
  forkOffset?: number;
  /** The sub-offset the fork was created with (for idempotent re-creation). */
  forkSubOffset?: number;
  /** Forks whose source this stream is. */
  refCount: number;
  /**
   * Generations of its offsets, [generation, from]: each names the positions past `from`, up to
   * where the next one starts. Absent: one, generation 0 (memory, SQLite, and a Redis stream
   * created before Redis streams started in their Redis's generation and written by one Redis
   * only). A fork inherits those that start before its fork offset, and its own positions are in a
   * new stream's generation (Redis; when later than the inherited).
   */
  generations?: [number, number][];
  /** Redis: the run_id of the Redis that last wrote the stream (another one starts a generation). */
  run?: string;
  /** Deleted (or expired) while forks still read it: 410 for every direct operation. */
  softDeleted: boolean;
}

export interface StreamChunk {
  /** Position of the chunk's first byte. */
  start: number;
  /** Position after its last byte (= the offset a reader continues from). */
  end: number;
  data: Uint8Array;
}

export interface ForkSpec {
  /** The source stream's path (after `/v1/stream/`). */
  source: string;
  /** Default: the source's tail. */
  offset?: number;
  /** The offset as sent (`offset` is its position): checked against the source's generations. */
  offsetToken?: string;
  /** Messages (JSON) or bytes (others) of the chunk at `offset` inherited too; 0 = none. */
  subOffset: number;
  /**
   * The bytes a sub-offset may cost (`subOffsetCost`), already taken from the requester's budget
   * (absent: no bound, the open namespace). Costing more → `fork_unpaid`, nothing done.
   */
  allowance?: number;
}

export interface CreateSpec {
  /** Undefined: `application/octet-stream`, or a fork's source's type. */
  contentType?: string;
  ttlSeconds?: number;
  expiresAt?: string;
  closed: boolean;
  /** Initial content, already in stored form (JSON: a fragment): empty means no chunk. */
  data: Uint8Array;
  /**
   * Whether `data` was validated and re-serialised as JSON. When given, a stream whose resolved
   * content type says otherwise (a fork without Content-Type whose source changed since the request
   * looked at it) is refused, `source_changed`: never unvalidated bytes as a JSON stream's append.
   */
  dataJson?: boolean;
  fork?: ForkSpec;
}

export type CreateOutcome =
  | { kind: 'created'; meta: StreamMeta }
  | { kind: 'exists'; meta: StreamMeta }
  | { kind: 'conflict'; meta: StreamMeta }
  /** The path belongs to a soft-deleted stream (its forks still read it). */
  | { kind: 'path_in_use' }
  | { kind: 'source_not_found' }
  | { kind: 'source_gone' }
  | { kind: 'fork_type_mismatch' }
  | { kind: 'bad_fork'; reason: string }
  /** The sub-offset costs `bytes`, more than `ForkSpec.allowance`: nothing copied, nothing created. */
  | { kind: 'fork_unpaid'; bytes: number }
  /**
   * The body was prepared (JSON validated, or not) for another content type than the one the
   * stream resolves to: the fork's source changed since the request looked at it. Nothing created.
   */
  | { kind: 'source_changed' };

export type DeleteOutcome = 'deleted' | 'not_found' | 'gone';

export interface AppendSpec {
  /** The request's content type (absent for a close-only request). */
  contentType?: string;
  /** Empty only for a close-only request. */
  data: Uint8Array;
  close: boolean;
  streamSeq?: string;
  producer?: ProducerClaim;
}

export type AppendOutcome =
  | { kind: 'not_found' }
  /** Soft-deleted: its forks still read it, nobody appends to it. */
  | { kind: 'gone' }
  /** Stored (or, for a close-only request, the stream closed). */
  | { kind: 'appended'; meta: StreamMeta }
  /** The producer's (epoch, seq) was already applied: nothing stored. `lastSeq` is its highest. */
  | { kind: 'duplicate'; meta: StreamMeta; lastSeq: number }
  | { kind: 'closed'; meta: StreamMeta }
  | { kind: 'content_type_mismatch'; meta: StreamMeta }
  | { kind: 'seq_conflict'; meta: StreamMeta }
  | { kind: 'stale_epoch'; epoch: number }
  | { kind: 'epoch_seq_not_zero' }
  | { kind: 'sequence_gap'; expected: number; received: number };

export interface ReadPage {
  meta: StreamMeta;
  chunks: StreamChunk[];
  /** True when the page ends at the tail (no more data stored now). */
  upToDate: boolean;
}

/**
 * Wakes of live readers across nodes (a store shared by several nodes: Redis). Best effort: a lost
 * wake only delays a reader to its next poll, since readers always read from the store.
 */
export interface StreamWakeBus {
  /** Tells the other nodes that `path` changed. */
  publish(path: string): void;
  /** Hears the other nodes' changes to `path` until `unwatch`; resolves once subscribed. */
  watch(path: string, onWake: () => void): Promise<void>;
  unwatch(path: string): void;
  /** Called after the bus (re)connects: wakes published meanwhile may be lost. */
  onReconnect(callback: () => void): void;
}

export interface StreamStore {
  /** Present when other nodes share the store: live readers hear their changes through it. */
  readonly wakes?: StreamWakeBus | undefined;
  /**
   * The stream's metadata (soft-deleted ones included: check `softDeleted`), or undefined when it
   * does not exist or has expired. Does not touch the TTL (HEAD).
   */
  get(path: string, now: number): Promise<StreamMeta | undefined>;
  create(path: string, spec: CreateSpec, now: number): Promise<CreateOutcome>;
  append(path: string, spec: AppendSpec, now: number): Promise<AppendOutcome>;
  /**
   * Chunks after position `after` — a fork's inherited ones first, then its own — up to about
   * `maxBytes` (always ≥ 1 chunk when any), and touches the stream's TTL. Undefined when the stream
   * does not exist (or is soft-deleted).
   */
  read(path: string, after: number, maxBytes: number, now: number): Promise<ReadPage | undefined>;
  /** Touches the TTL without reading (a live read that starts waiting). */
  touch(path: string, now: number): Promise<void>;
  /** Removes the stream, or soft-deletes it while forks read it. */
  delete(path: string, now: number): Promise<DeleteOutcome>;
  /** Removes expired streams; returns how many. */
  sweep(now: number): Promise<number>;
  /** Streams and bytes held (for metrics). */
  stats(): Promise<{ streams: number; bytes: number }>;
}
