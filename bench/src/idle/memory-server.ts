/**
 * A Mooring server (memory store; Redis with `redisUrl`, SQLite with `sqlitePath`) in its own process that reports its memory on request: used by
 * the measurements that need the server's memory apart from the load generator's.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MOORING_SERVE_NODE_FLAGS } from '../bench-config.ts';
import type { LoopDelay } from '../servers/server-child.ts';

export interface ServerMemory {
  rss: number;
  heapUsed: number;
  external: number;
  /** Memory V8's young generation holds (its pages' physical size), bytes. */
  youngGeneration: number;
  connections: number;
}

export type { LoopDelay };

export interface MemoryReportingServer {
  port: number;
  pid: number;
  /** Memory after a forced GC (`gc: false`: as it is, without pausing the server for a collection). */
  memory(gc?: boolean): Promise<ServerMemory>;
  /** Writes a heap snapshot to `path` (after a forced GC); resolves once written. */
  heapSnapshot(path: string): Promise<void>;
  /** How late the server's event loop ran since the previous call (ms). */
  loopDelay(): Promise<LoopDelay>;
  /** True once the process is gone (it should never be, until `stop`). */
  readonly exited: boolean;
  stop(): Promise<void>;
}

export interface ListenAt {
  /** Default 0: any free port. */
  port?: number;
  /** Share the port with the other servers started with it (SO_REUSEPORT; Linux). */
  reusePort?: boolean;
  /** The Redis store on this redis-server instead of the memory store. */
  redisUrl?: string;
  /** The SQLite store in this file instead of the memory store. */
  sqlitePath?: string;
}

export async function startMemoryReportingServer(
  nodeFlags: string[] = [],
  limits: Record<string, number> = {},
  at: ListenAt = {},
): Promise<MemoryReportingServer> {
  const child = fork(fileURLToPath(new URL('./memory-server-child.ts', import.meta.url)), [], {
    execArgv: ['--expose-gc', ...MOORING_SERVE_NODE_FLAGS, ...nodeFlags],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: {
      ...process.env,
      MOORING_BENCH_LIMITS: JSON.stringify(limits),
      MOORING_BENCH_PORT: String(at.port ?? 0),
      MOORING_BENCH_REUSE_PORT: at.reusePort ? '1' : '0',
      MOORING_BENCH_REDIS_URL: at.redisUrl ?? '',
      MOORING_BENCH_SQLITE_PATH: at.sqlitePath ?? '',
    },
  });
  const killChild = () => child.kill('SIGKILL');
  process.on('exit', killChild);
  let exited = false;
  child.on('exit', () => {
    exited = true;
    process.off('exit', killChild);
  });
  // an answer, or a rejection once the process is gone (a server that failed to start never hangs us)
  const next = <T>(type: string) =>
    new Promise<T>((resolve, reject) => {
      const gone = (code: number | null, signal: string | null) =>
        reject(new Error(`memory-reporting server exited (${code ?? signal}) before answering '${type}'`));
      if (child.exitCode !== null || child.signalCode !== null) {
        gone(child.exitCode, child.signalCode);
        return;
      }
      const on = (msg: { type: string }) => {
        if (msg.type === type) {
          child.off('message', on);
          child.off('exit', gone);
          resolve(msg as T);
        }
      };
      child.on('message', on);
      child.once('exit', gone);
    });
  const { port } = await next<{ port: number }>('ready');
  return {
    port,
    pid: child.pid ?? -1,
    get exited() {
      return exited;
    },
    async memory(gc = true) {
      child.send({ type: 'memory', gc });
      return next<ServerMemory & { type: string }>('memory');
    },
    async heapSnapshot(path: string) {
      child.send({ type: 'snapshot', path });
      await next<{ type: string }>('snapshot');
    },
    async loopDelay() {
      child.send({ type: 'loop' });
      return (await next<{ type: string; delay: LoopDelay }>('loop')).delay;
    },
    async stop() {
      child.send({ type: 'stop' });
      await new Promise((r) => setTimeout(r, 300));
      child.kill('SIGKILL');
    },
  };
}
