/**
 * An end stored just before Redis went down (a restart) whose lease release could not reach Redis:
 * its node sends the release again with backoff once Redis is back. Before, the lease stayed in
 * Redis; once the end's mark ran out, it expired and marked the ended run `abandoned` — its agent,
 * done, never sends the end again (found by the soak with Redis and nodes killed, seed 5012: a run
 * stored `complete`, then `abandoned`, its conversation gone on after it). RedisLeases on a real
 * redis-server (AOF `always`), SIGKILLed and restarted.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import { RedisLeases } from '../src/redis-leases.ts';
import { connectRedis } from '../src/store/redis-connection.ts';

const RETRY_AFTER = 2_500; // how long the end's mark holds expiries back

it("an end's lease release that could not reach Redis is sent again: the ended run is never expired", async (t) => {
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const redis = await startRedis({ appendonly: 'always' });
  const connection = await connectRedis(redis.url, () => {});
  const expired: string[] = [];
  const leases = new RedisLeases({
    connection,
    prefix: 'endlost',
    sweepInterval: 50,
    retryAfter: RETRY_AFTER,
    holderTtl: 10_000,
    onError: () => {},
    // as channel-service's expireLease: an end under way (its mark) holds the expiry back
    expire: async (_channel, serial, due) => {
      if (due && !(await due())) return false;
      expired.push(serial);
      return true;
    },
  });
  t.after(async () => {
    await leases.close();
    await connection.close();
    await redis.close();
  });
  await leases.hold('session:end', 'e.1', 'conn-1', 300, 'agent');
  // the run ends: marked, stored (not modelled here), then released — as Redis goes down
  await leases.ending('session:end', 'e.1');
  await redis.stop('SIGKILL');
  await leases.release('session:end', 'e.1');
  leases.holderLost('conn-1'); // and its agent is gone for good
  await redis.restart();
  // past the end's mark: a lease left in Redis would have expired by now
  await sleep(RETRY_AFTER + 1_500);
  assert.deepEqual(expired, [], 'the ended run was marked abandoned');
});
