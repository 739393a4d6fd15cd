/**
 * A real HTTP + WebSocket server on 127.0.0.1:0 for the FaultProxy tests. It records what reached it
 * (raw TCP connections and their errors, upgrades, WebSocket messages and closes) so tests can assert
 * what did and did not arrive on the far side of the proxy.
 *
 *   GET  /hello   200 "hello" (Content-Length)
 *   POST /echo    200, the request body back
 *   GET  /sse     200 text/event-stream, writes "data: 1\n\n" and is then left open for the test to
 *                 write to and end (`server.sse`)
 *   WS   /ws      echoes every message
 */

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';

export interface EchoServer {
  readonly port: number;
  /** Raw TCP connections accepted. */
  readonly sockets: Socket[];
  /** Error codes seen on raw TCP sockets (e.g. ECONNRESET). */
  readonly socketErrors: string[];
  /** Requests that asked for an upgrade. */
  upgrades: number;
  /** Server-side WebSocket peers, in connection order. */
  readonly peers: WebSocket[];
  /** Text of every WebSocket message received. */
  readonly messages: string[];
  /** Close codes of server-side WebSocket peers. */
  readonly closes: number[];
  /** Open SSE responses, in request order. */
  readonly sse: ServerResponse[];
  close(): Promise<void>;
}

export async function startEchoServer(): Promise<EchoServer> {
  const http = createServer((req, res) => route(req, res, state));
  const wss = new WebSocketServer({ server: http, path: '/ws' });
  const state: EchoServer = {
    port: 0,
    sockets: [],
    socketErrors: [],
    upgrades: 0,
    peers: [],
    messages: [],
    closes: [],
    sse: [],
    close: async () => {
      for (const peer of wss.clients) peer.terminate();
      http.closeAllConnections();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
  http.on('connection', (socket: Socket) => {
    state.sockets.push(socket);
    socket.on('error', (error: NodeJS.ErrnoException) =>
      state.socketErrors.push(error.code ?? error.message),
    );
  });
  http.prependListener('upgrade', () => {
    state.upgrades += 1;
  });
  wss.on('connection', (peer) => {
    state.peers.push(peer);
    peer.on('message', (data) => {
      const text = data.toString();
      state.messages.push(text);
      peer.send(text);
    });
    peer.on('close', (code) => state.closes.push(code));
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  return Object.assign(state, { port: (http.address() as AddressInfo).port });
}

function route(req: IncomingMessage, res: ServerResponse, state: EchoServer): void {
  if (req.method === 'GET' && req.url === '/hello') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5' }).end('hello');
  } else if (req.method === 'POST' && req.url === '/echo') {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      res.writeHead(200, { 'content-length': String(body.length) }).end(body);
    });
  } else if (req.method === 'GET' && req.url === '/sse') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write('data: 1\n\n');
    state.sse.push(res);
  } else {
    res.writeHead(404).end();
  }
}
