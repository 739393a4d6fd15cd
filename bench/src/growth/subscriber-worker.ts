/**
 * One process of the fan-out growth load generator: connects its share of the subscribers to a
 * Mooring server from its own 127.0.0.x source address (so no process runs out of ephemeral ports
 * or file descriptors, and no single event loop receives every delivery), at most `concurrency`
 * connecting at once, then counts the payloads they receive.
 *
 * IPC (parent → worker): `start`, `window` (the measured seq range: its latencies are recorded),
 * `count`, `report`, `stop`. (worker → parent): `progress`, `ready`, `count`, `report`.
 * Latency is publisher send → receive on the machine's monotonic clock (`sharedClockMs`,
 * ../clock.ts), the same clock in every process of the machine.
 */

import type { ServerFrame } from '@mooring/protocol';
import WebSocket from 'ws';
import { sharedClockMs } from '../clock.ts';
import { scanPayloads } from '../payload.ts';
import { Histogram, type HistogramSnapshot } from '../stats.ts';

export interface WorkerStart {
  type: 'start';
  port: number;
  /** Source address of every connection of this worker (127.0.0.x). */
  address: string;
  /** Channel of each subscriber of this worker. */
  channels: string[];
  concurrency: number;
  key: string;
  /** Each subscriber also enters its channel's presence (with a clientId of its own) once attached. */
  presence?: boolean;
}

export type WorkerRequest =
  | WorkerStart
  | { type: 'window'; from: number; to: number }
  | { type: 'count' }
  | { type: 'report' }
  | { type: 'stop' };

export type WorkerReport =
  | { type: 'progress'; connected: number }
  | { type: 'ready'; connected: number; failed: number; firstError?: string }
  | { type: 'count'; total: number; disconnects: number }
  | { type: 'report'; measured: number; histogram: HistogramSnapshot };

const CONNECT_TIMEOUT_MS = 30_000;

function send(report: WorkerReport): void {
  if (process.connected) process.send?.(report);
}

const sockets: WebSocket[] = [];
let total = 0;
let disconnects = 0;
let stopping = false;
let from = Number.POSITIVE_INFINITY;
let to = Number.POSITIVE_INFINITY;
let measured = 0;
let histogram = new Histogram();

const onPayload = (seq: number, sentAt: number): void => {
  total++;
  if (seq >= from && seq < to) {
    measured++;
    histogram.recordMs(sharedClockMs() - sentAt);
  }
};

/** Connects one subscriber and attaches it; resolves once `attached` arrived. */
let subscribed = 0;

function subscribe(start: WorkerStart, channel: string): Promise<void> {
  const n = subscribed++;
  const clientId = start.presence ? `&clientId=${encodeURIComponent(`${start.address}-${n}`)}` : '';
  const socket = new WebSocket(
    `ws://127.0.0.1:${start.port}/v1/connect?v=1&key=${encodeURIComponent(start.key)}${clientId}`,
    {
      perMessageDeflate: false,
      localAddress: start.address,
    },
  );
  sockets.push(socket);
  return new Promise<void>((resolve, reject) => {
    let attached = false;
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new Error(`no attached in ${CONNECT_TIMEOUT_MS} ms`));
    }, CONNECT_TIMEOUT_MS);
    socket.on('message', (data) => {
      const text = data.toString();
      if (attached) {
        scanPayloads(text, onPayload);
        return;
      }
      const frame = JSON.parse(text) as ServerFrame;
      if (frame.type === 'connected') socket.send(JSON.stringify({ type: 'attach', ref: 1, channel }));
      else if (frame.type === 'attached') {
        attached = true;
        if (start.presence)
          socket.send(JSON.stringify({ type: 'presence', channel, action: 'enter', data: { n } }));
        clearTimeout(timer);
        resolve();
      } else if (frame.type === 'error' || frame.type === 'disconnect') {
        clearTimeout(timer);
        socket.terminate();
        reject(new Error(JSON.stringify(frame).slice(0, 200)));
      }
    });
    socket.once('unexpected-response', (_, response) => {
      clearTimeout(timer);
      reject(new Error(`handshake refused: ${response.statusCode}`));
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once('close', () => {
      if (attached && !stopping) disconnects++;
    });
  });
}

async function connectAll(start: WorkerStart): Promise<void> {
  let next = 0;
  let connected = 0;
  let failed = 0;
  let firstError: string | undefined;
  const lane = async (): Promise<void> => {
    while (next < start.channels.length && !stopping) {
      const channel = start.channels[next++]!;
      try {
        await subscribe(start, channel);
        connected++;
        if (connected % 500 === 0) send({ type: 'progress', connected });
      } catch (error) {
        failed++;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(start.concurrency, start.channels.length) }, lane));
  send({ type: 'ready', connected, failed, ...(firstError === undefined ? {} : { firstError }) });
}

process.on('disconnect', () => process.exit(0));
process.on('message', (request: WorkerRequest) => {
  switch (request.type) {
    case 'start':
      void connectAll(request);
      break;
    case 'window':
      from = request.from;
      to = request.to;
      measured = 0;
      histogram = new Histogram();
      break;
    case 'count':
      send({ type: 'count', total, disconnects });
      break;
    case 'report':
      send({ type: 'report', measured, histogram: histogram.snapshot() });
      break;
    case 'stop':
      stopping = true;
      for (const socket of sockets) socket.terminate();
      setTimeout(() => process.exit(0), 100);
      break;
  }
});
