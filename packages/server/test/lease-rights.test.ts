/**
 * Leases follow a narrowed token (PROTOCOL.md §7.1, §5.4, §14). A connection renewed (`auth`), or
 * recovered (`recover=`), with a token that may not take leases on a channel any more — none of
 * `publish`, `update-any`, `append-own`, `update-own` there — lets its leases on that channel go: they
 * run out as if it had dropped, and the run ends `abandoned`. Before, they were carried over, so a
 * revoked operator's run stayed "streaming" for as long as its connection lived. A token that still
 * may take them (`publish` alone, or `append-own` alone on its own run) keeps them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Message } from '@mooring/protocol';
import { redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { createToken } from '../src/index.ts';
import { RedisLeases } from '../src/redis-leases.ts';
import { connectRedis } from '../src/store/redis-connection.ts';
import { type Fixture, startFixture, TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const LEASE = 300;
const WRITER = { 'session:*': ['subscribe', 'publish', 'append-own', 'update-own'] };
/** What the operator keeps once its rights to write were taken away. */
const READER = { 'session:*': ['subscribe', 'history'] };

const abandoned = (c: RawClient, channel: string) =>
  c.messages(channel).filter((m) => m.action === 'update' && m.headers?.status === 'abandoned');

for (const kind of ['memory', 'sqlite', 'redis'] as const) {
  describe(
    `leases of a connection whose token narrowed (${kind})`,
    { skip: kind === 'redis' ? redisSkipReason() : false },
    () => {
      let fx: Fixture;
      before(async () => {
        // Redis: overdue leases are swept every 100 ms
        fx = await startFixture(kind, { sweepInterval: 100 });
      });
      after(() => fx.close());

      const token = async (capability: Record<string, string[]>) =>
        (await createToken(TEST_KEY, { clientId: 'operator', capability })).token;

      /** A watcher on `channel`, and the operator streaming a run there with a lease. */
      async function streaming(channel: string) {
        const watcher = await RawClient.connect(fx.server.url);
        await watcher.attach(channel);
        const operator = await RawClient.connect(fx.server.url, { token: await token(WRITER) });
        const ack = await operator.publish(channel, [
          { id: 'run', name: 'ai.run', data: '', headers: { status: 'streaming' }, lease: LEASE },
        ]);
        const serial = ack.results[0]!.serial;
        await operator.publish(channel, [{ action: 'append', serial, id: 'run:1', data: 'partial' }]);
        return { watcher, operator, serial };
      }

      /** Waits for the run to be marked abandoned (as after a drop), and checks it is that run. */
      async function endsAbandoned(watcher: RawClient, channel: string, serial: string): Promise<void> {
        const update = (await watcher.next(
          (f) =>
            f.type === 'messages' &&
            f.channel === channel &&
            f.messages.some((m) => m.headers?.status === 'abandoned'),
        )) as { messages: Message[] };
        const m = update.messages.find((x) => x.headers?.status === 'abandoned')!;
        assert.equal(m.serial, serial);
      }

      /**
       * Lets the lease run out, had it been let go (three lease lengths: the Redis sweep comes on
       * top), then a sentinel, awaited: an `abandoned` update stored by an expiry came before it.
       */
      async function stillStreaming(watcher: RawClient, channel: string): Promise<void> {
        await sleep(LEASE * 3);
        const other = await RawClient.connect(fx.server.url);
        const sentinel = await other.publish(channel, [{ id: 'sentinel', data: 'after the lease' }]);
        await watcher.next(
          (f) => f.type === 'messages' && f.messages.some((m) => m.serial === sentinel.results[0]!.serial),
        );
        assert.deepEqual(abandoned(watcher, channel), [], 'the run was abandoned');
        await other.close();
      }

      it('renewed to a token that may not write the channel: the run ends abandoned while the connection lives', async () => {
        const channel = 'session:renew-narrower';
        const { watcher, operator, serial } = await streaming(channel);
        assert.equal(
          (await operator.request({ type: 'auth', token: await token(READER) })).type,
          'authorized',
        );
        await endsAbandoned(watcher, channel, serial);
        assert.equal(operator.closeCode, undefined, 'the connection lives on');
        await Promise.all([watcher.close(), operator.close()]);
      });

      it('renewed to a token that still allows publish there: the lease holds', async () => {
        const channel = 'session:renew-same';
        const { watcher, operator, serial } = await streaming(channel);
        // narrower elsewhere, and on this channel `publish` alone: it may still take leases here
        const renewed = await token({ 'session:renew-same': ['subscribe', 'publish'] });
        assert.equal((await operator.request({ type: 'auth', token: renewed })).type, 'authorized');
        await stillStreaming(watcher, channel);
        // ended by the backend (the test key): `publish` alone writes no existing message
        await watcher.publish(channel, [
          { action: 'update', serial, id: 'run:end', headers: { status: 'complete' }, lease: 0 },
        ]);
        await Promise.all([watcher.close(), operator.close()]);
      });

      it('recovered with a token that may not write the channel: the run ends abandoned', async () => {
        const channel = 'session:recover-narrower';
        const { watcher, operator, serial } = await streaming(channel);
        operator.kill(); // a network blip: it comes back at once, with its rights taken away
        const back = await RawClient.connect(fx.server.url, {
          token: await token(READER),
          recover: operator.connected.connectionKey,
        });
        assert.equal(back.connected.resumed, true);
        await endsAbandoned(watcher, channel, serial);
        await Promise.all([watcher.close(), back.close()]);
      });

      it('recovered with a token that still allows appending to its own run: the lease holds', async () => {
        const channel = 'session:recover-same';
        const { watcher, operator, serial } = await streaming(channel);
        operator.kill();
        const back = await RawClient.connect(fx.server.url, {
          token: await token({ 'session:*': ['subscribe', 'append-own'] }),
          recover: operator.connected.connectionKey,
        });
        assert.equal(back.connected.resumed, true);
        await stillStreaming(watcher, channel);
        await back.publish(channel, [{ action: 'append', serial, id: 'run:end', data: '.', lease: 0 }]);
        await Promise.all([watcher.close(), back.close()]);
      });
    },
  );
}

describe(
  'Redis leases of a connection recovered on another node with narrower rights',
  {
    skip: redisSkipReason(),
  },
  () => {
    it('are let go, not adopted: they run out; those it may still take are adopted', async (t: TestContext) => {
      const redis = await startRedis();
      const connection = await connectRedis(redis.url, () => {});
      const errors: unknown[] = [];
      const expired: string[] = [];
      const node = () =>
        new RedisLeases({
          connection,
          prefix: 'narrow',
          sweepInterval: 50,
          holderTtl: 10_000,
          onError: (err) => errors.push(err),
          expire: async (_channel, serial) => {
            expired.push(serial);
            return true;
          },
        });
      const a = node();
      const b = node();
      t.after(async () => {
        await a.close();
        await b.close();
        await connection.close();
        await redis.close();
      });
      await a.hold('session:revoked', 'r.1', 'conn-1', 200, 'operator');
      await a.hold('session:kept', 'k.1', 'conn-1', 200, 'operator');
      a.holderMoved('conn-1'); // conn-1 is recovered on node B, allowed to write session:kept only
      b.holderBack('conn-1', (channel) => channel === 'session:kept');
      await waitFor(() => expired.includes('r.1'), {
        timeout: 5_000,
        message: 'the revoked run never ran out',
      });
      await waitFor(() => b.has('session:kept', 'k.1'), {
        message: 'the lease it may still hold was not adopted',
      });
      await sleep(800); // four lease lengths: renewed by B
      assert.deepEqual(expired, ['r.1']);
      assert.deepEqual(errors, []);
    });
  },
);
