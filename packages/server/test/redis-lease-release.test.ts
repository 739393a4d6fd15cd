/**
 * An end stored just before Redis went down (a restart) whose lease release could not reach Redis:
 * its node sends the release again with backoff once Redis is back. Before, the lease stayed in
 * Redis; once the end's mark ran out, it expired and marked the ended run `abandoned` — its agent,
 * done, never sends the end again (found by the soak with Redis and nodes killed, seed 5012: a run
 * stored `complete`, then `abandoned`, its conversation gone on after it). RedisLeases on a real
 * redis-server (AOF `always`), SIGKILLed and restarted.
 */
import assert from 'node:assert/strict';
import { it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { deferred, type RedisServer, redisSkipReason, startRedis } from '@mooring/testkit';
import { RedisLeases } from '../src/redis-leases.ts';
import { connectRedis, type RedisConnection } from '../src/store/redis-connection.ts';

const RETRY_AFTER = 2_500; // how long the end's mark holds expiries back

/**
 * RedisLeases on its own connection to `redis`, sweeping every 50 ms, whose expiries go to `expire`;
 * closed with the test (and `redis` with it).
 */
async function sweptLeases(
  t: TestContext,
  redis: RedisServer,
  prefix: string,
  expire: (serial: string, due: (() => Promise<boolean>) | undefined) => Promise<boolean>,
): Promise<RedisLeases> {
  const connection = await connectRedis(redis.url, () => {});
  const leases = new RedisLeases({
    connection,
    prefix,
    sweepInterval: 50,
    retryAfter: RETRY_AFTER,
    holderTtl: 10_000,
    onError: () => {},
    expire: (_channel, serial, due) => expire(serial, due),
  });
  t.after(async () => {
    await leases.close();
    await connection.close();
    await redis.close();
  });
  return leases;
}

it("an end's lease release that could not reach Redis is sent again: the ended run is never expired", async (t) => {
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const redis = await startRedis({ appendonly: 'always' });
  const expired: string[] = [];
  const leases = await sweptLeases(t, redis, 'endlost', async (serial, due) => {
    // as channel-service's expireLease: an end under way (its mark) holds the expiry back
    if (due && !(await due())) return false;
    expired.push(serial);
    return true;
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

it("an end stored and released between a sweeper's claim of its overdue lease and the expiry's write: the expiry finds the lease gone and stores nothing", async (t) => {
  // (found by the Redis soak, seed 5403: the release removed the end's mark, so the mark alone
  // no longer told the expiry that the run had ended)
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const redis = await startRedis();
  const answers: boolean[] = [];
  const expired: string[] = [];
  const ended = deferred<void>();
  const leases: RedisLeases = await sweptLeases(t, redis, 'endrace', async (serial, due) => {
    // the run's end lands after the claim, before the write: marked, stored, released
    await leases.ending('session:race', 'r.1');
    await leases.release('session:race', 'r.1');
    const answer = due ? await due() : true;
    answers.push(answer);
    ended.resolve();
    if (!answer) return false;
    expired.push(serial);
    return true;
  });
  await leases.hold('session:race', 'r.1', 'conn-1', 200, 'agent');
  leases.holderLost('conn-1'); // its agent's connection is gone: the lease runs out in 200 ms
  await ended.promise;
  await sleep(500); // further sweeps: the lease is gone, nothing is claimed again
  assert.deepEqual(answers, [false], 'the expiry was told its lease had been released');
  assert.deepEqual(expired, [], 'the ended run was marked abandoned');
});

/**
 * One node's connection to a real redis-server whose next lease release (RELEASE: five keys, the
 * third an ending mark) fails unsent, as if Redis were restarting, and whose next one after that —
 * the node's retry — is held back until `letRetryGo` (again at each `failNextRelease`). Its next
 * ending mark (ENDING: two keys, the second the mark) can be made to fail unsent too.
 */
function releaseHeldBack(connection: RedisConnection) {
  let retryHeld = deferred<void>();
  let retryGo = deferred<void>();
  let retryDone = deferred<void>();
  let state: 'plain' | 'fail' | 'hold' = 'plain';
  let failMark = false;
  const isRelease = (args: string[]) =>
    args[0]!.startsWith('EVAL') && args[2] === '5' && String(args[5]).includes(':ending:');
  const isMark = (args: string[]) =>
    args[0]!.startsWith('EVAL') && args[2] === '2' && String(args[4]).includes(':ending:');
  const gated: RedisConnection = {
    cluster: connection.cluster,
    send: async (key, args, readonly) => {
      if (failMark && isMark(args)) {
        failMark = false;
        throw new Error('connection lost (test)');
      }
      if (state === 'fail' && isRelease(args)) {
        state = 'hold';
        throw new Error('connection lost (test)');
      }
      if (state === 'hold' && isRelease(args)) {
        state = 'plain';
        const done = retryDone;
        retryHeld.resolve();
        await retryGo.promise;
        try {
          return await connection.send(key, args, readonly);
        } finally {
          done.resolve();
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
      retryHeld = deferred<void>();
      retryGo = deferred<void>();
      retryDone = deferred<void>();
    },
    failNextMark: () => {
      failMark = true;
    },
    get retryHeld() {
      return retryHeld.promise;
    },
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
    const { a, b, gateA, gateB, channel, lease, errors } = await twoNodes(t, 'late');
    await a.hold(channel, 'm.1', 'conn-1', 60_000, 'agent', 'owner-1');
    // the run ends; its release cannot reach Redis, and its node sends it again later
    const node = ender === 'the node holding the lease' ? gateA : gateB;
    const ending = ender === 'the node holding the lease' ? a : b;
    if (ending === b) await b.ending(channel, 'm.1');
    node.failNextRelease();
    await ending.release(channel, 'm.1');
    await node.retryHeld;
    // meanwhile the agent takes a lease on the message again (a run resumed)
    await a.hold(channel, 'm.1', 'conn-2', 60_000, 'agent', 'owner-1');
    await node.letRetryGo();
    // Before, the late release removed whatever lease the message had: the resumed run's
    const after = await lease();
    assert.equal(after.holder, 'conn-2', 'the late release removed the lease taken again');
    assert.equal(after.due, true, 'the lease taken again has its deadline');
    assert.equal(after.counted, 1, 'the lease taken again counts against its owner');
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

/**
 * Two nodes (`a`, `b`) on a real redis-server, each through a connection whose releases and marks
 * can be failed or held back (`releaseHeldBack`), and readers of the lease on `session:<prefix>`
 * `m.1` as Redis has it.
 */
async function twoNodes(t: { after: (fn: () => Promise<void>) => void }, prefix: string) {
  const redis = await startRedis();
  const connection = await connectRedis(redis.url, () => {});
  const errors: unknown[] = [];
  const options = {
    expire: async () => true,
    prefix,
    sweepInterval: 60_000,
    holderTtl: 10_000,
    onError: (err: unknown) => errors.push(err),
  };
  const gateA = releaseHeldBack(connection);
  const gateB = releaseHeldBack(connection);
  const a = new RedisLeases({ ...options, connection: gateA.gated });
  const b = new RedisLeases({ ...options, connection: gateB.gated });
  t.after(async () => {
    await a.close();
    await b.close();
    await connection.close();
    await redis.close();
  });
  const channel = `session:${prefix}`;
  const field = JSON.stringify([channel, 'm.1']);
  const keys = {
    records: `${prefix}:{leases}:records`,
    deadlines: `${prefix}:{leases}:deadlines`,
    owners: `${prefix}:{leases}:owners`,
    mark: `${prefix}:{leases}:ending:${field}`,
  };
  return {
    a,
    b,
    gateA,
    gateB,
    errors,
    channel,
    /** The lease's holder in its record (undefined: no lease), how many leases owner-1 holds, whether it has a deadline. */
    lease: async () => {
      const record = await connection.send(undefined, ['HGET', keys.records, field]);
      const counted = await connection.send(undefined, ['HGET', keys.owners, 'owner-1']);
      const deadline = await connection.send(undefined, ['ZSCORE', keys.deadlines, field]);
      return {
        holder: record === null ? undefined : (JSON.parse(String(record)) as { holder: string }).holder,
        counted: Number(counted ?? 0),
        /** It has a deadline: the sweep will expire it if nobody renews it. */
        due: deadline !== null,
      };
    },
    /** A lease record as a node of an older version writes it: no take. */
    writeOlderRecord: async (holder: string) => {
      const record = { channel, serial: 'm.1', ms: 60_000, clientId: 'agent', holder, owner: 'owner-1' };
      await connection.send(undefined, ['HSET', keys.records, field, JSON.stringify(record)]);
    },
    marked: async () => Number(await connection.send(undefined, ['EXISTS', keys.mark])) === 1,
  };
}

it('an end whose mark found no lease leaves one taken before its release in place, and removes its own mark', async (t) => {
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const { a, b, channel, lease, marked, errors } = await twoNodes(t, 'nolease');
  // the run ends on node a while the message has no lease (marked: nothing there)...
  await a.ending(channel, 'm.1');
  // ...and another publisher takes one on it through node b, before a's release arrives
  await b.hold(channel, 'm.1', 'conn-b', 60_000, 'agent', 'owner-1');
  await a.release(channel, 'm.1');
  // Before, a release that knew no take removed whatever lease was there: the new one
  assert.deepEqual(
    await lease(),
    { holder: 'conn-b', counted: 1, due: true },
    'the lease taken after the end was removed',
  );
  assert.equal(await marked(), false, "the end's mark was left to hold the new lease's expiry back");
  assert.deepEqual(errors, []);
});

it('a release without a mark read removes whatever lease there is at once, but sent again late only the take its node knew', async (t) => {
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const { a, b, gateA, channel, lease, errors } = await twoNodes(t, 'nomark');
  // a delete through node a of a message whose lease node b took: no mark, the lease goes at once
  await b.hold(channel, 'm.1', 'conn-b', 60_000, 'agent', 'owner-1');
  await a.release(channel, 'm.1');
  assert.deepEqual(await lease(), { holder: undefined, counted: 0, due: false });
  // an end through node a whose mark fails (Redis restarting), and so does its release
  await b.hold(channel, 'm.1', 'conn-b', 60_000, 'agent', 'owner-1');
  gateA.failNextMark();
  await a.ending(channel, 'm.1');
  gateA.failNextRelease();
  await a.release(channel, 'm.1');
  await gateA.retryHeld;
  // the run is resumed on node b before the release is sent again: a new take
  await b.hold(channel, 'm.1', 'conn-b2', 60_000, 'agent', 'owner-1');
  await gateA.letRetryGo();
  // Before, the late try removed whatever lease was there: the resumed run's
  assert.deepEqual(
    await lease(),
    { holder: 'conn-b2', counted: 1, due: true },
    'the late release removed the lease taken after the end',
  );
  assert.equal(errors.length, 2, 'only the mark and the first release failed');
});

it('a release removes a lease recorded by an older node (no take), as before takes had ids', async (t) => {
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const { a, channel, lease, writeOlderRecord, errors } = await twoNodes(t, 'older');
  // an end marked on a lease an older node took...
  await writeOlderRecord('conn-old');
  await a.ending(channel, 'm.1');
  await a.release(channel, 'm.1');
  assert.equal((await lease()).holder, undefined, 'the older lease the end found was left');
  // ...and one an older node took over (rewriting the record without its take) after the end's mark
  await a.hold(channel, 'm.1', 'conn-a', 60_000, 'agent', 'owner-1');
  await a.ending(channel, 'm.1');
  await writeOlderRecord('conn-old');
  await a.release(channel, 'm.1');
  assert.equal(
    (await lease()).holder,
    undefined,
    "the older node's record of the lease the end ended was left",
  );
  assert.deepEqual(errors, []);
});

it("a late release that leaves a lease taken again removes its own end's mark, never a later end's", async (t) => {
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const { a, b, gateA, channel, lease, marked } = await twoNodes(t, 'marks');
  for (const laterEnd of [false, true]) {
    await a.hold(channel, 'm.1', 'conn-a', 60_000, 'agent', 'owner-1');
    // the run ends through node a; its release cannot reach Redis and is sent again later
    await a.ending(channel, 'm.1');
    gateA.failNextRelease();
    await a.release(channel, 'm.1');
    await gateA.retryHeld;
    // meanwhile the run is resumed through node b (a new take), and perhaps being ended there
    await b.hold(channel, 'm.1', 'conn-b', 60_000, 'agent', 'owner-1');
    if (laterEnd) await b.ending(channel, 'm.1');
    await gateA.letRetryGo();
    assert.equal((await lease()).holder, 'conn-b', 'the late release removed the lease taken again');
    if (laterEnd) assert.equal(await marked(), true, "the late release removed the later end's mark");
    // Before, the late release left its mark: for up to retryAfter it held the new lease's expiry back
    else assert.equal(await marked(), false, "the late release left its end's mark");
    await b.release(channel, 'm.1');
    assert.deepEqual(await lease(), { holder: undefined, counted: 0, due: false });
  }
});

it('a release that cannot reach Redis is sent again 6 times with backoff, then given up', async (t) => {
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const redis = await startRedis();
  const connection = await connectRedis(redis.url, () => {});
  let releases = 0;
  let failing = false;
  const failingReleases: RedisConnection = {
    ...connection,
    send: async (key, args, readonly) => {
      const release = args[0]!.startsWith('EVAL') && args[2] === '5' && String(args[5]).includes(':ending:');
      if (failing && release) {
        releases++;
        throw new Error('connection lost (test)');
      }
      return connection.send(key, args, readonly);
    },
  };
  const leases = new RedisLeases({
    connection: failingReleases,
    prefix: 'giveup',
    sweepInterval: 60_000,
    holderTtl: 10_000,
    onError: () => {},
    expire: async () => true,
  });
  t.after(async () => {
    t.mock.timers.reset();
    await leases.close();
    await connection.close();
    await redis.close();
  });
  await leases.hold('session:giveup', 'g.1', 'conn-1', 60_000, 'agent');
  await leases.ending('session:giveup', 'g.1');
  failing = true;
  t.mock.timers.enable({ apis: ['setTimeout'] });
  await leases.release('session:giveup', 'g.1');
  // the backoff (250 ms doubling, at most 5 s) in steps, each try's failure settled between them
  for (let step = 0; step < 40; step++) {
    t.mock.timers.tick(1_000);
    for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  assert.equal(releases, 7, 'the first try and 6 more, then none: not retried for ever');
});
