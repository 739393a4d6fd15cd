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
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isJsonStream, mediaType } from '../store/stream-rules.ts';
import type { ReadPage, StreamChunk, StreamMeta, StreamStore } from '../store/stream-store.ts';
import { formatOffset, parseOffset } from '../store/stream-store.ts';
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
}

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

export async function handleRead(
  o: ReadOptions,
  path: string,
  meta: StreamMeta,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  const q = parseReadQuery(url);
  const after =
    q.offset === 'now'
      ? meta.tail
      : q.offset === undefined || q.offset === '-1'
        ? 0
        : (parseOffset(q.offset) ?? 0);
  // heard before the first read (other nodes' appends: the wake bus), so no change after it is missed
  if (q.live === 'sse' || q.live === 'long-poll') await o.waiters.listen(path);
  if (q.live === 'sse') return streamSse(o, path, meta, after, q.cursor, res);
  const json = isJsonStream(meta);

  if (q.offset === 'now' && q.live === undefined) {
    await o.streams.touch(path, Date.now());
    const headers: Record<string, string> = {
      'content-type': meta.contentType,
      [H.nextOffset]: formatOffset(meta.tail),
      [H.upToDate]: 'true',
      'cache-control': 'no-store',
    };
    if (meta.closed) headers[H.closed] = 'true';
    res.writeHead(200, headers).end(json ? '[]' : '');
    return;
  }

  let page = await o.streams.read(path, after, o.pageBytes, Date.now());
  if (!page) throw new StreamHttpError(404, 'not_found', `no stream at ${path}`);
  if (q.live === 'long-poll' && page.chunks.length === 0) {
    const deadline = Date.now() + o.longPollTimeout;
    const abort = abortOnClose(req, res);
    while (page.chunks.length === 0 && !page.meta.closed && !abort.signal.aborted && !o.waiters.closed) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      await o.waiters.wait(path, left, abort.signal);
      const next = await o.streams.read(path, after, o.pageBytes, Date.now());
      if (!next) throw new StreamHttpError(404, 'not_found', `the stream at ${path} was deleted`);
      page = next;
    }
    if (abort.signal.aborted) return;
    if (page.chunks.length === 0) {
      const headers: Record<string, string> = {
        [H.nextOffset]: formatOffset(Math.max(after, page.meta.tail)),
        [H.upToDate]: 'true',
        'cache-control': 'no-store',
      };
      if (page.meta.closed) headers[H.closed] = 'true';
      else headers[H.cursor] = responseCursor(q.cursor);
      res.writeHead(204, headers).end();
      return;
    }
  }
  sendPage(o, path, page, after, q, req, res, json);
}

function sendPage(
  o: ReadOptions,
  path: string,
  page: ReadPage,
  after: number,
  q: ReadRequest,
  req: IncomingMessage,
  res: ServerResponse,
  json: boolean,
): void {
  const { meta, chunks } = page;
  const next = chunks.at(-1)?.end ?? Math.max(after, meta.tail);
  const eof = page.upToDate && meta.closed;
  const start = q.offset === undefined ? '-1' : q.offset;
  const etag = `"${Buffer.from(path).toString('base64url')}:${start}:${formatOffset(next)}${eof ? ':c' : ''}"`;
  const headers: Record<string, string> = {
    'content-type': meta.contentType,
    [H.nextOffset]: formatOffset(next),
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
  const body = json ? jsonArray(chunks.map((c) => c.data)) : concat(chunks);
  o.onRead(body.length);
  headers['content-length'] = String(body.length);
  if (mediaType(meta.contentType) === 'application/octet-stream')
    headers['content-disposition'] = 'attachment';
  res.writeHead(200, headers).end(body);
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
 * colon, so a line that starts with a space is written after `data: ` to keep it.
 */
function sseEvent(event: 'data' | 'control', payload: string): string {
  return `event: ${event}\n${payload
    .split(/\r\n|\r|\n/)
    .map((line) => (line.startsWith(' ') ? `data: ${line}` : `data:${line}`))
    .join('\n')}\n\n`;
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
  let cursor = clientCursor;
  try {
    while (!abort.signal.aborted && !o.waiters.closed) {
      const page = await o.streams.read(path, position, o.pageBytes, Date.now());
      if (!page) break; // deleted: end the response; a reconnect gets 404
      if (page.chunks.length > 0) {
        const bytes = concat(page.chunks);
        const payload = json
          ? jsonArray(page.chunks.map((c) => c.data)).toString('utf8')
          : base64
            ? bytes.toString('base64')
            : bytes.toString('utf8');
        o.onRead(bytes.length);
        res.write(sseEvent('data', payload));
        position = page.chunks.at(-1)?.end ?? position;
      } else {
        position = Math.max(position, page.meta.tail);
      }
      const eof = page.upToDate && page.meta.closed;
      const control: Record<string, string | boolean> = { streamNextOffset: formatOffset(position) };
      if (eof) control.streamClosed = true;
      else {
        cursor = responseCursor(cursor);
        control.streamCursor = cursor;
        if (page.upToDate) control.upToDate = true;
      }
      res.write(sseEvent('control', JSON.stringify(control)));
      if (eof) break;
      if (!page.upToDate) continue;
      const left = ends - Date.now();
      if (left <= 0) break;
      // wait for a change; on timeout loop once more (a keep-alive control event)
      await o.waiters.wait(path, Math.min(left, o.longPollTimeout), abort.signal);
    }
  } finally {
    res.end();
  }
}
