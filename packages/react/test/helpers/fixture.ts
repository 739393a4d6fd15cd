/**
 * Real parts for the React tests: a Mooring server on 127.0.0.1 port 0 (optionally behind a
 * FaultProxy), clients closed when the test ends, a fresh session channel per test, and agents.
 */
import { randomUUID } from 'node:crypto';
import type { TestContext } from 'node:test';
import { AgentSession } from '@mooring/ai';
import type { MooringOptions } from '@mooring/client';
import { Mooring } from '@mooring/client';
import type { MooringServer, ServerOptions } from '@mooring/server';
import { startServer } from '@mooring/server';
import { FaultProxy, waitFor } from '@mooring/testkit';
import type { UIMessage } from 'ai';

export const KEY = 'test:secret';

export async function realServer(t: TestContext, options: ServerOptions = {}): Promise<MooringServer> {
  const server = await startServer({
    port: 0,
    host: '127.0.0.1',
    keys: [KEY],
    store: { kind: 'memory' },
    logger: 'silent',
    ...options,
  });
  t.after(() => server.close());
  return server;
}

export { restartRedis } from '@mooring/testkit';

export async function proxyTo(t: TestContext, server: { port: number }): Promise<FaultProxy> {
  const proxy = await FaultProxy.start({ port: server.port });
  t.after(() => proxy.close());
  return proxy;
}

/** Client options for tests: an API key, quick retries, no browser hooks. */
export function clientOptions(url: string, options: Partial<MooringOptions> = {}): MooringOptions {
  return {
    url,
    key: KEY,
    environment: null,
    initialRetryDelay: 10,
    disconnectedRetryTimeout: 100,
    ...options,
  };
}

export function client(t: TestContext, url: string, options: Partial<MooringOptions> = {}): Mooring {
  const c = new Mooring(clientOptions(url, options));
  t.after(() => c.close());
  return c;
}

export function sessionName(): string {
  return `session:${randomUUID()}`;
}

export function textOf(message: UIMessage | undefined): string {
  return (message?.parts ?? []).map((p) => (p.type === 'text' ? p.text : '')).join('');
}

/**
 * An agent that answers "answer: <input text>" — or, for input "slow", streams `tok<i> ` until
 * cancelled (so tests can act mid-answer).
 */
export async function agent(t: TestContext, url: string, channel: string): Promise<AgentSession> {
  const session = new AgentSession({
    channel: client(t, url, { clientId: 'assistant' }).channels.get(channel, { start: true }),
    agent: 'assistant',
    coalesceMs: 0,
    onInput: async (input, run) => {
      const text = textOf(input.message);
      if (text !== 'slow') {
        run.writeText(`answer: ${text}`);
        return;
      }
      run.write({ type: 'text-start', id: 't' });
      for (let i = 0; !run.signal.aborted && i < 2000; i++) {
        run.write({ type: 'text-delta', id: 't', delta: `tok${i} ` });
        await new Promise((r) => setTimeout(r, 10));
      }
      run.write({ type: 'text-end', id: 't' });
    },
  });
  t.after(() => session.close());
  await session.start();
  return session;
}

export { waitFor };
