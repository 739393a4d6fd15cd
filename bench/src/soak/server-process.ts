/**
 * The soak's server: a real `mooring serve` as a child process, which the orchestrator SIGKILLs and
 * starts again on the same port (and data directory). The fault proxies keep pointing at that port, so
 * clients see the crash as resets and refused connections until the new process listens. Its RSS is
 * sampled from /proc for the summary (bounded memory).
 *
 * With SQLite there is one process on its data directory. With Redis (`redis` given) several nodes
 * share one port (`--reuse-port`: the kernel spreads new connections over them) and one redis-server;
 * a kill hits one node, and the others carry on (a client reconnecting lands on any node).
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
  /** Use the Redis store at this URL, sharing the port with the other nodes. */
  redis?: string;
  /** The port to listen on (a node joining the others); default: 0 the first time, then the same. */
  port?: number;
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
    this.#port = options.port ?? 0;
  }

  get port(): number {
    return this.#port;
  }

  /** Listens on this port from the next start (a node joining the others on theirs). */
  set port(port: number) {
    this.#port = port;
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
        ...(this.#o.redis === undefined
          ? ['--store', 'sqlite']
          : ['--store', 'redis', '--redis', this.#o.redis, '--reuse-port']),
        '--heartbeat',
        this.#o.heartbeat,
        '--log-level',
        'info', // lease expiries included: the soak keeps each node's log in its data folder
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

/**
 * The soak's servers: one (SQLite) or several nodes on one port (Redis). Kills go round the nodes;
 * the summary's RSS is the lowest and highest any node had.
 */
export class ServerNodes {
  readonly nodes: ServerProcess[];
  #next = 0;

  constructor(nodes: ServerProcess[]) {
    this.nodes = nodes;
  }

  /** The port every node listens on (the proxies point at it). */
  get port(): number {
    return this.nodes[0]!.port;
  }

  get starts(): number {
    return this.nodes.reduce((n, node) => n + node.starts, 0);
  }

  get rssMin(): number {
    return Math.min(...this.nodes.map((node) => node.rssMin));
  }

  get rssMax(): number {
    return Math.max(...this.nodes.map((node) => node.rssMax));
  }

  get pids(): string {
    return this.nodes.map((node) => node.pid).join(', ');
  }

  /** Starts the first node on a free port, then the others on the same one. */
  async start(): Promise<void> {
    await this.nodes[0]!.start();
    for (const node of this.nodes.slice(1)) {
      node.port = this.port;
      await node.start();
    }
  }

  /** The node the next kill hits. */
  victim(): ServerProcess {
    const node = this.nodes[this.#next % this.nodes.length]!;
    this.#next++;
    return node;
  }

  killNow(): void {
    for (const node of this.nodes) node.killNow();
  }

  async kill(): Promise<void> {
    for (const node of this.nodes) await node.kill();
  }

  sample(): void {
    for (const node of this.nodes) node.sample();
  }
}
