/**
 * The child side of a benchmark server process: starts one server, tells the parent its port over
 * IPC, answers CPU-usage queries, and exits when asked, when the parent goes away, or on a signal.
 *
 * IPC messages (parent → child): `{ type: 'cpu', id }`, `{ type: 'loop' }`, `{ type: 'stop' }`.
 * IPC messages (child → parent): `{ type: 'ready', port }`, `{ type: 'cpu', id, usage }`,
 * `{ type: 'loop', delay, gc }` (the event loop's delay and the garbage collector's pauses since the
 * last ask), `{ type: 'failed', error }`.
 */
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

export interface RunningServer {
  port: number;
  close(): Promise<void>;
}

export type ChildRequest = { type: 'cpu'; id: number } | { type: 'loop' } | { type: 'stop' };
/** How late the event loop ran its callbacks (ms), over a window: what every token passing waits. */
export interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
}
/** The garbage collector's pauses of the main thread over a window (every kind: scavenges, mark-compacts). */
export interface GcPauses {
  count: number;
  totalMs: number;
  maxMs: number;
}
export type ChildReport =
  | { type: 'ready'; port: number }
  | { type: 'loop'; delay: LoopDelay; gc: GcPauses }
  | { type: 'cpu'; id: number; usage: NodeJS.CpuUsage }
  | { type: 'failed'; error: string };

function send(report: ChildReport): void {
  if (process.connected) process.send?.(report);
}

export async function serveChild(start: () => Promise<RunningServer>): Promise<void> {
  if (!process.send) throw new Error('server-child: run this module through spawnServer (needs IPC)');
  // Parent gone (crash, SIGKILL): nothing left to serve.
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));

  let server: RunningServer;
  try {
    server = await start();
  } catch (error) {
    send({ type: 'failed', error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    process.exit(1);
  }

  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const gc = gcPauses();
  process.on('message', (raw: ChildRequest) => {
    if (raw.type === 'cpu') send({ type: 'cpu', id: raw.id, usage: process.cpuUsage() });
    else if (raw.type === 'loop') {
      send({ type: 'loop', delay: loopDelay(loop), gc: gc.take() });
      loop.reset();
    } else if (raw.type === 'stop') {
      // Bounded: a server that does not close in 3 s is left to process.exit.
      const timer = setTimeout(() => process.exit(0), 3000);
      server.close().finally(() => {
        clearTimeout(timer);
        process.exit(0);
      });
    }
  });
  send({ type: 'ready', port: server.port });
}

/** A loop-delay histogram's p50 / p99 / max in ms (its values are ns). */
export function loopDelay(h: { percentile(p: number): number; max: number; count: number }): LoopDelay {
  if (h.count === 0) return { p50: 0, p99: 0, max: 0 };
  return { p50: h.percentile(50) / 1e6, p99: h.percentile(99) / 1e6, max: h.max / 1e6 };
}

/** Counts the process's GC pauses (`gc` performance entries); `take()` returns them since the last take. */
export function gcPauses(): { take(): GcPauses } {
  let pauses: GcPauses = { count: 0, totalMs: 0, maxMs: 0 };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      pauses.count++;
      pauses.totalMs += entry.duration;
      pauses.maxMs = Math.max(pauses.maxMs, entry.duration);
    }
  }).observe({ entryTypes: ['gc'] });
  return {
    take() {
      const taken = pauses;
      pauses = { count: 0, totalMs: 0, maxMs: 0 };
      return taken;
    },
  };
}
