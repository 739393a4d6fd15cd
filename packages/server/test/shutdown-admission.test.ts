/**
 * A shutdown tells every open connection to reconnect elsewhere (`disconnect` + 1012) and waits for
 * them to close. A WebSocket handshake whose admission was still under way when the shutdown began
 * (on Redis, the registry's and budgets' round trips) opened afterwards: it was served on, with its
 * heartbeats already stopped, never told, and `close()` waited for it until its client hung up — a
 * SIGTERM that never ended (an outside review). Such a connection is now told at once.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { deferred } from '@mooring/testkit';
import WebSocket from 'ws';
import { type ConnectionRegistry, LocalConnectionRegistry } from '../src/connection-registry.ts';
import { startServer } from '../src/index.ts';
import { TEST_KEY } from './support/fixture.ts';

it(
  'a connection admitted before the shutdown and opened after it is told to reconnect, and close() does not wait for its client',
  { timeout: 20_000 },
  async () => {
    const admitted = deferred<void>();
    const asked = deferred<void>();
    const server = await startServer({
      host: '127.0.0.1',
      port: 0,
      keys: [TEST_KEY],
      store: { kind: 'memory' },
      registry: (): ConnectionRegistry => {
        const local = new LocalConnectionRegistry(120_000);
        return {
          // the admission waits here, as on a slow Redis
          open: async (identity, recover) => {
            asked.resolve();
            await admitted.promise;
            return local.open(identity, recover);
          },
          hold: (id) => local.hold(id),
          release: (id) => local.release(id),
          unclaim: (opened) => local.unclaim(opened),
          discard: (id) => local.discard(id),
          sweep: () => local.sweep(),
        };
      },
    });
    const ws = new WebSocket(`${server.url.replace('http', 'ws')}/v1/connect?key=${TEST_KEY}&clientId=late`);
    const frames: Array<{ type: string; reason?: string }> = [];
    ws.on('message', (data) => frames.push(JSON.parse(String(data))));
    ws.on('error', () => {});
    const closedWith = new Promise<number>((resolve) => ws.once('close', resolve));
    await asked.promise;
    const closing = server.close();
    admitted.resolve(); // the admission ends after the shutdown told every connection it knew
    await closing; // would wait until the client hung up
    assert.equal(await closedWith, 1012);
    assert.deepEqual(
      frames.map((f) => f.type),
      ['connected', 'disconnect'],
    );
    assert.equal(frames[1]?.reason, 'shutting_down');
  },
);
