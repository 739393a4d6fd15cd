/**
 * Real parts for integration tests: a Mooring server on 127.0.0.1 port 0 (optionally behind a
 * FaultProxy) and clients that are closed when the test ends.
 */
import type { TestContext } from 'node:test';
import type { MooringServer, ServerOptions } from '@mooring/server';
import { startServer } from '@mooring/server';
import { FaultProxy, waitFor } from '@mooring/testkit';
import type { MooringOptions } from '../../src/mooring.ts';
import { Mooring } from '../../src/mooring.ts';

export const KEY = 'test:s3cret';

export async function realServer(t: TestContext, options: ServerOptions = {}): Promise<MooringServer> {
  const server = await startServer({ port: 0, host: '127.0.0.1', keys: [KEY], ...options });
  t.after(() => server.close());
  return server;
}

export async function proxyTo(t: TestContext, server: { port: number }): Promise<FaultProxy> {
  const proxy = await FaultProxy.start({ port: server.port });
  t.after(() => proxy.close());
  return proxy;
}

/** Timings that keep retries quick on a real clock; the assertions never depend on them. */
export const FAST = { initialRetryDelay: 20, disconnectedRetryTimeout: 200 } as const;

export function client(t: TestContext, url: string, options: Partial<MooringOptions> = {}): Mooring {
  const c = new Mooring({ url, key: KEY, environment: null, ...FAST, ...options });
  t.after(() => c.close());
  return c;
}

export function connected(c: Mooring, message = 'client never connected'): Promise<true> {
  return waitFor(() => c.connection.state === 'connected', { message });
}

export { waitFor };
