/**
 * Minimal HTTP and WebSocket client helpers for the FaultProxy tests, over real sockets.
 */

import { type Agent, request } from 'node:http';
import { WebSocket } from 'ws';
import { once } from '../src/wait.ts';

export interface HttpResult {
  status: number;
  body: string;
}

/** Send a request and read the whole response. */
export function fetchText(
  url: string,
  init: { method?: string; body?: string | Buffer; agent?: Agent } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: init.method ?? 'GET', agent: init.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

/** A connected WebSocket client that records what it receives. */
export interface WsClient {
  readonly ws: WebSocket;
  readonly received: string[];
  /** Errors emitted after the connection opened. */
  readonly errors: Error[];
  /** Close code once closed, else null. */
  closeCode: number | null;
}

export async function openWs(url: string): Promise<WsClient> {
  const ws = new WebSocket(url);
  const client: WsClient = { ws, received: [], errors: [], closeCode: null };
  ws.on('message', (data) => client.received.push(data.toString()));
  ws.on('close', (code) => {
    client.closeCode = code;
  });
  await once(ws, 'open');
  ws.on('error', (error) => client.errors.push(error));
  return client;
}
