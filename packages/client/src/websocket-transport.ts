/**
 * WebSocket transport: the browser's `WebSocket` or the `ws` package's, whichever constructor it is
 * given (both implement the `onopen`/`onmessage`/`onclose`/`onerror` interface used here).
 *
 * With `ws` it also reads the body of a refused handshake (`unexpected-response`), so that a 401 is
 * known to be `unauthorized` and not retried; browsers hide the status of a refused upgrade, so there
 * a refusal looks like any other failed open (close code 1006).
 */
import { CLOSE_CODES } from '@mooring/protocol';
import { errorInfoFromBody } from './errors.ts';
import type { Transport, TransportCloseInfo, TransportHandlers } from './transport.ts';
import { parseServerFrame } from './transport.ts';

/**
 * A handler slot (`onopen`…). Typed loosely (`never` parameter) so that both the DOM's WebSocket and
 * `ws`'s are assignable; the handlers set here declare the event shape they read.
 */
type HandlerSlot = ((event: never) => unknown) | null;

/** The part of the WebSocket interface the transport uses. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: HandlerSlot;
  onmessage: HandlerSlot;
  onclose: HandlerSlot;
  onerror: HandlerSlot;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

const OPEN = 1;

/** The TCP socket under a `ws` WebSocket (Node); a browser's WebSocket has none. */
interface Corkable {
  cork(): void;
  uncork(): void;
}
type WithSocket = WebSocketLike & { _socket?: Corkable | null };

/** Sockets corked until the end of the current callback. */
const corked = new Set<Corkable>();
let uncorkQueued = false;

function uncorkAll(): void {
  uncorkQueued = false;
  for (const socket of corked) socket.uncork();
  corked.clear();
}

/**
 * Frames sent during one callback leave in one write: with `ws` in Node, the socket is corked at
 * the first send and uncorked once the callback's synchronous work and microtasks are done
 * (`process.nextTick`). An agent's runs whose windows end in the same millisecond flush in one
 * callback (@mooring/ai's shared timers), so their batches share one system call on the agent and
 * one read on the server, instead of one each. Nothing waits past the callback that sent it; order
 * is the socket's own. Browsers batch their own writes: nothing to do there.
 */
function corkForCallback(socket: WebSocketLike): void {
  const raw = (socket as WithSocket)._socket;
  if (raw === undefined || raw === null || corked.has(raw) || typeof process === 'undefined') return;
  raw.cork();
  corked.add(raw);
  if (!uncorkQueued) {
    uncorkQueued = true;
    process.nextTick(uncorkAll);
  }
}

const MAX_ERROR_BODY = 64 * 1024;

/** A constructor given directly, or a promise of one (the `ws` package is loaded lazily in Node). */
export type WebSocketSource = WebSocketConstructor | (() => Promise<WebSocketConstructor>);

export class WebSocketTransport implements Transport {
  readonly kind = 'websocket';
  readonly #source: WebSocketSource;
  #socket: WebSocketLike | undefined;
  #handlers: TransportHandlers | undefined;
  #done = false;
  #closeRequested: { code: number | undefined; reason: string | undefined } | undefined;
  #lastError: string | undefined;

  constructor(source: WebSocketSource) {
    this.#source = source;
  }

  open(url: string, handlers: TransportHandlers): void {
    this.#handlers = handlers;
    const source = this.#source;
    const ctor = isConstructor(source) ? Promise.resolve(source) : source();
    ctor.then(
      (Ctor) => this.#start(Ctor, url),
      (err: unknown) => this.#finish({ code: 1006, reason: '', localError: String(err) }),
    );
  }

  send(frame: Parameters<Transport['send']>[0], json?: string): void {
    const socket = this.#socket;
    if (this.#done || socket === undefined || socket.readyState !== OPEN) {
      throw new Error('the WebSocket is not open');
    }
    corkForCallback(socket);
    socket.send(json ?? JSON.stringify(frame));
  }

  close(code?: number, reason?: string): void {
    if (this.#done) return;
    if (this.#socket === undefined) {
      // Still loading the constructor: remember, and finish as soon as there is a socket.
      this.#closeRequested = { code, reason };
      return;
    }
    try {
      this.#socket.close(code, reason);
    } catch {
      this.#finish({ code: 1006, reason: '' });
    }
  }

  abort(): void {
    if (this.#done) return;
    const socket = this.#socket as (WebSocketLike & { terminate?: () => void }) | undefined;
    this.#handlers = undefined;
    this.#finish({ code: 1006, reason: 'aborted' });
    try {
      // Not 1000/1005: the server must keep the connection's identity for the reconnect (§5.4).
      if (socket?.terminate) socket.terminate();
      else socket?.close(CLOSE_CODES.heartbeat_timeout.code, 'reconnecting');
    } catch {
      // the socket is being dropped anyway
    }
  }

  #start(Ctor: WebSocketConstructor, url: string): void {
    if (this.#done) return;
    let socket: WebSocketLike;
    try {
      socket = new Ctor(url);
    } catch (err) {
      this.#finish({ code: 1006, reason: '', localError: String(err) });
      return;
    }
    this.#socket = socket;
    watchRefusedHandshake(socket, (info) => {
      this.#finish(info);
      (socket as { terminate?: () => void }).terminate?.();
    });
    socket.onopen = () => {
      if (!this.#done) this.#handlers?.onOpen();
    };
    socket.onmessage = (event: { data: unknown }) => {
      if (this.#done) return;
      if (typeof event.data !== 'string') {
        this.#handlers?.onProtocolError('binary frame: the protocol uses text frames only');
        return;
      }
      const frame = parseServerFrame(event.data);
      if (typeof frame === 'string') this.#handlers?.onProtocolError(frame);
      else this.#handlers?.onFrame(frame);
    };
    socket.onerror = (event: { message?: unknown }) => {
      const message = event.message;
      if (typeof message === 'string' && message !== '') this.#lastError = message;
    };
    socket.onclose = (event: { code: number; reason: string }) => {
      const info: TransportCloseInfo = { code: event.code, reason: event.reason };
      const status = /Unexpected server response: (\d+)/.exec(this.#lastError ?? '');
      if (status) info.httpStatus = Number(status[1]);
      if (this.#lastError !== undefined) info.localError = this.#lastError;
      this.#finish(info);
    };
    if (this.#closeRequested) this.close(this.#closeRequested.code, this.#closeRequested.reason);
  }

  #finish(info: TransportCloseInfo): void {
    if (this.#done) return;
    this.#done = true;
    const socket = this.#socket;
    if (socket) {
      socket.onopen = null;
      socket.onmessage = null;
      socket.onclose = null;
      socket.onerror = () => {};
    }
    this.#handlers?.onClose(info);
  }
}

function isConstructor(source: WebSocketSource): source is WebSocketConstructor {
  return typeof source === 'function' && source.prototype !== undefined && 'send' in source.prototype;
}

interface ReadableLike {
  statusCode?: number;
  on(event: 'data', fn: (chunk: Uint8Array | string) => void): unknown;
  on(event: 'end' | 'error', fn: () => void): unknown;
}

/**
 * `ws` only: when the server answers the upgrade with a non-101 response, read its JSON error body.
 * Without this listener `ws` reports just "Unexpected server response: <status>".
 */
function watchRefusedHandshake(socket: WebSocketLike, report: (info: TransportCloseInfo) => void): void {
  const emitter = socket as unknown as {
    on?: (event: 'unexpected-response', fn: (req: unknown, res: ReadableLike) => void) => void;
  };
  if (typeof emitter.on !== 'function') return;
  emitter.on('unexpected-response', (_req, res) => {
    const status = res.statusCode ?? 0;
    let body = '';
    const done = (): void => {
      const info: TransportCloseInfo = { code: 1006, reason: '', httpStatus: status };
      try {
        const error = errorInfoFromBody(JSON.parse(body));
        if (error) info.error = error;
      } catch {
        // not a JSON body: the status alone classifies the refusal
      }
      report(info);
    };
    res.on('data', (chunk) => {
      if (body.length < MAX_ERROR_BODY)
        body += typeof chunk === 'string' ? chunk : new TextDecoder().decode(chunk);
    });
    res.on('end', done);
    res.on('error', done);
  });
}
