/** Starts `server-child.ts` in a child process and resolves with its URL and a stop function. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ServerOptions } from '@mooring/server';

const CHILD = fileURLToPath(new URL('./server-child.ts', import.meta.url));

export async function childServer(
  options: ServerOptions,
): Promise<{ url: string; port: number; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [CHILD, JSON.stringify(options)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening (\S+)/.exec(out);
      if (m?.[1]) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`server child exited (${code})`)));
  });
  return {
    url,
    port: Number(new URL(url).port),
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

const PUBLISHER = fileURLToPath(new URL('./publisher-child.ts', import.meta.url));

/** Publishes from another process (see publisher-child.ts); resolves once everything is stored. */
export function publishFromChild(
  url: string,
  key: string,
  spec: { channels?: string[]; channel?: string; count?: number; size: number },
): Promise<void> {
  const child = spawn(process.execPath, [PUBLISHER, url, key, JSON.stringify(spec)], { stdio: 'inherit' });
  return new Promise((resolve, reject) =>
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`publisher exited ${code}`)))),
  );
}
