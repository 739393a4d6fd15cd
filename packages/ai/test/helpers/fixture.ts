/**
 * Real parts for the AI session tests: a Mooring server on 127.0.0.1 port 0 (optionally behind a
 * FaultProxy), clients closed when the test ends, and a fresh session channel name per test.
 */
import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import type { MooringOptions } from '@mooring/client';
import { Mooring } from '@mooring/client';
import type { MooringServer, ServerOptions } from '@mooring/server';
import { startServer } from '@mooring/server';
import { FaultProxy, waitFor } from '@mooring/testkit';

export const KEY = 'test:secret';

export async function realServer(t: TestContext, options: ServerOptions = {}): Promise<MooringServer> {
  const server = await startServer({
    port: 0,
    host: '127.0.0.1',
    keys: [KEY],
    store: { kind: 'memory' },
    ...options,
  });
  t.after(() => server.close());
  return server;
}

export async function proxyTo(t: TestContext, server: { port: number }): Promise<FaultProxy> {
  const proxy = await FaultProxy.start({ port: server.port });
  t.after(() => proxy.close());
  return proxy;
}

/** Timings that keep retries quick on a real clock; no assertion depends on them. */
export const FAST = { initialRetryDelay: 10, disconnectedRetryTimeout: 100 } as const;

export function client(t: TestContext, url: string, options: Partial<MooringOptions> = {}): Mooring {
  const c = new Mooring({ url, key: KEY, environment: null, ...FAST, ...options });
  t.after(() => c.close());
  return c;
}

export function sessionName(): string {
  return `session:${randomUUID()}`;
}

export { waitFor };
export { restartRedis, within } from '@mooring/testkit';
