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
  t.after(() => within(server.close(), 'server.close()'));
  return server;
}

export async function proxyTo(t: TestContext, server: { port: number }): Promise<FaultProxy> {
  const proxy = await FaultProxy.start({ port: server.port });
  t.after(() => within(proxy.close(), `FaultProxy.close() (${proxy.url('/')})`));
  return proxy;
}

/** Cleanup that cannot hang a test run: a close that does not finish in 15 s fails the test, saying which. */
async function within(closing: Promise<void>, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within 15 s`)), 15_000);
  });
  try {
    await Promise.race([closing, expired]);
  } finally {
    clearTimeout(timer);
  }
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
