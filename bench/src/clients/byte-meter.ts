/**
 * Wire bytes of a set of client sockets, read from the sockets themselves (`bytesRead` and
 * `bytesWritten` count what crossed the TCP connection: HTTP status lines and headers, chunked
 * framing, WebSocket frame headers and payloads), so every transport is measured the same way.
 * A socket stays counted after it closes (Node keeps its totals), so differences between two
 * readings are exact even when keep-alive sockets come and go between them.
 */
import type { Socket } from 'node:net';

export interface WireBytes {
  /** Bytes the clients received (server → client). */
  read: number;
  /** Bytes the clients sent (client → server). */
  written: number;
}

export class ByteMeter {
  readonly #sockets = new Set<Socket>();

  track(socket: Socket): void {
    this.#sockets.add(socket);
  }

  totals(): WireBytes {
    let read = 0;
    let written = 0;
    for (const socket of this.#sockets) {
      read += socket.bytesRead;
      written += socket.bytesWritten;
    }
    return { read, written };
  }

  /** Forgets every socket (between runs: readings before and after a clear do not compare). */
  clear(): void {
    this.#sockets.clear();
  }
}
