/**
 * The physical floor of per-channel fan-out: a bare `ws` server with rooms that speaks just the part
 * of PROTOCOL.md the growth load generator uses (`connected`; `attach` → `attached`; `publish` →
 * `ack` to the publisher and one `messages` frame to each member of the channel's room). No
 * validation beyond JSON.parse, no store, no serials, no heartbeats, no per-connection state but a
 * room: what routing one publish to its channel's subscribers costs with nothing else to do. The
 * delivered frame is serialised once per publish and written to every member as the same Buffer.
 */
import { createServer } from 'node:http';
import { type WebSocket, WebSocketServer } from 'ws';
import { serveChild } from './server-child.ts';

interface Frame {
  type?: unknown;
  ref?: unknown;
  channel?: unknown;
  ops?: unknown;
}

await serveChild(async () => {
  const rooms = new Map<string, Set<WebSocket>>();
  const http = createServer();
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false });
  let serial = 0;
  wss.on('connection', (socket) => {
    const joined: string[] = [];
    socket.send('{"type":"connected"}');
    socket.on('message', (data) => {
      let frame: Frame;
      try {
        frame = JSON.parse(data.toString()) as Frame;
      } catch {
        return;
      }
      if (typeof frame.channel !== 'string') return;
      if (frame.type === 'attach') {
        const room = rooms.get(frame.channel) ?? new Set<WebSocket>();
        rooms.set(frame.channel, room);
        room.add(socket);
        joined.push(frame.channel);
        socket.send(
          `{"type":"attached","ref":${JSON.stringify(frame.ref)},"channel":${JSON.stringify(frame.channel)}}`,
        );
      } else if (frame.type === 'publish') {
        socket.send(`{"type":"ack","ref":${JSON.stringify(frame.ref)}}`);
        const room = rooms.get(frame.channel);
        if (room === undefined) return;
        const ops = (Array.isArray(frame.ops) ? frame.ops : []) as { name?: unknown; data?: unknown }[];
        const messages = ops.map((op) => ({ serial: String(++serial), name: op.name, data: op.data }));
        const out = Buffer.from(JSON.stringify({ type: 'messages', channel: frame.channel, messages }));
        for (const member of room) member.send(out, { binary: false });
      }
    });
    socket.on('close', () => {
      for (const channel of joined) rooms.get(channel)?.delete(socket);
    });
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const address = http.address();
  if (address === null || typeof address === 'string') throw new Error('rooms-floor: no port');
  return {
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close(() => http.close(() => resolve()));
      }),
  };
});
