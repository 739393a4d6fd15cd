/**
 * One `url` option, two endpoints: the realtime WebSocket endpoint (`/v1/connect`) and the REST base.
 * Accepts `http(s)://` or `ws(s)://`, with or without `/v1/connect`, and keeps a path prefix (a server
 * mounted behind a reverse proxy at `/mooring`).
 */
import { PROTOCOL_VERSION } from '@mooring/protocol';
import { MooringError } from './errors.ts';

export interface Endpoints {
  /** e.g. `ws://127.0.0.1:8080/v1/connect` */
  websocket: string;
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
  return {
    websocket: `${secure ? 'wss' : 'ws'}://${host}${prefix}/v1/connect`,
    http: `${secure ? 'https' : 'http'}://${host}${prefix}/`,
  };
}

/** The URL of one connection attempt (PROTOCOL.md §5.1). */
export function connectUrl(
  endpoint: string,
  params: Record<string, string>,
  recover: string | undefined,
): string {
  const url = new URL(endpoint);
  url.searchParams.set('v', String(PROTOCOL_VERSION));
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  if (recover) url.searchParams.set('recover', recover);
  return url.toString();
}
