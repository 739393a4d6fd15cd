/**
 * A WebSocket client that stops reading: a raw TCP socket doing the upgrade handshake by hand, so
 * that pausing it really stops reading (the `ws` client resumes its socket by itself). Used to make
 * a genuinely slow consumer.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export class StalledClient {
  readonly socket: Socket;
  private constructor(socket: Socket) {
    this.socket = socket;
  }

  static async connect(baseUrl: string, path: string): Promise<StalledClient> {
    const url = new URL(path, baseUrl);
    const socket = connect(Number(url.port), url.hostname);
    socket.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.write(
      `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    await new Promise<void>((resolve) => {
      let head = '';
      const onData = (chunk: Buffer) => {
        head += chunk.toString('latin1');
        if (head.includes('\r\n\r\n')) {
          socket.off('data', onData);
          resolve();
        }
      };
      socket.on('data', onData);
    });
    return new StalledClient(socket);
  }

  /** Sends one masked text frame (client frames must be masked). */
  sendText(text: string): void {
    const payload = Buffer.from(text);
    const mask = randomBytes(4);
    const len = payload.length;
    const header =
      len < 126 ? Buffer.from([0x81, 0x80 | len]) : Buffer.from([0x81, 0x80 | 126, len >> 8, len & 255]);
    const masked = Buffer.alloc(len);
    for (let i = 0; i < len; i++) masked[i] = payload[i]! ^ mask[i % 4]!;
    this.socket.write(Buffer.concat([header, mask, masked]));
  }

  /** Stops reading for good: the kernel buffers fill and the server's send buffer grows. */
  stall(): void {
    this.socket.pause();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
