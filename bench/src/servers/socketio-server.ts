/**
 * Socket.IO 4.8 with rooms, the usual way to build fan-out with it: subscribers `join` a room (with
 * an ack), the publisher emits `pub`, the server broadcasts with `io.to(room).emit('m', payload)`
 * (the adapter encodes the packet once per broadcast). Nothing is stored.
 */
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { serveChild } from './server-child.ts';

await serveChild(async () => {
  const http = createServer();
  const io = new Server(http, { serveClient: false, perMessageDeflate: false, transports: ['websocket'] });
  io.on('connection', (socket) => {
    socket.on('join', (room: string, ack?: () => void) => {
      socket.join(room);
      ack?.();
    });
    socket.on('pub', (room: string, payload: string) => {
      io.to(room).emit('m', payload);
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const address = http.address();
  if (address === null || typeof address === 'string') throw new Error('socketio: no port');
  return {
    port: address.port,
    close: async () => {
      io.disconnectSockets(true);
      await io.close();
    },
  };
});
