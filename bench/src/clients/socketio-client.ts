/**
 * Load-generator side of the Socket.IO rooms server, speaking the Socket.IO v5 / Engine.IO v4 wire
 * protocol over a raw `ws` socket (WebSocket transport only), so the load generator pays the same
 * per delivery for every server (see socketio-sdk-client.ts for the SDK variant):
 *
 *   GET /socket.io/?EIO=4&transport=websocket   ◀── 0{"sid":…,"pingInterval":…}   (engine open)
 *   40 ──▶                                      ◀── 40{"sid":…}                   (namespace connect)
 *   420["join","bench:fanout"] ──▶              ◀── 430[]                         (event with ack 0)
 *                                               ◀── 42["m","<payload>"] …         (broadcast)
 *                                               ◀── 2   3 ──▶                     (engine ping/pong)
 *   publisher: 42["pub","bench:fanout","<payload>"] ──▶
 */
import { WebSocket } from 'ws';
import { FANOUT_CHANNEL } from '../bench-config.ts';
import type { Closable, FanoutTarget, Publisher, SubscriberHandlers } from './fanout-target.ts';
import { withTimeout } from './fanout-target.ts';

/** Opens the engine, answers its pings, and resolves once the default namespace is connected. */
function connect(port: number, onPacket: (text: string) => void): Promise<WebSocket> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`, {
    perMessageDeflate: false,
  });
  const connected = new Promise<WebSocket>((resolve, reject) => {
    let namespaceConnected = false;
    socket.on('message', (data) => {
      const text = data.toString();
      if (namespaceConnected) {
        if (text === '2') socket.send('3');
        else onPacket(text);
      } else if (text.startsWith('0')) socket.send('40');
      else if (text.startsWith('40')) {
        namespaceConnected = true;
        resolve(socket);
      } else if (text.startsWith('44')) reject(new Error(`socket.io connect refused: ${text}`));
    });
    socket.once('error', reject);
  });
  return withTimeout(connected, 10000, 'socket.io connect').catch((error: unknown) => {
    socket.terminate();
    throw error;
  });
}

export const socketIoTarget: FanoutTarget = {
  name: 'Socket.IO',
  async subscribe(port: number, handlers: SubscriberHandlers): Promise<Closable> {
    let joined: (() => void) | undefined;
    const socket = await connect(port, (text) => {
      if (text.startsWith('42')) handlers.onText(text);
      else if (text.startsWith('430')) joined?.();
    });
    const join = new Promise<void>((resolve) => {
      joined = resolve;
    });
    socket.send(`420${JSON.stringify(['join', FANOUT_CHANNEL])}`);
    await withTimeout(join, 10000, 'socket.io join');
    socket.on('error', () => {});
    socket.once('close', (code) => handlers.onClose(`close ${code}`));
    return { close: () => socket.terminate() };
  },
  async publisher(port: number): Promise<Publisher> {
    const socket = await connect(port, () => {});
    socket.on('error', () => {});
    const prefix = `42${JSON.stringify(['pub', FANOUT_CHANNEL]).slice(0, -1)},"`;
    return {
      publish: (payload) => socket.send(`${prefix}${payload}"]`),
      stats: () => ({ acked: 0, errors: 0 }),
      close: () => socket.terminate(),
    };
  },
};
