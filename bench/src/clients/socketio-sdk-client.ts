/**
 * Load-generator side of the Socket.IO rooms server through the official `socket.io-client`.
 * WebSocket transport only (no long-polling upgrade dance), no reconnection, one Manager per socket
 * (`forceNew`) like separate browsers. Not in the default run: the SDK costs the load generator
 * about twice what a raw socket does per delivery, which caps the measurable throughput (see
 * socketio-client.ts, which speaks the same protocol over a raw socket, like the other targets).
 */
import { io, type Socket } from 'socket.io-client';
import { FANOUT_CHANNEL } from '../bench-config.ts';
import type { Closable, FanoutTarget, Publisher, SubscriberHandlers } from './fanout-target.ts';
import { withTimeout } from './fanout-target.ts';

function open(port: number): Promise<Socket> {
  const socket = io(`http://127.0.0.1:${port}`, {
    transports: ['websocket'],
    reconnection: false,
    forceNew: true,
  });
  const connected = new Promise<Socket>((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
  return withTimeout(connected, 10000, 'socket.io connect').catch((error: unknown) => {
    socket.disconnect();
    throw error;
  });
}

export const socketIoSdkTarget: FanoutTarget = {
  name: 'Socket.IO (socket.io-client)',
  async subscribe(port: number, handlers: SubscriberHandlers): Promise<Closable> {
    const socket = await open(port);
    socket.on('m', (payload: string) => handlers.onText(payload));
    await withTimeout(socket.timeout(10000).emitWithAck('join', FANOUT_CHANNEL), 11000, 'socket.io join');
    socket.once('disconnect', (reason) => handlers.onClose(reason));
    return { close: () => socket.disconnect() };
  },
  async publisher(port: number): Promise<Publisher> {
    const socket = await open(port);
    return {
      publish: (payload) => socket.emit('pub', FANOUT_CHANNEL, payload),
      stats: () => ({ acked: 0, errors: 0 }),
      close: () => socket.disconnect(),
    };
  },
};
