/**
 * The Durable Streams endpoint (PROTOCOL.md §16): `/v1/stream/<path>` speaks the Durable Streams
 * protocol, so its clients (and its conformance suite) run against Mooring unchanged.
 *
 *   PUT    create (idempotent; content type, Stream-TTL / Stream-Expires-At, Stream-Closed, body)
 *   POST   append (JSON mode, Stream-Seq, producers, Stream-Closed) or close
 *   HEAD   metadata            GET   catch-up, long-poll, SSE (stream-reads.ts)
 *   DELETE remove
 *
 * Streams live in the store's stream space (`Store.streams`, stream-store.ts), never in a channel.
 * Access: a stream whose path matches the configured open glob needs no credentials (off by
 * default); every other needs an API key or token whose capability allows the operation on
 * `stream:<path>` (`stream-read`, `stream-append`, `stream-create`, `stream-delete`). Every refusal
 * is a typed JSON error with the status the Durable Streams spec names; nothing a request sends can
 * make it a 500. Budgets: a credential's writes take from its identity's publish rate and its live
 * reads hold places in its connection budgets (`DurableStreamsDeps.budgets`). Memory and event loop:
 * a catch-up or long-poll page is streamed holding one of `maxConcurrentReads` page slots (one
 * identity, or one address on the open namespace, at most half), at its reader's pace; a reader that
 * takes nothing for `stallTimeout` is cut (stream-reads.ts); JSON bodies are bounded by
 * `maxJsonAppendBytes` and re-serialised in slices (json-mode.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Authenticator } from '../auth.ts';
import { globMatches, type Operation, requireAccess } from '../capabilities.ts';
import { publisherScope } from '../channel-service.ts';
import type { Identity } from '../connection-registry.ts';
import { holderKey } from '../identity-budgets.ts';
import type { Pace, PacedRead } from '../inbound-budget.ts';
import { ReadLimiter } from '../read-limiter.ts';
import { RequestAborted } from '../rest-api.ts';
import { ServerError, toErrorInfo } from '../server-error.ts';
import { StoreError } from '../store/store.ts';
import { isJsonStream, mediaType } from '../store/stream-rules.ts';
import type {
  AppendOutcome,
  CreateOutcome,
  CreateSpec,
  StreamMeta,
  StreamStore,
} from '../store/stream-store.ts';
import { formatOffset } from '../store/stream-store.ts';
import { jsonFragment } from './json-mode.ts';
import {
  closedHeader,
  creationContentType,
  expiryHeaders,
  forkHeaders,
  H,
  hasContentType,
  producerHeaders,
  readBody,
  requestContentType,
  STREAM_ROOT,
  StreamHttpError,
  sendError,
  setCommonHeaders,
  streamSeqHeader,
} from './stream-http.ts';
import { handleRead } from './stream-reads.ts';
import { StreamWaiters } from './stream-waiters.ts';

const STREAM_PREFIX = STREAM_ROOT;

export interface DurableStreamsOptions {
  /**
   * Glob over stream paths (the part after `/v1/stream/`, `*` = any run of characters) served
   * without credentials. Default: none. `'*'` opens every stream (the conformance suite runs so).
   */
  open?: string;
  /** How long a long-poll waits for data before a 204, ms. Default 20,000. */
  longPollTimeout?: number;
  /** How long an SSE response stays open before the server ends it, ms. Default 60,000. */
  sseMaxDuration?: number;
  /** Largest body of one PUT or POST, bytes (413 above). Default 8 MiB. */
  maxAppendBytes?: number;
  /**
   * Largest JSON-mode body (a PUT or POST with `application/json`), bytes (413 above; at most
   * `maxAppendBytes`): parsing and re-serialising cost far more per byte than storing. Default 1 MiB.
   */
  maxJsonAppendBytes?: number;
  /**
   * Catch-up and long-poll pages read and streamed at once, server-wide (others wait their turn);
   * one holder (`holderKey`; one address on the open namespace) holds at most half. Default 8.
   */
  maxConcurrentReads?: number;
  /** A read whose reader takes nothing for this long is cut, ms. Default 30,000. */
  stallTimeout?: number;
  /** A read answer stops after about this many bytes of data (always ≥ 1 append). Default 1 MiB. */
  readPageBytes?: number;
}

export interface DurableStreamsDeps {
  streams: StreamStore | undefined;
  auth: Authenticator;
  logger: Logger;
  /** Counts requests and bytes (metrics.ts). */
  onRequest: (operation: string, status: number) => void;
  onBytes: (direction: 'in' | 'out', bytes: number) => void;
  /**
   * The budgets of the credential's identity (PROTOCOL.md §10, §16): a write (PUT, POST, DELETE)
   * takes one operation of its publish rate before its body is read, and its body's bytes of its
   * bytes rate once read, a sub-offset fork's copy before it is made (`rate_limited`; a promise
   * where the budgets are counted across nodes); a
   * live read (long-poll, SSE) counts
   * like a realtime connection while it lasts (`too_many_connections`) and returns its release
   * (a promise where the budgets are counted across nodes).
   * Streams served without credentials (`open`) have no identity and take neither.
   */
  budgets?: {
    write(identity: Identity, count: number, bytes: number): Promise<void> | undefined;
    live(identity: Identity): (() => void) | Promise<() => void>;
    /** Reads a write's body at its identity's inbound pace (`maxInboundBytesRate`). */
    paced?: PacedRead;
  };
}

const MAX_PATH = 1024;

/** Takes bytes from the requester's publish bytes rate (429 `rate_limited` when over it). */
type Charge = (bytes: number) => Promise<void>;

export class DurableStreamsApi {
  readonly #o: Required<DurableStreamsOptions>;
  readonly #d: DurableStreamsDeps;
  readonly #reads: ReadLimiter;
  readonly waiters: StreamWaiters;

  constructor(options: DurableStreamsOptions, deps: DurableStreamsDeps) {
    this.#o = {
      open: options.open ?? '',
      longPollTimeout: options.longPollTimeout ?? 20_000,
      sseMaxDuration: options.sseMaxDuration ?? 60_000,
      maxAppendBytes: options.maxAppendBytes ?? 8 * 1024 * 1024,
      maxJsonAppendBytes: options.maxJsonAppendBytes ?? 1024 * 1024,
      readPageBytes: options.readPageBytes ?? 1024 * 1024,
      maxConcurrentReads: options.maxConcurrentReads ?? 8,
      stallTimeout: options.stallTimeout ?? 30_000,
    };
    this.#d = deps;
    // a reader waits its turn however long the line: waiting holds no page
    this.#reads = new ReadLimiter(this.#o.maxConcurrentReads, Number.POSITIVE_INFINITY);
    this.waiters = new StreamWaiters(deps.streams?.wakes);
  }

  handles(pathname: string): boolean {
    return pathname.startsWith(STREAM_PREFIX) || pathname === '/v1/stream';
  }

  /** Handles a request; never throws. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    setCommonHeaders(res);
    const method = req.method ?? 'GET';
    try {
      await this.#route(method, req, res, url);
    } catch (err) {
      if (err instanceof RequestAborted) {
        res.destroy();
        return;
      }
      const httpError = asHttpError(err);
      if (httpError.status >= 500) this.#d.logger.error({ err, path: url.pathname }, 'stream request failed');
      sendError(res, httpError);
    } finally {
      this.#d.onRequest(method, res.statusCode);
    }
  }

  async #route(method: string, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (method === 'OPTIONS') {
      res.writeHead(204, { 'access-control-max-age': '600' }).end();
      return;
    }
    const path = url.pathname.slice(STREAM_PREFIX.length);
    if (url.pathname === '/v1/stream' || path === '' || path.length > MAX_PATH || /[\s\p{Cc}]/u.test(path))
      throw new StreamHttpError(
        400,
        'bad_request',
        `a stream path is 1 to ${MAX_PATH} characters after ${STREAM_PREFIX}, without whitespace`,
      );
    const operation = OPERATION_OF[method];
    if (!operation)
      throw new StreamHttpError(405, 'method_not_allowed', `${method} is not a Durable Streams method`, {
        allow: 'GET, HEAD, POST, PUT, DELETE, OPTIONS',
      });
    const streams = this.#d.streams;
    if (!streams)
      throw new StreamHttpError(501, 'not_implemented', "this server's store does not carry Durable Streams");
    const identity = await this.#authorize(req, url, path, operation);
    const { budgets } = this.#d;
    if (identity && budgets && method !== 'GET' && method !== 'HEAD') await budgets.write(identity, 1, 0);
    // bytes stored for the request, from its identity's bytes rate (none on the open namespace)
    const charge: Charge | undefined =
      identity && budgets
        ? async (bytes) => {
            if (bytes > 0) await budgets.write(identity, 0, bytes);
          }
        : undefined;
    const body = async (json: boolean): Promise<Uint8Array> => {
      const read = (pace?: Pace) => readBody(req, json ? this.#jsonMax : this.#o.maxAppendBytes, pace);
      const data = await (identity && budgets?.paced ? budgets.paced(identity, read) : read());
      this.#d.onBytes('in', data.length);
      await charge?.(data.length);
      return data;
    };
    switch (method) {
      case 'PUT':
        return this.#create(streams, path, req, res, url, body, charge);
      case 'POST':
        return this.#append(streams, path, req, res, body, identity);
      case 'DELETE': {
        const outcome = await streams.delete(path, Date.now());
        if (outcome === 'not_found') throw new StreamHttpError(404, 'not_found', `no stream at ${path}`);
        if (outcome === 'gone') throw gone(path);
        this.waiters.notify(path);
        res.writeHead(204).end();
        return;
      }
      default: {
        const meta = await streams.get(path, Date.now());
        if (!meta) throw new StreamHttpError(404, 'not_found', `no stream at ${path}`);
        if (meta.softDeleted) throw gone(path);
        if (method === 'HEAD') return head(meta, path, res);
        const live = url.searchParams.get('live');
        const owner = identity ? holderKey(identity) : `open\u0000${req.socket.remoteAddress ?? ''}`;
        const release =
          identity && budgets && (live === 'sse' || live === 'long-poll')
            ? await budgets.live(identity)
            : undefined;
        try {
          return await handleRead(
            {
              streams,
              waiters: this.waiters,
              longPollTimeout: this.#o.longPollTimeout,
              sseMaxDuration: this.#o.sseMaxDuration,
              pageBytes: this.#o.readPageBytes,
              cacheScope: this.#isOpen(path) ? 'public' : 'private',
              onRead: (bytes) => this.#d.onBytes('out', bytes),
              stallTimeout: this.#o.stallTimeout,
              pageSlot: () => this.#reads.acquire('always', owner),
            },
            path,
            meta,
            req,
            res,
            url,
          );
        } finally {
          release?.();
        }
      }
    }
  }

  get #jsonMax(): number {
    return Math.min(this.#o.maxJsonAppendBytes, this.#o.maxAppendBytes);
  }

  #isOpen(path: string): boolean {
    return this.#o.open !== '' && globMatches(this.#o.open, path);
  }

  /** The credential's identity, checked for `operation` on the stream; none for an open stream. */
  async #authorize(
    req: IncomingMessage,
    url: URL,
    path: string,
    operation: Operation,
  ): Promise<Identity | undefined> {
    if (this.#isOpen(path)) return undefined;
    try {
      const identity = await this.#d.auth.authenticate(req, url);
      requireAccess(identity.access, `stream:${path}`, operation);
      return identity;
    } catch (err) {
      if (err instanceof ServerError) {
        const info = toErrorInfo(err);
        throw new StreamHttpError(info.status, info.code, info.message, {
          ...(info.status === 401 ? { 'www-authenticate': 'Bearer' } : {}),
        });
      }
      throw err;
    }
  }

  async #create(
    streams: StreamStore,
    path: string,
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    body: (json: boolean) => Promise<Uint8Array>,
    charge: Charge | undefined,
  ): Promise<void> {
    const fork = forkHeaders(req);
    if (fork) await this.#authorize(req, url, fork.source, 'stream-read');
    const expiry = expiryHeaders(req);
    const closed = closedHeader(req);
    // a fork without a Content-Type takes its source's
    const contentType = fork && !hasContentType(req) ? undefined : creationContentType(req);
    let data = await body(contentType !== undefined && isJsonStream({ contentType }));
    let jsonType = contentType;
    // a guess, checked again by the store step (`dataJson`): the source may change meanwhile
    if (fork && contentType === undefined)
      jsonType = (await streams.get(fork.source, Date.now()))?.contentType;
    const dataJson = jsonType !== undefined && isJsonStream({ contentType: jsonType });
    if (data.length > 0 && dataJson) {
      if (data.length > this.#jsonMax) throw jsonTooLarge(data.length, this.#jsonMax);
      const parsed = await jsonFragment(data, true);
      if (!parsed.ok) throw new StreamHttpError(400, 'bad_request', parsed.reason);
      data = parsed.fragment;
    }
    const spec: CreateSpec = {
      closed,
      data,
      dataJson,
      ...expiry,
      ...(contentType === undefined ? {} : { contentType }),
      ...(fork ? { fork } : {}),
    };
    const outcome = await this.#createPaid(streams, path, spec, charge);
    switch (outcome.kind) {
      case 'conflict':
        throw new StreamHttpError(
          409,
          'stream_conflict',
          `a stream exists at ${path} with another configuration`,
        );
      case 'path_in_use':
        throw new StreamHttpError(409, 'stream_conflict', `${path} was deleted but its forks still read it`);
      case 'source_not_found':
        throw new StreamHttpError(404, 'not_found', 'the Stream-Forked-From stream does not exist');
      case 'source_gone':
        throw new StreamHttpError(409, 'stream_conflict', 'the Stream-Forked-From stream was deleted');
      case 'fork_type_mismatch':
        throw new StreamHttpError(409, 'stream_conflict', "a fork's Content-Type must be its source's");
      case 'bad_fork':
        throw new StreamHttpError(400, 'bad_request', outcome.reason);
      case 'fork_unpaid':
      case 'source_changed':
        throw new StreamHttpError(
          409,
          'stream_conflict',
          'the Stream-Forked-From stream changed while the fork was made; retry',
        );
    }
    const meta = outcome.meta;
    const headers: Record<string, string> = {
      'content-type': meta.contentType,
      [H.nextOffset]: formatOffset(meta.tail, meta),
    };
    if (meta.closed) headers[H.closed] = 'true';
    if (outcome.kind === 'created') {
      const host = req.headers.host ?? 'localhost';
      headers.location = `http://${host}${url.pathname}`;
      if (data.length > 0) this.waiters.notify(path);
    }
    res.writeHead(outcome.kind === 'created' ? 201 : 200, headers).end();
  }

  /**
   * Creates the stream, a sub-offset fork's copied prefix paid from the requester's bytes rate
   * first (`subOffsetCost`, stream-engine.ts): the likely cost is taken before the store step (a
   * byte stream's sub-offset, what a JSON one costs at least), and if the step finds it costs more
   * it creates nothing and names the cost, which is taken (429 `rate_limited` when over the budget:
   * nothing copied) before one more step. The open namespace (no charge) copies unbounded.
   */
  async #createPaid(
    streams: StreamStore,
    path: string,
    spec: CreateSpec,
    charge: Charge | undefined,
  ): Promise<CreateOutcome> {
    const fork = spec.fork;
    if (!fork || fork.subOffset === 0 || !charge) return streams.create(path, spec, Date.now());
    // a JSON append of k messages holds at least k bytes: never more than the fork costs
    let paid = Math.min(fork.subOffset, this.#o.maxAppendBytes);
    await charge(paid);
    const first = await streams.create(path, { ...spec, fork: { ...fork, allowance: paid } }, Date.now());
    if (first.kind !== 'fork_unpaid') return first;
    await charge(first.bytes - paid);
    paid = first.bytes;
    // a second `fork_unpaid` (the source replaced by a larger one between the steps) is a 409
    return streams.create(path, { ...spec, fork: { ...fork, allowance: paid } }, Date.now());
  }

  async #append(
    streams: StreamStore,
    path: string,
    req: IncomingMessage,
    res: ServerResponse,
    body: (json: boolean) => Promise<Uint8Array>,
    identity: Identity | undefined,
  ): Promise<void> {
    const producer = producerHeaders(req);
    // producer state is the requester's own (PROTOCOL §16.5): another holder using the same
    // Producer-Id neither makes its appends duplicates nor fences it
    if (producer && identity) producer.scope = publisherScope(identity);
    const streamSeq = streamSeqHeader(req);
    const close = closedHeader(req);
    const contentType = requestContentType(req);
    // a JSON body is only ever stored in a JSON stream: bounded as such before it is read
    let data = await body(mediaType(contentType) === 'application/json');
    if (data.length === 0 && !close)
      throw new StreamHttpError(
        400,
        'bad_request',
        'an append needs a body (or Stream-Closed: true to close)',
      );
    if (data.length > 0 && (contentType === undefined || contentType.trim() === ''))
      throw new StreamHttpError(400, 'bad_request', 'an append with a body needs a Content-Type');
    const meta = await streams.get(path, Date.now());
    if (!meta) throw new StreamHttpError(404, 'not_found', `no stream at ${path}`);
    if (meta.softDeleted) throw gone(path);
    // JSON is validated only where it would be stored: a closed stream or a content-type mismatch
    // is answered first (the store decides those)
    if (
      data.length > 0 &&
      !meta.closed &&
      isJsonStream(meta) &&
      mediaType(contentType) === 'application/json'
    ) {
      const parsed = await jsonFragment(data, false);
      if (!parsed.ok) throw new StreamHttpError(400, 'bad_request', parsed.reason);
      data = parsed.fragment;
    }
    const spec = {
      data,
      close,
      ...(contentType === undefined ? {} : { contentType }),
      ...(streamSeq === undefined ? {} : { streamSeq }),
      ...(producer === undefined ? {} : { producer }),
    };
    const outcome = await streams.append(path, spec, Date.now());
    if (outcome.kind === 'appended') this.waiters.notify(path);
    answerAppend(res, outcome, producer !== undefined ? spec.producer : undefined, data.length === 0);
  }
}

const OPERATION_OF: Record<string, Operation> = {
  GET: 'stream-read',
  HEAD: 'stream-read',
  POST: 'stream-append',
  PUT: 'stream-create',
  DELETE: 'stream-delete',
};

function head(meta: StreamMeta, path: string, res: ServerResponse): void {
  const headers: Record<string, string> = {
    'content-type': meta.contentType,
    [H.nextOffset]: formatOffset(meta.tail, meta),
    'cache-control': 'no-store',
    etag: `"${Buffer.from(path).toString('base64url')}:-1:${formatOffset(meta.tail, meta)}${meta.closed ? ':c' : ''}"`,
  };
  if (meta.closed) headers[H.closed] = 'true';
  if (meta.ttlSeconds !== undefined) headers[H.ttl] = String(meta.ttlSeconds);
  if (meta.expiresAt !== undefined) headers[H.expiresAt] = meta.expiresAt;
  res.writeHead(200, headers).end();
}

function answerAppend(
  res: ServerResponse,
  outcome: AppendOutcome,
  producer: { epoch: number; seq: number } | undefined,
  closeOnly: boolean,
): void {
  switch (outcome.kind) {
    case 'not_found':
      throw new StreamHttpError(404, 'not_found', 'the stream does not exist');
    case 'gone':
      throw gone('the stream');
    case 'appended':
    case 'duplicate': {
      const headers: Record<string, string> = {
        [H.nextOffset]: formatOffset(outcome.meta.tail, outcome.meta),
      };
      if (outcome.meta.closed) headers[H.closed] = 'true';
      if (producer) {
        headers[H.producerEpoch] = String(producer.epoch);
        headers[H.producerSeq] = String(outcome.kind === 'duplicate' ? outcome.lastSeq : producer.seq);
      }
      const status = outcome.kind === 'appended' && producer && !closeOnly ? 200 : 204;
      res.writeHead(status, headers).end();
      return;
    }
    case 'closed':
      throw new StreamHttpError(409, 'stream_closed', 'the stream is closed: nothing more can be appended', {
        [H.closed]: 'true',
        [H.nextOffset]: formatOffset(outcome.meta.tail, outcome.meta),
      });
    case 'content_type_mismatch':
      throw new StreamHttpError(
        409,
        'stream_conflict',
        `the stream's content type is ${outcome.meta.contentType}`,
      );
    case 'seq_conflict':
      throw new StreamHttpError(
        409,
        'stream_conflict',
        `Stream-Seq must be above ${outcome.meta.lastSeq ?? ''}`,
      );
    case 'stale_epoch':
      throw new StreamHttpError(
        403,
        'producer_fenced',
        `a newer epoch (${outcome.epoch}) of this producer exists`,
        {
          [H.producerEpoch]: String(outcome.epoch),
        },
      );
    case 'epoch_seq_not_zero':
      throw new StreamHttpError(400, 'bad_request', 'a new Producer-Epoch starts at Producer-Seq 0');
    case 'sequence_gap':
      throw new StreamHttpError(409, 'producer_seq_gap', `expected Producer-Seq ${outcome.expected}`, {
        [H.expectedSeq]: String(outcome.expected),
        [H.receivedSeq]: String(outcome.received),
      });
  }
}

function jsonTooLarge(size: number, max: number): StreamHttpError {
  return new StreamHttpError(
    413,
    'body_too_large',
    `the JSON body is ${size} bytes; at most ${max} bytes of JSON are accepted`,
  );
}

function gone(path: string): StreamHttpError {
  return new StreamHttpError(410, 'stream_gone', `${path} was deleted; its forks still read its data`);
}

function asHttpError(err: unknown): StreamHttpError {
  if (err instanceof StreamHttpError) return err;
  if (err instanceof StoreError || err instanceof ServerError) {
    const info = toErrorInfo(err);
    return new StreamHttpError(info.status, info.code, info.message);
  }
  return new StreamHttpError(500, 'internal', 'internal server error; the request may be retried');
}
