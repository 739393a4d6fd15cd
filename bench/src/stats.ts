/**
 * Latency statistics for the benchmarks: a bounded log-linear histogram (HDR-style) so a run can
 * record millions of samples in constant memory, and percentiles read from it.
 *
 * Values are recorded in microseconds. Below 2^SUB_BITS µs every value has its own bucket; above,
 * each power of two is split into 2^SUB_BITS buckets, so a reported percentile is within
 * 1 / 2^SUB_BITS (≈ 0.8 %) of the true sample. Values above MAX_US are clamped (and counted).
 */

const SUB_BITS = 7;
const SUB_COUNT = 1 << SUB_BITS;
/** 2^27 µs ≈ 134 s: far beyond any latency a bounded run can observe. */
const MAX_EXPONENT = 27;
const MAX_US = 2 ** MAX_EXPONENT - 1;

function bucketOf(us: number): number {
  if (us < SUB_COUNT) return us;
  const exponent = 31 - Math.clz32(us); // floor(log2(us)) >= SUB_BITS
  const shift = exponent - SUB_BITS;
  return (shift + 1) * SUB_COUNT + ((us >>> shift) - SUB_COUNT);
}

/** The upper bound (in µs) of the values that fall into a bucket. */
function bucketUpper(index: number): number {
  if (index < SUB_COUNT) return index;
  const shift = Math.floor(index / SUB_COUNT) - 1;
  const mantissa = (index % SUB_COUNT) + SUB_COUNT;
  return ((mantissa + 1) << shift) - 1;
}

export interface LatencySummary {
  count: number;
  /** Milliseconds. */
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** A histogram's samples in a form that crosses IPC (JSON). */
export interface HistogramSnapshot {
  buckets: [number, number][];
  count: number;
  /** µs. */
  sum: number;
  max: number;
  clamped: number;
}

export class Histogram {
  readonly #counts = new Float64Array(bucketOf(MAX_US) + 1);
  #count = 0;
  #sum = 0;
  #max = 0;
  clamped = 0;

  /** Records a latency given in milliseconds (negative values, i.e. clock noise, count as 0). */
  recordMs(ms: number): void {
    let us = Math.round(ms * 1000);
    if (us < 0) us = 0;
    if (us > MAX_US) {
      us = MAX_US;
      this.clamped++;
    }
    this.#counts[bucketOf(us)]! += 1;
    this.#count++;
    this.#sum += us;
    if (us > this.#max) this.#max = us;
  }

  get count(): number {
    return this.#count;
  }

  /** The value (ms) at or below which `q` (0..1) of the samples lie. NaN when empty. */
  quantileMs(q: number): number {
    if (this.#count === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(q * this.#count));
    let seen = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      seen += this.#counts[i]!;
      if (seen >= rank) return Math.min(bucketUpper(i), this.#max) / 1000;
    }
    return this.#max / 1000;
  }

  /** The non-empty buckets and totals, to send to another process (see `merge`). */
  snapshot(): HistogramSnapshot {
    const buckets: [number, number][] = [];
    this.#counts.forEach((count, index) => {
      if (count > 0) buckets.push([index, count]);
    });
    return { buckets, count: this.#count, sum: this.#sum, max: this.#max, clamped: this.clamped };
  }

  /** Adds another histogram's samples (a load generator spread over several processes). */
  merge(other: HistogramSnapshot): void {
    for (const [index, count] of other.buckets) this.#counts[index]! += count;
    this.#count += other.count;
    this.#sum += other.sum;
    this.#max = Math.max(this.#max, other.max);
    this.clamped += other.clamped;
  }

  summary(): LatencySummary {
    return {
      count: this.#count,
      p50: this.quantileMs(0.5),
      p90: this.quantileMs(0.9),
      p99: this.quantileMs(0.99),
      max: this.#max / 1000,
      mean: this.#count === 0 ? Number.NaN : this.#sum / this.#count / 1000,
    };
  }
}

/** Exact percentile of a small sample array (ms), used where every sample is kept. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1]!;
}

/** The median of `values` (the mean of the two middle ones for an even count); NaN when empty. */
export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
