/** The API key the benchmark server accepts and its clients use. */
export const BENCH_KEY = 'bench:secret';

/** Wall-clock time in microseconds, comparable across the benchmark's processes (same machine). */
export function nowMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}
