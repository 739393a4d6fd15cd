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
 * With channels per connection above one (`--channels-per-connection`), `attach` then has every held
 * connection attach its further channels, all of a connection's attach frames sent at once, and
 * answers `attached` once each connection had all of them answered.
 *
 * IPC (parent → worker): `start`, `attach`, `count`, `stop`. (worker → parent): `progress`, `ready`,
 * `attached`, `count`.
 */
import WebSocket from 'ws';
import type { WorkerStart } from '../growth/subscriber-worker.ts';

/** The same start as the fan-out growth's subscriber worker: port, source address, channels. */
export type IdleWorkerStart = WorkerStart;

/** Further channels for each connection of `start.channels`, in that order. */
export interface IdleWorkerAttach {
  type: 'attach';
  channels: string[][];
}

export type IdleWorkerRequest = IdleWorkerStart | IdleWorkerAttach | { type: 'count' } | { type: 'stop' };

export type IdleWorkerReport =
  | { type: 'progress'; connected: number; retries: number }
  | { type: 'ready'; connected: number; failed: number; retries: number; firstError?: string }
  | { type: 'attached'; attached: number; failed: number; firstError?: string }
  | { type: 'count'; disconnects: number };

const ATTACH_TIMEOUT_MS = 120_000;
const ATTEMPTS = 4;
/** Local ports handed out, below Linux's default ephemeral range (32768–60999). */
const FIRST_PORT = 1024;
const LAST_PORT = 32_767;
let nextPort = FIRST_PORT;

/** The connections held, by their place in `start.channels` (a failed one leaves a hole). */
const sockets: (WebSocket | undefined)[] = [];
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
      const index = next++;
      const channel = start.channels[index]!;
      for (let attempt = 1; attempt <= ATTEMPTS && !stopping; ) {
        if (nextPort > LAST_PORT) {
          firstError ??= `no local port left on ${start.address} (${FIRST_PORT}–${LAST_PORT})`;
          failed++;
          break;
        }
        try {
          sockets[index] = await open(start, channel, nextPort++);
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

/**
 * Attaches `channels` on a held connection, every attach frame at once; resolves once each was
 * answered `attached` (presence syncs and heartbeats that come meanwhile are left unread).
 */
function attachMore(socket: WebSocket, channels: string[]): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let waiting = channels.length;
    const done = (error?: Error) => {
      clearTimeout(timer);
      socket.off('message', onMessage);
      if (error) reject(error);
      else resolve();
    };
    const timer = setTimeout(
      () =>
        done(new Error(`${waiting} of ${channels.length} attaches unanswered in ${ATTACH_TIMEOUT_MS} ms`)),
      ATTACH_TIMEOUT_MS,
    );
    const onMessage = (data: WebSocket.RawData) => {
      const text = data.toString();
      if (text.startsWith('{"type":"attached"')) {
        if (--waiting === 0) done();
      } else if (text.startsWith('{"type":"error"') || text.startsWith('{"type":"disconnect"'))
        done(new Error(text.slice(0, 200)));
    };
    socket.on('message', onMessage);
    // refs from 2 on: the connection's first attach was ref 1
    for (let k = 0; k < channels.length; k++)
      socket.send(JSON.stringify({ type: 'attach', ref: k + 2, channel: channels[k] }));
  });
}

async function attachAll(request: IdleWorkerAttach, concurrency: number): Promise<void> {
  let next = 0;
  let attached = 0;
  let failed = 0;
  let firstError: string | undefined;
  const lane = async (): Promise<void> => {
    while (next < request.channels.length && !stopping) {
      const index = next++;
      const socket = sockets[index];
      const channels = request.channels[index]!;
      if (socket === undefined || channels.length === 0) continue;
      try {
        await attachMore(socket, channels);
        attached += channels.length;
      } catch (error) {
        firstError ??= error instanceof Error ? error.message : String(error);
        failed += channels.length;
      }
    }
  };
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(concurrency, request.channels.length)) }, lane),
  );
  send({ type: 'attached', attached, failed, ...(firstError === undefined ? {} : { firstError }) });
}

let concurrency = 1;
process.on('disconnect', () => process.exit(0));
process.on('message', (request: IdleWorkerRequest) => {
  if (request.type === 'start') {
    concurrency = request.concurrency;
    void connectAll(request);
  } else if (request.type === 'attach') void attachAll(request, concurrency);
  else if (request.type === 'count') send({ type: 'count', disconnects });
  else if (request.type === 'stop') {
    stopping = true;
    for (const socket of sockets) socket?.terminate();
    setTimeout(() => process.exit(0), 100);
  }
});
