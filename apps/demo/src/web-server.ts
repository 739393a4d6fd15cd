/**
 * The demo page's HTTP server (node:http): the page, its bundle and stylesheet from memory, and
 * `POST /api/session`. Everything realtime goes from the browser straight to Mooring.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ChaosProxies } from './chaos-proxies.ts';
import { FAULTS } from './chaos-proxies.ts';
import type { SessionApiOptions } from './session-api.ts';
import { grantSession, validId } from './session-api.ts';
import type { WebAsset } from './web-bundle.ts';

export interface WebServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const MAX_BODY = 16 * 1024;

export async function startWebServer(options: {
  host: string;
  port: number;
  assets: Map<string, WebAsset>;
  api: SessionApiOptions;
  chaos?: ChaosProxies | undefined;
}): Promise<WebServer> {
  const server = createServer((req, res) => {
    handle(req, res, options).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: (err as Error).message });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  options: { assets: Map<string, WebAsset>; api: SessionApiOptions; chaos?: ChaosProxies | undefined },
): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://demo').pathname;
  if (path === '/api/chaos') return chaos(req, res, options.chaos);
  if (path === '/api/session') {
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'use POST' });
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req)) || '{}');
    } catch {
      return sendJson(res, 400, { error: 'the body must be JSON: { "sessionId"?: string }' });
    }
    return sendJson(res, 200, await grantSession(options.api, body, req.headers.host));
  }
  const asset = req.method === 'GET' || req.method === 'HEAD' ? options.assets.get(path) : undefined;
  if (!asset) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    return;
  }
  res.writeHead(200, {
    'content-type': asset.type,
    'content-length': asset.body.byteLength,
    'cache-control': 'no-cache',
  });
  res.end(req.method === 'HEAD' ? undefined : asset.body);
}

/** `POST /api/chaos { clientId, fault, seconds? }` → 204 (see `chaos-proxies.ts`). Demo only. */
async function chaos(
  req: IncomingMessage,
  res: ServerResponse,
  proxies: ChaosProxies | undefined,
): Promise<void> {
  if (req.method !== 'POST') return sendJson(res, 405, { error: 'use POST' });
  if (!proxies) return sendJson(res, 404, { error: 'the chaos panel is off (the demo is not on 127.0.0.1)' });
  let body: { clientId?: unknown; fault?: unknown; seconds?: unknown };
  try {
    body = JSON.parse((await readBody(req)) || '{}') as typeof body;
  } catch {
    return sendJson(res, 400, { error: 'the body must be JSON: { "clientId", "fault", "seconds"? }' });
  }
  const clientId = validId(body.clientId);
  const fault = FAULTS.find((f) => f === body.fault);
  const seconds =
    typeof body.seconds === 'number' && body.seconds > 0 && body.seconds <= 60 ? body.seconds : 8;
  if (clientId === undefined || fault === undefined)
    return sendJson(res, 400, { error: `clientId and fault (${FAULTS.join(', ')}) are required` });
  await proxies.apply(clientId, fault, seconds);
  res.writeHead(204, { 'cache-control': 'no-store' }).end();
}

async function readBody(req: IncomingMessage): Promise<string> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(body);
}
