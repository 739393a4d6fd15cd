/**
 * What the two HTTP transports (SSE and long-polling, PROTOCOL.md §12) share: the upstream of client
 * frames (one POST at a time, `http-upstream.ts`), one abort signal for every request of the
 * transport, closing with a `close` frame, and ending exactly once. A subclass says how it opens
 * (`start`) and how it learns that a close it asked for is complete (`closeSent`).
 */
import type { ClientFrame } from '@mooring/protocol';
import { connectionUrl } from './endpoints.ts';
import type { HttpTransportDeps } from './http-upstream.ts';
import { HttpUpstream } from './http-upstream.ts';
import { randomBase } from './ids.ts';
import type { Transport, TransportCloseInfo, TransportHandlers } from './transport.ts';

export abstract class HttpTransport implements Transport {
  abstract readonly kind: 'sse' | 'longpoll';
  protected readonly deps: HttpTransportDeps;
  /** Aborts every request of this transport once it ends. */
  protected readonly requests = new AbortController();
  protected readonly upstream: HttpUpstream;
  protected handlers: TransportHandlers | undefined;
  /** The opening URL (connection URLs are derived from it). */
  protected url = '';
  protected done = false;
  protected closing = false;
  /**
   * This transport's own id (`transport=` on the opening request, its polls and its POSTs): a late
   * request of an earlier transport of the same recovered connection is refused by the server, so
   * it can never take the frames meant for this one (PROTOCOL.md §12).
   */
  readonly transportId = randomBase(Math.random, 12);

  constructor(deps: HttpTransportDeps) {
    this.deps = deps;
    this.upstream = new HttpUpstream({ ...deps, onFailure: (info) => this.finish(info) });
  }

  open(url: string, handlers: TransportHandlers): void {
    this.handlers = handlers;
    const withId = new URL(url);
    withId.searchParams.set('transport', this.transportId);
    this.url = withId.toString();
    this.start(this.url);
  }

  /** `/v1/connections/:id/<what>` for this transport's requests. */
  protected connectionUrl(connectionId: string, what: 'frames' | 'poll'): string {
    const url = new URL(connectionUrl(this.url, connectionId, what));
    url.searchParams.set('transport', this.transportId);
    return url.toString();
  }

  /** Sends the opening request and reads what follows. */
  protected abstract start(url: string): void;

  /** The `close` frame was accepted upstream: end when the server has ended the connection. */
  protected abstract closeSent(code: number, reason: string): void;

  send(frame: ClientFrame, json?: string): void {
    if (this.done) throw new Error(`the ${this.kind === 'sse' ? 'SSE' : 'long-polling'} transport is closed`);
    if (frame.type === 'close') {
      this.close(1000, 'client closed'); // sends it, and knows the end that follows is a normal one
      return;
    }
    this.upstream.send(frame, json);
  }

  /**
   * Asks the server to end the connection (a `close` frame: it discards the connection's state), or,
   * before the connection is known, just stops.
   */
  close(code = 1000, reason = ''): void {
    if (this.done || this.closing) return;
    this.closing = true;
    if (this.upstream.connected) {
      try {
        this.upstream.send({ type: 'close' });
        this.closeSent(code, reason);
        return;
      } catch {
        // the upstream is gone: stop here
      }
    }
    this.finish({ code, reason });
  }

  abort(): void {
    this.handlers = undefined;
    this.finish({ code: 1006, reason: 'aborted' });
    this.upstream.abort(); // also after the transport ended: a POST may still be on its way
  }

  async drain(): Promise<void> {
    this.upstream.stop();
    await this.upstream.idle();
  }

  /** Ends the transport once: stops the upstream, aborts requests, tells the handlers. */
  protected finish(info: TransportCloseInfo): void {
    if (this.done) return;
    this.done = true;
    this.upstream.stop();
    this.requests.abort();
    const handlers = this.handlers;
    this.handlers = undefined;
    handlers?.onClose(info);
  }
}
