/**
 * Connection budgets counted in Redis (redis-connection-counts.ts), driven directly on a real
 * redis-server with the sweeps held back, so each case controls when a node's share is given back:
 * the multi-node behaviour through real servers is in redis-nodes.test.ts ("connection budgets").
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type RedisServer, redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { createClient } from 'redis';
import type { CountCheck } from '../src/connection-counts.ts';
import { RedisConnectionCounts } from '../src/redis-connection-counts.ts';
import { RedisStore } from '../src/store/redis-store.ts';

const skip = redisSkipReason();

describe('RedisConnectionCounts', { skip: skip ?? false }, () => {
  let redis: RedisServer;
  let store: RedisStore;
  let client: ReturnType<typeof createClient>;
  let prefix = 0;
  before(async () => {
    redis = await startRedis();
    store = await RedisStore.open({ url: redis.url, prefix: 'unused' });
    client = createClient({ url: redis.url });
    await client.connect();
  });
  after(async () => {
    await client?.close();
    await store?.close();
    await redis?.close();
  });

  /** A node's counts under a prefix of the test's own; no sweep after the first unless asked. */
  const counts = (name: string, nodeId: string, sweepInterval = 60_000) =>
    new RedisConnectionCounts({
      connection: store.connection,
      prefix: name,
      nodeId,
      nodeTtl: 60_000,
      sweepInterval,
      onError: () => {},
    });
  const check = (name: string, limit = 10): CountCheck => ({ name, limit, what: name });
  const total = async (p: string, name: string) =>
    Number((await client.hGet(`${p}:{conns}:open`, name)) ?? 0);

  it('a give-back that arrives after the node’s share was given back by another node takes nothing from the others', async () => {
    const p = `t${++prefix}`;
    const a = counts(p, 'a');
    await a.take([check('x')]);
    await a.take([check('x')]);
    assert.equal(await total(p, 'x'), 2);
    // node a seen dead (its liveness key gone): node b's first sweep gives a's share back
    await client.del(`${p}:{conns}:alive:a`);
    const b = counts(p, 'b');
    await waitFor(async () => (await total(p, 'x')) === 0, { message: 'b never gave a’s share back' });
    await b.take([check('x')]);
    // a, alive after all, sees one of its connections close before it writes its share again
    a.give(['x']);
    await store.connection.send(undefined, ['PING']); // after a's give-back, on the same connection
    assert.equal(await total(p, 'x'), 1, 'b’s connection still counts');
    await Promise.all([a.close(), b.close()]);
  });

  it('a node whose counts Redis lost (a restart without persistence) writes its share again at its next sweep', async () => {
    const p = `t${++prefix}`;
    const a = counts(p, 'a', 50);
    try {
      await a.take([check('x')]);
      await a.take([check('x')]);
      assert.equal(await total(p, 'x'), 2);
      const keys = await client.keys(`${p}:*`);
      await client.del(keys); // the totals, the node's share, its liveness and the node list: gone
      await waitFor(async () => (await total(p, 'x')) === 2, {
        message: 'the node never wrote its share again: its two connections count for nothing',
      });
    } finally {
      await a.close();
    }
  });

  it('a node whose counts came back from an older snapshot (Redis restarted, restored or failed over) writes its share again at its next sweep', async () => {
    // Redis still lists the node (it was in the snapshot) and its liveness key did not run out: only
    // the Redis's new run_id tells that the share it holds may be another's than the node's.
    const own = await startRedis();
    const ownStore = await RedisStore.open({ url: own.url, prefix: 'unused', onError: () => {} });
    const a = new RedisConnectionCounts({
      connection: ownStore.connection,
      prefix: 'p',
      nodeId: 'a',
      nodeTtl: 600_000,
      sweepInterval: 50,
      onError: () => {},
    });
    const open = async () =>
      Number(String(await own.command('HGET', 'p:{conns}:open', 'x')).split('\r\n')[1]);
    try {
      await a.take([check('x')]);
      await a.take([check('x')]);
      await own.command('SAVE');
      await a.take([check('x')]);
      await a.take([check('x')]);
      await a.take([check('x')]);
      a.give(['x']); // one of the two the snapshot holds closes, after it: four open
      await ownStore.connection.send(undefined, ['PING']);
      assert.equal(await open(), 4);
      await own.stop('SIGKILL');
      await own.restart();
      await waitFor(
        () =>
          ownStore.ping().then(
            () => true,
            () => false,
          ),
        { message: 'the store never reconnected' },
      );
      // the snapshot's 2 would let the client open 6 more under a limit of 10, or lock it out if
      // the snapshot held more than are open
      await waitFor(async () => (await open()) === 4, {
        message: 'the node never wrote its share again: Redis counts what the snapshot held',
      });
      await assert.rejects(a.take([check('x', 4)]), /too_many_connections|already has 4/);
    } finally {
      await a.close();
      await ownStore.close();
      await own.close();
    }
  });

  it('a budget name whose count falls to 0 leaves no field behind in Redis (given back, or by a node that stops)', async () => {
    // fields of identities that came and went would otherwise pile up in the hashes for ever
    const p = `t${++prefix}`;
    const a = counts(p, 'a');
    const fields = async () => [
      ...(await client.hKeys(`${p}:{conns}:open`)),
      ...(await client.hKeys(`${p}:{conns}:node:a`)).map((k) => `a:${k}`),
    ];
    await a.take([check('x')]);
    await a.take([check('y')]);
    assert.deepEqual((await fields()).sort(), ['a:x', 'a:y', 'x', 'y']);
    a.give(['x']);
    await store.connection.send(undefined, ['PING']); // after a's give-back, on the same connection
    assert.deepEqual((await fields()).sort(), ['a:y', 'y'], 'x given back');
    await a.close();
    assert.deepEqual(await fields(), [], 'y given back by the node that stopped');
  });

  it('a node that stops gives its share back at once', async () => {
    const p = `t${++prefix}`;
    const a = counts(p, 'a');
    const b = counts(p, 'b');
    await a.take([check('y'), check('z')]);
    await b.take([check('y')]);
    assert.equal(await total(p, 'y'), 2);
    await a.close();
    assert.equal(await total(p, 'y'), 1);
    assert.equal(await total(p, 'z'), 0);
    assert.equal(await client.exists(`${p}:{conns}:alive:a`), 0);
    assert.deepEqual(await client.sMembers(`${p}:{conns}:nodes`), ['b']);
    await b.close();
  });

  it('a connection counted unchecked (it opened after its place was given back) counts over the limit, and is given back like any other', async () => {
    const p = `t${++prefix}`;
    const a = counts(p, 'a');
    await a.take([check('late', 1)]);
    a.add(['late']);
    await store.connection.send(undefined, ['PING']); // after the add, on the same connection
    assert.equal(await total(p, 'late'), 2);
    await assert.rejects(a.take([check('late', 2)]), /too_many_connections|already has 2/);
    a.give(['late']);
    a.give(['late']);
    await store.connection.send(undefined, ['PING']);
    assert.equal(await total(p, 'late'), 0);
    await a.close();
  });

  it('refuses over any one of its checks and counts nothing then', async () => {
    const p = `t${++prefix}`;
    const a = counts(p, 'a');
    await a.take([check('key', 3), check('client', 1)]);
    await assert.rejects(a.take([check('key', 3), check('client', 1)]), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'too_many_connections');
      assert.match(err.message, /client already has 1 connections on all nodes \(limit 1\)/);
      return true;
    });
    assert.equal(await total(p, 'key'), 1, 'the refused request counted nothing');
    await a.take([check('key', 3), check('other', 1)]);
    assert.equal(await total(p, 'key'), 2);
    await a.close();
  });
});
