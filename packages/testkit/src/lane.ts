/**
 * One direction of one proxied connection: bytes read from `source` are written to `dest` after the
 * faults in force have had their say. The pipeline, in order:
 *
 *   source ──▶ hold (buffer, server→client only) ──▶ queue (delay) ──▶ pace (bandwidth) ──▶ dest
 *
 * Guarantees: bytes and the end-of-stream leave in the order they arrived; each chunk's release time is
 * fixed when it is queued (so turning a fault off never reorders); the queue is bounded, so a slow lane
 * pushes back on its source instead of growing without limit. Faults are read live from the host, so a
 * change applies to bytes arriving afterwards; `refresh()` re-evaluates what is already waiting.
 */

import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { FaultHost } from './faults.ts';
import { HttpResponseFramer } from './http-response-framer.ts';

/** `up` is client→server, `down` is server→client. */
export type Direction = 'up' | 'down';

/** Queue size above which the source is paused, and below which it is resumed. */
const HIGH_WATER = 256 * 1024;
const LOW_WATER = 64 * 1024;
/** `bandwidth()` sends in slices of this fraction of a second's worth of bytes, so pacing is smooth. */
const SLICES_PER_SECOND = 20;

interface Item {
  /** Bytes to write, or null for the end of the stream. */
  data: Buffer | null;
  readyAt: number;
}

export class Lane {
  readonly direction: Direction;
  private readonly source: Socket;
  private readonly dest: Socket;
  private readonly host: FaultHost;
  /** Tracks response boundaries on server→client lanes, whether or not `buffer()` is on. */
  private readonly framer: HttpResponseFramer | null;

  private queue: Item[] = [];
  private queuedBytes = 0;
  private lastReadyAt = 0;
  private nextSendAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private waitingForDrain = false;
  private pausedSource = false;

  private held: Buffer[] = [];
  private heldBytes = 0;
  /** Stream offset of the first held byte. */
  private heldStart = 0;
  private received = 0;
  private stopped = false;

  constructor(direction: Direction, source: Socket, dest: Socket, host: FaultHost) {
    this.direction = direction;
    this.source = source;
    this.dest = dest;
    this.host = host;
    this.framer = direction === 'down' ? new HttpResponseFramer() : null;
  }

  /** Bytes read from the source. */
  push(chunk: Buffer): void {
    if (this.stopped) {
      this.host.counters.bytesDropped += chunk.length;
      return;
    }
    const start = this.received;
    this.received += chunk.length;
    this.framer?.push(chunk);
    const buffer = this.direction === 'down' ? this.host.faults.buffer : null;
    if (buffer === null) {
      this.enqueue(chunk);
      return;
    }
    if (this.heldBytes === 0) this.heldStart = start;
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes >= buffer.bytes) this.release(this.heldBytes);
    else if (buffer.responses && this.framer !== null) this.release(this.framer.boundary - this.heldStart);
  }

  /** The source ended its side (FIN): release anything held, then end `dest` in order. */
  end(): void {
    if (this.stopped) return;
    this.release(this.heldBytes);
    this.enqueue(null);
  }

  /** Faults changed: release held bytes if buffering is off, re-pace what is queued. */
  refresh(): void {
    if (this.stopped) return;
    if (this.direction !== 'down' || this.host.faults.buffer === null) this.release(this.heldBytes);
    this.clearTimer();
    this.pump();
  }

  /**
   * Stop for good. `lost` counts bytes still held or queued as dropped (a blackhole); otherwise they
   * are discarded silently (the connection is being torn down). The source is resumed so that later
   * bytes are read and dropped instead of piling up in the kernel.
   */
  stop(lost: boolean): void {
    if (this.stopped) return;
    this.stopped = true;
    if (lost) this.host.counters.bytesDropped += this.queuedBytes + this.heldBytes;
    this.queue = [];
    this.queuedBytes = 0;
    this.held = [];
    this.heldBytes = 0;
    this.clearTimer();
    if (this.pausedSource) {
      this.pausedSource = false;
      this.source.resume();
    }
  }

  private release(count: number): void {
    const n = Math.min(count, this.heldBytes);
    if (n <= 0) return;
    const all = Buffer.concat(this.held);
    const rest = all.subarray(n);
    this.held = rest.length > 0 ? [rest] : [];
    this.heldBytes = rest.length;
    this.heldStart += n;
    this.enqueue(all.subarray(0, n));
  }

  private enqueue(data: Buffer | null): void {
    const delay = this.host.faults.delay;
    let readyAt = performance.now();
    if (delay !== null) readyAt += delay.ms + Math.random() * delay.jitterMs;
    readyAt = Math.max(readyAt, this.lastReadyAt);
    this.lastReadyAt = readyAt;
    this.queue.push({ data, readyAt });
    if (data !== null) {
      this.queuedBytes += data.length;
      if (this.queuedBytes > HIGH_WATER && !this.pausedSource) {
        this.pausedSource = true;
        this.source.pause();
      }
    }
    this.pump();
  }

  private pump(): void {
    while (!this.stopped && this.timer === null && !this.waitingForDrain) {
      const head = this.queue[0];
      if (head === undefined) return;
      const now = performance.now();
      const bandwidth = this.host.faults.bandwidth;
      const at = Math.max(head.readyAt, bandwidth === null ? 0 : this.nextSendAt);
      if (at > now) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.pump();
        }, at - now);
        return;
      }
      if (head.data === null) {
        this.queue.shift();
        if (!this.dest.destroyed) this.dest.end();
        return;
      }
      let slice = head.data;
      const max = bandwidth === null ? Infinity : Math.max(1, Math.floor(bandwidth / SLICES_PER_SECOND));
      if (slice.length > max) {
        head.data = slice.subarray(max);
        slice = slice.subarray(0, max);
      } else {
        this.queue.shift();
      }
      if (bandwidth !== null)
        this.nextSendAt = Math.max(now, this.nextSendAt) + (slice.length / bandwidth) * 1000;
      this.queuedBytes -= slice.length;
      if (this.pausedSource && this.queuedBytes <= LOW_WATER) {
        this.pausedSource = false;
        this.source.resume();
      }
      this.write(slice);
    }
  }

  private write(slice: Buffer): void {
    // A destination that is gone takes its bytes with it; the connection tears itself down.
    if (this.dest.destroyed || this.dest.writableEnded) return;
    const counters = this.host.counters;
    if (this.direction === 'up') counters.bytesToServer += slice.length;
    else counters.bytesToClient += slice.length;
    if (!this.dest.write(slice)) {
      this.waitingForDrain = true;
      this.dest.once('drain', () => {
        this.waitingForDrain = false;
        this.pump();
      });
    }
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
