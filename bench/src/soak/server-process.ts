/**
 * The soak's server: a real `mooring serve` (SQLite in a data directory) as a child process, which
 * the orchestrator SIGKILLs and starts again on the same port and data directory. The fault proxies
 * keep pointing at that port, so clients see the crash as resets and refused connections until the
 * new process listens. Its RSS is sampled from /proc for the summary (bounded memory).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../../packages/server/src/cli.ts', import.meta.url));

export interface ServerOptions {
  dataDir: string;
  key: string;
  heartbeat: string;
  /** Where the server's log goes (appended). */
  log: (line: string) => void;
}

export class ServerProcess {
  readonly #o: ServerOptions;
  #child: ChildProcess | undefined;
  #port = 0;
  rssMin = Number.POSITIVE_INFINITY;
  rssMax = 0;
  starts = 0;

  constructor(options: ServerOptions) {
    this.#o = options;
  }

  get port(): number {
    return this.#port;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts `mooring serve` (port 0 the first time, then the same port); resolves once it listens. */
  async start(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#spawn();
        this.starts++;
        return;
      } catch (err) {
        // The port can be briefly busy right after a kill; try again a few times.
        if (attempt >= 20) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }

  async #spawn(): Promise<void> {
    const child = spawn(
      process.execPath,
      [
        CLI,
        'serve',
        '--port',
        String(this.#port),
        '--data',
        this.#o.dataDir,
        '--store',
        'sqlite',
        '--heartbeat',
        this.#o.heartbeat,
        '--log-level',
        'warn',
      ],
      { env: { ...process.env, MOORING_KEY: this.#o.key }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.#child = child;
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => this.#o.log(line));
    const port = await new Promise<number>((resolve, reject) => {
      const err = createInterface({ input: child.stderr! });
      err.on('line', (line) => {
        this.#o.log(line);
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
        if (m) resolve(Number(m[1]));
      });
      child.once('exit', (code, signal) => reject(new Error(`mooring serve exited (${code ?? signal})`)));
    });
    this.#port = port;
  }

  /** SIGKILL now, without waiting (for process exit handlers). */
  killNow(): void {
    this.#child?.kill('SIGKILL');
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGKILL');
    await gone;
  }

  /** Samples the RSS (kB from /proc, reported in MiB). */
  sample(): void {
    const pid = this.#child?.pid;
    if (pid === undefined) return;
    try {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
      if (!m) return;
      const mib = Number(m[1]) / 1024;
      this.rssMin = Math.min(this.rssMin, mib);
      this.rssMax = Math.max(this.rssMax, mib);
    } catch {
      // between a kill and the restart
    }
  }
}
