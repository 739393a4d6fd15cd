/**
 * How the SQLite store's append cost grows with concurrent streams: for each point, a fresh store
 * in a temp dir and the appends scenario's concurrent part (N responses at once, each a create then
 * A awaited appends) — acknowledged appends/s and p50/p99 time to acknowledgement, with this
 * process's CPU and every other process's over the run. Then the long message (L appends in
 * sequence) `runs` times on fresh stores, reporting the median of last ÷ first 100 and of the
 * median last ÷ first tenth: one GC pause moves a single 100-append window, a median over runs
 * does not.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Store } from '@mooring/server';
// The store's class itself (not exported by the package): the A/B of where checkpoints run is a
// constructor option, not a deployment setting.
import { SqliteStore } from '../../../packages/server/src/store/sqlite-store.ts';
import { cpuSeconds, machineBusySeconds } from '../cpu-usage.ts';
import {
  type ConcurrentAppendsResult,
  type LongMessageResult,
  runConcurrentAppends,
  runLongMessage,
} from '../scenarios/appends.ts';

export interface AppendsGrowthOptions {
  streams: number[];
  appendsPerStream: number;
  /**
   * When set, each point appends this many in total (total ÷ streams per stream), so the store ends
   * the same size at every point and only the concurrency changes.
   */
  totalAppends?: number;
  longMessageAppends: number;
  runs: number;
  /** Where the store's WAL checkpoints run (default: the store's default, `worker`). */
  checkpoint?: 'worker' | 'inline';
}

export interface AppendsGrowthPoint extends ConcurrentAppendsResult {
  /** Cores used by this process (the store and its callers) and by every other process. */
  cpu: number;
  otherCpu: number | null;
  /** Event-loop delay over the run (ms): how long the store's synchronous work held the loop. */
  loopDelay: { p99: number; max: number };
}

export interface AppendsGrowthResult {
  points: AppendsGrowthPoint[];
  longMessages: LongMessageResult[];
  /** Medians over `longMessages`. */
  ratioMedian: number;
  medianRatioMedian: number;
}

const DAY = 24 * 60 * 60 * 1000;

async function withStore<T>(
  checkpoint: AppendsGrowthOptions['checkpoint'],
  fn: (store: Store) => Promise<T>,
): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'mooring-bench-growth-'));
  const store = new SqliteStore({
    path: join(dir, 'bench.db'),
    retentionFor: () => DAY,
    ...(checkpoint === undefined ? {} : { checkpoint }),
  });
  try {
    return await fn(store);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
};

export async function runAppendsGrowth(options: AppendsGrowthOptions): Promise<AppendsGrowthResult> {
  const points: AppendsGrowthPoint[] = [];
  for (const streams of options.streams) {
    const perStream =
      options.totalAppends === undefined
        ? options.appendsPerStream
        : Math.max(1, Math.round(options.totalAppends / streams));
    process.stderr.write(`growth appends: ${streams} streams × ${perStream}\n`);
    const point = await withStore(options.checkpoint, async (store) => {
      const loop = monitorEventLoopDelay({ resolution: 1 });
      loop.enable();
      const machine0 = machineBusySeconds();
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const run = await runConcurrentAppends(store, {
        responses: streams,
        appendsPerResponse: perStream,
        longMessageAppends: 0,
        stores: ['sqlite'],
      });
      const seconds = (performance.now() - t0) / 1000;
      loop.disable();
      const loopDelay = { p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 };
      const cpu = (cpuSeconds(process.cpuUsage()) - cpuSeconds(cpu0)) / seconds;
      const machine1 = machineBusySeconds();
      const otherCpu =
        machine0 === undefined || machine1 === undefined
          ? null
          : Math.max(0, (machine1 - machine0) / seconds - cpu);
      return { ...run, cpu, otherCpu, loopDelay };
    });
    process.stderr.write(
      `  ${Math.round(point.appendsPerSec)} appends/s, p99 ${point.latency.p99.toFixed(1)} ms, other CPU ${point.otherCpu?.toFixed(2)}\n`,
    );
    points.push(point);
  }
  const longMessages: LongMessageResult[] = [];
  for (let run = 0; run < options.runs; run++) {
    process.stderr.write(`growth appends: long message ${run + 1} of ${options.runs}\n`);
    longMessages.push(
      await withStore(options.checkpoint, (store) => runLongMessage(store, options.longMessageAppends)),
    );
  }
  return {
    points,
    longMessages,
    ratioMedian: median(longMessages.map((l) => l.ratio)),
    medianRatioMedian: median(longMessages.map((l) => l.medianRatio)),
  };
}

const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : '–';

export function appendsGrowthMarkdown(result: AppendsGrowthResult, options: AppendsGrowthOptions): string {
  const lines = [
    `### SQLite appends growth${options.checkpoint === undefined ? '' : ` (checkpoints: ${options.checkpoint})`}: N concurrent streams × ${options.totalAppends === undefined ? fmt(options.appendsPerStream) : `${fmt(options.totalAppends)} ÷ N`} awaited appends (in process)`,
    '',
    '| streams | appends (per stream) | acked appends/s (≥ 50,000) | ack p50 / p99 / max ms | loop delay p99 / max ms | CPU (this / other) | appends / core-s | verified |',
    '|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const p of result.points) {
    lines.push(
      `| ${fmt(p.responses)} | ${fmt(p.appends)} (${fmt(p.appendsPerResponse)}) | ${fmt(p.appendsPerSec)}${p.appendsPerSec >= 50_000 ? ' ✓' : ' ✗'} | ${fmt(p.latency.p50, 2)} / ${fmt(p.latency.p99, 1)} / ${fmt(p.latency.max, 0)} | ${fmt(p.loopDelay.p99, 1)} / ${fmt(p.loopDelay.max, 0)} | ${fmt(p.cpu, 2)} / ${p.otherCpu === null ? '–' : fmt(p.otherCpu, 2)} | ${fmt(p.appendsPerSec / p.cpu)} | ${p.verified ? 'yes' : 'NO'} |`,
    );
  }
  lines.push(
    '',
    `Long message (${fmt(options.longMessageAppends)} appends), ${result.longMessages.length} runs: last ÷ first 100 = ${result.longMessages.map((l) => fmt(l.ratio, 2)).join(', ')} (median **${fmt(result.ratioMedian, 2)}**, target ≤ 1.2); median last ÷ first tenth = ${result.longMessages.map((l) => fmt(l.medianRatio, 2)).join(', ')} (median **${fmt(result.medianRatioMedian, 2)}**); appends/s ${result.longMessages.map((l) => fmt(l.appendsPerSec)).join(', ')}; data verified: ${result.longMessages.every((l) => l.verified) ? 'yes' : 'NO'}.`,
  );
  return lines.join('\n');
}
