/**
 * How a `ws` client's opening handshake ended, for tests and benches that send connection requests
 * a server may refuse: `'open'`, or the refusal's HTTP status and body (the server's typed error).
 * Attach message listeners before awaiting it: frames may follow the upgrade at once.
 */
import type WebSocket from 'ws';

export function handshake(ws: WebSocket): Promise<'open' | { status: number; body: string }> {
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve('open'));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('error', reject);
  });
}
