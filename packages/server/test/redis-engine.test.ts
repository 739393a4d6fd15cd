/**
 * Several Mooring nodes on one real redis-server (ARCHITECTURE.md §10): two `startServer` in one process,
 * sharing a Redis the test starts. Cross-node fan-out in order and once, gaps on the bus repaired
 * from the store, and what clients see when Redis stops, restarts (AOF) or loses its data.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Message, ServerFrame } from '@mooring/protocol';
import { serialSeq } from '@mooring/protocol';
import { FaultProxy, type RedisServer, redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { loadServeConfig } from '../src/config.ts';
import type { MooringServer } from '../src/index.ts';
import { RedisHub } from '../src/redis-hub.ts';
import type { RedisStore } from '../src/store/redis-store.ts';
import type { Store } from '../src/store/store.ts';
import { rest, TEST_KEY } from './support/fixture.ts';
import { fold, RawClient } from './support/raw-client.ts';
import { redisNode } from './support/redis-fixtures.ts';
import { spawnServer } from './support/server-process.ts';

/**
 * What a client's continuity check (client/src/channel.ts) does with these live frames: each message
 * follows the one before, unless the frame is rolled up from a position the client had reached.
 */
function assertNoHole(frames: ServerFrame[]): void {
  let position = -1;
  for (const frame of frames) {
    if (frame.type !== 'messages') continue;
    const whole = frame.rolledUp === true && frame.after !== undefined && serialSeq(frame.after) <= position;
    for (const m of frame.messages) {
      const seq = serialSeq(m.version);
      if (seq <= position) continue;
      assert.ok(position < 0 || whole || seq === position + 1, `a hole before ${m.version} (at ${position})`);
      position = seq;
    }
  }
}

const skip = redisSkipReason();

describe('Redis configuration', () => {
  it('takes the Redis URL from --redis, MOORING_REDIS_URL or the file, in that order, and refuses a bad one', () => {
    const config = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
      const c = loadServeConfig(argv, env);
      assert.notEqual(c, 'help');
      return c as Exclude<typeof c, 'help'>;
    };
    assert.equal(config([]).store, 'sqlite');
    assert.deepEqual(config(['--store', 'redis']).redis, { url: 'redis://127.0.0.1:6379' });
    const env = config([], { MOORING_REDIS_URL: 'redis://cache:6380' });
    assert.equal(env.store, 'redis', 'a Redis URL alone selects the Redis store');
    assert.equal(env.redis.url, 'redis://cache:6380');
    const flag = config(['--redis', 'rediss://u:p@r:6390'], { MOORING_REDIS_URL: 'redis://cache:6380' });
    assert.equal(flag.redis.url, 'rediss://u:p@r:6390');
    assert.equal(config(['--store', 'memory', '--redis', 'redis://x:1']).store, 'memory');
    assert.throws(() => config(['--redis', 'http://nope']), /redis:\/\/, rediss:\/\/ or redis\+cluster:\/\//);
    assert.throws(() => config(['--store', 'mongo']), /sqlite, memory or redis/);
  });
});

function node(redis: RedisServer, hub?: (store: Store) => Promise<RedisHub>): Promise<MooringServer> {
  return redisNode(redis.url, hub ? { hub } : {});
}

/** Versions strictly increase: every op delivered once, in serial order. */
function assertInOrderOnce(messages: Message[]): void {
  for (let i = 1; i < messages.length; i++)
    assert.ok(messages[i - 1]!.version < messages[i]!.version, `delivery ${i} is after delivery ${i - 1}`);
}

async function historyOf(server: MooringServer, channel: string): Promise<Message[]> {
  const res = await rest(server, `/v1/channels/${channel}/messages?direction=forwards&limit=1000`);
  return res.body.items as Message[];
}

/** What a subscriber folded equals the store's rolled-up history. */
async function assertConverged(sub: RawClient, server: MooringServer, channel: string): Promise<void> {
  const folded = [...fold(sub.messages(channel)).values()].map((m) => [m.serial, m.data, m.version]);
  const stored = (await historyOf(server, channel)).map((m) => [m.serial, m.data, m.version]);
  assert.deepEqual(folded, stored);
}

if (skip) {
  describe('Redis engine (several nodes)', () => {
    it('needs redis-server', (t) => t.skip(skip));
  });
} else {
  describe('Redis engine: two nodes, one Redis', () => {
    let redis: RedisServer;
    let a: MooringServer;
    let b: MooringServer;
    let dropped = 0;
    let hubA: RedisHub | undefined;
    // Node A's bus loses payloads on purpose when `lose` says so (the test-injectable filter).
    let lose: (payload: string, n: number) => boolean = () => false;
    let seen = 0;
    before(async () => {
      redis = await startRedis();
      a = await node(redis, async (store) => {
        hubA = await RedisHub.open({
          store: store as RedisStore,
          checkInterval: 100,
          filter: (_channel, payload) => {
            if (lose(payload, ++seen)) {
              dropped++;
              return false;
            }
            return true;
          },
        });
        return hubA;
      });
      b = await node(redis);
    });
    after(async () => {
      await a.close();
      await b.close();
      await redis.close();
    });

    it('delivers to a subscriber on node A, in order and once, what a publisher on node B stores', async () => {
      const channel = 'session:cross';
      const sub = await RawClient.connect(a.url);
      await sub.attach(channel);
      const pubs = await Promise.all([1, 2].map((i) => RawClient.connect(b.url, { clientId: `agent-${i}` })));
      const acked = await Promise.all(
        pubs.map(async (pub, p) => {
          const first = await pub.publish(channel, [{ id: `m${p}`, data: '' }]);
          const serial = first.results[0]!.serial;
          for (let i = 0; i < 40; i++)
            await pub.publish(channel, [{ action: 'append', serial, data: `${p}.${i} ` }]);
          return serial;
        }),
      );
      const head = (await historyOf(b, channel))
        .map((m) => m.version)
        .sort()
        .at(-1)!;
      await waitFor(() => sub.positions.get(channel) === head, { message: 'A received everything B stored' });
      const received = sub.messages(channel);
      assertInOrderOnce(received);
      assert.equal(received.length, 82, 'each op exactly once (no bus loss here)');
      await assertConverged(sub, b, channel);
      assert.equal(acked.length, 2);
      await Promise.all([sub.close(), ...pubs.map((p) => p.close())]);
    });

    it('drops the echo of its own publishes from the bus unparsed, and still delivers each op once', async (t) => {
      const channel = 'session:echo';
      const sub = await RawClient.connect(a.url);
      await sub.attach(channel);
      const pub = await RawClient.connect(a.url, { clientId: 'agent' });
      const skippedBefore = hubA!.stats.skipped;
      const receivedBefore = hubA!.stats.received;
      const first = await pub.publish(channel, [{ id: 'echo-0', data: '' }]);
      const serial = first.results[0]!.serial;
      for (let i = 1; i <= 20; i++)
        await pub.publish(channel, [{ id: `echo-${i}`, action: 'append', serial, data: `${i},` }]);
      const head = (await historyOf(a, channel))
        .map((m) => m.version)
        .sort()
        .at(-1)!;
      await waitFor(() => sub.positions.get(channel) === head);
      // node A delivered its own publishes at once; their 21 echoes came back on the bus
      // Node A delivered its own publishes at once, and their 21 echoes came back on the bus. Which
      // comes first, the store's answer or the echo, is up to the two sockets: an echo that wins is
      // parsed and delivered, and the publish's own delivery is then the one dropped. Most lose.
      await waitFor(() => hubA!.stats.received - receivedBefore >= 21);
      const skipped = hubA!.stats.skipped - skippedBefore;
      t.diagnostic(`${skipped} of 21 echoes dropped unparsed`);
      assert.ok(skipped > 0, 'every echo was parsed');
      const received = sub.messages(channel);
      assertInOrderOnce(received);
      assert.equal(received.length, 21);
      await Promise.all([sub.close(), pub.close()]);
    });

    it('repairs bus messages it never got from the store: a jump in serials, and a lost last batch', async () => {
      const channel = 'session:lossy';
      const sub = await RawClient.connect(a.url);
      await sub.attach(channel);
      const pub = await RawClient.connect(b.url, { clientId: 'agent' });
      const repairsBefore = hubA!.stats.repairs;
      const total = 30;
      // Lose every 4th batch of this channel on node A, and the very last one (no later jump shows it).
      lose = (payload, n) => payload.includes('"lossy-') && (n % 4 === 0 || payload.includes('"lossy-last"'));
      const first = await pub.publish(channel, [{ id: 'lossy-0', data: '' }]);
      const serial = first.results[0]!.serial;
      for (let i = 1; i < total; i++)
        await pub.publish(channel, [{ id: `lossy-${i}`, action: 'append', serial, data: `${i},` }]);
      const before = (await historyOf(b, channel))
        .map((m) => m.version)
        .sort()
        .at(-1)!;
      await waitFor(() => sub.positions.get(channel) === before, { message: 'A repaired the jumps' });
      // Lost, and nothing comes after it: only the periodic position check can find it.
      await pub.publish(channel, [{ id: 'lossy-last', data: 'the end' }]);
      const head = (await historyOf(b, channel))
        .map((m) => m.version)
        .sort()
        .at(-1)!;
      await waitFor(() => sub.positions.get(channel) === head, { message: 'A repaired every gap' });
      lose = () => false;
      assert.ok(dropped > 0, 'the filter dropped bus messages');
      assert.ok(hubA!.stats.repairs > repairsBefore, 'gaps were read back from the store');
      assertInOrderOnce(sub.messages(channel));
      await assertConverged(sub, b, channel);
      // the read-backs came rolled up, marked so: a client's continuity check takes none for a hole
      const frames = sub.frames.filter((f) => f.type === 'messages' && f.channel === channel);
      assert.ok(
        frames.some((f) => f.type === 'messages' && f.rolledUp),
        'read-backs came marked rolledUp',
      );
      assertNoHole(frames);
      await Promise.all([sub.close(), pub.close()]);
    });
  });

  describe('Redis engine: the command line', () => {
    it('mooring serve --redis <url> runs on the Redis store; two processes share channels', async () => {
      const redis = await startRedis();
      const one = await spawnServer(['--redis', redis.url]);
      const two = await spawnServer([], { MOORING_REDIS_URL: redis.url });
      try {
        assert.match(one.output(), /store: redis, redis: redis:\/\/127\.0\.0\.1:/);
        const headers = { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' };
        const posted = await fetch(`${one.url}/v1/channels/session:cli/messages`, {
          method: 'POST',
          headers,
          body: JSON.stringify({ data: 'from one' }),
        });
        assert.equal(posted.status, 200);
        const read = await fetch(`${two.url}/v1/channels/session:cli/messages`, { headers });
        const body = (await read.json()) as { items: Message[] };
        assert.deepEqual(
          body.items.map((m) => m.data),
          ['from one'],
        );
      } finally {
        one.child.kill('SIGKILL');
        two.child.kill('SIGKILL');
        await Promise.all([one.exited, two.exited]);
        await redis.close();
      }
    });
  });

  describe('Redis engine: key prefix', () => {
    it("a node's store keeps its keys under its prefix: nodes on one Redis share channels only with the same prefix", async () => {
      const redis = await startRedis();
      const tenant = (prefix: string) =>
        redisNode(redis.url, { store: { kind: 'redis', url: redis.url, prefix } });
      const [a, sameA, other] = await Promise.all([tenant('tenant-a'), tenant('tenant-a'), node(redis)]);
      try {
        const posted = await rest(a, '/v1/channels/session:prefixed/messages', { body: { data: 'for a' } });
        assert.equal(posted.status, 200);
        assert.deepEqual(
          (await historyOf(sameA, 'session:prefixed')).map((m) => m.data),
          ['for a'],
        );
        assert.deepEqual(
          await historyOf(other, 'session:prefixed'),
          [],
          'the default prefix sees nothing of it',
        );
        assert.match(await redis.command('KEYS', 'tenant-a:*'), /tenant-a:\{session:prefixed\}/);
      } finally {
        await Promise.all([a.close(), sameA.close(), other.close()]);
        await redis.close();
      }
    });
  });

  describe('Redis engine: Redis trouble', () => {
    it(
      'Redis stopped: /ready is 503 and publishes are refused as retryable, never acknowledged; with AOF every acknowledged op survives a restart, in a new epoch',
      { timeout: 60_000 },
      async () => {
        const redis = await startRedis({ appendonly: 'always' });
        // A command deadline longer than the test: a publish or /ready parked while Redis is down
        // (an offline queue) would wait for Redis instead of being refused at once.
        const server = await redisNode(redis.url, {}, 120_000);
        try {
          const channel = 'session:outage';
          const pub = await RawClient.connect(server.url, { clientId: 'agent' });
          const early = await RawClient.connect(server.url);
          await early.attach(channel);
          const acked: string[] = [];
          for (let i = 0; i < 20; i++)
            acked.push((await pub.publish(channel, [{ id: `k${i}`, data: `${i}` }])).results[0]!.serial);
          assert.equal((await rest(server, '/ready')).status, 200);

          await redis.stop('SIGKILL');
          const ready = await rest(server, '/ready');
          assert.equal(ready.status, 503);
          const refused = await pub.request({ type: 'publish', channel, ops: [{ id: 'during', data: 'x' }] });
          assert.equal(refused.type, 'error');
          assert.ok(
            refused.type === 'error' && refused.error.code === 'store_unavailable',
            JSON.stringify(refused),
          );
          assert.ok(refused.type === 'error' && refused.error.retryable);

          await redis.restart();
          await waitFor(async () => (await rest(server, '/ready')).status === 200, {
            message: 'ready again',
          });
          const stored = (await historyOf(server, channel)).map((m) => m.serial);
          assert.deepEqual(stored, acked, 'every acknowledged op is still there, nothing else');
          // The client resends its unacknowledged publish with the same id: stored once now.
          const retried = await pub.publish(channel, [{ id: 'during', data: 'x' }]);
          assert.equal(retried.results[0]!.duplicate, undefined);
          // The first publish on the restarted Redis started a new epoch (Mooring cannot tell a
          // restart that lost nothing from one that did): the ops keep their sequences in it, and a
          // client resuming from the old epoch is told so and reads the channel again.
          const epoch = retried.results[0]!.serial.split('.')[0]!;
          assert.ok(epoch > acked[0]!.split('.')[0]!, 'a new, later epoch');
          assert.deepEqual(
            (await historyOf(server, channel)).map((m) => m.serial),
            [...acked, retried.results[0]!.serial].map((serial) => `${epoch}.${serial.split('.')[1]}`),
          );
          const sub = await RawClient.connect(server.url);
          const resumed = await sub.attach(channel, { from: acked[9]! });
          assert.equal(resumed.resumed, false);
          assert.equal(resumed.reason, 'epoch_changed');
          // A subscriber attached through the outage keeps its session and gets what is stored after it.
          await waitFor(() => early.positions.get(channel) === retried.results[0]!.serial, {
            message: 'the early subscriber received the op stored after Redis came back',
          });
          await Promise.all([pub.close(), sub.close(), early.close()]);
        } finally {
          await server.close();
          await redis.close();
        }
      },
    );

    it('Redis lost its data (flushed): a client resuming gets resumed:false with epoch_changed, never a gap', async () => {
      const redis = await startRedis();
      const server = await node(redis);
      try {
        const channel = 'session:flushed';
        const pub = await RawClient.connect(server.url, { clientId: 'agent' });
        const old = (await pub.publish(channel, [{ data: 'before' }])).results[0]!.serial;
        await redis.command('FLUSHALL');
        const fresh = (await pub.publish(channel, [{ data: 'after' }])).results[0]!.serial;
        assert.notEqual(fresh.split('.')[0], old.split('.')[0], 'a new epoch');
        const sub = await RawClient.connect(server.url);
        const attached = await sub.attach(channel, { from: old });
        assert.equal(attached.resumed, false);
        assert.equal(attached.reason, 'epoch_changed');
        await Promise.all([pub.close(), sub.close()]);
      } finally {
        await server.close();
        await redis.close();
      }
    });

    it('keeps lease records in Redis: a node started after the agent vanished abandons its run', async () => {
      const redis = await startRedis();
      let server = await node(redis);
      try {
        const channel = 'session:lease';
        const agent = await RawClient.connect(server.url, { clientId: 'agent' });
        const run = await agent.publish(channel, [
          { id: 'r', data: '', headers: { status: 'streaming' }, lease: 300 },
        ]);
        agent.kill();
        await server.close();
        server = await node(redis);
        const watcher = await RawClient.connect(server.url);
        await watcher.attach(channel, { start: true });
        await watcher.next(
          (f) => f.type === 'messages' && f.messages.some((m) => m.headers?.status === 'abandoned'),
        );
        const [m] = await historyOf(server, channel);
        assert.equal(m?.serial, run.results[0]!.serial);
        assert.equal(m?.headers?.status, 'abandoned');
        await watcher.close();
      } finally {
        await server.close();
        await redis.close();
      }
    });

    it('a node that stops right after a run ended still removes its lease from Redis', async () => {
      // The release is not awaited on the publish path, and on a Redis that has not seen the script
      // yet it takes two round trips (NOSCRIPT, then the script in full). Lost on close, the lease
      // would run out later and turn the finished run `abandoned`.
      const redis = await startRedis();
      const slow = await FaultProxy.start({ port: redis.port });
      const server = await redisNode(`redis://127.0.0.1:${slow.port}`);
      try {
        const channel = 'session:ended-then-stopped';
        const agent = await RawClient.connect(server.url, { clientId: 'agent' });
        const run = await agent.publish(channel, [
          { id: 'r', data: '', headers: { status: 'streaming' }, lease: 60_000 },
        ]);
        const serial = run.results[0]!.serial;
        slow.delay(100); // the release's two round trips take a while
        await agent.publish(channel, [
          { action: 'update', serial, id: 'end', headers: { status: 'done' }, lease: 0 },
        ]);
        agent.kill();
        await server.close();
        assert.equal(await redis.command('ZCARD', 'mooring:{leases}:deadlines'), ':0\r\n');
      } finally {
        await server.close();
        await slow.close();
        await redis.close();
      }
    });

    it('refuses to start on a Redis whose maxmemory-policy evicts keys', async () => {
      const redis = await startRedis({ maxmemoryPolicy: 'allkeys-lru' });
      try {
        await assert.rejects(node(redis), /maxmemory-policy is "allkeys-lru".*noeviction/);
      } finally {
        await redis.close();
      }
    });
  });
}
