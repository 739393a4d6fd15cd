/**
 * The physical floor: a bare `ws` server that relays every message it receives to every other
 * open client, as the same Buffer (serialised once, framed per socket by ws). No parsing, no
 * storage, no per-channel routing: what a broadcast costs with nothing else to do.
 */
import { createServer } from 'node:http';
import { WebSocket, WebSocketServer } from 'ws';
import { serveChild } from './server-child.ts';

await serveChild(async () => {
  const http = createServer();
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
  wss.on('connection', (socket) => {
    socket.on('message', (data, isBinary) => {
      for (const client of wss.clients) {
        if (client !== socket && client.readyState === WebSocket.OPEN)
          client.send(data, { binary: isBinary });
      }
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const address = http.address();
  if (address === null || typeof address === 'string') throw new Error('raw-ws: no port');
  return {
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close(() => http.close(() => resolve()));
      }),
  };
});
