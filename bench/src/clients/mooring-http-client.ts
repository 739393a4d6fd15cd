/**
 * Load-generator side of Mooring's HTTP fallback transports (PROTOCOL.md §12), the same frames as
 * the WebSocket client (mooring-client.ts), over plain HTTP/1.1:
 *
 *   SSE:        GET /v1/connect/sse?key=…          ◀── 200 text/event-stream, `data: {connected}\n\n` …
 *   long-poll:  GET /v1/connect/poll?key=…         ◀── [connected]
 *               GET /v1/connections/:id/poll       ◀── [frames…] as soon as there are some (loop)
 *   upstream:   POST /v1/connections/:id/frames    (x-mooring-connection-key) attach ──▶ 202
 *               ◀── attached (downstream)          then ◀── messages … (live)
 *
 * Written on `node:http` rather than fetch: the wire-efficiency columns need the bytes that crossed
 * each TCP connection (status lines, headers, chunked framing), which fetch does not expose. Each
 * client has its own keep-alive agent, as a browser tab would: the stream (or the pending poll)
 * holds one connection, the upstream POST another. Like the WebSocket client, once attached the
 * received text is scanned, not parsed.
 */
import { Agent, type ClientRequest, type IncomingMessage, request } from 'node:http';
import type { ServerFrame } from '@mooring/protocol';
import { BENCH_KEY, FANOUT_CHANNEL } from '../bench-config.ts';
import type { ByteMeter } from './byte-meter.ts';
import type { Closable, FanoutTarget, SubscriberHandlers } from './fanout-target.ts';
import { withTimeout } from './fanout-target.ts';
import { mooringTarget } from './mooring-client.ts';

const MAX_LOGGED_ERRORS = 3;
let loggedErrors = 0;

function logProblem(what: string, detail: string): void {
  if (loggedErrors++ < MAX_LOGGED_ERRORS)
    process.stderr.write(`  mooring ${what}: ${detail.slice(0, 300)}\n`);
}

const CONNECT_QUERY = `v=1&key=${encodeURIComponent(BENCH_KEY)}`;

/** What a downstream transport needs to be driven: open, hand each received text on, close. */
abstract class HttpSubscriber {
  protected readonly agent = new Agent({ keepAlive: true, maxSockets: 4 });
  protected connectionId = '';
  protected connectionKey = '';
  protected closed = false;
  #attached = false;
  #onAttached: ((error?: Error) => void) | undefined;
  readonly #port: number;
  readonly #meter: ByteMeter | undefined;
  readonly #handlers: SubscriberHandlers;

  constructor(port: number, handlers: SubscriberHandlers, meter: ByteMeter | undefined) {
    this.#port = port;
    this.#handlers = handlers;
    this.#meter = meter;
  }

  /** A request on this client's agent; every socket it uses is counted in the meter. */
  protected request(
    method: 'GET' | 'POST',
    path: string,
    headers: Record<string, string> = {},
  ): ClientRequest {
    const req = request({ host: '127.0.0.1', port: this.#port, method, path, headers, agent: this.agent });
    const meter = this.#meter;
    if (meter !== undefined) req.on('socket', (socket) => meter.track(socket));
    return req;
  }

  protected get connectionHeaders(): Record<string, string> {
    return { 'x-mooring-connection-key': this.connectionKey };
  }

  /** Sends frames upstream (one POST; callers wait for it before the next, §12). */
  protected post(frames: unknown): Promise<void> {
    const body = JSON.stringify(frames);
    return new Promise((resolve, reject) => {
      const req = this.request('POST', `/v1/connections/${this.connectionId}/frames`, {
        ...this.connectionHeaders,
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(body)),
      });
      req.once('response', (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.once('end', () =>
          res.statusCode === 202 ? resolve() : reject(new Error(`upstream POST ${res.statusCode}: ${text}`)),
        );
      });
      req.once('error', reject);
      req.end(body);
    });
  }

  /** Handles one downstream frame before the channel is attached (parsed). */
  protected setupFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case 'connected':
        this.connectionId = frame.connectionId;
        this.connectionKey = frame.connectionKey;
        break;
      case 'attached':
        this.#attached = true;
        this.#onAttached?.();
        break;
      case 'error':
        logProblem('subscriber error', JSON.stringify(frame));
        this.#onAttached?.(new Error(frame.error.message));
        break;
      default:
        if (frame.type === 'disconnect') logProblem('subscriber disconnect', JSON.stringify(frame));
    }
  }

  /** Downstream text holding one or more whole frames: parsed until attached, scanned after. */
  protected deliver(text: string, frames: () => string[]): void {
    if (this.#attached) {
      if (text.includes('"type":"disconnect"')) logProblem('subscriber disconnect', text);
      this.#handlers.onText(text);
      return;
    }
    for (const json of frames()) {
      const frame = JSON.parse(json) as ServerFrame;
      if (this.#attached && frame.type === 'messages') this.#handlers.onText(json);
      else this.setupFrame(frame);
    }
  }

  /** The transport ended by itself (server closed it, request failed). */
  protected ended(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.agent.destroy();
    if (this.#attached) this.#handlers.onClose(reason);
    else this.#onAttached?.(new Error(`ended before attached: ${reason}`));
  }

  /** Opens the downstream; resolves once `connected` has been handled. */
  protected abstract open(query: string): Promise<void>;

  /** Connects, attaches `channel` (live) and resolves once `attached` arrived. */
  async start(channel: string): Promise<void> {
    await withTimeout(this.open(CONNECT_QUERY), 10000, 'mooring http connect');
    const attached = new Promise<void>((resolve, reject) => {
      this.#onAttached = (error) => (error === undefined ? resolve() : reject(error));
    });
    await this.post({ type: 'attach', ref: 1, channel });
    await withTimeout(attached, 10000, 'mooring http attach');
    this.#onAttached = undefined;
  }

  close(): void {
    this.closed = true;
    this.agent.destroy();
  }
}

/** `data: <frame>\n\n` events; a read may end mid-event, so only whole events are handed on. */
class SseSubscriber extends HttpSubscriber {
  #response: IncomingMessage | undefined;

  protected open(query: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = this.request('GET', `/v1/connect/sse?${query}`, { accept: 'text/event-stream' });
      req.once('error', (error) => {
        reject(error);
        this.ended(`request error: ${error.message}`);
      });
      req.once('response', (res) => {
        this.#response = res;
        if (res.statusCode !== 200) {
          reject(new Error(`SSE refused: ${res.statusCode}`));
          res.resume();
          return;
        }
        res.setEncoding('utf8');
        let buffer = '';
        res.on('data', (chunk: string) => {
          buffer += chunk;
          const end = buffer.lastIndexOf('\n\n');
          if (end < 0) return;
          const whole = buffer.slice(0, end + 2);
          buffer = buffer.slice(end + 2);
          this.deliver(whole, () =>
            whole
              .split('\n\n')
              .filter((event) => event.startsWith('data: '))
              .map((event) => event.slice(6)),
          );
          // as @mooring/client does: a heartbeat is answered upstream, or the server drops a
          // stream that stays silent for two rounds (PROTOCOL.md §12)
          if (this.connectionId !== '' && whole.includes('"type":"heartbeat"'))
            void this.post({ type: 'ping' }).catch(() => {});
          if (this.connectionId !== '') resolve();
        });
        res.once('close', () => this.ended('stream closed'));
        res.once('error', () => {});
      });
      req.end();
    });
  }

  override close(): void {
    super.close();
    this.#response?.destroy();
  }
}

/** A poll loop: the next poll goes out as soon as an answer has arrived, then the answer is read. */
class PollSubscriber extends HttpSubscriber {
  #current: ClientRequest | undefined;

  protected open(query: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#get(`/v1/connect/poll?${query}`, {}, (status, body) => {
        if (status !== 200) {
          reject(new Error(`poll refused: ${status} ${body}`));
          return;
        }
        this.#handle(body);
        if (this.connectionId === '') reject(new Error(`no connected frame in ${body.slice(0, 200)}`));
        else {
          this.#poll();
          resolve();
        }
      });
    });
  }

  #poll(): void {
    if (this.closed) return;
    this.#get(`/v1/connections/${this.connectionId}/poll`, this.connectionHeaders, (status, body) => {
      if (status !== 200) {
        this.ended(`poll answered ${status}: ${body.slice(0, 200)}`);
        return;
      }
      this.#poll();
      this.#handle(body);
    });
  }

  #handle(body: string): void {
    if (body === '[]') return;
    this.deliver(body, () => (JSON.parse(body) as unknown[]).map((frame) => JSON.stringify(frame)));
  }

  #get(path: string, headers: Record<string, string>, done: (status: number, body: string) => void): void {
    const req = this.request('GET', path, headers);
    this.#current = req;
    req.once('error', (error) => {
      if (!this.closed) done(0, `request failed: ${error.message}`);
    });
    req.once('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.once('end', () => {
        if (!this.closed) done(res.statusCode ?? 0, body);
      });
      res.once('error', () => {});
    });
    req.end();
  }

  override close(): void {
    super.close();
    this.#current?.destroy();
  }
}

export type HttpTransportKind = 'sse' | 'longpoll';

/** A subscriber on `channel` over SSE or long-polling, attached when this resolves. */
export async function subscribeHttp(
  kind: HttpTransportKind,
  port: number,
  channel: string,
  handlers: SubscriberHandlers,
  meter?: ByteMeter,
): Promise<Closable> {
  const subscriber =
    kind === 'sse' ? new SseSubscriber(port, handlers, meter) : new PollSubscriber(port, handlers, meter);
  try {
    await subscriber.start(channel);
  } catch (error) {
    subscriber.close();
    throw error;
  }
  return { close: () => subscriber.close() };
}

/** Fan-out target: subscribers over SSE or long-polling, the publisher over WebSocket. */
export function mooringHttpTarget(kind: HttpTransportKind, meter?: ByteMeter): FanoutTarget {
  return {
    name: kind === 'sse' ? 'Mooring SSE' : 'Mooring long-poll',
    subscribe: (port, handlers) => subscribeHttp(kind, port, FANOUT_CHANNEL, handlers, meter),
    publisher: (port) => mooringTarget.publisher(port),
  };
}
