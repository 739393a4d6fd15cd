/**
 * Long-polling transport (PROTOCOL.md §12), the last resort for networks that refuse WebSocket
 * upgrades *and* buffer streamed responses:
 *
 *   GET  /v1/connect/poll?v=1&key=…&recover=…   → [connected, …]
 *   GET  /v1/connections/:id/poll   (loop)       → the frames queued since the last poll, at once,
 *                                                  or [] after the server's poll timeout (25 s)
 *   POST /v1/connections/:id/frames              client frames, one POST at a time (`http-upstream.ts`)
 *
 * Exactly one poll is pending at a time: the next one starts when the previous answer arrived. Every
 * answer, empty or not, counts as traffic for dead-connection detection. `404 unknown_connection` on
 * a poll means the server no longer holds the connection: the transport ends and the connection
 * reconnects (with `recover`) and resumes. A `disconnect` frame is the server's last on a transport:
 * the transport ends after handing it over (its close code 1001, as a WebSocket's would be).
 */
import { CLOSE_CODES } from '@mooring/protocol';
import { HttpTransport } from './http-transport.ts';
import { openRefusal, upstreamFailure } from './http-upstream.ts';
import { toServerFrame } from './transport.ts';

export class LongPollTransport extends HttpTransport {
  readonly kind = 'longpoll';
  #poll: { url: string; key: string } | undefined;

  protected start(url: string): void {
    void this.#run(url);
  }

  /** Once the server accepted the close, there is nothing more to poll for. */
  protected closeSent(code: number, reason: string): void {
    void this.upstream.idle().then(() => this.finish({ code, reason }));
  }

  async #run(openUrl: string): Promise<void> {
    let res: Response;
    try {
      res = await this.deps.fetch(openUrl, {
        headers: { accept: 'application/json' },
        cache: 'no-store',
        signal: this.requests.signal,
      });
    } catch (err) {
      this.finish({ code: 1006, reason: '', localError: String(err), unreachable: true });
      return;
    }
    if (this.done) return;
    if (res.status !== 200) {
      this.finish(await openRefusal(res));
      return;
    }
    this.handlers?.onOpen();
    if (!(await this.#deliver(res))) return;
    if (!this.#poll) {
      this.finish({
        code: 1006,
        reason: '',
        localError: 'the first long-poll answer had no connected frame',
      });
      return;
    }
    while (!this.done) {
      const poll = this.#poll;
      let answer: Response;
      try {
        answer = await this.deps.fetch(poll.url, {
          headers: { accept: 'application/json', 'x-mooring-connection-key': poll.key },
          cache: 'no-store',
          signal: this.requests.signal,
        });
      } catch (err) {
        this.finish({ code: 1006, reason: '', localError: `a poll failed: ${String(err)}` });
        return;
      }
      if (this.done) return;
      if (answer.status !== 200) {
        const info = upstreamFailure(answer.status, await answer.text().catch(() => ''));
        this.finish(this.closing ? { code: 1000, reason: 'closed' } : info);
        return;
      }
      this.handlers?.onActivity?.();
      if (!(await this.#deliver(answer))) return;
    }
  }

  /** Hands the frames of one answer over, in order; false once the transport has ended. */
  async #deliver(res: Response): Promise<boolean> {
    let body: unknown;
    try {
      body = JSON.parse(await res.text());
    } catch (err) {
      if (this.done) return false;
      if (err instanceof SyntaxError) {
        this.handlers?.onProtocolError('a long-poll answer is not JSON');
        return true;
      }
      this.finish({ code: 1006, reason: '', localError: `a poll broke: ${String(err)}` });
      return false;
    }
    if (this.done) return false;
    if (!Array.isArray(body)) {
      this.handlers?.onProtocolError('a long-poll answer is not an array of frames');
      return true;
    }
    for (const value of body) {
      if (this.done) return false;
      const frame = toServerFrame(value);
      if (typeof frame === 'string') {
        this.handlers?.onProtocolError(frame);
        continue;
      }
      if (frame.type === 'connected' && !this.#poll) {
        this.#poll = { url: this.connectionUrl(frame.connectionId, 'poll'), key: frame.connectionKey };
        this.upstream.connect(
          this.connectionUrl(frame.connectionId, 'frames'),
          frame.connectionKey,
          frame.limits?.maxHttpBody,
        );
      }
      this.handlers?.onFrame(frame);
      if (frame.type === 'disconnect' && !this.done) {
        // The server's last frame on this transport (a WebSocket would be closed now): stop polling.
        // Polling on would get it again at once (a replaced transport's late polls are answered so),
        // in a tight loop while the connection waits for an upgrade candidate that took it over.
        this.finish({ code: CLOSE_CODES.going_away.code, reason: frame.reason });
        return false;
      }
    }
    return !this.done;
  }
}
