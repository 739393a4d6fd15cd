/**
 * A REST request over a dead link (a blackhole: no bytes, no FIN, no RST — a keep-alive socket after
 * a mobile handoff) fails within `realtimeRequestTimeout` with a retryable `network_error`, instead of
 * hanging for as long as the HTTP stack waits (minutes). Found by the soak (`npm run soak`): a
 * reloaded tab whose history read hung never went live.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { startServer } from '@mooring/server';
import { FaultProxy } from '@mooring/testkit';
import { Mooring, MooringError } from '../src/index.ts';

it('a REST request on a blackholed link fails within realtimeRequestTimeout', async (t) => {
  const server = await startServer({ port: 0, host: '127.0.0.1', keys: ['test:secret'] });
  t.after(() => server.close());
  const proxy = await FaultProxy.start({ port: server.port });
  t.after(() => proxy.close());
  const client = new Mooring({
    url: proxy.url('/'),
    key: 'test:secret',
    autoConnect: false,
    realtimeRequestTimeout: 300,
  });
  t.after(() => client.close());
  await client.channels.get('session:rest-timeout').publish('n', 'x');
  proxy.blackhole();
  const outcome = await Promise.race([
    client.rest.history('session:rest-timeout').then(
      () => 'answered',
      (err: unknown) => err,
    ),
    new Promise((resolve) => setTimeout(() => resolve('still waiting after 8 s'), 8000).unref()),
  ]);
  assert.ok(outcome instanceof MooringError, `expected a MooringError, got ${String(outcome)}`);
  assert.equal(outcome.code, 'network_error');
  assert.equal(outcome.retryable, true);
});
