/**
 * Load-generator side of Mooring, speaking PROTOCOL.md v1 over a raw `ws` socket (the client SDK is
 * not used, so its costs do not blur the server's):
 *
 *   subscriber: open /v1/connect?key=…  ◀── connected
 *               attach {channel}  ──▶    ◀── attached     then ◀── messages … (live)
 *   publisher:  open /v1/connect?key=…  ◀── connected
 *               publish {ref, channel, ops:[{name, data}]} ──▶  ◀── ack {ref} (pipelined, not awaited)
 */
import type { ServerFrame } from '@mooring/protocol';
import { WebSocket } from 'ws';
import { BENCH_KEY, FANOUT_CHANNEL } from '../bench-config.ts';
import type { ByteMeter } from './byte-meter.ts';
import type { Closable, FanoutTarget, Publisher, SubscriberHandlers } from './fanout-target.ts';
import { withTimeout } from './fanout-target.ts';

const MAX_LOGGED_ERRORS = 3;
let loggedErrors = 0;

function logProblem(what: string, frame: ServerFrame): void {
  if (loggedErrors++ < MAX_LOGGED_ERRORS)
    process.stderr.write(`  mooring ${what}: ${JSON.stringify(frame)}\n`);
}

/**
 * Opens a connection and resolves once the server's `connected` frame arrived. With a meter, the
 * connection's TCP socket is counted in it (handshake included).
 */
export function connect(port: number, meter?: ByteMeter): Promise<WebSocket> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}/v1/connect?v=1&key=${encodeURIComponent(BENCH_KEY)}`, {
    perMessageDeflate: false,
  });
  if (meter !== undefined) socket.once('upgrade', (response) => meter.track(response.socket));
  const connected = new Promise<WebSocket>((resolve, reject) => {
    socket.once('message', (data) => {
      const frame = JSON.parse(data.toString()) as ServerFrame;
      if (frame.type === 'connected') resolve(socket);
      else reject(new Error(`expected connected, got ${JSON.stringify(frame)}`));
    });
    socket.once('error', reject);
    socket.once('unexpected-response', (_, response) =>
      reject(new Error(`handshake refused: ${response.statusCode}`)),
    );
  });
  return withTimeout(connected, 10000, 'mooring connect').catch((error: unknown) => {
    socket.terminate();
    throw error;
  });
}

/**
 * A subscriber: connects, attaches `channel` live and resolves once `attached` arrived; from then on
 * every `messages` frame goes to `handlers.onText` as received (not parsed).
 */
export async function subscribeWs(
  port: number,
  channel: string,
  handlers: SubscriberHandlers,
  meter?: ByteMeter,
): Promise<Closable> {
  const socket = await connect(port, meter);
  let attached = false;
  const attachedOnce = new Promise<void>((resolve, reject) => {
    socket.on('message', (data) => {
      const text = data.toString();
      if (attached && text.startsWith('{"type":"messages"')) {
        handlers.onText(text);
        return;
      }
      const frame = JSON.parse(text) as ServerFrame;
      switch (frame.type) {
        case 'attached':
          attached = true;
          resolve();
          break;
        case 'messages':
          handlers.onText(text);
          break;
        case 'heartbeat':
          break;
        case 'error':
          logProblem('subscriber error', frame);
          if (!attached) reject(new Error(frame.error.message));
          break;
        default:
          if (frame.type === 'disconnect') logProblem('subscriber disconnect', frame);
      }
    });
  });
  socket.send(JSON.stringify({ type: 'attach', ref: 1, channel }));
  await withTimeout(attachedOnce, 10000, 'mooring attach');
  socket.on('error', () => {});
  socket.once('close', (code) => handlers.onClose(`close ${code}`));
  return { close: () => socket.terminate() };
}

/** Mooring over WebSocket; with a meter, the subscribers' sockets are counted in it. */
export function mooringWsTarget(meter?: ByteMeter): FanoutTarget {
  return {
    name: 'Mooring',
    subscribe: (port, handlers) => subscribeWs(port, FANOUT_CHANNEL, handlers, meter),
    publisher: mooringPublisher,
  };
}

export const mooringTarget: FanoutTarget = mooringWsTarget();

/** The fan-out publisher: `publish` frames on FANOUT_CHANNEL, pipelined, acks counted. */
async function mooringPublisher(port: number): Promise<Publisher> {
  const socket = await connect(port);
  let acked = 0;
  let errors = 0;
  let ref = 0;
  socket.on('message', (data) => {
    const frame = JSON.parse(data.toString()) as ServerFrame;
    if (frame.type === 'ack') acked++;
    else if (frame.type === 'error') {
      errors++;
      logProblem('publish error', frame);
    } else if (frame.type === 'disconnect') logProblem('publisher disconnect', frame);
  });
  socket.on('error', () => {});
  return {
    publish(payload) {
      ref++;
      socket.send(
        `{"type":"publish","ref":${ref},"channel":"${FANOUT_CHANNEL}","ops":[{"name":"t","data":"${payload}"}]}`,
      );
    },
    stats: () => ({ acked, errors }),
    close: () => socket.terminate(),
  };
}
