/** Load-generator side of the raw `ws` broadcast server: every client is a subscriber; any may publish. */
import { WebSocket } from 'ws';
import type { Closable, FanoutTarget, Publisher, SubscriberHandlers } from './fanout-target.ts';
import { withTimeout } from './fanout-target.ts';

function open(port: number): Promise<WebSocket> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false });
  const opened = new Promise<WebSocket>((resolve, reject) => {
    socket.once('open', () => resolve(socket));
    socket.once('error', reject);
  });
  return withTimeout(opened, 10000, 'raw-ws connect').catch((error: unknown) => {
    socket.terminate();
    throw error;
  });
}

export const rawWsTarget: FanoutTarget = {
  name: 'raw ws',
  async subscribe(port: number, handlers: SubscriberHandlers): Promise<Closable> {
    const socket = await open(port);
    socket.on('message', (data) => handlers.onText(data.toString()));
    socket.on('error', () => {});
    socket.once('close', (code) => handlers.onClose(`close ${code}`));
    return { close: () => socket.terminate() };
  },
  async publisher(port: number): Promise<Publisher> {
    const socket = await open(port);
    // The publisher also receives what others publish (nobody else does); ignore it.
    return {
      publish: (payload) => socket.send(payload),
      stats: () => ({ acked: 0, errors: 0 }),
      close: () => socket.terminate(),
    };
  },
};
