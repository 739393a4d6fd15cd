/**
 * One client process of the idle-connections measurement: opens its share of the connections from
 * its own source address (127.0.0.x), at most `concurrency` at once, attaches each to its channel,
 * then holds them idle (ws answers the server's pings; heartbeat frames are dropped unread).
 *
 * Each socket binds its own local port, counted up from 1024, below the ephemeral range: letting the
 * kernel pick one for a socket bound to an address (bind to port 0) searches the ports already
 * taken, and became the whole run's bottleneck — measured here, 2,000 sockets took 0.15 s of
 * system CPU after the first 2,000 and 5.4 s after 6,000, against 0.1–0.14 s with explicit ports.
 * A port someone else holds (EADDRINUSE) is skipped.
 *
 * Unlike the fan-out growth's subscriber worker it waits long for each connection (on a starved
 * shared machine a handshake may take a minute) and tries a failed one again, a few times: the
 * measurement is of held connections, not of how a loaded machine fails them.
 *
 * IPC (parent → worker): `start`, `count`, `stop`. (worker → parent): `progress`, `ready`, `count`.
 */
import WebSocket from 'ws';
import type { WorkerStart } from '../growth/subscriber-worker.ts';

/** The same start as the fan-out growth's subscriber worker: port, source address, channels. */
export type IdleWorkerStart = WorkerStart;

export type IdleWorkerRequest = IdleWorkerStart | { type: 'count' } | { type: 'stop' };

export type IdleWorkerReport =
  | { type: 'progress'; connected: number; retries: number }
  | { type: 'ready'; connected: number; failed: number; retries: number; firstError?: string }
  | { type: 'count'; disconnects: number };

const ATTACH_TIMEOUT_MS = 120_000;
const ATTEMPTS = 4;
/** Local ports handed out, below Linux's default ephemeral range (32768–60999). */
const FIRST_PORT = 1024;
const LAST_PORT = 32_767;
let nextPort = FIRST_PORT;

const sockets: WebSocket[] = [];
let stopping = false;
let disconnects = 0;

function send(report: IdleWorkerReport): void {
  if (process.connected) process.send?.(report);
}

/** Opens one connection and attaches it; resolves once `attached` arrived. */
function open(start: IdleWorkerStart, channel: string, localPort: number): Promise<WebSocket> {
  const url = `ws://127.0.0.1:${start.port}/v1/connect?v=1&key=${encodeURIComponent(start.key)}`;
  const socket = new WebSocket(url, { perMessageDeflate: false, localAddress: start.address, localPort });
  return new Promise<WebSocket>((resolve, reject) => {
    const fail = (error: Error) => {
      clearTimeout(timer);
      socket.removeAllListeners('message');
      socket.terminate();
      reject(error);
    };
    const timer = setTimeout(
      () => fail(new Error(`no attached in ${ATTACH_TIMEOUT_MS} ms`)),
      ATTACH_TIMEOUT_MS,
    );
    socket.on('message', (data) => {
      const text = data.toString();
      if (text.startsWith('{"type":"connected"'))
        socket.send(JSON.stringify({ type: 'attach', ref: 1, channel }));
      else if (text.startsWith('{"type":"attached"')) {
        clearTimeout(timer);
        socket.removeAllListeners('message');
        socket.once('close', () => {
          if (!stopping) disconnects++;
        });
        resolve(socket);
      } else if (text.startsWith('{"type":"error"') || text.startsWith('{"type":"disconnect"'))
        fail(new Error(text.slice(0, 200)));
    });
    socket.once('unexpected-response', (_, response) =>
      fail(new Error(`handshake refused: HTTP ${response.statusCode}`)),
    );
    socket.on('error', fail);
  });
}

async function connectAll(start: IdleWorkerStart): Promise<void> {
  let next = 0;
  let connected = 0;
  let failed = 0;
  let retries = 0;
  let firstError: string | undefined;
  const lane = async (): Promise<void> => {
    while (next < start.channels.length && !stopping) {
      const channel = start.channels[next++]!;
      for (let attempt = 1; attempt <= ATTEMPTS && !stopping; ) {
        if (nextPort > LAST_PORT) {
          firstError ??= `no local port left on ${start.address} (${FIRST_PORT}–${LAST_PORT})`;
          failed++;
          break;
        }
        try {
          sockets.push(await open(start, channel, nextPort++));
          connected++;
          if (connected % 250 === 0) send({ type: 'progress', connected, retries });
          break;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') continue; // someone else's port
          firstError ??= error instanceof Error ? error.message : String(error);
          if (attempt === ATTEMPTS) failed++;
          else retries++;
          attempt++;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(start.concurrency, start.channels.length) }, lane));
  send({ type: 'ready', connected, failed, retries, ...(firstError === undefined ? {} : { firstError }) });
}

process.on('disconnect', () => process.exit(0));
process.on('message', (request: IdleWorkerRequest) => {
  if (request.type === 'start') void connectAll(request);
  else if (request.type === 'count') send({ type: 'count', disconnects });
  else if (request.type === 'stop') {
    stopping = true;
    for (const socket of sockets) socket.terminate();
    setTimeout(() => process.exit(0), 100);
  }
});
