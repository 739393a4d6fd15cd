/**
 * The answer to one request on `/v1/connections/:id/…`, wherever it is written: straight to the
 * client's HTTP response on this node, or back over the bus to the node the client's request landed
 * on (request-forwarder.ts). The long-poll sink and the upstream handler write to a `Reply` and never
 * know which, so a forwarded poll behaves exactly like a local one.
 */
import type { ServerResponse } from 'node:http';

export interface Reply {
  /** Answers with a JSON body (already encoded). Once; later calls are ignored. */
  json(status: number, body: Buffer): void;
  /** Drops the answer without a body (the client sees a network error and reconnects). */
  destroy(): void;
  /** Called once when nobody waits for the answer any more (the client went away). */
  onClose(listener: () => void): void;
  /** Bytes handed over and not yet written out. */
  readonly writableLength: number;
  /** True once nobody can receive the answer. */
  readonly gone: boolean;
}

const JSON_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'access-control-allow-origin': '*',
};

/** A Reply written to a local HTTP response. */
export function httpReply(res: ServerResponse): Reply {
  return {
    json(status, body) {
      if (res.headersSent || res.destroyed) return;
      res.writeHead(status, { ...JSON_HEADERS, 'content-length': body.length });
      res.end(body);
    },
    destroy: () => res.destroy(),
    onClose: (listener) => res.once('close', listener),
    get writableLength() {
      return res.writableLength;
    },
    get gone() {
      return res.destroyed || res.writableEnded;
    },
  };
}

/** `{ error }` as a JSON body. */
export function errorBody(error: unknown): Buffer {
  return Buffer.from(JSON.stringify({ error }));
}
