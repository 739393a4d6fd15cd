/**
 * The last hour of the server's metrics as time series, for the dashboard's charts
 * (`GET /metrics/history`): a ring buffer of samples taken every few seconds from the Prometheus
 * registry. Memory is bounded: `capacity` samples (an hour at the default 5 s), each with at most
 * `MAX_KEYS` series per chart (label values are server-chosen: transports, reasons, error codes).
 *
 * Counters become rates over the sample interval (per second for operations, per minute for
 * events); latency percentiles are computed from the histogram buckets observed in the interval
 * alone (the bucket's upper bound, interpolated inside the bucket), so a slow minute shows as one.
 */
import type { Metrics } from './metrics.ts';

export const DEFAULT_SAMPLE_INTERVAL = 5_000;
export const HISTORY_SPAN = 60 * 60_000;
const MAX_KEYS = 32;

/** Chart → series name → one value per sample (null: nothing to show, e.g. no publish). */
export type SeriesSet = Record<string, Record<string, Array<number | null>>>;

export interface MetricsHistorySnapshot {
  /** Sample period, ms. */
  interval: number;
  /** Sample times, seconds since 1970 (uPlot's x axis), oldest first. */
  t: number[];
  series: SeriesSet;
}

type Sample = { t: number; values: Map<string, number | null> };

export class MetricsHistory {
  readonly interval: number;
  readonly capacity: number;
  readonly #metrics: Metrics;
  readonly #ring: Sample[] = [];
  #next = 0;
  /** Counter totals at the previous sample, by `chart\0series`. */
  #previous = new Map<string, number>();
  #previousBuckets = new Map<string, Map<number, number>>();
  #previousAt = 0;
  /** Series names per chart, in first-seen order, at most MAX_KEYS each. */
  readonly #keys = new Map<string, string[]>();
  #timer: NodeJS.Timeout | undefined;

  constructor(metrics: Metrics, interval = DEFAULT_SAMPLE_INTERVAL) {
    this.#metrics = metrics;
    this.interval = interval;
    this.capacity = Math.max(2, Math.ceil(HISTORY_SPAN / interval));
  }

  /** Samples every `interval` until `stop()` (the timer never keeps the process alive). */
  start(): void {
    if (this.#timer) return;
    const sample = () => {
      this.sample().catch(() => {}); // a collector that throws costs one sample, never the process
    };
    sample();
    this.#timer = setInterval(sample, this.interval);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Takes one sample now (also used by tests). */
  async sample(now = Date.now()): Promise<void> {
    const m = this.#metrics;
    const [connections, closed, attaches, failures, operations, catchUp, errors, publish, store, expiries] =
      await Promise.all([
        m.connections.get(),
        m.connectionsClosed.get(),
        m.attaches.get(),
        m.resumeFailures.get(),
        m.operations.get(),
        m.catchUpMessages.get(),
        m.errors.get(),
        m.publishSeconds.get(),
        m.storeSeconds.get(),
        m.leaseExpiries.get(),
      ]);
    const seconds = this.#previousAt === 0 ? 0 : (now - this.#previousAt) / 1000;
    const values = new Map<string, number | null>();
    const set = (chart: string, name: string, value: number | null) => {
      const keys = this.#keysOf(chart);
      if (!keys.includes(name)) {
        if (keys.length >= MAX_KEYS) return;
        keys.push(name);
      }
      values.set(`${chart}\u0000${name}`, value);
    };
    /**
     * The rate of a counter total since the previous sample (0 on the first sample: no interval yet).
     * A series first seen after that was 0 at the previous sample (a labelled counter appears on its
     * first increment), so its whole total is that interval's.
     */
    const rate = (chart: string, name: string, total: number, per: number) => {
      const key = `${chart}\u0000${name}`;
      const before = this.#previous.get(key) ?? 0;
      this.#previous.set(key, total);
      set(chart, name, seconds <= 0 ? 0 : ((total - before) / seconds) * per);
    };
    const sumBy = (
      metric: { values: { value: number; labels: Partial<Record<string, string | number>> }[] },
      label: string,
    ) => {
      const out = new Map<string, number>();
      for (const v of metric.values) {
        const name = String(v.labels[label] ?? '');
        out.set(name, (out.get(name) ?? 0) + v.value);
      }
      return out;
    };

    for (const [transport, open] of sumBy(connections, 'transport')) set('connections', transport, open);
    for (const [reason, total] of sumBy(closed, 'reason')) rate('closed', reason, total, 60);
    let resumed = 0;
    for (const v of attaches.values)
      if (v.labels.mode === 'resume' && v.labels.resumed === 'true') resumed += v.value;
    rate('resumes', 'resumed', resumed, 60);
    rate(
      'resumes',
      'continuity lost',
      failures.values.reduce((a, v) => a + v.value, 0),
      60,
    );
    rate(
      'operations',
      'stored',
      operations.values.reduce((a, v) => a + v.value, 0),
      1,
    );
    rate(
      'operations',
      'caught up',
      catchUp.values.reduce((a, v) => a + v.value, 0),
      1,
    );
    for (const [code, total] of sumBy(errors, 'code')) rate('errors', code, total, 60);
    let slow = 0;
    for (const v of closed.values) if (v.labels.reason === 'slow_consumer') slow += v.value;
    rate('slow', 'slow-consumer drops', slow, 60);
    // runs whose publisher (an agent) vanished: a rise means agents crash or lose their network
    rate('abandoned', 'runs abandoned', sumBy(expiries, 'outcome').get('abandoned') ?? 0, 60);

    const publishBuckets = this.#bucketDeltas('publish', publish.values);
    set('latency', 'publish p50', quantileMs(publishBuckets, 0.5));
    set('latency', 'publish p99', quantileMs(publishBuckets, 0.99));
    const appendBuckets = this.#bucketDeltas(
      'append',
      store.values.filter((v) => v.labels.operation === 'append'),
    );
    set('latency', 'store append p99', quantileMs(appendBuckets, 0.99));
    const readBuckets = this.#bucketDeltas(
      'read',
      store.values.filter((v) => v.labels.operation === 'read'),
    );
    set('latency', 'store read p99', quantileMs(readBuckets, 0.99));

    this.#previousAt = now;
    const sample: Sample = { t: now, values };
    if (this.#ring.length < this.capacity) this.#ring.push(sample);
    else this.#ring[this.#next] = sample;
    this.#next = (this.#next + 1) % this.capacity;
  }

  /** The samples, oldest first, as columns. */
  snapshot(): MetricsHistorySnapshot {
    const ordered =
      this.#ring.length < this.capacity
        ? this.#ring
        : [...this.#ring.slice(this.#next), ...this.#ring.slice(0, this.#next)];
    const series: SeriesSet = {};
    for (const [chart, keys] of this.#keys) {
      const out: Record<string, Array<number | null>> = {};
      for (const name of keys) {
        const key = `${chart}\u0000${name}`;
        out[name] = ordered.map((s) => {
          const value = s.values.get(key);
          if (value === undefined) return chart === 'latency' ? null : 0;
          return value === null ? null : Math.round(value * 1000) / 1000;
        });
      }
      series[chart] = out;
    }
    return { interval: this.interval, t: ordered.map((s) => Math.round(s.t / 100) / 10), series };
  }

  #keysOf(chart: string): string[] {
    let keys = this.#keys.get(chart);
    if (!keys) {
      keys = [];
      this.#keys.set(chart, keys);
    }
    return keys;
  }

  /** Cumulative bucket counts observed since the previous sample: [upper bound, count] ascending. */
  #bucketDeltas(
    name: string,
    values: {
      value: number;
      labels: Partial<Record<string, string | number>>;
      metricName?: string | undefined;
    }[],
  ): Array<[number, number]> {
    const totals = new Map<number, number>();
    for (const v of values) {
      if (!v.metricName?.endsWith('_bucket')) continue;
      const le = v.labels.le === '+Inf' ? Infinity : Number(v.labels.le);
      totals.set(le, (totals.get(le) ?? 0) + v.value);
    }
    const before = this.#previousBuckets.get(name);
    this.#previousBuckets.set(name, totals);
    return [...totals]
      .map(([le, count]): [number, number] => [le, count - (before?.get(le) ?? 0)])
      .sort((a, b) => a[0] - b[0]);
  }
}

/** The q-quantile of the observations in cumulative buckets, in ms, interpolated in its bucket. */
export function quantileMs(buckets: Array<[number, number]>, q: number): number | null {
  const total = buckets.length > 0 ? buckets[buckets.length - 1]![1] : 0;
  if (total <= 0) return null;
  const target = total * q;
  let lower = 0;
  let below = 0;
  for (const [le, count] of buckets) {
    if (count >= target) {
      if (le === Infinity) return lower * 1000;
      const inside = count - below;
      const fraction = inside > 0 ? (target - below) / inside : 1;
      return (lower + (le - lower) * fraction) * 1000;
    }
    lower = le;
    below = count;
  }
  return lower * 1000;
}
