/**
 * How a `ws` client's opening handshake ended, for tests and benches that send connection requests
 * a server may refuse: `'open'`, or the refusal's HTTP status and body (the server's typed error).
 * Attach message listeners before awaiting it: frames may follow the upgrade at once.
 */

/** What `handshake` needs of a `ws` WebSocket: structural, so this package's types need no `@types/ws`. */
export interface HandshakeSocket {
  once(event: 'open', listener: () => void): unknown;
  once(
    event: 'unexpected-response',
    listener: (request: unknown, response: HandshakeResponse) => void,
  ): unknown;
  once(event: 'error', listener: (error: Error) => void): unknown;
}

/** The refused handshake's HTTP response, as `ws` hands it over. */
export interface HandshakeResponse {
  statusCode?: number | undefined;
  on(event: 'data', listener: (chunk: { toString(): string }) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
}

export function handshake(ws: HandshakeSocket): Promise<'open' | { status: number; body: string }> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve('open'));
    ws.once('unexpected-response', (_request, response) => {
      let body = '';
      response.on('data', (chunk) => {
        body += chunk.toString();
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
    });
    ws.once('error', reject);
  });
}
