/**
 * Client → server frames for the HTTP transports (PROTOCOL.md §12):
 * `POST /v1/connections/:id/frames` with the connection key in `x-mooring-connection-key`.
 *
 * Order is the whole point: at most one POST is in flight per connection, and frames sent while one
 * is on its way queue up and go together in the next one, as a JSON array, in the order they were
 * sent. The server handles the frames of one POST in array order, so a publisher's operations are
 * stored in the order it made them, as on a WebSocket.
 *
 * A POST that fails (network error, timeout, `404 unknown_connection`, any answer but 202) makes the
 * transport unusable: the connection reconnects and resends what was not acknowledged.
 */
import type { ClientFrame } from '@mooring/protocol';
import { utf8Length } from '@mooring/protocol';
import { errorInfoFromBody } from './errors.ts';
import type { FetchLike } from './rest.ts';
import type { Timers } from './timers.ts';
import type { TransportCloseInfo } from './transport.ts';

/** What the HTTP transports need from their environment. */
export interface HttpTransportDeps {
  fetch: FetchLike;
  timers: Timers;
  /** How long one upstream POST may take before the transport counts as dead, ms. */
  requestTimeout: number;
  /**
   * Upper bound of one POST body (several frames batched), bytes: this or the server's announced
   * `maxHttpBody`, the lower. Default 512 KiB; a bigger frame goes alone.
   */
  maxBatchBytes?: number;
}

export const DEFAULT_MAX_BATCH_BYTES = 512 * 1024;

export interface HttpUpstreamDeps extends HttpTransportDeps {
  /** The upstream failed; called once, and not after `stop()` or `abort()`. */
  onFailure(info: TransportCloseInfo): void;
}

export class HttpUpstream {
  readonly #deps: HttpUpstreamDeps;
  #target: { url: string; key: string; maxBody: number | undefined } | undefined;
  /** Frames as JSON, with their length in bytes (UTF-8, as the server counts a body). */
  #queue: { json: string; bytes: number }[] = [];
  #inFlight: AbortController | undefined;
  #stopped = false;
  #idleWaiters: (() => void)[] = [];

  constructor(deps: HttpUpstreamDeps) {
    this.#deps = deps;
  }

  /**
   * Where to POST, known once the server's `connected` frame arrived (`maxHttpBody`: the bytes of a
   * body it accepts, from that frame's limits). Frames sent before wait.
   */
  connect(framesUrl: string, connectionKey: string, maxHttpBody?: number): void {
    this.#target = { url: framesUrl, key: connectionKey, maxBody: maxHttpBody };
    this.#pump();
  }

  /** Frames queued so far (sent or about to be). */
  sent = 0;

  get connected(): boolean {
    return this.#target !== undefined;
  }

  /** Queues one frame (`json`: the frame already written, if it was); throws once the upstream has stopped. */
  send(frame: ClientFrame, json?: string): void {
    if (this.#stopped) throw new Error('the HTTP transport is closed');
    this.sent++;
    const text = json ?? JSON.stringify(frame);
    this.#queue.push({ json: text, bytes: utf8Length(text) });
    this.#pump();
  }

  /** Resolves once nothing is queued or in flight (at once after `stop()` with nothing in flight). */
  idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Sends nothing more (the queue is dropped); a POST in flight completes. */
  stop(): void {
    this.#stopped = true;
    this.#queue = [];
    this.#settle();
  }

  /** Stops and cancels the POST in flight. */
  abort(): void {
    this.stop();
    const inFlight = this.#inFlight;
    this.#inFlight = undefined;
    inFlight?.abort();
    this.#settle();
  }

  #isIdle(): boolean {
    return this.#inFlight === undefined && (this.#queue.length === 0 || this.#stopped);
  }

  #settle(): void {
    if (!this.#isIdle()) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  #pump(): void {
    const target = this.#target;
    if (this.#inFlight || this.#stopped || !target || this.#queue.length === 0) {
      this.#settle();
      return;
    }
    const max = Math.min(this.#deps.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES, target.maxBody ?? Infinity);
    // the body is `[`, the frames with a `,` between them, `]`: each frame adds its bytes and one
    let bytes = 1;
    let count = 0;
    for (const frame of this.#queue) {
      if (count > 0 && bytes + frame.bytes + 1 > max) break;
      bytes += frame.bytes + 1;
      count += 1;
    }
    const batch = this.#queue.splice(0, count);
    const controller = new AbortController();
    this.#inFlight = controller;
    let timedOut = false;
    const timer = this.#deps.timers.setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.#deps.requestTimeout);
    const done = (failure: TransportCloseInfo | undefined): void => {
      this.#deps.timers.clearTimeout(timer);
      if (this.#inFlight !== controller) return; // aborted: nobody is listening any more
      this.#inFlight = undefined;
      if (failure === undefined) {
        this.#pump();
        return;
      }
      const stopped = this.#stopped;
      this.stop();
      if (!stopped) this.#deps.onFailure(failure);
    };
    this.#deps
      .fetch(target.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-mooring-connection-key': target.key },
        body: `[${batch.map((frame) => frame.json).join(',')}]`,
        signal: controller.signal,
      })
      .then(async (res) => {
        const text = await res.text().catch(() => '');
        if (res.status === 202) return done(undefined);
        done(upstreamFailure(res.status, text));
      })
      .catch((err: unknown) => {
        done({
          code: 1006,
          reason: '',
          localError: timedOut
            ? `an upstream POST took longer than ${this.#deps.requestTimeout} ms`
            : `an upstream POST failed: ${String(err)}`,
        });
      });
  }
}

/** How an HTTP transport ends when the server refuses one of its requests on `/v1/connections/:id`. */
export function upstreamFailure(status: number, body: string): TransportCloseInfo {
  let message = `HTTP ${status}`;
  try {
    const error = errorInfoFromBody(JSON.parse(body));
    if (error) message = `${error.code}: ${error.message}`;
  } catch {
    // not JSON: the status says enough
  }
  // Not reported as an HTTP refusal: `unknown_connection` (404) means "connect again and resume", and
  // anything else here is about this transport, never about the credentials.
  return { code: 1006, reason: status === 404 ? 'unknown_connection' : '', localError: message };
}

/**
 * How an HTTP transport ends when the server (or something on the way) answers its opening request
 * with anything but 200. A Mooring error body (`{ error }`) is the server speaking: a 401 is then
 * known to be permanent. Without one, the answer came from something else (a proxy's error page).
 */
export async function openRefusal(res: Response): Promise<TransportCloseInfo> {
  const info: TransportCloseInfo = { code: 1006, reason: '', httpStatus: res.status };
  const text = await res.text().catch(() => '');
  try {
    const error = errorInfoFromBody(JSON.parse(text));
    if (error) info.error = error;
  } catch {
    // not JSON: the status alone classifies the refusal
  }
  return info;
}
