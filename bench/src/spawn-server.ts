/**
 * Parent side of the benchmark server processes (see servers/server-child.ts). Each server under test
 * runs in its own child so its CPU time is its own and the load generator never shares an event
 * loop with it. Every child is killed when this process exits, however it exits.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { createInterface } from 'node:readline';
import { MOORING_SERVE_NODE_FLAGS } from './bench-config.ts';
import { processCpuSeconds } from './cpu-usage.ts';
import type { ChildReport, ChildRequest } from './servers/server-child.ts';

const live = new Set<ChildProcess>();

function killAll(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
}

process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping servers\n`);
    killAll();
    process.exit(130);
  });
}

export interface ServerProcess {
  readonly port: number;
  readonly pid: number;
  /**
   * The child's cumulative CPU time (µs), all threads: from /proc on Linux (10 ms resolution),
   * otherwise asked over IPC (late when the child is busy).
   */
  cpuUsage(): Promise<NodeJS.CpuUsage>;
  /** Sends `{ type }` over IPC and resolves with the child's first report of the same type. */
  ask<T>(type: string, timeoutMs?: number): Promise<T>;
  /** Asks the server to close, then kills it if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** Server log lines forwarded to stderr per process; the rest are counted, not shown. */
const MAX_LOG_LINES = 10;

/**
 * Forwards the first lines a child writes on stdout to our stderr (stdout carries the markdown
 * results, and a failing server can log thousands of lines).
 */
function forwardLog(child: ChildProcess, label: string): void {
  if (child.stdout === null) return;
  let lines = 0;
  const reader = createInterface({ input: child.stdout });
  reader.on('line', (line) => {
    lines++;
    if (lines <= MAX_LOG_LINES) process.stderr.write(`  [${label} log] ${line.slice(0, 500)}\n`);
  });
  reader.on('close', () => {
    if (lines > MAX_LOG_LINES) {
      process.stderr.write(`  [${label} log] … ${lines - MAX_LOG_LINES} more lines not shown\n`);
    }
  });
}

export interface SpawnOptions {
  /** Name used when forwarding the server's log lines. Default: the module's file name. */
  label?: string;
  /** Extra argv for the child. */
  args?: string[];
  /** How long the server may take to report its port, in ms. Default 15 000. */
  readyTimeoutMs?: number;
  /** Node options of the child (e.g. `--cpu-prof`). */
  execArgv?: string[];
}

export async function spawnServer(modulePath: string, options: SpawnOptions = {}): Promise<ServerProcess> {
  // mooring-server.ts stands for `mooring serve`: it runs with the Node flags that command sets, as
  // does an app embedding the server (ai/mooring-embedded.ts), as the README tells it to
  const mooring =
    modulePath.endsWith('/servers/mooring-server.ts') || modulePath.endsWith('/ai/mooring-embedded.ts');
  const execArgv = [...(mooring ? MOORING_SERVE_NODE_FLAGS : []), ...(options.execArgv ?? [])];
  const child = fork(modulePath, options.args ?? [], {
    execPath: process.execPath,
    ...(execArgv.length === 0 ? {} : { execArgv: [...process.execArgv, ...execArgv] }),
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    serialization: 'json',
  });
  live.add(child);
  forwardLog(child, options.label ?? modulePath.slice(modulePath.lastIndexOf('/') + 1));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  exited.then(() => live.delete(child));

  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => fail(new Error(`server ${modulePath} not ready after timeout`)),
      options.readyTimeoutMs ?? 15000,
    );
    const fail = (error: Error): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(error);
    };
    child.on('message', (report: ChildReport) => {
      if (report.type === 'ready') {
        clearTimeout(timer);
        resolve(report.port);
      } else if (report.type === 'failed') fail(new Error(report.error));
    });
    child.once('exit', (code, signal) => fail(new Error(`server ${modulePath} exited (${code ?? signal})`)));
  });

  let nextId = 1;
  const request = (message: ChildRequest): void => {
    if (child.connected) child.send(message);
  };
  return {
    port,
    pid: child.pid ?? -1,
    cpuUsage() {
      const fromProc = child.pid === undefined ? undefined : processCpuSeconds(child.pid);
      if (fromProc !== undefined) return Promise.resolve({ user: fromProc * 1e6, system: 0 });
      const id = nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          child.off('message', onMessage);
          reject(new Error('server did not answer a cpu query in 5 s'));
        }, 5000);
        const onMessage = (report: ChildReport): void => {
          if (report.type === 'cpu' && report.id === id) {
            clearTimeout(timer);
            child.off('message', onMessage);
            resolve(report.usage);
          }
        };
        child.on('message', onMessage);
        request({ type: 'cpu', id });
      });
    },
    ask<T>(type: string, timeoutMs = 15000) {
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          child.off('message', onMessage);
          reject(new Error(`no '${type}' answer from ${modulePath} in ${timeoutMs} ms`));
        }, timeoutMs);
        const onMessage = (report: { type: string }): void => {
          if (report.type !== type) return;
          clearTimeout(timer);
          child.off('message', onMessage);
          resolve(report as T);
        };
        child.on('message', onMessage);
        if (child.connected) child.send({ type });
      });
    },
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      request({ type: 'stop' });
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
