/**
 * HTTP plumbing shared by the Durable Streams handlers (PROTOCOL.md §16): header names, the headers
 * every answer carries (CORS, no sniffing, cross-origin resource policy), strict parsing of the
 * request headers the protocol defines, bounded body reading, and typed error answers. A bad header
 * is a 400 with a message, never a guess.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ErrorCode, errorInfo } from '@mooring/protocol';
import { type Pace, paced } from '../inbound-budget.ts';
import { RequestAborted } from '../rest-api.ts';
import type { ForkSpec, ProducerClaim } from '../store/stream-store.ts';
import { parseOffset } from '../store/stream-store.ts';

/** Where stream paths start (a fork's source is named by its path under it). */
export const STREAM_ROOT = '/v1/stream/';

export const H = {
  nextOffset: 'stream-next-offset',
  upToDate: 'stream-up-to-date',
  cursor: 'stream-cursor',
  closed: 'stream-closed',
  ttl: 'stream-ttl',
  expiresAt: 'stream-expires-at',
  seq: 'stream-seq',
  producerId: 'producer-id',
  producerEpoch: 'producer-epoch',
  producerSeq: 'producer-seq',
  expectedSeq: 'producer-expected-seq',
  receivedSeq: 'producer-received-seq',
  sseEncoding: 'stream-sse-data-encoding',
  forkedFrom: 'stream-forked-from',
  forkOffset: 'stream-fork-offset',
  forkSubOffset: 'stream-fork-sub-offset',
} as const;

const EXPOSED = [
  H.nextOffset,
  H.cursor,
  H.upToDate,
  H.closed,
  H.ttl,
  H.expiresAt,
  H.producerEpoch,
  H.producerSeq,
  H.expectedSeq,
  H.receivedSeq,
  H.sseEncoding,
  'etag',
  'location',
  'content-type',
].join(', ');

const ALLOWED = [
  'authorization',
  'content-type',
  'if-none-match',
  H.seq,
  H.ttl,
  H.expiresAt,
  H.closed,
  H.producerId,
  H.producerEpoch,
  H.producerSeq,
  H.forkedFrom,
  H.forkOffset,
  H.forkSubOffset,
].join(', ');

/** Set on every Durable Streams answer (the server adds `x-content-type-options: nosniff`). */
export function setCommonHeaders(res: ServerResponse): void {
  res.setHeader('access-control-allow-origin', '*');
  res.setHeader('access-control-allow-methods', 'GET, HEAD, POST, PUT, DELETE, OPTIONS');
  res.setHeader('access-control-allow-headers', ALLOWED);
  res.setHeader('access-control-expose-headers', EXPOSED);
  res.setHeader('cross-origin-resource-policy', 'cross-origin');
}

/** A request that cannot be served, with the status the Durable Streams spec names for it. */
export class StreamHttpError extends Error {
  readonly status: number;
  readonly code: ErrorCode;
  readonly headers: Record<string, string>;
  constructor(status: number, code: ErrorCode, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.name = 'StreamHttpError';
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

export function sendError(res: ServerResponse, err: StreamHttpError): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const info = { ...errorInfo(err.code, err.message), status: err.status };
  const text = JSON.stringify({ error: info });
  res.writeHead(err.status, {
    ...err.headers,
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function single(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** `Stream-Closed` counts only when it is exactly `true` (any case); other values are ignored. */
export function closedHeader(req: IncomingMessage): boolean {
  return single(req, H.closed)?.toLowerCase() === 'true';
}

/** The request's `Content-Type` if it is well formed (`type/subtype…`); a malformed one counts as absent. */
function wellFormedContentType(req: IncomingMessage): string | undefined {
  const value = single(req, 'content-type')?.trim();
  return value && /^[\w.+-]+\/[\w.+-]+/.test(value) ? value : undefined;
}

/** Whether the request names a content type: a fork without one (or with a malformed one) takes its source's. */
export function hasContentType(req: IncomingMessage): boolean {
  return wellFormedContentType(req) !== undefined;
}

/** The content type to create a stream with: a missing or malformed one is `application/octet-stream`. */
export function creationContentType(req: IncomingMessage): string {
  return wellFormedContentType(req) ?? 'application/octet-stream';
}

export function expiryHeaders(req: IncomingMessage): { ttlSeconds?: number; expiresAt?: string } {
  const ttl = single(req, H.ttl);
  const expiresAt = single(req, H.expiresAt);
  if (ttl !== undefined && expiresAt !== undefined)
    throw new StreamHttpError(400, 'bad_request', 'send Stream-TTL or Stream-Expires-At, not both');
  if (ttl !== undefined) {
    if (!/^(0|[1-9]\d{0,14})$/.test(ttl))
      throw new StreamHttpError(
        400,
        'bad_request',
        'Stream-TTL must be a whole number of seconds (e.g. 3600)',
      );
    return { ttlSeconds: Number(ttl) };
  }
  if (expiresAt !== undefined) {
    if (!/^\d{4}-\d{2}-\d{2}T/.test(expiresAt) || !Number.isFinite(Date.parse(expiresAt)))
      throw new StreamHttpError(400, 'bad_request', 'Stream-Expires-At must be an RFC 3339 timestamp');
    return { expiresAt };
  }
  return {};
}

const INTEGER = /^\d{1,16}$/;

/**
 * Stream-Forked-From (the source's URL path, `/v1/stream/<path>`), Stream-Fork-Offset and
 * Stream-Fork-Sub-Offset; undefined when the request is not a fork.
 */
export function forkHeaders(req: IncomingMessage): ForkSpec | undefined {
  const from = single(req, H.forkedFrom);
  const offset = single(req, H.forkOffset);
  const sub = single(req, H.forkSubOffset);
  if (from === undefined) {
    if (offset !== undefined || sub !== undefined)
      throw new StreamHttpError(
        400,
        'bad_request',
        'Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From',
      );
    return undefined;
  }
  let source = from.trim();
  try {
    if (/^https?:/i.test(source)) source = new URL(source).pathname;
  } catch {
    throw new StreamHttpError(400, 'bad_request', 'Stream-Forked-From is not a URL path');
  }
  if (!source.startsWith(STREAM_ROOT) || source.length === STREAM_ROOT.length)
    throw new StreamHttpError(404, 'not_found', `Stream-Forked-From must name a stream under ${STREAM_ROOT}`);
  const fork: ForkSpec = { source: source.slice(STREAM_ROOT.length), subOffset: 0 };
  if (offset !== undefined) {
    const position = parseOffset(offset);
    if (position === undefined)
      throw new StreamHttpError(400, 'bad_request', 'Stream-Fork-Offset must be a Stream-Next-Offset value');
    fork.offset = position;
    fork.offsetToken = offset;
  }
  if (sub !== undefined) {
    if (!/^(0|[1-9]\d{0,14})$/.test(sub))
      throw new StreamHttpError(400, 'bad_request', 'Stream-Fork-Sub-Offset must be a non-negative integer');
    fork.subOffset = Number(sub);
    if (fork.subOffset > 0 && fork.offset === undefined)
      throw new StreamHttpError(400, 'bad_request', 'Stream-Fork-Sub-Offset needs Stream-Fork-Offset');
  }
  return fork;
}

/** Producer-Id/-Epoch/-Seq: all three or none; epoch and seq non-negative integers ≤ 2^53-1. */
export function producerHeaders(req: IncomingMessage): ProducerClaim | undefined {
  const id = single(req, H.producerId);
  const epoch = single(req, H.producerEpoch);
  const seq = single(req, H.producerSeq);
  if (id === undefined && epoch === undefined && seq === undefined) return undefined;
  if (id === undefined || epoch === undefined || seq === undefined)
    throw new StreamHttpError(
      400,
      'bad_request',
      'send Producer-Id, Producer-Epoch and Producer-Seq together',
    );
  if (id === '' || id.length > 256)
    throw new StreamHttpError(400, 'bad_request', 'Producer-Id must be 1 to 256 characters');
  const e = Number(epoch);
  const s = Number(seq);
  if (!INTEGER.test(epoch) || !Number.isSafeInteger(e))
    throw new StreamHttpError(400, 'bad_request', 'Producer-Epoch must be a non-negative integer');
  if (!INTEGER.test(seq) || !Number.isSafeInteger(s))
    throw new StreamHttpError(400, 'bad_request', 'Producer-Seq must be a non-negative integer');
  return { id, epoch: e, seq: s };
}

export function streamSeqHeader(req: IncomingMessage): string | undefined {
  const seq = single(req, H.seq);
  if (seq !== undefined && seq.length > 256)
    throw new StreamHttpError(400, 'bad_request', 'Stream-Seq is longer than 256 characters');
  return seq;
}

export function requestContentType(req: IncomingMessage): string | undefined {
  return single(req, 'content-type');
}

/**
 * A body over the limit is still read (and dropped) up to this many bytes before the 413 is sent: a
 * server that answers while the client is still sending closes the connection under it, and the
 * client sees a network error instead of the 413. A limit above it is read up to the limit: the
 * drain bound never refuses a body the limit takes.
 */
const DRAIN_LIMIT = 64 * 1024 * 1024;

/** Reads the whole body, refusing (413) anything above `max` bytes; with `pace`, waits as it says after each piece. */
export async function readBody(req: IncomingMessage, max: number, pace?: Pace): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  const drain = Math.max(DRAIN_LIMIT, max);
  const tooLarge = (what: string) =>
    new StreamHttpError(413, 'body_too_large', `the body is ${what}; at most ${max} bytes are accepted`);
  if (declared > drain) {
    req.resume();
    throw tooLarge(`${declared} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > drain) {
        req.resume();
        throw tooLarge(`over ${drain} bytes`);
      }
      if (size <= max) chunks.push(chunk);
      await paced(pace, chunk.length);
    }
  } catch (err) {
    if (err instanceof StreamHttpError) throw err;
    throw new RequestAborted();
  }
  if (size > max) throw tooLarge(`${size} bytes`);
  return Buffer.concat(chunks);
}
