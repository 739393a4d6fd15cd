/**
 * Redis trouble (PROTOCOL.md §15). Redis that stops answering without closing the connection: a
 * FaultProxy in blackhole mode between the node and a real redis-server. Publishes must fail with a
 * retryable `store_unavailable` within the command timeout (never hang, never be acknowledged
 * unstored), `/ready` says 503, connected clients keep their sessions, and everything works again
 * once the network does — the node replaces its dead command connection by itself, and its pub/sub
 * connection too, subscribing again what it had subscribed. A bus subscribe that fails is tried again
 * from the starting point first read; a node stops without Redis and leaves no connection behind.
 * And retention trim on many channels: a trim visits only the channels that have something due.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { FaultProxy, type RedisServer, redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { loadServeConfig } from '../src/config.ts';
import type { MooringServer } from '../src/index.ts';
import { RedisHub } from '../src/redis-hub.ts';
import { connectRedis } from '../src/store/redis-connection.ts';
import { busChannel, RedisStore } from '../src/store/redis-store.ts';
import type { NewOperation } from '../src/store/store.ts';
import { rest } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';
import { redisNode } from './support/redis-fixtures.ts';

const skip = redisSkipReason();

/** A redis-server of its own behind a FaultProxy (both closed when the test ends). */
async function proxiedRedis(t: TestContext): Promise<{ redis: RedisServer; proxy: FaultProxy }> {
  const redis = await startRedis();
  t.after(() => redis.close());
  const proxy = await FaultProxy.start({ port: redis.port });
  t.after(() => proxy.close());
  return { redis, proxy };
}

/**
 * A node whose Redis is behind a FaultProxy, its hub's position check slowed down (what another node
 * stores reaches it only by the bus, or by the catch-up after a reconnect), and a second node on
 * Redis directly.
 */
async function nodeBehindProxy(
  t: TestContext,
): Promise<{ proxy: FaultProxy; server: MooringServer; other: MooringServer }> {
  const { redis, proxy } = await proxiedRedis(t);
  const server = await redisNode(
    `redis://127.0.0.1:${proxy.port}`,
    { hub: (store) => RedisHub.open({ store: store as RedisStore, checkInterval: 600_000 }) },
    1_000,
  );
  t.after(() => server.close());
  const other = await redisNode(redis.url);
  t.after(() => other.close());
  return { proxy, server, other };
}

/** This process's open sockets to `port`. */
const socketsTo = (port: number): number =>
  (process as unknown as { _getActiveHandles(): unknown[] })
    ._getActiveHandles()
    .filter((h) => h instanceof Socket && h.remotePort === port).length;

describe('Redis trouble: configuration', () => {
  it('takes the command deadline from the config file, and refuses a bad one', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-config-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'mooring.json');
    const load = async (redis: unknown) => {
      await writeFile(file, JSON.stringify({ store: 'redis', redis }));
      const config = loadServeConfig(['--config', file], {});
      assert.notEqual(config, 'help');
      return config as Exclude<typeof config, 'help'>;
    };
    assert.equal((await load({ url: 'redis://r:6379', commandTimeout: 800 })).redis.commandTimeout, 800);
    assert.equal((await load({ url: 'redis://r:6379' })).redis.commandTimeout, undefined);
    await assert.rejects(load({ url: 'redis://r:6379', commandTimeout: 'soon' }), /commandTimeout/);
  });
});

if (skip) {
  describe('Redis trouble', () => {
    it('needs redis-server', (t) => t.skip(skip));
  });
} else {
  describe('Redis trouble: a frozen Redis (SIGSTOP)', () => {
    it('a publish refused store_unavailable at its deadline is stored once Redis goes on; its resend is answered as the duplicate it is, stored once', async (t) => {
      const redis = await startRedis();
      t.after(() => redis.close());
      const server = await redisNode(redis.url, {}, 500);
      t.after(() => server.close());
      const channel = 'session:frozen';
      const pub = await RawClient.connect(server.url, { clientId: 'agent' });
      const sub = await RawClient.connect(server.url);
      await sub.attach(channel);
      const first = await pub.publish(channel, [{ id: 'before', data: 'before' }]);

      redis.freeze(); // its connections stay open; what the node sends waits in the kernel
      const refused = await pub.request({ type: 'publish', channel, ops: [{ id: 'during', data: 'x' }] });
      assert.ok(
        refused.type === 'error' && refused.error.code === 'store_unavailable' && refused.error.retryable,
        JSON.stringify(refused),
      );
      redis.thaw(); // it runs what it was sent, the refused publish included
      await waitFor(async () => (await rest(server, '/ready')).status === 200, { message: 'ready again' });
      const resent = await pub.publish(channel, [{ id: 'during', data: 'x' }]);
      const again = await pub.publish(channel, [{ id: 'during', data: 'x' }]);
      assert.equal(again.results[0]!.serial, resent.results[0]!.serial);
      assert.equal(again.results[0]!.duplicate, true);
      const stored = (await rest(server, `/v1/channels/${channel}/messages?direction=forwards`)).body
        .items as { serial: string; data: string }[];
      assert.deepEqual(
        stored.map((m) => [m.serial, m.data]),
        [
          [first.results[0]!.serial, 'before'],
          [resent.results[0]!.serial, 'x'],
        ],
      );
      await waitFor(() => sub.positions.get(channel) === resent.results[0]!.serial, {
        message: 'the subscriber gets it',
      });
      // the resend found it stored by the thawed Redis: a duplicate from the first resend on
      assert.equal(
        resent.results[0]!.duplicate,
        true,
        'the refused publish ran after all, once Redis went on',
      );
      await Promise.all([pub.close(), sub.close()]);
    });
  });

  describe('Redis trouble: a blackholed Redis', () => {
    it('publishes fail with a retryable store_unavailable within the command timeout; sessions survive; all works again after', async (t) => {
      const { proxy, server, other } = await nodeBehindProxy(t);
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
      // the blackholed flows stay dead: the pub/sub connection was replaced too, so a channel first
      // attached now goes live and gets what is published (a dead one would hold its subscribe for ever)
      const late = await RawClient.connect(server.url);
      await late.attach('session:after');
      const after = await pub.publish('session:after', [{ id: 'after', data: 'y' }]);
      await waitFor(() => late.positions.get('session:after') === after.results[0]!.serial, {
        message: 'a channel attached after the outage is delivered live',
      });
      // the channel subscribed before the outage is subscribed again on the new connection: what
      // another node stores now reaches its subscriber here live
      const remote = await RawClient.connect(other.url, { clientId: 'remote' });
      const fromOther = await remote.publish(channel, [{ id: 'remote', data: 'z' }]);
      await waitFor(() => sub.positions.get(channel) === fromOther.results[0]!.serial, {
        message: 'a channel subscribed before the outage is delivered live from another node',
      });
      await Promise.all([pub.close(), sub.close(), late.close(), remote.close()]);
    });

    it('what another node stores while Redis is away reaches a subscriber here once it is back, without waiting for the position check', async (t) => {
      const { proxy, server, other } = await nodeBehindProxy(t);
      const channel = 'session:away';
      const sub = await RawClient.connect(server.url);
      await sub.attach(channel);
      const remote = await RawClient.connect(other.url, { clientId: 'remote' });
      await remote.publish(channel, [{ id: 'before', data: 'before' }]);
      await waitFor(() => sub.positions.has(channel));

      proxy.blackhole();
      await waitFor(async () => (await rest(server, '/ready')).status === 503, {
        message: 'never saw Redis go',
      });
      // stored by the other node while this one's bus is away: its bus message never arrives here
      const during = await remote.publish(channel, [{ id: 'during', data: 'during' }]);
      proxy.pass();
      // nothing more is published: only the catch-up after the reconnect can bring it
      await waitFor(() => sub.positions.get(channel) === during.results[0]!.serial, {
        timeout: 20_000,
        message: 'what was stored while the bus was away never reached the subscriber',
      });
      await Promise.all([sub.close(), remote.close()]);
    });
  });

  describe('Redis trouble: a bus subscribe that fails', () => {
    it('is tried again from the starting point it read: an op stored meanwhile reaches the subscriber', async (t) => {
      const redis = await startRedis();
      t.after(() => redis.close());
      const channel = 'session:resubscribe';
      // the node's bus: its first subscribe to the channel is held, then fails (a dead pub/sub
      // connection), once the test has stored an op after the hub read its starting point
      let fail: (err: Error) => void = () => {};
      let held = false;
      const server = await redisNode(redis.url, {
        hub: async (store) => {
          const { connection } = store as RedisStore;
          const open = connection.subscriber;
          connection.subscriber = async (onError) => {
            const bus = await open(onError);
            const subscribe = bus.subscribe.bind(bus);
            bus.subscribe = (name, listener) => {
              if (held || name !== busChannel('mooring', channel)) return subscribe(name, listener);
              held = true;
              return new Promise((_resolve, reject) => {
                fail = reject;
              });
            };
            return bus;
          };
          try {
            return await RedisHub.open({ store: store as RedisStore });
          } finally {
            connection.subscriber = open;
          }
        },
      });
      t.after(() => server.close());
      const pub = await RawClient.connect(server.url, { clientId: 'agent' });
      const sub = await RawClient.connect(server.url);
      await sub.attach(channel);
      await waitFor(() => held, { message: 'the hub subscribes the channel' });
      // stored after the hub's starting point and after the attach's catch-up: only the hub brings it
      const meanwhile = await pub.publish(channel, [{ id: 'meanwhile', data: 'm' }]);
      fail(new Error('Redis did not answer the subscriber'));
      await waitFor(() => sub.positions.get(channel) === meanwhile.results[0]!.serial, {
        message: 'the op stored while the subscribe failed reaches the subscriber',
      });
      const next = await pub.publish(channel, [{ id: 'next', data: 'n' }]);
      await waitFor(() => sub.positions.get(channel) === next.results[0]!.serial, {
        message: 'the channel is live after the retry',
      });
      assert.deepEqual(
        sub.messages(channel).map((m) => m.data),
        ['m', 'n'],
      );
      await Promise.all([pub.close(), sub.close()]);
    });
  });

  describe('Redis trouble: shutting down without Redis', () => {
    for (const fault of ['stopped', 'blackholed'] as const) {
      it(`a node whose Redis is ${fault} still stops: close ends within the command deadline`, async (t) => {
        const { redis, proxy } = await proxiedRedis(t);
        const server = await redisNode(`redis://127.0.0.1:${proxy.port}`, {}, 500);
        const pub = await RawClient.connect(server.url, { clientId: 'agent' });
        await pub.publish('session:stop', [{ id: 'a', data: 'a' }]);
        if (fault === 'stopped') {
          await redis.close();
        } else {
          proxy.blackhole();
          // a publish stranded on the dead connection: its reply will never come
          const refused = await pub.request({
            type: 'publish',
            channel: 'session:stop',
            ops: [{ id: 'b', data: 'b' }],
          });
          assert.equal(refused.type, 'error');
        }
        await pub.close();
        // a hung close would hold the test until its timeout; bound it well below that
        let timer: NodeJS.Timeout | undefined;
        const outcome = await Promise.race([
          server.close().then(() => 'stopped'),
          new Promise((resolve) => {
            timer = setTimeout(resolve, 30_000, 'still closing after 30 s');
          }),
        ]);
        clearTimeout(timer);
        assert.equal(outcome, 'stopped');
        // and nothing of it lingers: no client left reconnecting (the file's process must end)
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        assert.equal(socketsTo(proxy.port), 0, 'a socket to the old Redis is still open after close');
      });
    }
  });

  describe('Redis trouble: closing with a command still waiting', () => {
    it('a command whose deadline runs out while the connection closes makes no new connection after close', async (t) => {
      const { proxy } = await proxiedRedis(t);
      const connection = await connectRedis(`redis://127.0.0.1:${proxy.port}`, () => {}, 300);
      t.after(() => connection.destroy());
      proxy.blackhole();
      // sent on the connection itself (as presence, leases and the forwarder do), not through the
      // store, whose close waits for its own commands first: its deadline runs out during close
      const stranded = connection.send(undefined, ['PING']);
      stranded.catch(() => {});
      await connection.close();
      await assert.rejects(stranded, /did not answer/);
      const accepted = proxy.stats.accepted;
      // a replacement made after close would connect again within each deadline (300 ms)
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      assert.equal(proxy.stats.accepted, accepted, 'a connection to Redis was made after close');
      assert.equal(socketsTo(proxy.port), 0, 'a socket to Redis is still open after close');
    });
  });

  describe('Redis trouble: a network dead for several command deadlines', () => {
    it('starts the handshake of its replacement connection over at every deadline, and is back once the network is', async (t) => {
      const { proxy } = await proxiedRedis(t);
      const connection = await connectRedis(`redis://127.0.0.1:${proxy.port}`, () => {}, 300);
      t.after(() => connection.close());
      const accepted = proxy.stats.accepted;
      proxy.blackhole();
      await assert.rejects(connection.send(undefined, ['PING']), /did not answer/);
      // the first replacement, then one more at each deadline its handshake misses: the second
      // replacement must be watched as the first was
      await waitFor(() => proxy.stats.accepted >= accepted + 4, {
        message: 'a replacement connection left in its handshake for ever',
      });
      proxy.pass();
      // a blackholed flow stays dead: only a connection made after the network is back answers
      await waitFor(
        () =>
          connection.send(undefined, ['PING']).then(
            (reply) => reply === 'PONG',
            () => false,
          ),
        { message: 'Redis answers again' },
      );
    });
  });

  describe('Redis trouble: a pub/sub connection made into a dead network', () => {
    it('fails within the command deadline instead of waiting for a handshake for ever', async (t) => {
      const { proxy } = await proxiedRedis(t);
      const connection = await connectRedis(`redis://127.0.0.1:${proxy.port}`, () => {}, 300);
      t.after(() => connection.close());
      proxy.blackhole();
      const open = socketsTo(proxy.port);
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        connection
          .subscriber(() => {})
          .then(
            (bus) => {
              bus.destroy();
              return 'connected';
            },
            (err: Error) => err.message,
          ),
        new Promise((resolve) => {
          timer = setTimeout(resolve, 20_000, 'still waiting after 20 s');
        }),
      ]);
      clearTimeout(timer);
      assert.match(String(outcome), /did not answer/);
      // the failed connection is dropped, not left in its handshake (it would hold the process open)
      await waitFor(() => socketsTo(proxy.port) === open, {
        message: 'the failed pub/sub connection is still open',
      });
    });
  });

  describe('Redis trouble: a lease reservation whose answer is lost', () => {
    it('is refused with store_unavailable and given back: the identity is not refused afterwards', async (t) => {
      // Redis runs the reservation but its answer comes after the command deadline (a slow link):
      // the create is refused (retryable), and the place Redis reserved must not keep counting
      // until the reservation's deadline (30 s) — the retry would be refused under a limit of 1
      const { proxy } = await proxiedRedis(t);
      const server = await redisNode(
        `redis://127.0.0.1:${proxy.port}`,
        { limits: { maxLeasesPerClient: 1 } },
        500,
      );
      t.after(() => server.close());
      const agent = await RawClient.connect(server.url, { clientId: 'agent' });
      t.after(() => agent.close());
      const create = (id: string) =>
        agent.request({ type: 'publish', channel: 'run:slow', ops: [{ id, data: id, lease: 60_000 }] });
      // one run first, ended: Redis then knows the scripts (EVALSHA runs at once, no NOSCRIPT round trip)
      const first = await create('r0');
      assert.equal(first.type, 'ack', JSON.stringify(first));
      if (first.type === 'ack')
        await agent.publish('run:slow', [
          { action: 'update', serial: first.results[0]!.serial, id: 'r0-end', lease: 0 },
        ]);
      proxy.delay(400); // each way: the request runs at ~400 ms, its answer is back at ~800 (deadline 500)
      const refused = await create('r1');
      assert.ok(
        refused.type === 'error' && refused.error.code === 'store_unavailable',
        `not refused as retryable: ${JSON.stringify(refused)}`,
      );
      proxy.pass();
      // retried (same id) until the node's new Redis connection is up and the lost reservation given
      // back: within a few sweeps, well before the reservation's own deadline (30 s)
      let answer = await create('r1');
      const until = Date.now() + 10_000;
      while (answer.type === 'error' && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 250));
        answer = await create('r1');
      }
      assert.equal(answer.type, 'ack', `the retry was still refused after 10 s: ${JSON.stringify(answer)}`);
    });
  });

  describe('Redis trouble: retention trim on many channels', () => {
    const HOUR = 60 * 60 * 1000;
    const op = (id: string): NewOperation => ({ action: 'create', publisher: '', id, data: id });
    const evalshaCalls = async (redis: { command(...args: string[]): Promise<string> }) =>
      Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.command('INFO', 'commandstats'))?.[1] ?? 0);

    it('visits only the channels with something due, not every channel on every tick', async (t) => {
      const redis = await startRedis();
      t.after(() => redis.close());
      const store = await RedisStore.open({
        url: redis.url,
        retentionFor: (channel) => (channel.startsWith('short:') ? HOUR : 24 * HOUR),
      });
      t.after(() => store.close());
      const t0 = 1_700_000_000_000;
      const opts = { maxMessageSize: 1 << 20, now: t0 };
      for (let i = 0; i < 100; i++) await store.append(`long:${i}`, [op(`m${i}`)], opts);
      await store.append('short:x', [op('s')], opts);

      const before = await evalshaCalls(redis);
      assert.equal(await store.trim(t0 + HOUR - 1), 0);
      assert.equal(await evalshaCalls(redis), before, 'nothing due: no channel visited');
      assert.equal(await store.trim(t0 + 2 * HOUR), 1);
      assert.equal(await evalshaCalls(redis), before + 1, 'one channel due: one channel visited');
      // the emptied channel is filed again one retention later; the long ones are due at 24 h
      assert.equal(await store.trim(t0 + 2 * HOUR), 0);
      assert.equal(await evalshaCalls(redis), before + 1);
      assert.equal(await store.trim(t0 + 25 * HOUR), 100);
      assert.equal((await store.info('long:7'))!.messageCount, 0);

      // a channel filed by an older version (the set it scanned whole) is moved over and trimmed
      await store.append('legacy:y', [op('l')], { ...opts, now: t0 + 25 * HOUR });
      await redis.command('ZREM', 'mooring:trim', 'legacy:y');
      await redis.command('SADD', 'mooring:channels', 'legacy:y');
      assert.equal(await store.trim(t0 + 50 * HOUR), 1);
      assert.match(await redis.command('SCARD', 'mooring:channels'), /^:0/);
    });

    it('files a channel trimmed in part again at the expiry of its oldest remaining message', async (t) => {
      const redis = await startRedis();
      t.after(() => redis.close());
      const store = await RedisStore.open({ url: redis.url, retentionFor: () => HOUR });
      t.after(() => store.close());
      const t0 = 1_700_000_000_000;
      const opts = { maxMessageSize: 1 << 20 };
      await store.append('short:z', [op('old')], { ...opts, now: t0 });
      await store.append('short:z', [op('young')], { ...opts, now: t0 + HOUR / 2 });

      assert.equal(await store.trim(t0 + HOUR), 1);
      const before = await evalshaCalls(redis);
      // the young message is due at t0 + 1.5 h: not visited before, trimmed then (not one retention later)
      assert.equal(await store.trim(t0 + HOUR + 1), 0);
      assert.equal(await evalshaCalls(redis), before, 'nothing due until the young message expires');
      assert.equal(await store.trim(t0 + HOUR + HOUR / 2), 1);
      assert.equal((await store.info('short:z'))!.messageCount, 0);
    });
  });
}
