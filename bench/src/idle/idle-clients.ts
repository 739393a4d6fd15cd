/**
 * The client side of the idle-connections measurement: M processes (idle-client-worker.ts),
 * process i connecting its share from source address 127.0.0.(2+i) so that
 * no process runs out of file descriptors (hard limit 20,000 each) or ephemeral ports, each
 * connection attached to a channel of its own (or K of them, or K of N shared: `idleChannel`), then
 * idle (ws answers the server's pings).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BENCH_KEY } from '../bench-config.ts';
import { processCpuSeconds } from '../cpu-usage.ts';
import type { IdleWorkerReport, IdleWorkerRequest, IdleWorkerStart } from './idle-client-worker.ts';
import { idleChannel } from './idle-options.ts';

const WORKER = fileURLToPath(new URL('./idle-client-worker.ts', import.meta.url));

type Ready = Extract<IdleWorkerReport, { type: 'ready' }>;
type Attached = Extract<IdleWorkerReport, { type: 'attached' }>;

export interface IdleClients {
  /** Connections attached so far (from the processes' progress reports, every 500). */
  readonly connected: number;
  /** Resolves when every process has tried all of its share. */
  ready: Promise<{ connected: number; failed: number; retries: number; firstError?: string }>;
  /**
   * Once ready: every connection attaches its channels beyond the first; resolves when all were
   * answered (`attached` counts attachments, not connections).
   */
  attachMore(): Promise<{ attached: number; failed: number; firstError?: string }>;
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
  /** Channels each connection attaches (`idleChannel`): the first at connect, the rest in `attachMore`. */
  channelsPerConnection: number;
  sharedChannels: number | undefined;
}): IdleClients {
  const { connections, processes, channelsPerConnection: perConnection, sharedChannels } = options;
  const channelOf = (i: number, k: number) => idleChannel(i, k, perConnection, sharedChannels);
  const children: ChildProcess[] = [];
  const progress: number[] = [];
  const readies: Promise<Ready>[] = [];
  /** Per process: who waits for its next `count` answer (disconnects). */
  const countWaiters: ((disconnects: number) => void)[][] = [];
  /** Per process: who waits for its `attached` answer, and the connections it holds (by index). */
  const attachWaiters: ((report: Attached) => void)[] = [];
  const held: number[][] = [];
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
          } else if (report.type === 'attached') attachWaiters[p]?.(report);
          else if (report.type === 'count') waiting.shift()?.(report.disconnects);
        });
        child.once('exit', (code, signal) =>
          reject(new Error(`client process ${p} exited (${code ?? signal}) before it was ready`)),
        );
      }),
    );
    // process p holds the connections p, p + M, p + 2M, …, each first on its channel k = 0
    const indices: number[] = [];
    for (let i = p; i < connections; i += processes) indices.push(i);
    held.push(indices);
    const channels = indices.map((i) => channelOf(i, 0));
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
    async attachMore() {
      const reports = await Promise.all(
        children.map(
          (child, p) =>
            new Promise<Attached>((resolve, reject) => {
              attachWaiters[p] = resolve;
              child.once('exit', (code, signal) =>
                reject(new Error(`client process ${p} exited (${code ?? signal}) while attaching`)),
              );
              const more = (held[p] ?? []).map((i) =>
                Array.from({ length: perConnection - 1 }, (_, k) => channelOf(i, k + 1)),
              );
              send(child, { type: 'attach', channels: more });
            }),
        ),
      );
      const firstError = reports.find((r) => r.firstError !== undefined)?.firstError;
      return {
        attached: reports.reduce((sum, r) => sum + r.attached, 0),
        failed: reports.reduce((sum, r) => sum + r.failed, 0),
        ...(firstError === undefined ? {} : { firstError }),
      };
    },
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
