/**
 * Token streaming over one transport: R concurrent "responses", each a message on its own channel
 * that a WebSocket publisher (one connection per response, like one agent worker each) grows by
 * appends at a steady token rate, with one subscriber per response on the transport under test.
 *
 *   publisher r (ws) ── create, then append(token k) every 1/rate s ──▶ server ──▶ subscriber r
 *                                                                       (ws | SSE | long-poll)
 *
 * Tokens are short realistic strings (no markers), so the wire bytes per token are what a chat UI
 * would receive. Each subscriber gets its channel's operations in order (PROTOCOL.md §7), so the
 * k-th `"action":"append"` it receives is token k, whose send time the publisher side recorded:
 * latency is token sent → token received, on one clock (this process). Responses start spread over
 * one token interval, so the server sees a steady stream rather than R tokens at once.
 */
import { tokenText } from '../ai/model-tokens.ts';
import type { ByteMeter, WireBytes } from '../clients/byte-meter.ts';
import type { Closable, SubscriberHandlers } from '../clients/fanout-target.ts';
import { withTimeout } from '../clients/fanout-target.ts';
import { connect } from '../clients/mooring-client.ts';
import { cpuSeconds, machineBusySeconds } from '../cpu-usage.ts';
import { type ServerProcess, spawnServer } from '../spawn-server.ts';
import { Histogram, type LatencySummary } from '../stats.ts';
import { closeAll } from './fanout-passes.ts';

/** Subscribes on `channel` over the transport under test; resolves once attached. */
export type SubscribeFn = (
  port: number,
  channel: string,
  handlers: SubscriberHandlers,
  meter: ByteMeter,
) => Promise<Closable>;

export interface TokenStreamOptions {
  /** Concurrent responses, one channel, one publisher and one subscriber each. */
  streams: number;
  /** Tokens per second per response. */
  tokenRate: number;
  warmupSeconds: number;
  seconds: number;
  drainMs: number;
  connectConcurrency: number;
}

export interface TokenStreamResult {
  round?: number;
  streams: number;
  tokenRate: number;
  windowSeconds: number;
  /** Tokens published per second over the window (all responses). */
  sentPerSec: number;
  /** Tokens received per second over the window (all subscribers). */
  deliveredPerSec: number;
  /** Tokens sent in the measured part of each response, summed over responses. */
  measuredTokens: number;
  delivered: number;
  missing: number;
  /** Token sent → token received (ms), over the measured tokens. */
  latency: LatencySummary;
  /** Mean length of a token's text (its payload, bytes). */
  tokenChars: number;
  /** Subscribers' wire bytes over the window ÷ tokens received in it. */
  readPerToken: number;
  writtenPerToken: number;
  serverCpu: number;
  loadCpu: number;
  otherCpu: number | null;
  disconnects: number;
  publishErrors: number;
}

const APPEND = '"action":"append"';

function countAppends(text: string): number {
  let n = 0;
  let at = text.indexOf(APPEND);
  while (at >= 0) {
    n++;
    at = text.indexOf(APPEND, at + APPEND.length);
  }
  return n;
}

interface ResponsePublisher extends Closable {
  /** Sends the next token of the response (pipelined, not awaited). */
  append(k: number, text: string): void;
  errors(): number;
}

/** One WebSocket publisher per response: `create` (awaited, for the serial), then appends. */
async function responsePublisher(port: number, channel: string, stream: number): Promise<ResponsePublisher> {
  const socket = await connect(port);
  let errors = 0;
  let onCreated: ((serial: string) => void) | undefined;
  socket.on('message', (data) => {
    const text = data.toString();
    if (text.startsWith('{"type":"ack"')) {
      if (onCreated !== undefined) {
        const frame = JSON.parse(text) as { results: { serial: string }[] };
        onCreated(frame.results[0]!.serial);
        onCreated = undefined;
      }
    } else if (text.startsWith('{"type":"error"')) {
      if (errors++ === 0) process.stderr.write(`  token publisher ${stream}: ${text.slice(0, 300)}\n`);
    }
  });
  socket.on('error', () => {});
  const created = new Promise<string>((resolve) => {
    onCreated = resolve;
  });
  socket.send(
    JSON.stringify({
      type: 'publish',
      ref: 0,
      channel,
      ops: [{ action: 'create', id: `r${stream}`, name: 'response', data: '' }],
    }),
  );
  const serial = await withTimeout(created, 10000, 'token response create');
  return {
    append(k, text) {
      socket.send(
        `{"type":"publish","ref":${k + 1},"channel":"${channel}","ops":[{"action":"append","id":"r${stream}:${k}","serial":"${serial}","data":"${text}"}]}`,
      );
    },
    errors: () => errors,
    close: () => socket.terminate(),
  };
}

interface Snapshot {
  t: number;
  delivered: number;
  bytes: WireBytes;
  load: NodeJS.CpuUsage;
  server: Promise<NodeJS.CpuUsage>;
  machine: number | undefined;
}

function snapshot(server: ServerProcess, meter: ByteMeter, delivered: number): Snapshot {
  return {
    machine: machineBusySeconds(),
    t: performance.now(),
    delivered,
    bytes: meter.totals(),
    load: process.cpuUsage(),
    server: server.cpuUsage(),
  };
}

/**
 * One run against a fresh server: connects everything, streams warm-up + measured tokens, drains.
 * Throws when the server or a connection cannot be set up.
 */
export async function runTokenStream(
  label: string,
  serverModule: string,
  serverArgs: string[],
  subscribe: SubscribeFn,
  meter: ByteMeter,
  options: TokenStreamOptions,
): Promise<TokenStreamResult> {
  const { streams, tokenRate } = options;
  const interval = 1000 / tokenRate;
  const warmTokens = Math.round(tokenRate * options.warmupSeconds);
  const total = warmTokens + Math.max(1, Math.round(tokenRate * options.seconds));
  const sentAt = Array.from({ length: streams }, () => new Float64Array(total));
  const received = new Uint32Array(streams);
  const histogram = new Histogram();
  let measuredDelivered = 0;
  let deliveredTotal = 0;
  let disconnects = 0;
  let closing = false;
  const subscribers: Closable[] = [];
  const publishers: ResponsePublisher[] = [];
  let server: ServerProcess | undefined;
  process.stderr.write(`tokens: ${label}\n`);
  try {
    server = await spawnServer(serverModule, { args: serverArgs, label });
    const port = server.port;
    const handlersFor = (stream: number): SubscriberHandlers => ({
      onText(text) {
        const n = countAppends(text);
        if (n === 0) return;
        const now = performance.now();
        const times = sentAt[stream]!;
        for (let i = 0; i < n; i++) {
          const k = received[stream]!;
          received[stream] = k + 1;
          deliveredTotal++;
          if (k >= warmTokens && k < total) {
            histogram.recordMs(now - times[k]!);
            measuredDelivered++;
          }
        }
      },
      onClose(reason) {
        if (closing) return;
        if (disconnects++ === 0) process.stderr.write(`  [${label}] a subscriber disconnected: ${reason}\n`);
      },
    });
    let next = 0;
    const connectOne = async (): Promise<void> => {
      while (next < streams && !closing) {
        const stream = next++;
        const channel = `bench:tokens:${stream}`;
        subscribers.push(await subscribe(port, channel, handlersFor(stream), meter));
        publishers[stream] = await responsePublisher(port, channel, stream);
      }
    };
    const started = performance.now();
    await withTimeout(
      Promise.all(Array.from({ length: Math.min(options.connectConcurrency, streams) }, connectOne)),
      60000,
      'connecting token streams',
    );
    process.stderr.write(
      `  [${label}] ${streams} responses ready in ${((performance.now() - started) / 1000).toFixed(1)} s\n`,
    );

    const sent = new Uint32Array(streams);
    let tokenChars = 0;
    const start = performance.now() + 20;
    const phase = (stream: number): number => (stream * interval) / streams;
    const windowOpensAt = start + options.warmupSeconds * 1000;
    const windowClosesAt = windowOpensAt + options.seconds * 1000;
    let opened: Snapshot | undefined;
    let closed: Snapshot | undefined;
    let sentInWindow = 0;
    let lastProgress = start;
    let lastDelivered = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const now = performance.now();
        if (opened === undefined && now >= windowOpensAt) opened = snapshot(server!, meter, deliveredTotal);
        let done = true;
        for (let stream = 0; stream < streams; stream++) {
          const due = Math.min(total, Math.floor((now - start - phase(stream)) / interval) + 1);
          while (sent[stream]! < due) {
            const k = sent[stream]!;
            const text = tokenText(stream, k);
            sentAt[stream]![k] = performance.now();
            publishers[stream]!.append(k, text);
            tokenChars += text.length - (text === '\\n' ? 1 : 0);
            sent[stream] = k + 1;
            if (opened !== undefined && closed === undefined) sentInWindow++;
          }
          if (sent[stream]! < total) done = false;
        }
        if (opened !== undefined && closed === undefined && now >= windowClosesAt)
          closed = snapshot(server!, meter, deliveredTotal);
        if (now - lastProgress >= 2000) {
          process.stderr.write(
            `  [${label}] ${((now - start) / 1000).toFixed(0)} s: ${Math.round(((deliveredTotal - lastDelivered) * 1000) / (now - lastProgress))} tokens/s received\n`,
          );
          lastProgress = now;
          lastDelivered = deliveredTotal;
        }
        if (done) {
          clearInterval(timer);
          resolve();
        }
      }, 1);
    });
    const window0 = opened ?? snapshot(server, meter, deliveredTotal);
    const window1 = closed ?? snapshot(server, meter, deliveredTotal);
    const measuredTokens = (total - warmTokens) * streams;
    const deadline = performance.now() + options.drainMs;
    while (measuredDelivered < measuredTokens && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const seconds = (window1.t - window0.t) / 1000;
    const serverCpu = (cpuSeconds(await window1.server) - cpuSeconds(await window0.server)) / seconds;
    const loadCpu = (cpuSeconds(window1.load) - cpuSeconds(window0.load)) / seconds;
    const otherCpu =
      window0.machine === undefined || window1.machine === undefined
        ? null
        : Math.max(0, (window1.machine - window0.machine) / seconds - serverCpu - loadCpu);
    const windowTokens = window1.delivered - window0.delivered;
    return {
      streams,
      tokenRate,
      windowSeconds: seconds,
      sentPerSec: sentInWindow / seconds,
      deliveredPerSec: windowTokens / seconds,
      measuredTokens,
      delivered: measuredDelivered,
      missing: measuredTokens - measuredDelivered,
      latency: histogram.summary(),
      tokenChars: tokenChars / (total * streams),
      readPerToken: windowTokens > 0 ? (window1.bytes.read - window0.bytes.read) / windowTokens : Number.NaN,
      writtenPerToken:
        windowTokens > 0 ? (window1.bytes.written - window0.bytes.written) / windowTokens : Number.NaN,
      serverCpu,
      loadCpu,
      otherCpu,
      disconnects,
      publishErrors: publishers.reduce((sum, p) => sum + p.errors(), 0),
    };
  } finally {
    closing = true;
    closeAll(subscribers);
    closeAll(publishers.filter((p) => p !== undefined));
    await server?.stop();
    meter.clear();
  }
}
