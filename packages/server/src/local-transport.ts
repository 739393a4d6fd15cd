/**
 * The in-process transport: an agent running in the same Node process as the server connects
 * without a socket. `new Mooring({ url: server.url, key, transport: server.localTransport })` gives
 * it a connection like any other (the same authentication, budgets, frames, acks, resume and
 * presence; PROTOCOL.md §5.5); only the bytes skip the kernel, the WebSocket framing and the other
 * process's event loop. Frames go each way in order, each in its own microtask, so neither side ever
 * runs inside the other's call. They go as JSON text, except the two a streaming agent sends and
 * gets once per token: a publish of the simple shapes (creates and appends of string data, see
 * simple-publish-frame.ts) and its ack go as copies of the objects, which is what a JSON round trip
 * would have produced, without the text. Each side gets objects the other does not hold.
 *
 * The shape is `@mooring/client`'s `Transport` (structurally: the server does not depend on the
 * client package).
 */
import {
  type AckFrame,
  type ClientFrame,
  type ErrorInfo,
  type OperationInput,
  type PublishFrame,
  parseServerFrame,
  type ServerFrame,
} from '@mooring/protocol';
import type { Admission } from './connect-attaches.ts';
import type { Connection, TransportSink } from './connection.ts';
import { toErrorInfo } from './server-error.ts';
import { simplePublishFrame } from './simple-publish-frame.ts';

/** What the client's connection hears from its transport (`@mooring/client` `TransportHandlers`). */
export interface LocalTransportHandlers {
  onOpen(): void;
  onFrame(frame: ServerFrame): void;
  onProtocolError(message: string): void;
  onClose(info: { code: number; reason: string; error?: ErrorInfo; httpStatus?: number }): void;
}

/** One connection attempt of an in-process client (`@mooring/client` `Transport`). */
export interface LocalTransport {
  readonly kind: 'local';
  open(url: string, handlers: LocalTransportHandlers): void;
  send(frame: ClientFrame): void;
  close(code?: number, reason?: string): void;
  abort(): void;
}

export interface LocalTransportOptions {
  maxFrameSize: number;
  /**
   * Admits a connection request as the WebSocket upgrade does (the URL's path, `v`, `key`/`token`,
   * `clientId`, `recover`; the connection budgets), or throws why not.
   */
  authorize(url: URL): Promise<Admission>;
  accept(transport: TransportSink, admission: Admission): Connection;
  onClose(connection: Connection, code: number): void;
}

/** Makes a new, unopened in-process transport per connection attempt. */
export function localTransportFactory(options: LocalTransportOptions): () => LocalTransport {
  return () => new InProcessTransport(options);
}

class InProcessTransport implements LocalTransport {
  readonly kind = 'local';
  readonly #options: LocalTransportOptions;
  #handlers: LocalTransportHandlers | undefined;
  #sink: LocalSink | undefined;
  #ended = false;

  constructor(options: LocalTransportOptions) {
    this.#options = options;
  }

  open(url: string, handlers: LocalTransportHandlers): void {
    if (this.#handlers) throw new Error('this transport was opened already; make a new one per attempt');
    this.#handlers = handlers;
    void this.#open(url);
  }

  async #open(address: string): Promise<void> {
    let admitted: Admission;
    try {
      admitted = await this.#options.authorize(new URL(address));
    } catch (err) {
      const error = toErrorInfo(err);
      if (this.#ended) return;
      this.#ended = true;
      // what a refused WebSocket handshake carries: the HTTP status and the error body
      this.#handlers?.onClose({ code: 1006, reason: error.message, error, httpStatus: error.status });
      return;
    }
    if (this.#ended) {
      // aborted while authenticating: the claimed connection is given back at once
      const sink = new LocalSink(this, this.#options);
      sink.connection = this.#options.accept(sink, { ...admitted, attaches: undefined });
      sink.end(1006);
      return;
    }
    this.#handlers?.onOpen();
    const sink = new LocalSink(this, this.#options);
    this.#sink = sink;
    sink.connection = this.#options.accept(sink, admitted);
  }

  send(frame: ClientFrame): void {
    const sink = this.#sink;
    if (this.#ended || sink === undefined) throw new Error('the in-process transport is not open');
    const publish = simplePublishCopy(frame, this.#options.maxFrameSize);
    if (publish !== undefined) {
      queueMicrotask(() => {
        if (!sink.ended) sink.connection?.receiveValue(publish);
      });
      return;
    }
    const text = JSON.stringify(frame);
    if (Buffer.byteLength(text) > this.#options.maxFrameSize) {
      // what a WebSocket does with a frame above maxPayload: close 1009
      this.#end(1009, `frame above ${this.#options.maxFrameSize} bytes`, true);
      return;
    }
    queueMicrotask(() => {
      if (!sink.ended) sink.connection?.receive(text);
    });
  }

  close(code = 1000, reason = ''): void {
    this.#end(code, reason, true);
  }

  abort(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#sink?.end(1006);
  }

  /** The server side delivers a frame (a microtask after its `send`). */
  deliver(text: string): void {
    if (this.#ended) return;
    const frame = parseServerFrame(text);
    if (typeof frame === 'string') this.#handlers?.onProtocolError(frame);
    else this.#handlers?.onFrame(frame);
  }

  /** The server side delivers an ack as an object of the client's own (`LocalSink.sendAck`). */
  deliverFrame(frame: ServerFrame): void {
    if (!this.#ended) this.#handlers?.onFrame(frame);
  }

  /** Either side ends the connection: the server hears `code`, the client's `onClose` follows. */
  #end(code: number, reason: string, report: boolean): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#sink?.end(code);
    if (report) queueMicrotask(() => this.#handlers?.onClose({ code, reason }));
  }

  /** The server closed the connection. */
  closedByServer(code: number, reason: string): void {
    this.#end(code, reason, true);
  }
}

/** The server's side of one in-process connection. */
class LocalSink implements TransportSink {
  readonly kind = 'local';
  /** The peer lives in this process: it cannot go silent, so heartbeats are not a liveness check. */
  readonly answersHeartbeats = false;
  connection: Connection | undefined;
  ended = false;
  readonly #client: InProcessTransport;
  readonly #options: LocalTransportOptions;

  constructor(client: InProcessTransport, options: LocalTransportOptions) {
    this.#client = client;
    this.#options = options;
  }

  send(frame: Buffer): void {
    if (this.ended) return;
    const text = frame.toString();
    queueMicrotask(() => this.#client.deliver(text));
  }

  sendAck(frame: AckFrame): void {
    if (this.ended) return;
    const copy: AckFrame = { type: 'ack', channel: frame.channel, results: [] };
    if (frame.ref !== undefined) copy.ref = frame.ref;
    for (const r of frame.results)
      copy.results.push(
        r.duplicate === undefined ? { serial: r.serial } : { serial: r.serial, duplicate: r.duplicate },
      );
    queueMicrotask(() => this.#client.deliverFrame(copy));
  }

  bufferedAmount(): number {
    return 0;
  }

  /** Nothing is ever queued here: a waiter (there is none) looks again at once. */
  whenDrained(drained: () => void): void {
    queueMicrotask(drained);
  }

  close(code: number, reason: string): void {
    // after the frames sent before it, like a WebSocket close frame
    queueMicrotask(() => this.#client.closedByServer(code, reason.slice(0, 120)));
  }

  terminate(): void {
    // never inside the caller (a connection being dropped): the end is heard a microtask later
    queueMicrotask(() => this.#client.closedByServer(1006, 'terminated'));
  }

  /** The connection is over: the server forgets it once, with the code the client would have sent. */
  end(code: number): void {
    if (this.ended) return;
    this.ended = true;
    const connection = this.connection;
    if (connection) this.#options.onClose(connection, code);
  }
}

/** Bytes of JSON a string can take at most: every UTF-16 unit escaped as `\uXXXX`. */
const MAX_JSON_BYTES_PER_UNIT = 6;
/** Room for a publish frame's keys, punctuation, ref and channel (a channel name is ≤ 255 chars). */
const FRAME_OVERHEAD = 64 + MAX_JSON_BYTES_PER_UNIT * 320;
/** Room for one operation's keys and punctuation. */
const OP_OVERHEAD = 64;

/**
 * A copy of `frame` when it is a publish of the simple shapes (`simplePublishFrame`) whose JSON text
 * surely fits in `maxFrameSize`: the frame the server would have parsed from that text (the same
 * keys, `undefined` ones left out, the same strings). Otherwise undefined, and the caller sends
 * the text (a frame near the limit is measured exactly there).
 */
function simplePublishCopy(frame: ClientFrame, maxFrameSize: number): PublishFrame | undefined {
  const simple = simplePublishFrame(frame);
  if (simple === undefined) return undefined;
  let bound = FRAME_OVERHEAD;
  const ops: OperationInput[] = [];
  for (const op of simple.ops) {
    const copy: OperationInput = {};
    bound += OP_OVERHEAD;
    if (op.action !== undefined) copy.action = op.action;
    if (op.id !== undefined) {
      copy.id = op.id;
      bound += MAX_JSON_BYTES_PER_UNIT * op.id.length;
    }
    if (op.serial !== undefined) {
      copy.serial = op.serial;
      bound += op.serial.length;
    }
    if (op.name !== undefined) {
      copy.name = op.name;
      bound += MAX_JSON_BYTES_PER_UNIT * op.name.length;
    }
    if (op.data !== undefined) {
      copy.data = op.data;
      bound += MAX_JSON_BYTES_PER_UNIT * (op.data as string).length;
    }
    ops.push(copy);
  }
  if (bound > maxFrameSize) return undefined;
  const copy: PublishFrame = { type: 'publish', channel: simple.channel, ops };
  if (simple.ref !== undefined) copy.ref = simple.ref;
  return copy;
}
