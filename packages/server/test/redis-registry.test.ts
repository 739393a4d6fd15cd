/**
 * Connection identities in Redis (redis-registry.ts) on a real redis-server: the holder mark a
 * recovery takes over, forgets when its transport is gone, and gives back when the recovery is
 * refused. The behaviour through real nodes is in redis-nodes.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type RedisServer, redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import type { Identity } from '../src/connection-registry.ts';
import { RedisConnectionRegistry } from '../src/redis-registry.ts';
import { connectRedis, type RedisConnection } from '../src/store/redis-connection.ts';

const identity: Identity = {
  keyName: 'app',
  clientId: 'phone',
  access: {} as Identity['access'],
  viaToken: true,
};

describe('RedisConnectionRegistry', { skip: redisSkipReason() ?? false }, () => {
  let redis: RedisServer;
  let connection: RedisConnection;
  before(async () => {
    redis = await startRedis();
    connection = await connectRedis(redis.url, () => {});
  });
  after(async () => {
    await connection?.close();
    await redis?.close();
  });
  const registry = (nodeId: string) =>
    new RedisConnectionRegistry({
      connection,
      prefix: 'reg',
      ttl: 60_000,
      refreshEvery: 1_000,
      nodeId,
      onError: (err) => assert.fail(String(err)),
    });
  const markOf = async (id: string) =>
    (JSON.parse(String(await connection.send(undefined, ['GET', `reg:connection:${id}`]))) as { n?: string })
      .n;

  it('a recovery names the open it replaced while that open holds a transport, not after its release', async () => {
    const a = registry('na');
    const b = registry('nb');
    const first = await a.open(identity);
    const taken = await b.open(identity, first.connectionKey);
    assert.equal(taken.resumed, true);
    assert.equal(taken.replaced, first.holder, 'A’s open still held it');
    b.release(taken.connectionId, taken.holder);
    await waitFor(async () => (await markOf(taken.connectionId)) === undefined, {
      message: 'the mark stayed',
    });
    const again = await a.open(identity, first.connectionKey);
    assert.equal(again.resumed, true);
    assert.equal(again.replaced, undefined, 'no transport held it: nothing to take over');
  });

  it('a release by an open that was taken over leaves the new holder’s mark', async () => {
    const a = registry('na');
    const b = registry('nb');
    const first = await a.open(identity);
    const taken = await b.open(identity, first.connectionKey);
    a.release(first.connectionId, first.holder); // A noticed its old socket's loss only now
    await connection.send(undefined, ['PING']);
    assert.equal(await markOf(first.connectionId), taken.holder);
  });

  it('a refused recovery gives the mark back to the open it replaced, unless a later one took it', async () => {
    const a = registry('na');
    const b = registry('nb');
    const first = await a.open(identity);
    const refused = await b.open(identity, first.connectionKey);
    b.unclaim(refused);
    await waitFor(async () => (await markOf(first.connectionId)) === first.holder, {
      message: 'the mark was not given back',
    });
    const taken = await b.open(identity, first.connectionKey);
    const late = await a.open(identity, first.connectionKey);
    b.unclaim(taken); // too late: A's later recovery holds it
    await connection.send(undefined, ['PING']);
    assert.equal(await markOf(first.connectionId), late.holder);
  });

  it('a recovery key that is not one (malformed, or of an identity that is gone) opens a new identity', async () => {
    const a = registry('na');
    for (const key of ['garbage', '.', 'id.', 'nosuchid.secret']) {
      const opened = await a.open(identity, key);
      assert.equal(opened.resumed, false, key);
      assert.notEqual(opened.connectionKey, key);
    }
  });

  it('a live connection whose identity Redis lost (a FLUSHALL, a restore from an older snapshot) can be recovered again after the next heartbeat', async () => {
    const a = registry('na');
    const b = registry('nb');
    const live = await a.open(identity);
    const recovered = await b.open(identity, (await a.open(identity)).connectionKey);
    a.release(live.connectionId, live.holder); // gone from A…
    const moved = await b.open(identity, live.connectionKey); // …and recovered on B
    assert.equal(moved.resumed, true);
    await connection.send(undefined, ['FLUSHALL']);
    b.sweep([moved.connectionId, recovered.connectionId]); // B's heartbeat
    const again = await a.open(identity, live.connectionKey);
    assert.equal(again.resumed, true, 'recovered: its identity was written again by its node');
    assert.equal(again.connectionId, live.connectionId);
    assert.equal(again.replaced, moved.holder, 'B’s open held it');
    // one B no longer holds (released) is not written again
    b.release(recovered.connectionId, recovered.holder);
    await connection.send(undefined, ['FLUSHALL']);
    b.sweep([recovered.connectionId]);
    assert.equal((await a.open(identity, recovered.connectionKey)).resumed, false);
  });

  it('a recovery with another secret, API key or clientId than the identity’s, or of an expired identity, opens a new one', async () => {
    const a = registry('nr');
    const noClient: Identity = { keyName: identity.keyName, access: identity.access, viaToken: true };
    const withClient = await a.open(identity);
    const anonymous = await a.open(noClient);
    const other = (secret: string) => `${secret.split('.')[0]}.${'0'.repeat(secret.split('.')[1]!.length)}`;
    const refused: Array<[string, Identity, string]> = [
      ['another secret', identity, other(withClient.connectionKey)],
      ['another API key', { ...identity, keyName: 'other' }, withClient.connectionKey],
      ['another clientId', { ...identity, clientId: 'laptop' }, withClient.connectionKey],
      ['no clientId', noClient, withClient.connectionKey],
      ['a clientId', identity, anonymous.connectionKey],
    ];
    for (const [what, who, key] of refused) {
      const opened = await a.open(who, key);
      assert.equal(opened.resumed, false, what);
      assert.notEqual(opened.connectionId, withClient.connectionId, what);
    }
    // the right ones still recover
    assert.equal((await a.open(identity, withClient.connectionKey)).resumed, true);
    assert.equal((await a.open(noClient, anonymous.connectionKey)).resumed, true);
    await connection.send(undefined, ['DEL', `reg:connection:${withClient.connectionId}`]);
    assert.equal((await a.open(identity, withClient.connectionKey)).resumed, false, 'an expired identity');
  });

  it('an identity key holding JSON that is not an identity recovers nothing and releases nothing, without an error', async () => {
    const errors: unknown[] = [];
    const a = new RedisConnectionRegistry({
      connection,
      prefix: 'reg',
      ttl: 60_000,
      refreshEvery: 1_000,
      nodeId: 'nj',
      onError: (err) => errors.push(err),
    });
    const opened = await a.open(identity);
    const key = `reg:connection:${opened.connectionId}`;
    await connection.send(undefined, ['SET', key, '5']);
    assert.equal((await a.open(identity, opened.connectionKey)).resumed, false);
    a.release(opened.connectionId, opened.holder);
    await waitFor(async () => (await connection.send(undefined, ['PING'])) !== undefined);
    assert.equal(String(await connection.send(undefined, ['GET', key])), '5');
    assert.deepEqual(errors, []);
  });
});
