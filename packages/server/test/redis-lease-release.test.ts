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
import { deferred, redisSkipReason, startRedis } from '@mooring/testkit';
import { RedisLeases } from '../src/redis-leases.ts';
import { connectRedis, type RedisConnection } from '../src/store/redis-connection.ts';

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

/**
 * One node's connection to a real redis-server whose next lease release (RELEASE: five keys, the
 * third an ending mark) fails unsent, as if Redis were restarting, and whose next one after that —
 * the node's retry — is held back until `letRetryGo`.
 */
function releaseHeldBack(connection: RedisConnection) {
  const retryHeld = deferred<void>();
  const retryGo = deferred<void>();
  const retryDone = deferred<void>();
  let state: 'plain' | 'fail' | 'hold' = 'plain';
  const isRelease = (args: string[]) =>
    args[0]!.startsWith('EVAL') && args[2] === '5' && String(args[5]).includes(':ending:');
  const gated: RedisConnection = {
    cluster: connection.cluster,
    send: async (key, args, readonly) => {
      if (state === 'fail' && isRelease(args)) {
        state = 'hold';
        throw new Error('connection lost (test)');
      }
      if (state === 'hold' && isRelease(args)) {
        state = 'plain';
        retryHeld.resolve();
        await retryGo.promise;
        try {
          return await connection.send(key, args, readonly);
        } finally {
          retryDone.resolve();
        }
      }
      return connection.send(key, args, readonly);
    },
    eachMaster: (args) => connection.eachMaster(args),
    subscriber: (onError) => connection.subscriber(onError),
    close: async () => {},
    destroy: () => {},
  };
  return {
    gated,
    failNextRelease: () => {
      state = 'fail';
    },
    retryHeld: retryHeld.promise,
    /** Lets the retried release reach Redis; resolves once Redis answered it. */
    letRetryGo: async () => {
      retryGo.resolve();
      await retryDone.promise;
    },
  };
}

for (const ender of ['the node holding the lease', 'another node, after marking the run ending'] as const)
  it(`a release sent again late, by ${ender}, leaves a lease taken again meanwhile in place`, async (t) => {
    const skip = redisSkipReason();
    if (skip) return t.skip(skip);
    const redis = await startRedis();
    const connection = await connectRedis(redis.url, () => {});
    const errors: unknown[] = [];
    const options = {
      expire: async () => true,
      prefix: 'late',
      sweepInterval: 60_000,
      holderTtl: 10_000,
      onError: (err: unknown) => errors.push(err),
    };
    const holding = releaseHeldBack(connection);
    const a = new RedisLeases({ ...options, connection: holding.gated });
    const elsewhere = releaseHeldBack(connection);
    const b = new RedisLeases({ ...options, connection: elsewhere.gated });
    t.after(async () => {
      await a.close();
      await b.close();
      await connection.close();
      await redis.close();
    });
    const field = JSON.stringify(['session:late', 'l.1']);
    const lease = async () => ({
      record: await connection.send('late:{leases}:records', ['HGET', 'late:{leases}:records', field]),
      deadline: await connection.send('late:{leases}:deadlines', [
        'ZSCORE',
        'late:{leases}:deadlines',
        field,
      ]),
      counted: await connection.send('late:{leases}:owners', ['HGET', 'late:{leases}:owners', 'owner-1']),
    });
    await a.hold('session:late', 'l.1', 'conn-1', 60_000, 'agent', 'owner-1');
    // the run ends; its release cannot reach Redis, and its node sends it again later
    const node = ender === 'the node holding the lease' ? holding : elsewhere;
    const ending = ender === 'the node holding the lease' ? a : b;
    if (ending === b) await b.ending('session:late', 'l.1');
    node.failNextRelease();
    await ending.release('session:late', 'l.1');
    await node.retryHeld;
    // meanwhile the agent takes a lease on the message again (a run resumed)
    await a.hold('session:late', 'l.1', 'conn-2', 60_000, 'agent', 'owner-1');
    await node.letRetryGo();
    // Before, the late release removed whatever lease the message had: the resumed run's
    const after = await lease();
    assert.notEqual(after.record, null, 'the late release removed the lease taken again');
    assert.equal((JSON.parse(String(after.record)) as { holder: string }).holder, 'conn-2');
    assert.notEqual(after.deadline, null);
    assert.equal(Number(after.counted), 1, 'the lease taken again counts against its owner');
    assert.equal(errors.length, 1, 'only the release that could not be sent failed');
  });

it('an end releases the lease its connection took again after the end marked the run (a publish stored before the end)', async (t) => {
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const redis = await startRedis();
  const connection = await connectRedis(redis.url, () => {});
  const errors: unknown[] = [];
  const leases = new RedisLeases({
    connection,
    prefix: 'renewed',
    sweepInterval: 60_000,
    holderTtl: 10_000,
    onError: (err) => errors.push(err),
    expire: async () => true,
  });
  t.after(async () => {
    await leases.close();
    await connection.close();
    await redis.close();
  });
  await leases.hold('session:renewed', 'r.1', 'conn-1', 60_000, 'agent', 'owner-1');
  // The agent pipelines an update with `lease` (a new take) and its end: the end marks the run
  // (reading the first take) before the update, ahead of it, is stored and records its lease.
  await leases.ending('session:renewed', 'r.1');
  await leases.hold('session:renewed', 'r.1', 'conn-1', 60_000, 'agent', 'owner-1');
  await leases.release('session:renewed', 'r.1');
  const field = JSON.stringify(['session:renewed', 'r.1']);
  assert.equal(await connection.send(undefined, ['HGET', 'renewed:{leases}:records', field]), null);
  assert.equal(await connection.send(undefined, ['ZSCORE', 'renewed:{leases}:deadlines', field]), null);
  assert.equal(await connection.send(undefined, ['HGET', 'renewed:{leases}:owners', 'owner-1']), null);
  assert.deepEqual(errors, []);
});
