/**
 * The client side of the idle-connections measurement: M processes (idle-client-worker.ts),
 * process i connecting its share from source address 127.0.0.(2+i) so that
 * no process runs out of file descriptors (hard limit 20,000 each) or ephemeral ports, each
 * connection attached to a channel of its own, then idle (ws answers the server's pings).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BENCH_KEY } from '../bench-config.ts';
import { processCpuSeconds } from '../cpu-usage.ts';
import type { IdleWorkerReport, IdleWorkerRequest, IdleWorkerStart } from './idle-client-worker.ts';

const WORKER = fileURLToPath(new URL('./idle-client-worker.ts', import.meta.url));

type Ready = Extract<IdleWorkerReport, { type: 'ready' }>;

export interface IdleClients {
  /** Connections attached so far (from the processes' progress reports, every 500). */
  readonly connected: number;
  /** Resolves when every process has tried all of its share. */
  ready: Promise<{ connected: number; failed: number; retries: number; firstError?: string }>;
  /** Connections that closed after they were attached. */
  disconnects(): Promise<number>;
  /** CPU seconds used by the client processes so far. */
  cpuSeconds(): number;
  stop(): Promise<void>;
}

export function startIdleClients(options: {
  port: number;
  connections: number;
  processes: number;
  concurrency: number;
}): IdleClients {
  const { connections, processes } = options;
  const children: ChildProcess[] = [];
  const progress: number[] = [];
  const readies: Promise<Ready>[] = [];
  /** Per process: who waits for its next `count` answer (disconnects). */
  const countWaiters: ((disconnects: number) => void)[][] = [];
  process.on('exit', () => {
    for (const child of children) child.kill('SIGKILL');
  });
  for (let p = 0; p < processes; p++) {
    const child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
    children.push(child);
    progress.push(0);
    const waiting: ((disconnects: number) => void)[] = [];
    countWaiters.push(waiting);
    readies.push(
      new Promise<Ready>((resolve, reject) => {
        child.on('message', (report: IdleWorkerReport) => {
          if (report.type === 'progress') progress[p] = report.connected;
          else if (report.type === 'ready') {
            progress[p] = report.connected;
            resolve(report);
          } else if (report.type === 'count') waiting.shift()?.(report.disconnects);
        });
        child.once('exit', (code, signal) =>
          reject(new Error(`client process ${p} exited (${code ?? signal}) before it was ready`)),
        );
      }),
    );
    // process p holds the connections p, p + M, p + 2M, …, each on channel idle:<its index>
    const channels: string[] = [];
    for (let i = p; i < connections; i += processes) channels.push(`idle:${i}`);
    const start: IdleWorkerStart = {
      type: 'start',
      port: options.port,
      address: `127.0.0.${2 + p}`,
      channels,
      concurrency: Math.max(1, Math.ceil(options.concurrency / processes)),
      key: BENCH_KEY,
    };
    child.send(start);
  }
  const send = (child: ChildProcess, request: IdleWorkerRequest) => {
    if (child.connected) child.send(request);
  };
  return {
    get connected() {
      return progress.reduce((a, b) => a + b, 0);
    },
    ready: Promise.all(readies).then((reports) => {
      const firstError = reports.find((r) => r.firstError !== undefined)?.firstError;
      return {
        connected: reports.reduce((sum, r) => sum + r.connected, 0),
        failed: reports.reduce((sum, r) => sum + r.failed, 0),
        retries: reports.reduce((sum, r) => sum + r.retries, 0),
        ...(firstError === undefined ? {} : { firstError }),
      };
    }),
    async disconnects() {
      const each = await Promise.all(
        children.map(
          (child, p) =>
            new Promise<number>((resolve) => {
              countWaiters[p]?.push(resolve);
              send(child, { type: 'count' });
              setTimeout(() => resolve(Number.NaN), 5_000).unref();
            }),
        ),
      );
      return each.reduce((a, b) => a + b, 0);
    },
    cpuSeconds() {
      return children.reduce((sum, child) => sum + (processCpuSeconds(child.pid ?? -1) ?? 0), 0);
    },
    async stop() {
      for (const child of children) send(child, { type: 'stop' });
      await Promise.all(
        children.map((child) =>
          child.exitCode !== null || child.signalCode !== null
            ? undefined
            : new Promise<void>((resolve) => {
                const kill = setTimeout(() => child.kill('SIGKILL'), 3_000);
                child.once('exit', () => {
                  clearTimeout(kill);
                  resolve();
                });
              }),
        ),
      );
    },
  };
}
