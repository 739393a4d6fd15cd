/**
 * A real `redis-server` for tests: spawned on a free 127.0.0.1 port in a temp dir, ready when it
 * answers PING and its INFO names this process, killed (gracefully, or with SIGKILL for crash tests) and cleaned up by the test.
 *
 * Redis cannot listen on port 0, so a free port is found by binding a socket to port 0 and closing
 * it; a lost race (another process takes the port first) is retried on a new port. `restart()` starts
 * a new process on the same port and directory, so an AOF written before is replayed.
 *
 * Tests that need Redis call `redisServerPath()` first and skip with its message when it is missing
 * locally; CI installs `redis-server` (.ci/run), so there they always run.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './wait.ts';

export interface RedisServerOptions {
  /** Turn on the append-only file (`appendfsync` as given; default off, like a cache). */
  appendonly?: false | 'everysec' | 'always';
  /** `maxmemory-policy` (default `noeviction`, the only policy Mooring accepts). */
  maxmemoryPolicy?: string;
  /** Extra `--name value` arguments. */
  args?: string[];
  /** Give up waiting for readiness after this many ms. Default 10,000. */
  timeout?: number;
  /** Highest port to use (a Cluster node also listens on its port + 10,000). Default 65,535. */
  maxPort?: number;
}

export interface RedisServer {
  readonly host: string;
  readonly port: number;
  /** `redis://127.0.0.1:<port>` */
  readonly url: string;
  readonly dir: string;
  /** Stops the process: SIGTERM (Redis flushes its AOF) or SIGKILL (a crash). */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Starts the process again on the same port and data directory. */
  restart(): Promise<void>;
  /**
   * Freezes the process (SIGSTOP): its sockets stay open and the kernel still accepts connections
   * and buffers what clients send, but nothing is answered — a frozen host, a VM paused, a long
   * fork. `thaw()` (SIGCONT) lets it go on with what it was sent meanwhile.
   */
  freeze(): void;
  thaw(): void;
  /** Sends one command and returns the raw RESP reply text (for FLUSHALL, CONFIG SET, DEBUG in tests). */
  command(...args: string[]): Promise<string>;
  /** Stops the process (SIGKILL) and removes the directory. */
  close(): Promise<void>;
}

const CANDIDATES = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'];

/** The redis-server binary, or undefined when none is installed. */
export function redisServerPath(): string | undefined {
  const fromEnv = process.env.REDIS_SERVER;
  if (fromEnv && existsSync(fromEnv)) return fromEnv;
  for (const path of CANDIDATES) if (existsSync(path)) return path;
  try {
    return execFileSync('which', ['redis-server'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Why Redis tests are skipped here, or undefined when redis-server is available. */
export function redisSkipReason(): string | undefined {
  return redisServerPath()
    ? undefined
    : 'redis-server is not installed (apt-get install redis-server); .ci/run installs it so CI runs these tests';
}

async function freePortBelow(max: number): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await freePort();
    if (port <= max) return port;
  }
  throw new Error(`no free port at or below ${max}`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Sends one RESP command over a fresh socket and resolves with the first complete reply's text. */
function rawCommand(port: number, args: string[], timeout = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis on port ${port} did not answer ${args[0]}`));
    }, timeout);
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('data', (chunk) => {
      text += chunk.toString('utf8');
      if (text.endsWith('\r\n')) {
        clearTimeout(timer);
        socket.end();
        resolve(text);
      }
    });
    const encoded = args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');
    socket.write(`*${args.length}\r\n${encoded}`);
  });
}

export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  const binary = redisServerPath();
  if (!binary) throw new Error(redisSkipReason());
  const dir = await mkdtemp(join(tmpdir(), 'mooring-redis-'));
  let port = 0;
  let child: ChildProcess | undefined;
  let log = '';

  const args = (): string[] => {
    const list = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--daemonize',
      'no',
      '--maxmemory-policy',
      options.maxmemoryPolicy ?? 'noeviction',
    ];
    if (options.appendonly) list.push('--appendonly', 'yes', '--appendfsync', options.appendonly);
    else list.push('--appendonly', 'no');
    return [...list, ...(options.args ?? [])];
  };

  const launch = async (): Promise<void> => {
    const proc = spawn(binary, args(), { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    let gone = false;
    void exited.then(() => {
      gone = true;
    });
    proc.stdout?.on('data', (chunk: Buffer) => {
      log = (log + chunk.toString('utf8')).slice(-4000);
    });
    proc.stderr?.on('data', (chunk: Buffer) => {
      log = (log + chunk.toString('utf8')).slice(-4000);
    });
    const deadline = performance.now() + (options.timeout ?? 10_000);
    for (;;) {
      if (gone) throw new Error(`redis-server exited at start:\n${log}`);
      try {
        // PING is refused while the AOF loads; INFO's process id tells this server from another
        // that took the port first (it answers PING as well)
        const reply = await rawCommand(port, ['PING'], 500);
        if (reply.startsWith('+PONG')) {
          const info = await rawCommand(port, ['INFO', 'server'], 500);
          if (info.includes(`process_id:${proc.pid}\r\n`)) return;
        }
      } catch {
        // not listening yet (or still loading the AOF)
      }
      if (performance.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server did not become ready on port ${port}:\n${log}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    if (signal === 'SIGTERM') proc.kill('SIGCONT'); // a frozen process takes SIGTERM only once thawed
    await exited;
  };

  for (let attempt = 0; ; attempt++) {
    port = await freePortBelow(options.maxPort ?? 65_535);
    try {
      await launch();
      break;
    } catch (err) {
      await stop('SIGKILL');
      // "Address already in use": someone took the port between the probe and the bind.
      if (attempt < 3 && /in use/i.test(log)) continue;
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  return {
    host: '127.0.0.1',
    get port() {
      return port;
    },
    get url() {
      return `redis://127.0.0.1:${port}`;
    },
    dir,
    stop,
    async restart() {
      await stop('SIGTERM');
      await launch();
    },
    freeze() {
      child?.kill('SIGSTOP');
    },
    thaw() {
      child?.kill('SIGCONT');
    },
    command: (...command: string[]) => rawCommand(port, command),
    async close() {
      await stop('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A Redis crash under a running Mooring server: SIGKILL, started again on its data (what its
 * persistence kept), then waits until `server` answers `/ready` 200 on it again.
 */
export async function restartRedis(redis: RedisServer, server: { url: string }): Promise<void> {
  await redis.stop('SIGKILL');
  await redis.restart();
  await waitFor(async () => (await fetch(`${server.url}/ready`)).status === 200, {
    message: 'the server is ready on the restarted Redis',
  });
}
