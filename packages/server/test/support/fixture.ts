/**
 * Real servers for tests: in-process on 127.0.0.1 port 0, with a memory store, a SQLite store in a
 * temp dir, or a Redis store on a redis-server of its own (started and removed with the fixture).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RedisServer, startRedis } from '@mooring/testkit';
import { type MooringServer, type ServerOptions, startServer } from '../../src/index.ts';

export const TEST_KEY = 'test:secret';

export interface Fixture {
  server: MooringServer;
  dir: string;
  /** Stops the server (if running) and starts a new one on the same data dir; returns it. */
  restart(overrides?: Partial<ServerOptions>): Promise<MooringServer>;
  close(): Promise<void>;
}

export async function startFixture(
  kind: 'memory' | 'sqlite' | 'redis' = 'memory',
  options: Partial<ServerOptions> = {},
): Promise<Fixture> {
  const dir = await mkdtemp(join(tmpdir(), 'mooring-test-'));
  const redis: RedisServer | undefined = kind === 'redis' ? await startRedis() : undefined;
  const make = (overrides: Partial<ServerOptions> = {}) =>
    startServer({
      host: '127.0.0.1',
      port: 0,
      keys: [TEST_KEY],
      store:
        kind === 'memory'
          ? { kind: 'memory' }
          : redis
            ? { kind: 'redis', url: redis.url }
            : { kind: 'sqlite', path: join(dir, 'mooring.db') },
      ...options,
      ...overrides,
    });
  const fixture: Fixture = {
    server: await make(),
    dir,
    async restart(overrides) {
      await fixture.server.close();
      fixture.server = await make(overrides);
      return fixture.server;
    },
    async close() {
      await fixture.server.close();
      await redis?.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return fixture;
}

/** The server's `/metrics` text, read with the test key. */
export async function metricsText(server: MooringServer): Promise<string> {
  const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${TEST_KEY}` } });
  return res.text();
}

/** The value of the first line of Prometheus `text` that starts with `series`; undefined if none. */
export function metricValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

export async function rest(
  server: MooringServer,
  path: string,
  init: {
    method?: string;
    body?: unknown;
    raw?: string;
    key?: string | null;
    headers?: Record<string, string>;
  } = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...init.headers };
  if (init.key !== null) headers.authorization = `Bearer ${init.key ?? TEST_KEY}`;
  const res = await fetch(server.url + path, {
    method: init.method ?? (init.body !== undefined || init.raw !== undefined ? 'POST' : 'GET'),
    headers,
    ...(init.raw !== undefined
      ? { body: init.raw }
      : init.body !== undefined
        ? { body: JSON.stringify(init.body) }
        : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}
