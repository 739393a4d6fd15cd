/**
 * The two load shapes of the fan-out scenario, run against subscribers that are already connected:
 *
 * - rate:     open loop. The publisher sends at a fixed offered rate (catching up on timer jitter so
 *             the offered rate holds), for a warm-up and then a measured window, then waits for the
 *             measured messages to drain. Shows latency at a load every server should sustain.
 * - saturate: closed loop. The publisher keeps `window` messages in flight, where a message counts
 *             as done once EVERY subscriber has received it; a new one goes out as the oldest
 *             completes. The same flow control for every server, so delivered/s is each server's
 *             ceiling on this machine (or the load generator's: see the CPU columns).
 *
 * Publisher and subscribers share this process, so the send time embedded in the payload and the
 * receive time come from one monotonic clock (performance.now()).
 */
import type { ByteMeter, WireBytes } from '../clients/byte-meter.ts';
import type { Closable, Publisher, PublisherStats } from '../clients/fanout-target.ts';
import { cpuSeconds, machineBusySeconds } from '../cpu-usage.ts';
import { makePayload } from '../payload.ts';
import type { ServerProcess } from '../spawn-server.ts';
import { Histogram, type LatencySummary } from '../stats.ts';

const RING = 1 << 16;
const MASK = RING - 1;

export interface PassResult {
  mode: 'rate' | 'saturate';
  /** Which round of the run this pass belongs to (1-based; set by runFanout). */
  round?: number;
  /** Messages/s the publisher was asked to send (rate mode); null in saturate mode. */
  offeredPerSec: number | null;
  /** Messages/s the publisher actually sent in the measured window. */
  publishedPerSec: number;
  /** Deliveries (one message to one subscriber) received per second in the measured window. */
  deliveredPerSec: number;
  windowSeconds: number;
  /** Messages sent in the measured window; each should reach every subscriber. */
  measuredMessages: number;
  expectedDeliveries: number;
  /** Deliveries of measured messages received by the end of the drain. */
  delivered: number;
  missing: number;
  /** publish → deliver, over every delivery of a measured message (ms). */
  latency: LatencySummary;
  /** Server process CPU over the window, as a fraction of one core. */
  serverCpu: number;
  /** This (load generator) process's CPU over the window, as a fraction of one core. */
  loadCpu: number;
  /**
   * CPU used by every other process on the machine over the window, in cores (null off Linux).
   * Anything well above 0 means the run competed with other work and its numbers are low.
   */
  otherCpu: number | null;
  /** deliveredPerSec / serverCpu: deliveries one fully busy server core would make. */
  deliveriesPerServerCore: number;
  disconnects: number;
  publisher: PublisherStats;
  /** Saturate mode only: no message completed for stallMs, the pass was cut short. */
  stalled: boolean;
  /**
   * Subscribers' wire bytes over the window per delivery (only when the target meters its
   * sockets): received (server → subscribers) and sent (subscribers → server: polls, acks of TCP
   * aside).
   */
  wire?: { readPerDelivery: number; writtenPerDelivery: number };
}

interface PassState {
  firstSeq: number;
  /** Measured messages are [measureFrom, measureTo). */
  measureFrom: number;
  measureTo: number;
  histogram: Histogram;
  measuredDelivered: number;
  onComplete(seq: number): void;
}

/** Counts every payload received by any subscriber and routes it to the pass in progress. */
export class DeliveryBook {
  readonly #counts = new Uint32Array(RING);
  /** All deliveries ever received (for windowed rates). */
  total = 0;
  disconnects = 0;
  subscribers = 0;
  pass: PassState | undefined;
  #nextSeq = 0;

  /** Bound so it can be passed straight to scanPayloads. */
  readonly onPayload = (seq: number, sentAt: number): void => {
    this.total++;
    const pass = this.pass;
    if (pass === undefined || seq < pass.firstSeq) return;
    const count = (this.#counts[seq & MASK] ?? 0) + 1;
    this.#counts[seq & MASK] = count;
    if (seq >= pass.measureFrom && seq < pass.measureTo) {
      pass.histogram.recordMs(performance.now() - sentAt);
      pass.measuredDelivered++;
    }
    if (count === this.subscribers) pass.onComplete(seq);
  };

  /** Sends the next message; returns its seq. */
  send(publisher: Publisher): number {
    const seq = this.#nextSeq++;
    this.#counts[seq & MASK] = 0;
    publisher.publish(makePayload(seq, performance.now()));
    return seq;
  }

  get nextSeq(): number {
    return this.#nextSeq;
  }
}

export interface PassContext {
  label: string;
  book: DeliveryBook;
  publisher: Publisher;
  server: ServerProcess;
  drainMs: number;
  /** Counts the subscribers' sockets, for the wire columns. */
  meter?: ByteMeter | undefined;
}

interface Window {
  t0: number;
  t1: number;
  deliveries0: number;
  deliveries1: number;
  load0: NodeJS.CpuUsage;
  load1: NodeJS.CpuUsage;
  server0: Promise<NodeJS.CpuUsage>;
  server1: Promise<NodeJS.CpuUsage>;
  disconnects0: number;
  machine0: number | undefined;
  machine1: number | undefined;
  bytes0: WireBytes | undefined;
  bytes1: WireBytes | undefined;
}

type OpenWindow = Omit<Window, 't1' | 'deliveries1' | 'load1' | 'server1' | 'machine1' | 'bytes1'>;

function openWindow(ctx: PassContext): OpenWindow {
  return {
    machine0: machineBusySeconds(),
    t0: performance.now(),
    deliveries0: ctx.book.total,
    load0: process.cpuUsage(),
    server0: ctx.server.cpuUsage(),
    disconnects0: ctx.book.disconnects,
    bytes0: ctx.meter?.totals(),
  };
}

function closeWindow(ctx: PassContext, open: OpenWindow): Window {
  return {
    ...open,
    machine1: machineBusySeconds(),
    t1: performance.now(),
    deliveries1: ctx.book.total,
    load1: process.cpuUsage(),
    server1: ctx.server.cpuUsage(),
    bytes1: ctx.meter?.totals(),
  };
}

async function drain(ctx: PassContext, state: PassState): Promise<void> {
  const expected = (state.measureTo - state.measureFrom) * ctx.book.subscribers;
  const deadline = performance.now() + ctx.drainMs;
  while (state.measuredDelivered < expected && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function finish(
  ctx: PassContext,
  mode: PassResult['mode'],
  offeredPerSec: number | null,
  state: PassState,
  window: Window,
  stalled: boolean,
): Promise<PassResult> {
  await drain(ctx, state);
  ctx.book.pass = undefined;
  const seconds = (window.t1 - window.t0) / 1000;
  const serverCpu = (cpuSeconds(await window.server1) - cpuSeconds(await window.server0)) / seconds;
  const loadCpu = (cpuSeconds(window.load1) - cpuSeconds(window.load0)) / seconds;
  const otherCpu =
    window.machine0 === undefined || window.machine1 === undefined
      ? null
      : Math.max(0, (window.machine1 - window.machine0) / seconds - serverCpu - loadCpu);
  const measuredMessages = state.measureTo - state.measureFrom;
  const expectedDeliveries = measuredMessages * ctx.book.subscribers;
  const windowDeliveries = window.deliveries1 - window.deliveries0;
  const deliveredPerSec = windowDeliveries / seconds;
  const wire =
    window.bytes0 === undefined || window.bytes1 === undefined || windowDeliveries === 0
      ? undefined
      : {
          readPerDelivery: (window.bytes1.read - window.bytes0.read) / windowDeliveries,
          writtenPerDelivery: (window.bytes1.written - window.bytes0.written) / windowDeliveries,
        };
  return {
    mode,
    offeredPerSec,
    publishedPerSec: measuredMessages / seconds,
    deliveredPerSec,
    windowSeconds: seconds,
    measuredMessages,
    expectedDeliveries,
    delivered: state.measuredDelivered,
    missing: expectedDeliveries - state.measuredDelivered,
    latency: state.histogram.summary(),
    serverCpu,
    loadCpu,
    otherCpu,
    deliveriesPerServerCore: serverCpu > 0 ? deliveredPerSec / serverCpu : Number.NaN,
    disconnects: ctx.book.disconnects - window.disconnects0,
    publisher: ctx.publisher.stats(),
    stalled,
    ...(wire === undefined ? {} : { wire }),
  };
}

function progress(ctx: PassContext, mode: string, startedAt: number, deliveries0: number): () => void {
  let last = performance.now();
  let lastDeliveries = deliveries0;
  return () => {
    const now = performance.now();
    if (now - last < 1000) return;
    const rate = ((ctx.book.total - lastDeliveries) / (now - last)) * 1000;
    process.stderr.write(
      `  [${ctx.label}] ${mode} ${((now - startedAt) / 1000).toFixed(0)} s: ${(rate / 1000).toFixed(1)}k deliveries/s\n`,
    );
    last = now;
    lastDeliveries = ctx.book.total;
  };
}

/** Open loop at `rate` msgs/s: `warmupSeconds` unmeasured, then `seconds` measured. */
export async function runRatePass(
  ctx: PassContext,
  rate: number,
  warmupSeconds: number,
  seconds: number,
): Promise<PassResult> {
  const warm = Math.round(rate * warmupSeconds);
  const total = warm + Math.max(1, Math.round(rate * seconds));
  const firstSeq = ctx.book.nextSeq;
  const state: PassState = {
    firstSeq,
    measureFrom: firstSeq + warm,
    measureTo: firstSeq + total,
    histogram: new Histogram(),
    measuredDelivered: 0,
    onComplete: () => {},
  };
  ctx.book.pass = state;
  const start = performance.now();
  const tick = progress(ctx, `rate ${rate}/s`, start, ctx.book.total);
  let sent = 0;
  let open: OpenWindow | undefined;
  const window = await new Promise<Window>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      while (sent < due) {
        if (sent === warm) open = openWindow(ctx);
        ctx.book.send(ctx.publisher);
        sent++;
      }
      tick();
      if (sent === total && open !== undefined) {
        clearInterval(timer);
        resolve(closeWindow(ctx, open));
      }
    }, 1);
  });
  return finish(ctx, 'rate', rate, state, window, false);
}

/** Closed loop with `inFlight` messages outstanding: `warmupSeconds` unmeasured, then `seconds`. */
export async function runSaturatePass(
  ctx: PassContext,
  inFlight: number,
  warmupSeconds: number,
  seconds: number,
  stallMs = 5000,
): Promise<PassResult> {
  const firstSeq = ctx.book.nextSeq;
  let completed = firstSeq; // every seq below this reached all subscribers
  let lastProgress = performance.now();
  let sending = true;
  const pump = (): void => {
    while (sending && ctx.book.nextSeq - completed < inFlight) ctx.book.send(ctx.publisher);
  };
  const state: PassState = {
    firstSeq,
    measureFrom: Number.POSITIVE_INFINITY,
    measureTo: Number.POSITIVE_INFINITY,
    histogram: new Histogram(),
    measuredDelivered: 0,
    // Each subscriber receives in order, so messages complete in order.
    onComplete: (seq) => {
      completed = seq + 1;
      lastProgress = performance.now();
      pump();
    },
  };
  ctx.book.pass = state;
  const start = performance.now();
  const tick = progress(ctx, `saturate (${inFlight} in flight)`, start, ctx.book.total);
  let open: OpenWindow | undefined;
  let stalled = false;
  pump();
  const window = await new Promise<Window>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      tick();
      if (open === undefined && now - start >= warmupSeconds * 1000) {
        state.measureFrom = ctx.book.nextSeq;
        open = openWindow(ctx);
      }
      stalled = now - lastProgress > stallMs;
      if (open !== undefined && (now - open.t0 >= seconds * 1000 || stalled)) {
        sending = false;
        state.measureTo = ctx.book.nextSeq;
        clearInterval(timer);
        resolve(closeWindow(ctx, open));
      } else if (stalled) {
        // Stalled during warm-up: measure nothing.
        sending = false;
        state.measureFrom = ctx.book.nextSeq;
        state.measureTo = ctx.book.nextSeq;
        clearInterval(timer);
        open = openWindow(ctx);
        resolve(closeWindow(ctx, open));
      }
    }, 5);
  });
  return finish(ctx, 'saturate', null, state, window, stalled);
}

/**
 * Waits until no delivery arrived for `quietMs` (bounded by `maxMs`), so a pass never starts while
 * the server is still flushing the backlog of the previous one. Resolves false on the bound.
 */
export async function settle(book: DeliveryBook, quietMs = 300, maxMs = 30000): Promise<boolean> {
  const deadline = performance.now() + maxMs;
  let seen = book.total;
  let quietSince = performance.now();
  while (performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    if (book.total !== seen) {
      seen = book.total;
      quietSince = performance.now();
    } else if (performance.now() - quietSince >= quietMs) return true;
  }
  return false;
}

/** Closes every connection, ignoring failures (the server may already be gone). */
export function closeAll(connections: Iterable<Closable>): void {
  for (const connection of connections) {
    try {
      connection.close();
    } catch {
      // already closed
    }
  }
}
