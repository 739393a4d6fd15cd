/**
 * The WebSocket transport (`ws`): a thin adapter between a socket and a `Connection`.
 * Authentication happens on the HTTP upgrade, before the socket exists: bad credentials get a plain
 * HTTP 401 with a JSON error body, so a client can tell "refused" from "network trouble".
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import type { Admission } from './connect-attaches.ts';
import type { Connection, TransportSink } from './connection.ts';
import { corkForTurn, flushTurn } from './cork-for-turn.ts';

export interface WebSocketTransportOptions {
  maxFrameSize: number;
  /** Creates the connection core for an accepted socket. */
  accept: (transport: TransportSink, admission: Admission) => Connection;
  onClose: (connection: Connection, code: number) => void;
}

const TEXT = { binary: false } as const;

/**
 * A connection's way out to its socket. A class rather than an object of closures: at 100,000 idle
 * connections each closure is memory held per connection (bench/README, "Idle connections").
 */
class WebSocketSink implements TransportSink {
  readonly kind = 'websocket';
  readonly answersHeartbeats = true;
  readonly #ws: WebSocket;
  /** The socket `ws` writes to. */
  readonly #socket: Duplex;
  /** The connection it serves, and what to call when its socket closes (set once accepted). */
  connection: Connection | undefined;
  onClose: ((connection: Connection, code: number) => void) | undefined;

  constructor(ws: WebSocket, socket: Duplex) {
    this.#ws = ws;
    this.#socket = socket;
  }

  send(frame: Buffer): void {
    this.#ws.send(frame, TEXT);
  }

  sendSoon(frame: Buffer): void {
    corkForTurn(this.#socket);
    this.#ws.send(frame, TEXT);
  }

  bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  ping(): void {
    corkForTurn(this.#socket);
    this.#ws.ping();
  }

  close(code: number, reason: string): void {
    const ws = this.#ws;
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason.slice(0, 120));
    // a peer that does not complete the close handshake (dead network) must not hold the socket
    setTimeout(() => ws.terminate(), 2_000).unref();
  }

  terminate(): void {
    flushTurn(this.#socket);
    this.#ws.terminate();
  }
}

export class WebSocketTransport {
  readonly wss: WebSocketServer;
  readonly #options: WebSocketTransportOptions;

  constructor(options: WebSocketTransportOptions) {
    this.#options = options;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: options.maxFrameSize,
      perMessageDeflate: false,
    });
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, admission: Admission): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => this.#attach(ws, socket, admission));
  }

  /** `socket`: the one `ws` writes to; frames of one turn leave in one write (cork-for-turn.ts). */
  #attach(ws: WebSocket, socket: Duplex, admission: Admission): void {
    const sink = new WebSocketSink(ws, socket);
    sink.connection = this.#options.accept(sink, admission);
    sink.onClose = this.#options.onClose;
    (ws as Tagged)[SINK] = sink;
    ws.on('message', onMessage);
    ws.on('pong', onPong);
    ws.on('error', onError);
    ws.on('close', onClose);
  }
}

/**
 * The socket's listeners are shared by every connection (`this` is the socket, and its sink is on
 * it): closures made per connection are memory held per connection.
 */
const SINK = Symbol('mooring.sink');
type Tagged = WebSocket & { [SINK]?: WebSocketSink };

/** Set on a socket whose reading is paused for its identity's inbound budget. */
const RESUME = Symbol('mooring.resume');
type Paused = Tagged & { [RESUME]?: NodeJS.Timeout };

function rawLength(data: RawData): number {
  if (Array.isArray(data)) {
    let length = 0;
    for (const part of data) length += part.length;
    return length;
  }
  return data.byteLength;
}

function onMessage(this: Paused, data: RawData, isBinary: boolean): void {
  const connection = this[SINK]?.connection;
  if (connection === undefined) return;
  // the identity's inbound budget, before any parsing: over it, stop reading until it refills
  const pause = connection.inboundPause(rawLength(data));
  if (pause > 0 && this[RESUME] === undefined) {
    this.pause();
    this[RESUME] = setTimeout(() => {
      delete this[RESUME];
      if (this.readyState === this.OPEN) this.resume();
    }, pause);
    this[RESUME].unref();
  }
  if (isBinary) {
    connection.receiveUnreadable('binary frames are not supported; send JSON text');
    return;
  }
  connection.receive(data.toString());
}

function onPong(this: Tagged): void {
  const connection = this[SINK]?.connection;
  if (connection !== undefined) connection.alive = true;
}

function onError(): void {
  // ws reports oversized frames and protocol violations here and closes the socket itself
  // (1009 "message too big", 1002 protocol error); 'close' cleans up.
}

function onClose(this: Tagged, code: number): void {
  const sink = this[SINK];
  if (sink?.connection !== undefined) sink.onClose?.(sink.connection, code);
}
