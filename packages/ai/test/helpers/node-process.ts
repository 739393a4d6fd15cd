/**
 * A Mooring node in its own process (`mooring serve --store redis --port 0`), for the node-loss tests:
 * it can be killed with SIGKILL like a crashed machine. Its port is read from the "listening on" line
 * the CLI prints once it listens.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { KEY } from './fixture.ts';

const CLI = fileURLToPath(new URL('../../../server/src/cli.ts', import.meta.url));

export interface NodeProcess {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** Resolves once the process has exited. */
  readonly exited: Promise<void>;
  /** SIGKILL, then wait for the exit. */
  kill(): Promise<void>;
  output(): string;
}

export async function spawnNode(
  name: string,
  redisUrl: string,
  env: Record<string, string> = {},
): Promise<NodeProcess> {
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--store', 'redis', '--redis', redisUrl, '--port', '0', '--log-level', 'warn'],
    { env: { ...process.env, MOORING_KEY: KEY, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node ${name} did not start:\n${output}`)), 30_000);
    const read = (chunk: Buffer) => {
      output += chunk;
      const m = /listening on (http:\/\/[^\s]+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`node ${name} exited before listening:\n${output}`));
    });
  });
  return {
    name,
    url,
    port: Number(new URL(url).port),
    child,
    exited,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    output: () => output,
  };
}
