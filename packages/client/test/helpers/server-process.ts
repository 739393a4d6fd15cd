/**
 * A real `mooring serve` process (SQLite in a temp dir), for tests that kill a server with SIGKILL
 * and start it again on the same data and the same address.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { KEY } from './real-server.ts';

const CLI = fileURLToPath(new URL('../../../server/src/cli.ts', import.meta.url));

export interface ServerProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** Resolves with the exit code or signal once the process is gone. */
  exited: Promise<number | string>;
}

/** Starts `mooring serve` on `port` (0: any free port); resolves once it listens. */
export async function spawnServer(
  dataDir: string,
  port: number,
  args: string[] = [],
): Promise<ServerProcess> {
  const child = spawn(
    process.execPath,
    [
      CLI,
      'serve',
      '--store',
      'sqlite',
      '--data',
      dataDir,
      '--port',
      String(port),
      '--log-level',
      'warn',
      ...args,
    ],
    { env: { ...process.env, MOORING_KEY: KEY }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = new Promise<number | string>((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  const url = await new Promise<string>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`mooring serve did not start:\n${err}`)), 20_000);
    child.stderr?.on('data', (d) => {
      err += d;
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', () => {
      clearTimeout(timer);
      reject(new Error(`mooring serve exited before listening:\n${err}`));
    });
  });
  return { url, port: Number(new URL(url).port), child, exited };
}

/** A temp data dir removed when the test ends (after the processes it names are killed). */
export async function dataDir(t: TestContext, processes: () => ServerProcess[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mooring-client-'));
  t.after(async () => {
    for (const p of processes()) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
      await p.exited;
    }
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}
