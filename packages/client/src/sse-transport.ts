/**
 * HTTP streaming transport (PROTOCOL.md §12), for networks that refuse WebSocket upgrades:
 *
 *   GET  /v1/connect/sse?v=1&key=…&recover=…   200 text/event-stream, read with a streamed fetch;
 *                                              each event is one server frame, the first `connected`
 *   POST /v1/connections/:id/frames            client frames, one POST at a time (`http-upstream.ts`)
 *
 * Works wherever `fetch` streams response bodies (browsers, Node ≥ 18). `: ping` comments count as
 * traffic for dead-connection detection. Unlike a browser WebSocket, a refused opening request shows
 * its status and error body, so a 401 is known to be permanent everywhere.
 */
import type { ServerFrame } from '@mooring/protocol';
import { HttpTransport } from './http-transport.ts';
import { openRefusal } from './http-upstream.ts';
import { SseParser } from './sse-parser.ts';
import { parseServerFrame } from './transport.ts';

export class SseTransport extends HttpTransport {
  readonly kind = 'sse';
  /** Frames the upstream had sent when the last heartbeat came (`#answerHeartbeat`). */
  #sentAtHeartbeat = 0;
  protected start(url: string): void {
    Promise.resolve()
      .then(() =>
        this.deps.fetch(url, {
          headers: { accept: 'text/event-stream' },
          cache: 'no-store',
          signal: this.requests.signal,
        }),
      )
      .then(
        (res) => this.#onResponse(res),
        (err: unknown) => this.finish({ code: 1006, reason: '', localError: String(err), unreachable: true }),
      );
  }

  /** The stream ends when the server has closed the connection. */
  protected closeSent(): void {}

  async #onResponse(res: Response): Promise<void> {
    if (this.done) {
      res.body?.cancel().catch(() => {});
      return;
    }
    if (res.status !== 200) {
      this.finish(await openRefusal(res));
      return;
    }
    const type = res.headers.get('content-type') ?? '';
    if (!type.startsWith('text/event-stream') || !res.body) {
      res.body?.cancel().catch(() => {});
      this.finish({ code: 1006, reason: '', localError: `expected an event stream, got "${type}"` });
      return;
    }
    this.handlers?.onOpen();
    await this.#read(res.body);
  }

  async #read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    const parser = new SseParser({
      onEvent: (data) => this.#onEvent(data),
      onComment: () => {
        if (!this.done) this.handlers?.onActivity?.();
      },
    });
    const reader = body.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (this.done) break;
        if (done) {
          this.finish({ code: this.closing ? 1000 : 1006, reason: 'the stream ended' });
          break;
        }
        parser.push(decoder.decode(value, { stream: true }));
      }
    } catch (err) {
      this.finish({ code: 1006, reason: '', localError: `the stream broke: ${String(err)}` });
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  #onEvent(data: string): void {
    if (this.done) return;
    const frame = parseServerFrame(data);
    if (typeof frame === 'string') {
      this.handlers?.onProtocolError(frame);
      return;
    }
    if (frame.type === 'connected') this.#onConnected(frame);
    else if (frame.type === 'heartbeat') this.#answerHeartbeat();
    this.handlers?.onFrame(frame);
  }

  /**
   * The server cannot see this client through the stream (a middlebox keeps it open after the client
   * is gone): it drops an SSE connection that sent nothing upstream for two heartbeat rounds
   * (PROTOCOL.md §12). So a heartbeat is answered with a `ping`, unless a frame went up since the
   * previous one.
   */
  #answerHeartbeat(): void {
    const sent = this.upstream.sent;
    if (sent === this.#sentAtHeartbeat && this.upstream.connected) {
      try {
        this.upstream.send({ type: 'ping' });
      } catch {
        // the upstream has stopped: the transport is ending
      }
    }
    this.#sentAtHeartbeat = this.upstream.sent;
  }

  #onConnected(frame: Extract<ServerFrame, { type: 'connected' }>): void {
    if (this.upstream.connected) return;
    this.upstream.connect(
      this.connectionUrl(frame.connectionId, 'frames'),
      frame.connectionKey,
      frame.limits?.maxHttpBody,
    );
  }
}
