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

/** Offsets look like `0000000000000000_0000000000000042`: a fixed prefix, then the tail position. */
export const ZERO_OFFSET = '0000000000000000_0000000000000000';

export function formatOffset(position: number): string {
  return `0000000000000000_${String(position).padStart(16, '0')}`;
}

/** The tail position an offset names, or undefined when it is not one of ours. */
export function parseOffset(offset: string): number | undefined {
  const match = /^(\d{16})_(\d{16})$/.exec(offset);
  if (!match) return undefined;
  const position = Number(match[2]);
  return Number.isSafeInteger(position) ? position : undefined;
}

export interface ProducerClaim {
  id: string;
  epoch: number;
  seq: number;
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
  /** Messages (JSON) or bytes (others) of the chunk at `offset` inherited too; 0 = none. */
  subOffset: number;
}

export interface CreateSpec {
  /** Undefined: `application/octet-stream`, or a fork's source's type. */
  contentType?: string;
  ttlSeconds?: number;
  expiresAt?: string;
  closed: boolean;
  /** Initial content, already in stored form (JSON: a fragment): empty means no chunk. */
  data: Uint8Array;
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
  | { kind: 'bad_fork'; reason: string };

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
