/**
 * Redis that stops answering without closing the connection (PROTOCOL.md §15): a FaultProxy in
 * blackhole mode between the node and a real redis-server. Publishes must fail with a retryable
 * `store_unavailable` within the command timeout (never hang, never be acknowledged unstored),
 * `/ready` says 503, connected clients keep their sessions, and everything works again once the
 * network does — the node replaces its dead command connection by itself.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FaultProxy, redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { type MooringServer, startServer } from '../src/index.ts';
import { RedisHub } from '../src/redis-hub.ts';
import { RedisStore } from '../src/store/redis-store.ts';
import { rest, TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const skip = redisSkipReason();

if (skip) {
  describe('Redis trouble', () => {
    it('needs redis-server', (t) => t.skip(skip));
  });
} else {
  describe('Redis trouble: a blackholed Redis', () => {
    it('publishes fail with a retryable store_unavailable within the command timeout; sessions survive; all works again after', async (t) => {
      const redis = await startRedis();
      t.after(() => redis.close());
      const proxy = await FaultProxy.start({ port: redis.port });
      t.after(() => proxy.close());
      const server: MooringServer = await startServer({
        host: '127.0.0.1',
        port: 0,
        keys: [TEST_KEY],
        store: { kind: 'redis', url: `redis://127.0.0.1:${proxy.port}`, commandTimeout: 300 },
        // the bus connection stays dead after the blackhole (a blackholed flow never revives): the
        // position check must find what was stored, so check often
        hub: (store) => RedisHub.open({ store: store as RedisStore, checkInterval: 100 }),
      });
      t.after(() => server.close());
      assert.ok(server.store instanceof RedisStore);
      const channel = 'session:blackhole';
      const pub = await RawClient.connect(server.url, { clientId: 'agent' });
      const sub = await RawClient.connect(server.url);
      await sub.attach(channel);
      const first = await pub.publish(channel, [{ id: 'before', data: 'before' }]);

      proxy.blackhole();
      const refused = await pub.request({ type: 'publish', channel, ops: [{ id: 'during', data: 'x' }] });
      assert.equal(refused.type, 'error', JSON.stringify(refused));
      assert.ok(
        refused.type === 'error' && refused.error.code === 'store_unavailable',
        JSON.stringify(refused),
      );
      assert.ok(refused.type === 'error' && refused.error.retryable);
      assert.equal((await rest(server, '/ready')).status, 503);
      // the sessions are still there: the server answers on them
      const pong = await sub.request({ type: 'ping' });
      assert.equal(pong.type, 'pong');

      proxy.pass();
      await waitFor(async () => (await rest(server, '/ready')).status === 200, { message: 'ready again' });
      // the client resends its unacknowledged publish with the same id: stored once
      const retried = await pub.publish(channel, [{ id: 'during', data: 'x' }]);
      const again = await pub.publish(channel, [{ id: 'during', data: 'x' }]);
      assert.equal(again.results[0]!.serial, retried.results[0]!.serial);
      assert.equal(again.results[0]!.duplicate, true);
      await waitFor(() => sub.positions.get(channel) === retried.results[0]!.serial, {
        message: 'the subscriber attached through the outage receives what is stored after it',
      });
      const stored = (await rest(server, `/v1/channels/${channel}/messages?direction=forwards`)).body
        .items as { serial: string }[];
      assert.deepEqual(
        stored.map((m) => m.serial),
        [first.results[0]!.serial, retried.results[0]!.serial],
      );
      await Promise.all([pub.close(), sub.close()]);
    });
  });
}
