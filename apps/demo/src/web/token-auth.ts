/**
 * Token auth for the browser client, until `@mooring/client` has `authCallback`/`authUrl`.
 *
 * The client sends its `key` option as the `key` query parameter of a connection (WebSocket, SSE,
 * long-poll) and as `Authorization: Bearer` on REST. The server reads a JWT from `Authorization` but
 * takes `?key=` for an API key only, so the realtime URLs need `?token=` instead. This wraps the
 * WebSocket constructor and `fetch` the client uses: a connection URL's `key` becomes `token`, and the
 * credential sent is always the *current* token — so a renewed token is used by the next connection
 * (the server ends a connection whose token expired with `token_expired`; the client reconnects and
 * resumes, losing nothing).
 */
import type { FetchLike, MooringOptions, WebSocketConstructor, WebSocketLike } from '@mooring/client';

export function tokenAuth(currentToken: () => string): Pick<MooringOptions, 'key' | 'WebSocket' | 'fetch'> {
  const Native = globalThis.WebSocket;
  class TokenWebSocket extends Native {
    constructor(url: string | URL) {
      super(withToken(String(url), currentToken()));
    }
  }
  const fetchWithToken: FetchLike = (url, init) => {
    const headers = new Headers(init.headers);
    if (headers.has('authorization')) headers.set('authorization', `Bearer ${currentToken()}`);
    return globalThis.fetch(withToken(url, currentToken()), { ...init, headers });
  };
  return {
    key: currentToken(),
    WebSocket: TokenWebSocket as unknown as WebSocketConstructor & (new (url: string) => WebSocketLike),
    fetch: fetchWithToken,
  };
}

function withToken(url: string, token: string): string {
  const parsed = new URL(url);
  if (!parsed.searchParams.has('key')) return url;
  parsed.searchParams.delete('key');
  parsed.searchParams.set('token', token);
  return parsed.toString();
}
