/**
 * A WebSocket client that stops reading, or sends its frames in pieces: a raw TCP socket doing the
 * upgrade handshake by hand, so that pausing it really stops reading (the `ws` client resumes its
 * socket by itself) and a frame can be left part-sent. Used to make a genuinely slow consumer, and a
 * sender that begins messages and does not finish them.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export class StalledClient {
  readonly socket: Socket;
  /** What the server sent after the handshake, as text (its frames are not masked: JSON shows). */
  received = '';
  private constructor(socket: Socket, first: string) {
    this.socket = socket;
    this.received = first;
    socket.on('data', (chunk: Buffer) => {
      this.received += chunk.toString('latin1');
    });
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
    const first = await new Promise<string>((resolve) => {
      let head = '';
      const onData = (chunk: Buffer) => {
        head += chunk.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end >= 0) {
          socket.off('data', onData);
          resolve(head.slice(end + 4));
        }
      };
      socket.on('data', onData);
    });
    return new StalledClient(socket, first);
  }

  /** One masked text frame (client frames must be masked), whole. */
  static frame(text: string): Buffer {
    return wsFrame(0x1, true, Buffer.from(text));
  }

  /** Sends one masked text frame. */
  sendText(text: string): void {
    this.socket.write(StalledClient.frame(text));
  }

  /** Sends raw bytes: a part of a frame, or several. */
  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Waits until the server has sent `text` (as part of a frame), or fails after `ms`. */
  async until(text: string | RegExp, ms = 10_000): Promise<void> {
    const sent = () => (typeof text === 'string' ? this.received.includes(text) : text.test(this.received));
    const deadline = Date.now() + ms;
    while (!sent()) {
      if (Date.now() > deadline) throw new Error(`the server did not send ${text} in ${ms} ms`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Stops reading for good: the kernel buffers fill and the server's send buffer grows. */
  stall(): void {
    this.socket.pause();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A frame of `type` answering `ref`, as it shows in `received` (up to the next frame's type). */
export function reply(type: string, ref: number): RegExp {
  return new RegExp(`"type":"${type}"(?:(?!"type":).)*?"ref":${ref}[,}]`, 's');
}

/**
 * One client WebSocket frame (RFC 6455 §5.2): `opcode`, FIN when `final`, the payload length in
 * its 7-, 16- or 64-bit form, and the payload masked with a random key (unless `masked` is false,
 * which a server must refuse).
 */
export function wsFrame(opcode: number, final: boolean, payload: Buffer, masked = true): Buffer {
  const first = (final ? 0x80 : 0) | opcode;
  const mask = masked ? 0x80 : 0;
  const len = payload.length;
  let header: Buffer;
  if (len < 126) header = Buffer.from([first, mask | len]);
  else if (len < 65_536) header = Buffer.from([first, mask | 126, len >> 8, len & 255]);
  else {
    header = Buffer.alloc(10);
    header[0] = first;
    header[1] = mask | 127;
    header.writeBigUInt64BE(BigInt(len), 2);
  }
  if (!masked) return Buffer.concat([header, payload]);
  const key = randomBytes(4);
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = payload[i]! ^ key[i % 4]!;
  return Buffer.concat([header, key, body]);
}
