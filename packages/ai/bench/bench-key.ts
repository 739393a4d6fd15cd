/** The API key the benchmark server accepts and its clients use. */
export const BENCH_KEY = 'bench:secret';

/**
 * Time in microseconds on the machine's monotonic clock, comparable across the benchmark's processes
 * (same machine). Not `performance.timeOrigin + now()`: that is the wall clock read at each process's
 * start, and processes started at different moments disagree by the wall clock's adjustments in between.
 */
export function nowMicros(): number {
  return Number(process.hrtime.bigint() / 1000n);
}
