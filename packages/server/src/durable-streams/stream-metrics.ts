/**
 * Prometheus metrics of the Durable Streams endpoint, in the server's registry (`/metrics`):
 * requests by method and status, bytes in (appends) and out (reads), live readers waiting, and the
 * streams and bytes held. Those two are counters the store keeps as it writes (memory, SQLite) or two
 * O(1) reads (Redis), read once per scrape: a scrape walks no stream.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { StreamStore } from '../store/stream-store.ts';

export class StreamMetrics {
  readonly requests: Counter<'method' | 'status'>;
  readonly bytes: Counter<'direction'>;

  /** `liveReaders`: long-poll and SSE readers waiting for a change now. */
  constructor(registry: Registry, streams: StreamStore | undefined, liveReaders: () => number) {
    const registers = [registry];
    this.requests = new Counter({
      name: 'mooring_stream_requests_total',
      help: 'Durable Streams requests by method and HTTP status',
      labelNames: ['method', 'status'],
      registers,
    });
    this.bytes = new Counter({
      name: 'mooring_stream_bytes_total',
      help: 'Durable Streams data bytes received by appends (in) and sent by reads (out)',
      labelNames: ['direction'],
      registers,
    });
    new Gauge({
      name: 'mooring_stream_live_readers',
      help: 'Durable Streams long-poll and SSE readers waiting for a change',
      registers,
      collect() {
        this.set(liveReaders());
      },
    });
    const stats = streams && sharedRead(() => streams.stats());
    new Gauge({
      name: 'mooring_streams',
      help: 'Durable Streams held by the store',
      registers,
      async collect() {
        if (stats) this.set((await stats()).streams);
      },
    });
    new Gauge({
      name: 'mooring_stream_bytes',
      help: 'Bytes of data held by Durable Streams',
      registers,
      async collect() {
        if (stats) this.set((await stats()).bytes);
      },
    });
  }
}

/**
 * `read`, shared by the calls made while one is under way: both gauges of a scrape are collected
 * at once, so a scrape reads the store's figures once (one round trip on Redis), not once per gauge.
 */
function sharedRead<T>(read: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => {
    if (pending) return pending;
    const started = read();
    pending = started;
    const done = () => {
      if (pending === started) pending = undefined;
    };
    started.then(done, done);
    return started;
  };
}
