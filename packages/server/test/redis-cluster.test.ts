/**
 * The Redis store and hub on a real 3-master Redis Cluster started by the test (redis-server
 * `--cluster-enabled yes` ×3 + `redis-cli --cluster create`): the conformance suite, every channel's
 * keys in one hash slot with channels spread over the masters, and cross-node fan-out over sharded
 * pub/sub.
 */
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import {
  type RedisCluster,
  type RedisServer,
  redisCliPath,
  redisSkipReason,
  startRedisCluster,
  waitFor,
} from '@mooring/testkit';
import { connectRedis } from '../src/store/redis-connection.ts';
import { RedisStore } from '../src/store/redis-store.ts';
import { storeConformance } from './store-conformance.ts';
import { rest } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';
import { redisNode, redisStoreFixture } from './support/redis-fixtures.ts';

const skip = redisSkipReason() ?? (redisCliPath() ? undefined : 'redis-cli is not installed');

/** This process's open sockets to `port`. */
const socketsTo = (port: number): number =>
  (process as unknown as { _getActiveHandles(): unknown[] })
    ._getActiveHandles()
    .filter((h) => h instanceof Socket && h.remotePort === port).length;

if (skip) {
  describe('Redis Cluster', () => {
    it('needs redis-server and redis-cli', (t) => t.skip(skip));
  });
} else {
  let cluster: RedisCluster;
  let db = 0;
  before(async () => {
    cluster = await startRedisCluster({ masters: 3 });
  });
  after(() => cluster.close());

  storeConformance('redis cluster', (options) => redisStoreFixture(cluster.url, `c${++db}`, options));

  describe('Redis Cluster: sharding and fan-out', () => {
    it("keeps every channel's keys on one master and spreads channels over the masters", async () => {
      const store = await RedisStore.open({ url: cluster.url, prefix: 'spread' });
      const channels = Array.from({ length: 24 }, (_, i) => `session:spread-${i}`);
      for (const channel of channels) {
        const r = await store.append(channel, [{ action: 'create', id: 'c', publisher: '', data: 'a' }], {
          maxMessageSize: 1024,
        });
        await store.append(
          channel,
          [{ action: 'append', id: 'a', publisher: '', serial: r.results[0]!.serial, data: 'b' }],
          {
            maxMessageSize: 1024,
          },
        );
      }
      const owners = new Map<string, Set<number>>();
      const keysPerNode: number[] = [];
      for (const [n, node] of cluster.nodes.entries()) {
        const reply = await node.command('KEYS', 'spread:{*');
        const keys = reply.split('\r\n').filter((line) => line.startsWith('spread:{'));
        keysPerNode.push(keys.length);
        for (const key of keys) {
          const channel = key.slice('spread:{'.length, key.lastIndexOf('}:'));
          owners.set(channel, (owners.get(channel) ?? new Set()).add(n));
        }
      }
      assert.equal(owners.size, channels.length);
      for (const [channel, nodes] of owners) assert.equal(nodes.size, 1, `${channel} lives on one master`);
      assert.ok(
        keysPerNode.filter((k) => k > 0).length >= 2,
        `channels spread: ${keysPerNode.join('/')} keys`,
      );
      for (const channel of channels) {
        const page = await store.history(channel, { direction: 'forwards', limit: 5 });
        assert.equal(page.messages[0]?.data, 'ab');
      }
      await store.close();
    });

    it('runs publishes as functions on every master: the library is loaded on each at start, and again on a master that forgot it', async () => {
      const store = await RedisStore.open({ url: cluster.url, prefix: 'fn' });
      try {
        const library = /mooring_[0-9a-f]{16}/;
        for (const node of cluster.nodes) assert.match(await node.command('FUNCTION', 'LIST'), library);
        const channels = Array.from({ length: 12 }, (_, i) => `session:fn-${i}`);
        const publishAll = async (data: string) => {
          const epochs: string[] = [];
          for (const channel of channels) {
            const op = { action: 'create' as const, id: `c-${data}`, publisher: '', data };
            epochs.push((await store.append(channel, [op], { maxMessageSize: 1024 })).epoch);
          }
          return epochs;
        };
        const first = await publishAll('a');
        for (const node of cluster.nodes) await node.command('FUNCTION', 'FLUSH');
        assert.deepEqual(await publishAll('b'), first, 'loaded again, and no new epoch: the same masters');
        let holding = 0;
        for (const node of cluster.nodes) {
          if (!(await node.command('KEYS', 'fn:{*')).includes('fn:{')) continue;
          holding++;
          assert.match(await node.command('FUNCTION', 'LIST'), library, 'loaded again where it was called');
          const fcalls = /cmdstat_fcall:calls=(\d+)/.exec(await node.command('INFO', 'commandstats'))?.[1];
          assert.ok(Number(fcalls ?? 0) > 0, `node ${node.port} ran its channels' publishes by FCALL`);
        }
        assert.ok(holding >= 2, 'channels on several masters');
      } finally {
        await store.close();
      }
    });

    it('delivers across two server nodes over sharded pub/sub, in order and once', async () => {
      const a = await redisNode(cluster.url);
      const b = await redisNode(cluster.url);
      try {
        const channels = ['session:x1', 'session:x2', 'session:x3'];
        const sub = await RawClient.connect(a.url);
        for (const channel of channels) await sub.attach(channel);
        const pub = await RawClient.connect(b.url, { clientId: 'agent' });
        const last = new Map<string, string>();
        for (let i = 0; i < 10; i++)
          for (const channel of channels)
            last.set(channel, (await pub.publish(channel, [{ data: `${i}` }])).results[0]!.serial);
        for (const channel of channels) {
          await waitFor(() => sub.positions.get(channel) === last.get(channel), {
            message: `${channel} delivered on node A`,
          });
          const got = sub.messages(channel);
          assert.deepEqual(
            got.map((m) => m.data),
            Array.from({ length: 10 }, (_, i) => `${i}`),
          );
        }
        await Promise.all([sub.close(), pub.close()]);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });

  describe('Redis Cluster: presence after a master lost its data', () => {
    it('a member whose channel lives on a restarted master, not the one holding the nodes key, is written again', async (t) => {
      const own = await startRedisCluster({ masters: 3 });
      t.after(() => own.close());
      const server = await redisNode(own.url, { sweepInterval: 100, nodeTtl: 400, heartbeatInterval: 500 });
      t.after(() => server.close());
      /** The master holding `key`, once it exists. */
      const holder = async (key: string): Promise<RedisServer | undefined> => {
        for (const node of own.nodes) if ((await node.command('EXISTS', key)).trim() === ':1') return node;
        return undefined;
      };
      const members = async (channel: string): Promise<string> => {
        const res = await rest(server, `/v1/channels/${channel}/presence`);
        return (res.body.members as Array<{ clientId: string }>).map((m) => m.clientId).join();
      };
      const nodesMaster = await waitFor(() => holder('mooring:nodes'));
      const there = await RawClient.connect(server.url, { clientId: 'there' });
      t.after(() => there.close());
      let channel = '';
      let master: RedisServer | undefined;
      for (let i = 0; master === undefined; i++) {
        channel = `session:shard-${i}`;
        await there.request({ type: 'presence', channel, action: 'enter' });
        const on = await holder(`mooring:{${channel}}:presence`);
        if (on !== nodesMaster) master = on;
      }
      // no persistence: the master comes back (its slots kept in nodes.conf) with none of its keys
      await master.stop('SIGKILL');
      await master.restart();
      await waitFor(async () => (await master.command('CLUSTER', 'INFO')).includes('cluster_state:ok'));
      await waitFor(async () => (await members(channel)) === 'there', {
        message: 'the member of a live connection stayed missing on the restarted master',
      });
    });
  });

  describe('Redis Cluster: a master that is down', () => {
    it('refuses a command for its keys at once, never parks it until the master is back', async (t) => {
      const own = await startRedisCluster({ masters: 3 });
      t.after(() => own.close());
      // a deadline far beyond the test's: only the missing offline queue can refuse the command
      const connection = await connectRedis(own.url, () => {}, 600_000);
      t.after(() => connection.destroy());
      const down = own.nodes[0]!;
      let key: string | undefined;
      for (let i = 0; key === undefined; i++) {
        await connection.send(`k${i}`, ['SET', `k${i}`, 'v']);
        if ((await down.command('EXISTS', `k${i}`)).trim() === ':1') key = `k${i}`;
      }
      await down.close();
      await waitFor(() => socketsTo(down.port) === 0, { message: 'the client saw the master go' });
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        connection.send(key, ['GET', key]).then(
          (reply) => `answered ${String(reply)}`,
          (err: Error) => err.message,
        ),
        new Promise((resolve) => {
          timer = setTimeout(resolve, 20_000, 'still waiting after 20 s');
        }),
      ]);
      clearTimeout(timer);
      assert.match(String(outcome), /offline/);
    });
  });
}
