/**
 * One `url` option, every endpoint: the realtime ones (WebSocket `/v1/connect`, HTTP streaming
 * `/v1/connect/sse`, long-polling `/v1/connect/poll`) and the REST base.
 * Accepts `http(s)://` or `ws(s)://`, with or without `/v1/connect`, and keeps a path prefix (a server
 * mounted behind a reverse proxy at `/mooring`).
 */
import { CONNECT_ATTACH_PARAM, PROTOCOL_VERSION } from '@mooring/protocol';
import { MooringError } from './errors.ts';

export interface Endpoints {
  /** e.g. `ws://127.0.0.1:8080/v1/connect` */
  websocket: string;
  /** e.g. `http://127.0.0.1:8080/v1/connect/sse` (PROTOCOL.md §12) */
  sse: string;
  /** e.g. `http://127.0.0.1:8080/v1/connect/poll` (PROTOCOL.md §12) */
  longpoll: string;
  /** e.g. `http://127.0.0.1:8080/` (REST paths are resolved against it). */
  http: string;
}

export function endpoints(url: string): Endpoints {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new MooringError(
      'bad_request',
      `invalid url ${JSON.stringify(url)}; pass e.g. "https://mooring.example.com"`,
    );
  }
  const secure = parsed.protocol === 'https:' || parsed.protocol === 'wss:';
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(parsed.protocol)) {
    throw new MooringError('bad_request', `unsupported url scheme ${parsed.protocol}; use http(s) or ws(s)`);
  }
  const prefix = parsed.pathname.replace(/\/v1\/connect\/?$/, '').replace(/\/+$/, '');
  const host = parsed.host;
  const http = `${secure ? 'https' : 'http'}://${host}${prefix}`;
  return {
    websocket: `${secure ? 'wss' : 'ws'}://${host}${prefix}/v1/connect`,
    sse: `${http}/v1/connect/sse`,
    longpoll: `${http}/v1/connect/poll`,
    http: `${http}/`,
  };
}

/**
 * `/v1/connections/:id/<what>` next to the HTTP transport endpoint `openUrl` was made from (so a
 * path prefix is kept), without query: the connection key travels in a header.
 */
export function connectionUrl(openUrl: string, connectionId: string, what: 'frames' | 'poll'): string {
  const url = new URL(openUrl);
  const prefix = url.pathname.replace(/\/v1\/connect\/(?:sse|poll)\/?$/, '');
  url.pathname = `${prefix}/v1/connections/${encodeURIComponent(connectionId)}/${what}`;
  url.search = '';
  url.hash = '';
  return url.toString();
}

/** The URL of one connection attempt (PROTOCOL.md §5.1). */
export function connectUrl(
  endpoint: string,
  params: Record<string, string>,
  recover: string | undefined,
  attach?: string,
): string {
  const url = new URL(endpoint);
  url.searchParams.set('v', String(PROTOCOL_VERSION));
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  if (recover) url.searchParams.set('recover', recover);
  if (attach !== undefined) url.searchParams.set(CONNECT_ATTACH_PARAM, attach);
  return url.toString();
}
