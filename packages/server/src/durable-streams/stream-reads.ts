/**
 * Reading a Durable Stream (PROTOCOL.md §16.6): catch-up (`GET ?offset=`), long-poll
 * (`&live=long-poll`) and SSE (`&live=sse`).
 *
 * What a reader can rely on:
 * - The bytes returned after offset X are exactly the chunks stored after X, in order; the next
 *   offset is where the returned bytes end, so resuming from it neither skips nor repeats a byte.
 * - `Stream-Up-To-Date` only when the answer reaches the tail; `Stream-Closed` only when, moreover,
 *   the stream is closed (EOF) — never on a partial page.
 * - A live read at the tail waits for a change (append, close, delete) or its timeout, never
 *   polls; a closed stream at the tail answers at once.
 * - The ETag names the range and the closure, so a 304 never hides new data or a close.
 *
 * What the server can rely on (a reader that does not read must not fill its memory):
 * - A response waits for its turn on its socket before it reads anything, so requests pipelined on
 *   one connection do not each hold a page while earlier answers wait to be sent.
 * - A catch-up or long-poll page is read and streamed while holding a page slot (`pageSlot`: a few
 *   at once, one holder at most half), in pieces of at most `WRITE_BYTES`, each written only once
 *   the reader took the previous ones (`drain`), never one buffer for the whole page.
 * - SSE encodes and writes each page the same way, yielding to the event loop between pieces.
 * - A reader that takes nothing for `stallTimeout` is cut, and so is one that leaves the end of its
 *   answer unread that long; an SSE read returns (and gives back its budget place) only once its
 *   socket took everything or was destroyed.
 */
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { isJsonStream, mediaType } from '../store/stream-rules.ts';
import type { ReadPage, StreamChunk, StreamMeta, StreamStore } from '../store/stream-store.ts';
import { formatOffset, offsetPosition, parseOffset } from '../store/stream-store.ts';
import { writeWithin } from '../write-within.ts';
import { jsonArray } from './json-mode.ts';
import { responseCursor } from './stream-cursor.ts';
import { H, StreamHttpError } from './stream-http.ts';
import type { StreamWaiters } from './stream-waiters.ts';

export interface ReadOptions {
  streams: StreamStore;
  waiters: StreamWaiters;
  longPollTimeout: number;
  /** An SSE response is ended after this long (clients reconnect from the last offset). */
  sseMaxDuration: number;
  pageBytes: number;
  /** `public` for streams of the open namespace, `private` for the others. */
  cacheScope: 'public' | 'private';
  /** Called with the bytes of data sent (metrics). */
  onRead: (bytes: number) => void;
  /** A response whose reader takes nothing for this long is destroyed, ms. */
  stallTimeout: number;
  /** Waits for a slot to read and stream one page (catch-up, long-poll); resolves with its release. */
  pageSlot: () => Promise<() => void>;
}

/** The most bytes (or characters) handed to a response in one write. */
export const WRITE_BYTES = 64 * 1024;

type Live = 'long-poll' | 'sse' | undefined;

interface ReadRequest {
  /** The offset as sent (`-1`, `now` or one of ours); undefined when absent. */
  offset: string | undefined;
  live: Live;
  cursor: string | null;
}

export function parseReadQuery(url: URL): ReadRequest {
  const offsets = url.searchParams.getAll('offset');
  if (offsets.length > 1) throw new StreamHttpError(400, 'bad_request', 'send one offset parameter');
  const offset = offsets[0];
  if (offset !== undefined && offset !== '-1' && offset !== 'now' && parseOffset(offset) === undefined)
    throw new StreamHttpError(400, 'bad_request', 'offset must be -1, now, or a Stream-Next-Offset value');
  const liveParam = url.searchParams.get('live');
  if (liveParam !== null && liveParam !== 'long-poll' && liveParam !== 'sse')
    throw new StreamHttpError(400, 'bad_request', 'live must be long-poll or sse');
  const live = liveParam ?? undefined;
  if (live && offset === undefined)
    throw new StreamHttpError(
      400,
      'bad_request',
      `live=${live} needs an offset (-1 for the start, now for the tail)`,
    );
  return { offset, live, cursor: url.searchParams.get('cursor') };
}

/** 410: the offset names data the stream no longer holds (its Redis came back without it). */
function offsetGone(offset: string): StreamHttpError {
  return new StreamHttpError(
    410,
    'stream_gone',
    `offset ${offset} names data this stream no longer holds (its Redis came back without it); read it again from -1`,
  );
}

export async function handleRead(
  o: ReadOptions,
  path: string,
  meta: StreamMeta,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  const q = parseReadQuery(url);
  // pipelined requests: nothing is read before the answers ahead of this one are sent
  if (!(await socketTurn(req, res))) return;
  const position =
    q.offset === 'now'
      ? meta.tail
      : q.offset === undefined || q.offset === '-1'
        ? 0
        : (offsetPosition(meta, q.offset) ?? 0);
  if (position === 'gone') throw offsetGone(q.offset as string);
  const after = position;
  // heard before the first read (other nodes' appends: the wake bus), so no change after it is missed
  if (q.live === 'sse' || q.live === 'long-poll') await o.waiters.listen(path);
  if (q.live === 'sse') return streamSse(o, path, meta, after, q.cursor, res);
  const json = isJsonStream(meta);

  if (q.offset === 'now' && q.live === undefined) {
    await o.streams.touch(path, Date.now());
    const headers: Record<string, string> = {
      'content-type': meta.contentType,
      [H.nextOffset]: formatOffset(meta.tail, meta),
      [H.upToDate]: 'true',
      'cache-control': 'no-store',
    };
    if (meta.closed) headers[H.closed] = 'true';
    res.writeHead(200, headers).end(json ? '[]' : '');
    return;
  }

  let release = await o.pageSlot();
  try {
    if (res.destroyed) return;
    let page = await o.streams.read(path, after, o.pageBytes, Date.now());
    if (!page) throw new StreamHttpError(404, 'not_found', `no stream at ${path}`);
    if (q.live === 'long-poll' && page.chunks.length === 0) {
      // nobody waits holding a slot
      release();
      const deadline = Date.now() + o.longPollTimeout;
      const abort = abortOnClose(req, res);
      /** The stamp of the wake that ended the last wait (0: it timed out): its readers share pages. */
      let woken = 0;
      const readAfter = () =>
        woken > 0
          ? o.waiters.shared(path, `${after}:${o.pageBytes}`, woken, () =>
              o.streams.read(path, after, o.pageBytes, Date.now()),
            )
          : o.streams.read(path, after, o.pageBytes, Date.now());
      while (page.chunks.length === 0 && !page.meta.closed && !abort.signal.aborted && !o.waiters.closed) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        woken = await o.waiters.wait(path, left, abort.signal);
        const next = await readAfter();
        if (!next) throw new StreamHttpError(404, 'not_found', `the stream at ${path} was deleted`);
        // Redis came back without the data the offset names while the request waited
        if (q.offset !== undefined && offsetPosition(next.meta, q.offset) === 'gone')
          throw offsetGone(q.offset);
        page = next;
      }
      if (abort.signal.aborted) return;
      if (page.chunks.length === 0) {
        const headers: Record<string, string> = {
          [H.nextOffset]: formatOffset(Math.max(after, page.meta.tail), page.meta),
          [H.upToDate]: 'true',
          'cache-control': 'no-store',
        };
        if (page.meta.closed) headers[H.closed] = 'true';
        else headers[H.cursor] = responseCursor(q.cursor);
        res.writeHead(204, headers).end();
        return;
      }
      // data came: read it again holding a slot (the waiting read's page is dropped, not queued)
      release = await o.pageSlot();
      if (res.destroyed) return;
      const fresh = await readAfter();
      if (!fresh) throw new StreamHttpError(404, 'not_found', `the stream at ${path} was deleted`);
      page = fresh;
    }
    await sendPage(o, path, page, after, q, req, res, json);
  } finally {
    release();
  }
}

/** Writes one page, a piece at a time at the reader's pace (see the module header). */
async function sendPage(
  o: ReadOptions,
  path: string,
  page: ReadPage,
  after: number,
  q: ReadRequest,
  req: IncomingMessage,
  res: ServerResponse,
  json: boolean,
): Promise<void> {
  const { meta, chunks } = page;
  const next = chunks.at(-1)?.end ?? Math.max(after, meta.tail);
  const eof = page.upToDate && meta.closed;
  const start = q.offset === undefined ? '-1' : q.offset;
  const etag = `"${Buffer.from(path).toString('base64url')}:${start}:${formatOffset(next, meta)}${eof ? ':c' : ''}"`;
  const headers: Record<string, string> = {
    'content-type': meta.contentType,
    [H.nextOffset]: formatOffset(next, meta),
    etag,
    // data never changes at an offset: cacheable; an empty answer at the tail is not (it would hide
    // new data or the close)
    'cache-control':
      chunks.length > 0 ? `${o.cacheScope}, max-age=60, stale-while-revalidate=300` : 'no-store',
  };
  if (page.upToDate) headers[H.upToDate] = 'true';
  if (eof) headers[H.closed] = 'true';
  if (q.live === 'long-poll' && !eof) headers[H.cursor] = responseCursor(q.cursor);
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, { etag, 'cache-control': headers['cache-control'] as string }).end();
    return;
  }
  const parts = json ? jsonParts(chunks.map((c) => c.data)) : chunks.map((c) => c.data);
  const length = parts.reduce((sum, part) => sum + part.byteLength, 0);
  o.onRead(length);
  headers['content-length'] = String(length);
  if (mediaType(meta.contentType) === 'application/octet-stream')
    headers['content-disposition'] = 'attachment';
  res.writeHead(200, headers);
  for (const part of parts)
    for (let i = 0; i < part.byteLength; i += WRITE_BYTES)
      if (!(await writeWithin(res, part.subarray(i, i + WRITE_BYTES), o.stallTimeout))) return;
  // the slot is freed now (at most one piece is left buffered); the end is still watched
  void endWithin(res, o.stallTimeout);
}

/** `[`, the chunks separated by `,`, `]`: the JSON array of `jsonArray` without copying the chunks. */
function jsonParts(chunks: readonly Uint8Array[]): Uint8Array[] {
  const parts: Uint8Array[] = [OPEN];
  chunks.forEach((chunk, i) => {
    if (i > 0) parts.push(COMMA);
    parts.push(chunk);
  });
  parts.push(CLOSE);
  return parts;
}
const OPEN = Buffer.from('[');
const COMMA = Buffer.from(',');
const CLOSE = Buffer.from(']');

/**
 * Resolves once the answers ahead of this one on its socket are sent (HTTP/1.1 pipelining: Node
 * runs the handler of every request it parsed, and buffers the answers that are not yet first in
 * line). False when the connection is gone first.
 */
async function socketTurn(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  if (res.socket) return !res.destroyed;
  const socket = req.socket;
  if (socket.destroyed) return false;
  const done = new AbortController();
  try {
    await Promise.race([
      once(res, 'socket', { signal: done.signal }),
      once(res, 'close', { signal: done.signal }),
      closeOf(socket),
    ]);
  } catch {
    return false;
  } finally {
    done.abort(); // removes the listeners that did not fire
  }
  return res.socket !== null && !res.destroyed && !socket.destroyed;
}

/** One listener per socket, however many requests wait on it. */
const socketCloses = new WeakMap<Socket, Promise<void>>();
function closeOf(socket: Socket): Promise<void> {
  let closed = socketCloses.get(socket);
  if (!closed) {
    closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socketCloses.set(socket, closed);
  }
  return closed;
}

/**
 * Ends the response; if its last bytes are not taken within `stall` ms, destroys it rather than
 * leave them buffered on a connection nobody reads. Resolves when the response is done either way.
 */
function endWithin(res: ServerResponse, stall: number): Promise<void> {
  if (res.destroyed) return Promise.resolve();
  res.end();
  if (res.writableFinished) return Promise.resolve();
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      res.off('finish', finish);
      res.off('close', finish);
      resolve();
    };
    const timer = setTimeout(() => {
      res.destroy();
      finish();
    }, stall);
    res.once('finish', finish);
    res.once('close', finish);
  });
}

function concat(chunks: StreamChunk[]): Buffer {
  return Buffer.concat(chunks.map((c) => Buffer.from(c.data.buffer, c.data.byteOffset, c.data.byteLength)));
}

function abortOnClose(req: IncomingMessage, res: ServerResponse): AbortController {
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableEnded) abort.abort();
  };
  res.once('close', onClose);
  req.once('aborted', onClose);
  return abort;
}

/**
 * SSE data lines: every line of the payload gets its own `data:`. A reader strips one space after the
 * colon, so a line that starts with a space is written after `data: ` to keep it. Yields the event in
 * pieces of about `WRITE_BYTES` characters (never splitting a surrogate pair), so a large payload is
 * encoded a piece at a time, between which the caller waits for its reader and yields.
 */
export function* sseEvent(event: 'data' | 'control', payload: string): Generator<string> {
  let out = `event: ${event}\n`;
  const breaks = /\r\n|\r|\n/g;
  let start = 0;
  for (;;) {
    const found = breaks.exec(payload);
    const end = found ? found.index : payload.length;
    out += end > start && payload.charCodeAt(start) === 32 ? 'data: ' : 'data:';
    let i = start;
    while (i < end) {
      let take = Math.min(end - i, WRITE_BYTES - out.length);
      if (take <= 0) {
        yield out;
        out = '';
        continue;
      }
      const last = payload.charCodeAt(i + take - 1);
      if (take < end - i && last >= 0xd800 && last <= 0xdbff) take = take > 1 ? take - 1 : take + 1;
      out += payload.slice(i, i + take);
      i += take;
    }
    out += '\n';
    if (out.length >= WRITE_BYTES) {
      yield out;
      out = '';
    }
    if (!found) break;
    start = breaks.lastIndex;
  }
  yield `${out}\n`;
}

/** A base64 data event in pieces (3-byte aligned slices: their encodings join into the whole's). */
function* sseBase64Event(bytes: Buffer): Generator<string> {
  yield 'event: data\ndata:';
  const step = (WRITE_BYTES / 4) * 3;
  for (let i = 0; i < bytes.length; i += step) yield bytes.subarray(i, i + step).toString('base64');
  yield '\n\n';
}

async function streamSse(
  o: ReadOptions,
  path: string,
  meta: StreamMeta,
  start: number,
  clientCursor: string | null,
  res: ServerResponse,
): Promise<void> {
  const type = mediaType(meta.contentType);
  const json = type === 'application/json';
  const base64 = !json && !type.startsWith('text/');
  const headers: Record<string, string> = {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    // nginx passes each event on at once, also where `proxy_buffering` was left on
    'x-accel-buffering': 'no',
  };
  if (base64) headers[H.sseEncoding] = 'base64';
  res.writeHead(200, headers);
  res.flushHeaders();
  const abort = new AbortController();
  res.once('close', () => abort.abort());
  const ends = Date.now() + o.sseMaxDuration;
  let position = start;
  /** The last offset sent. */
  let handed: string | undefined;
  let cursor = clientCursor;
  const send = async (pieces: Iterable<string>): Promise<boolean> => {
    for (const piece of pieces) {
      if (!(await writeWithin(res, piece, o.stallTimeout))) return false;
      // a large page is encoded a piece at a time: others are served in between
      if (piece.length >= WRITE_BYTES) await new Promise((resolve) => setImmediate(resolve));
    }
    return true;
  };
  /** The stamp of the wake that ended the last wait (0: none yet, or it timed out). */
  let woken = 0;
  try {
    while (!abort.signal.aborted && !o.waiters.closed && !res.destroyed) {
      const from = position;
      const read = () => o.streams.read(path, from, o.pageBytes, Date.now());
      // the readers one wake woke read each position once between them (StreamWaiters.shared)
      const page = await (woken > 0 ? o.waiters.shared(path, `${from}:${o.pageBytes}`, woken, read) : read());
      woken = 0;
      if (!page) break; // deleted: end the response; a reconnect gets 404
      // Redis came back without the data the last offset sent names: a reconnect from it gets 410
      if (handed !== undefined && offsetPosition(page.meta, handed) === 'gone') break;
      if (page.chunks.length > 0) {
        o.onRead(page.chunks.reduce((sum, c) => sum + c.data.byteLength, 0));
        const event = json
          ? sseEvent('data', jsonArray(page.chunks.map((c) => c.data)).toString('utf8'))
          : base64
            ? sseBase64Event(concat(page.chunks))
            : sseEvent('data', concat(page.chunks).toString('utf8'));
        if (!(await send(event))) return;
        position = page.chunks.at(-1)?.end ?? position;
      } else {
        position = Math.max(position, page.meta.tail);
      }
      const eof = page.upToDate && page.meta.closed;
      handed = formatOffset(position, page.meta);
      const control: Record<string, string | boolean> = { streamNextOffset: handed };
      if (eof) control.streamClosed = true;
      else {
        cursor = responseCursor(cursor);
        control.streamCursor = cursor;
        if (page.upToDate) control.upToDate = true;
      }
      if (!(await send(sseEvent('control', JSON.stringify(control))))) return;
      if (eof) break;
      if (!page.upToDate) {
        // the next page: after others had their turn
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      const left = ends - Date.now();
      if (left <= 0) break;
      // wait for a change; on timeout loop once more (a keep-alive control event)
      woken = await o.waiters.wait(path, Math.min(left, o.longPollTimeout), abort.signal);
    }
  } finally {
    // the budget place is given back when this returns: only once the socket took everything (or
    // the response was destroyed)
    await endWithin(res, o.stallTimeout);
  }
}
