/**
 * Redis leases (redis-leases.ts): a connection recovered on a node takes its leases along
 * (`holderBack` reads its list from Redis, asynchronously). If that connection is lost again before
 * the list is read, the leases must still run out: taken as live, they would be renewed by this
 * node for ever and the run would stay `running` (seen in the Redis soak, seed 37: six runs of an
 * agent killed for good never abandoned).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { RedisLeases } from '../src/redis-leases.ts';
import { connectRedis } from '../src/store/redis-connection.ts';

describe('Redis leases', { skip: redisSkipReason() }, () => {
  it('a lease whose holder is lost while its recovery reads the list still runs out', async (t) => {
    const redis = await startRedis();
    t.after(() => redis.close());
    const connection = await connectRedis(redis.url, () => {});
    t.after(() => connection.close());
    const expired: string[] = [];
    const node = (name: string) => {
      const leases = new RedisLeases({
        expire: async (channel, serial) => {
          expired.push(`${name}:${channel}:${serial}`);
        },
        onError: (err) => assert.fail(String(err)),
        connection,
        prefix: 'race',
        sweepInterval: 50,
        holderTtl: 10_000,
      });
      t.after(() => leases.close());
      return leases;
    };
    const a = node('a');
    const b = node('b');
    a.hold('session:race', 'e.1', 'conn-1', 200, 'agent');
    a.holderLost('conn-1'); // the connection left node A…
    await waitFor(async () => (await a.list('session:race')).length === 1);
    b.holderBack('conn-1'); // …was recovered on node B (its list read from Redis, not awaited)…
    b.holderLost('conn-1'); // …and lost again at once
    await waitFor(() => expired.length > 0, { timeout: 5_000, message: 'the lease never ran out' });
    assert.equal(expired.length, 1);
  });
});
