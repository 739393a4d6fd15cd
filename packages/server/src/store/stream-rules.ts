/**
 * The decisions every stream store takes the same way (PROTOCOL.md §16.4–16.5, §16.8): expiry, whether a repeated
 * create matches, and what an append does given the stream and its producer's state. Pure functions:
 * a store reads the state, asks `decideAppend`, and applies the returned writes in one atomic step.
 *
 * Append precedence (the Durable Streams order): closed stream first (a retry of the closing producer
 * request is a duplicate), then content type, then producer fencing and sequence, then Stream-Seq.
 */
import type { AppendOutcome, AppendSpec, CreateSpec, ProducerClaim, StreamMeta } from './stream-store.ts';

export interface ProducerState {
  epoch: number;
  lastSeq: number;
  updatedAt: number;
}

/**
 * The key of a producer's state in its stream: the scope, a line feed, the Producer-Id; the
 * Producer-Id alone on the open namespace (no scope). Producer state was kept by Producer-Id alone
 * before (review finding 3: anyone who could append with another's Producer-Id could make its
 * appends duplicates, or fence it); a header value cannot hold a line feed, so no Producer-Id, nor
 * a key stored before, is ever a scoped key.
 */
export function producerKey(claim: Pick<ProducerClaim, 'id' | 'scope'>): string {
  return claim.scope === undefined ? claim.id : `${claim.scope}\n${claim.id}`;
}

/** `application/json; charset=utf-8` → `application/json`. */
export function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

export function isJsonStream(meta: Pick<StreamMeta, 'contentType'>): boolean {
  return mediaType(meta.contentType) === 'application/json';
}

/**
 * Where the first `count` messages of a stored JSON chunk end (bytes), or how many messages it holds
 * when fewer. A stored chunk is messages as `JSON.stringify` wrote them, joined with `,` (json-mode.ts),
 * so the end of message k is the k-th comma outside strings and brackets (or the chunk's end): one
 * pass over the prefix, no parse. Parsing the whole append and serialising the messages again held
 * the event loop ~40 ms per MiB, per fork.
 */
export function jsonMessagesEnd(chunk: Uint8Array, count: number): { end: number } | { messages: number } {
  let depth = 0;
  let inString = false;
  let seen = 0;
  for (let i = 0; i < chunk.length; i++) {
    const b = chunk[i];
    if (inString) {
      // skip the escaped character, e.g. \"
      if (b === 0x5c) i++;
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) inString = true;
    else if (b === 0x5b || b === 0x7b) depth++;
    else if (b === 0x5d || b === 0x7d) depth--;
    else if (b === 0x2c && depth === 0 && ++seen === count) return { end: i };
  }
  const messages = chunk.length === 0 ? 0 : seen + 1;
  return messages === count ? { end: chunk.length } : { messages };
}

export function isExpired(meta: StreamMeta, now: number): boolean {
  if (meta.expiresAt !== undefined) {
    const at = Date.parse(meta.expiresAt);
    if (!Number.isFinite(at) || now >= at) return true;
  }
  return meta.ttlSeconds !== undefined && now >= meta.touchedAt + meta.ttlSeconds * 1000;
}

/** A create with its content type and expiry resolved (a fork inherits them from its source). */
export interface ResolvedCreate {
  contentType: string;
  ttlSeconds?: number;
  expiresAt?: string;
  closed: boolean;
  fork?: { source: string; requestedOffset?: number; offset: number; subOffset: number };
}

/** Whether a PUT on an existing stream is the same create (200) rather than a conflict (409). */
export function sameCreate(meta: StreamMeta, spec: ResolvedCreate): boolean {
  return (
    mediaType(meta.contentType) === mediaType(spec.contentType) &&
    meta.ttlSeconds === spec.ttlSeconds &&
    meta.expiresAt === spec.expiresAt &&
    meta.closed === spec.closed &&
    meta.forkedFrom === spec.fork?.source &&
    (spec.fork?.requestedOffset === undefined || spec.fork.requestedOffset === meta.forkOffset) &&
    (meta.forkSubOffset ?? 0) === (spec.fork?.subOffset ?? 0)
  );
}

/**
 * A fork's expiry: its own TTL or Expires-At when it asks for one, else the source's (a fork of a
 * stream with a deadline cannot outlive it by accident); never capped by the source's.
 */
export function forkExpiry(
  spec: Pick<CreateSpec, 'ttlSeconds' | 'expiresAt'>,
  source: StreamMeta,
): { ttlSeconds?: number; expiresAt?: string } {
  if (spec.ttlSeconds !== undefined) return { ttlSeconds: spec.ttlSeconds };
  if (spec.expiresAt !== undefined) return { expiresAt: spec.expiresAt };
  if (source.ttlSeconds !== undefined) return { ttlSeconds: source.ttlSeconds };
  if (source.expiresAt !== undefined) return { expiresAt: source.expiresAt };
  return {};
}

export function newMeta(key: number, path: string, spec: ResolvedCreate, now: number): StreamMeta {
  const meta: StreamMeta = {
    key,
    path,
    contentType: spec.contentType,
    createdAt: now,
    touchedAt: now,
    tail: spec.fork?.offset ?? 0,
    closed: spec.closed,
    refCount: 0,
    softDeleted: false,
  };
  if (spec.ttlSeconds !== undefined) meta.ttlSeconds = spec.ttlSeconds;
  if (spec.expiresAt !== undefined) meta.expiresAt = spec.expiresAt;
  if (spec.fork) {
    meta.forkedFrom = spec.fork.source;
    meta.forkOffset = spec.fork.offset;
    if (spec.fork.subOffset > 0) meta.forkSubOffset = spec.fork.subOffset;
  }
  return meta;
}

/** What an accepted append writes. */
export interface AppendWrites {
  /** Bytes to store as a new chunk (absent for a close-only request). */
  data?: Uint8Array;
  meta: StreamMeta;
  /** The producer's new state, when the request carried producer headers. */
  producer?: { id: string; state: ProducerState };
}

export type AppendDecision = { outcome: AppendOutcome; writes?: AppendWrites };

/**
 * Whether `claim` is the producer request that closed the stream (`closedBy`). A close stored
 * before producers were scoped has no scope: its producer's retry after the upgrade is still
 * recognised (a stream closed anyway; at worst another holder with its Producer-Id gets 204).
 */
function sameClaim(closedBy: ProducerClaim | undefined, claim: ProducerClaim | undefined): boolean {
  return (
    closedBy !== undefined &&
    claim !== undefined &&
    closedBy.id === claim.id &&
    (closedBy.scope === undefined || closedBy.scope === claim.scope) &&
    closedBy.epoch === claim.epoch &&
    closedBy.seq === claim.seq
  );
}

/**
 * Decides an append on `meta` (an existing, unexpired stream) with the producer's current state.
 * The returned `writes.meta` is the stream's new metadata (tail, closed, lastSeq, touchedAt).
 */
export function decideAppend(
  meta: StreamMeta,
  producer: ProducerState | undefined,
  spec: AppendSpec,
  now: number,
): AppendDecision {
  if (meta.closed) {
    if (sameClaim(meta.closedBy, spec.producer))
      return { outcome: { kind: 'duplicate', meta, lastSeq: spec.producer?.seq ?? 0 } };
    // a close-only request without producer headers on a closed stream: idempotent success
    if (spec.data.length === 0 && spec.close && spec.producer === undefined)
      return { outcome: { kind: 'appended', meta } };
    return { outcome: { kind: 'closed', meta } };
  }
  if (spec.data.length > 0 && mediaType(spec.contentType) !== mediaType(meta.contentType))
    return { outcome: { kind: 'content_type_mismatch', meta } };

  let producerWrite: AppendWrites['producer'];
  if (spec.producer !== undefined) {
    const { id, epoch, seq } = spec.producer;
    if (producer === undefined) {
      if (seq !== 0) return { outcome: { kind: 'sequence_gap', expected: 0, received: seq } };
    } else if (epoch < producer.epoch) {
      return { outcome: { kind: 'stale_epoch', epoch: producer.epoch } };
    } else if (epoch > producer.epoch) {
      if (seq !== 0) return { outcome: { kind: 'epoch_seq_not_zero' } };
    } else if (seq <= producer.lastSeq) {
      return { outcome: { kind: 'duplicate', meta, lastSeq: producer.lastSeq } };
    } else if (seq !== producer.lastSeq + 1) {
      return { outcome: { kind: 'sequence_gap', expected: producer.lastSeq + 1, received: seq } };
    }
    producerWrite = { id, state: { epoch, lastSeq: seq, updatedAt: now } };
  }

  if (spec.streamSeq !== undefined && meta.lastSeq !== undefined && spec.streamSeq <= meta.lastSeq)
    return { outcome: { kind: 'seq_conflict', meta } };

  const next: StreamMeta = { ...meta, touchedAt: now, tail: meta.tail + spec.data.length };
  if (spec.streamSeq !== undefined) next.lastSeq = spec.streamSeq;
  if (spec.close) {
    next.closed = true;
    if (spec.producer !== undefined) next.closedBy = { ...spec.producer };
  }
  const writes: AppendWrites = { meta: next };
  if (spec.data.length > 0) writes.data = spec.data;
  if (producerWrite) writes.producer = producerWrite;
  return { outcome: { kind: 'appended', meta: next }, writes };
}
