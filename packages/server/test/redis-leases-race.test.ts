/**
 * Redis leases (redis-leases.ts): a connection recovered on a node takes its leases along
 * (`holderBack` reads its list from Redis, asynchronously). If that connection is lost again before
 * the list is read, the leases must still run out: taken as live, they would be renewed by this
 * node for ever and the run would stay `running` (seen in the Redis soak, seed 37: six runs of an
 * agent killed for good never abandoned).
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { DEFAULT_LIMITS } from '@mooring/protocol';
import { deferred, redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { ChannelService } from '../src/channel-service.ts';
import { LocalHub } from '../src/hub.ts';
import { LeaseManager, type Leases } from '../src/leases.ts';
import { RedisLeases } from '../src/redis-leases.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { connectRedis, type RedisConnection } from '../src/store/redis-connection.ts';

/**
 * A redis-server and a connection for one test, torn down leases first, then the connection, then
 * the server (the other way round, a sweep in flight would see the server gone). Errors the leases
 * report are collected, and the test asserts there were none before it ends.
 */
async function redisFor(t: TestContext) {
  const redis = await startRedis();
  const connection = await connectRedis(redis.url, () => {});
  const errors: unknown[] = [];
  const open: RedisLeases[] = [];
  t.after(async () => {
    for (const leases of open) await leases.close();
    await connection.close();
    await redis.close();
  });
  const leases = (options: Omit<ConstructorParameters<typeof RedisLeases>[0], 'connection' | 'onError'>) => {
    const made = new RedisLeases({ ...options, connection, onError: (err) => errors.push(err) });
    open.push(made);
    return made;
  };
  return { connection, errors, leases, url: redis.url };
}

/**
 * A reservation under a limit of 1, its give-back sent without waiting, and at once the owner's next
 * reservation: refused if the give-back ran after it.
 */
async function giveBackThenReserve(leases: RedisLeases): Promise<void> {
  const first = await leases.reserve('owner-1', 1, 1);
  assert.ok('id' in first);
  void leases.unreserve(first.id);
  const next = await leases.reserve('owner-1', 1, 1);
  assert.ok('id' in next, `the give-back ran after the next reservation: ${JSON.stringify(next)}`);
  await leases.unreserve(next.id);
}

/**
 * Two nodes' leases on one redis-server: A on the plain connection, B on one whose next HGET answer
 * can be held back (`holdNextRead`: the read is done, its answer late) until `gate` is resolved
 * (another command than HGET, when `holdNextRead` is given which).
 */
async function gatedNodes(t: TestContext, prefix: string) {
  const redis = await startRedis();
  const connection = await connectRedis(redis.url, () => {});
  const errors: unknown[] = [];
  const heldRead = deferred<void>();
  const gate = deferred<void>();
  let holding: ((args: string[]) => boolean) | undefined;
  const gated: RedisConnection = {
    cluster: connection.cluster,
    send: async (key, args, readonly) => {
      const reply = await connection.send(key, args, readonly);
      if (holding?.(args)) {
        holding = undefined;
        heldRead.resolve();
        await gate.promise;
      }
      return reply;
    },
    eachMaster: (args) => connection.eachMaster(args),
    subscriber: (onError) => connection.subscriber(onError),
    close: async () => {},
    destroy: () => {},
  };
  const options = {
    expire: async () => true,
    onError: (err: unknown) => errors.push(err),
    prefix,
    sweepInterval: 50,
    holderTtl: 10_000,
  };
  const a = new RedisLeases({ ...options, connection });
  const b = new RedisLeases({ ...options, connection: gated });
  t.after(async () => {
    await a.close();
    await b.close();
    await connection.close();
    await redis.close();
  });
  return {
    a,
    b,
    connection,
    errors,
    heldRead: heldRead.promise,
    gate,
    holdNextRead: (which: (args: string[]) => boolean = (args) => args[0] === 'HGET') => {
      holding = which;
    },
    /** Lets what node B does in this process, and writes on the same connection, be applied. */
    settle: async () => {
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setImmediate(r));
        await connection.send(undefined, ['PING']);
      }
    },
  };
}

/**
 * Two leases of one holder that run out together and are claimed in one batch; resolves once the
 * first one's expiry is under way (held until `finish`), naming the other, still to be expired.
 */
async function batchMidExpiry(t: TestContext, prefix: string) {
  const { errors, leases: make } = await redisFor(t);
  const expired: string[] = [];
  const first = deferred<void>();
  const leases = make({
    expire: async (_channel, serial) => {
      expired.push(serial);
      if (expired.length === 1) await first.promise; // the first expiry is slow
      return true;
    },
    prefix,
    sweepInterval: 50,
    holderTtl: 10_000,
  });
  leases.hold('session:race', 'e.1', 'conn-1', 100, 'agent');
  leases.hold('session:race', 'e.2', 'conn-1', 100, 'agent');
  leases.holderLost('conn-1'); // both run out together, and are claimed in one batch
  await waitFor(() => expired.length === 1, { timeout: 5_000 });
  return {
    leases,
    expired,
    errors,
    other: expired[0] === 'e.1' ? 'e.2' : 'e.1',
    /** Lets the first expiry end, then waits past the claim's retry for a wrong second one. */
    finish: async () => {
      first.resolve();
      await new Promise((r) => setTimeout(r, 300));
    },
  };
}

describe('Redis leases', { skip: redisSkipReason() }, () => {
  it('a lease whose holder is lost while its recovery reads the list still runs out', async (t) => {
    const { errors, leases } = await redisFor(t);
    const expired: string[] = [];
    const node = (name: string) =>
      leases({
        expire: async (channel, serial) => {
          expired.push(`${name}:${channel}:${serial}`);
          return true;
        },
        prefix: 'race',
        sweepInterval: 50,
        holderTtl: 10_000,
      });
    const a = node('a');
    const b = node('b');
    a.hold('session:race', 'e.1', 'conn-1', 200, 'agent');
    a.holderLost('conn-1'); // the connection left node A…
    await waitFor(async () => (await a.list('session:race')).length === 1);
    b.holderBack('conn-1'); // …was recovered on node B (its list read from Redis, not awaited)…
    b.holderLost('conn-1'); // …and lost again at once
    await waitFor(() => expired.length > 0, { timeout: 5_000, message: 'the lease never ran out' });
    assert.equal(expired.length, 1);
    assert.deepEqual(errors, []);
  });

  it('a connection lost and recovered on the same node keeps its leases: renewed again, never expired', async (t) => {
    const { errors, leases } = await redisFor(t);
    const expired: string[] = [];
    const a = leases({
      expire: async (_channel, serial) => {
        expired.push(serial);
        return true;
      },
      prefix: 'back',
      sweepInterval: 50,
      holderTtl: 10_000,
    });
    await a.hold('session:b', 'b.1', 'conn-1', 200, 'agent');
    a.holderLost('conn-1'); // a blip…
    a.holderBack('conn-1'); // …and the connection recovered here: its lease is live again
    await new Promise((r) => setTimeout(r, 800)); // four lease lengths, sixteen sweeps
    assert.deepEqual(expired, [], 'the lease of a recovered connection ran out');
    assert.ok(a.has('session:b', 'b.1'));
    assert.deepEqual(errors, []);
  });

  it('a lease released while its claimed batch is being expired is not abandoned', async (t) => {
    // Overdue leases are claimed in a batch and expired one at a time (a read and a write each); a
    // run that finishes meanwhile releases its lease, and must not be turned `abandoned` after.
    const race = await batchMidExpiry(t, 'release');
    race.leases.release('session:race', race.other); // its run finished while the first expiry was under way
    await waitFor(async () => (await race.leases.list('session:race')).length === 1);
    await race.finish();
    assert.deepEqual(race.expired, [race.expired[0]], `${race.other} was abandoned after it was released`);
    assert.deepEqual(race.errors, []);
  });

  it('a lease taken again while its claimed batch is being expired is not abandoned', async (t) => {
    // The same race with the agent back instead of the run finished: it writes to its run with a
    // lease again, which moves the deadline; the expiry must leave that run alone.
    const race = await batchMidExpiry(t, 'again');
    await race.leases.hold('session:race', race.other, 'conn-2', 60_000, 'agent'); // its agent is back
    await race.finish();
    assert.deepEqual(race.expired, [race.expired[0]], `${race.other} was abandoned after it was taken again`);
    assert.ok(race.leases.has('session:race', race.other));
    assert.deepEqual(race.errors, []);
  });

  it('a lease taken again while its expiry is being stored is kept: the expiry removes only the lease it claimed', async (t) => {
    // The agent writes with a lease again after the expiry read the message (its deadline moves):
    // the removal that ends the expiry must leave that new lease alone.
    const { errors, leases: make } = await redisFor(t);
    const second = deferred<void>();
    const leases: RedisLeases = make({
      expire: async (channel, serial) => {
        if (serial === 'f.1') await leases.hold(channel, serial, 'conn-2', 60_000, 'agent');
        else second.resolve();
        return true;
      },
      prefix: 'finish',
      sweepInterval: 50,
      holderTtl: 10_000,
    });
    await leases.hold('session:f', 'f.1', 'conn-1', 100, 'agent');
    await leases.hold('session:f', 'f.2', 'conn-1', 100, 'agent');
    leases.holderLost('conn-1');
    await second.promise; // expired after f.1 (an earlier deadline): f.1's expiry is done
    const kept = (await leases.list('session:f')).map((l) => l.serial);
    assert.ok(kept.includes('f.1'), `the lease taken again during its expiry was removed: ${kept}`);
    assert.deepEqual(errors, []);
  });

  it('a takeover decided on a read from before the run ended does not bring its lease back', async (t) => {
    // A write of the lease's clientId on a node that does not know the lease looks it up (a read),
    // then takes it over. When the run ended (its release) between that read and the takeover, the
    // takeover wrote the lease again, and it ran out later over the ended run: a finished run turned
    // `abandoned` (the Redis soak, seed 40 on three nodes).
    const { a, b, connection, errors, heldRead, gate, holdNextRead, settle } = await gatedNodes(
      t,
      'takeover',
    );
    await a.hold('session:t', 'e.1', 'conn-1', 5_000, 'agent');
    holdNextRead();
    b.touch('session:t', 'e.1', 'conn-2', 'agent'); // the agent, reconnected to B, writes: B looks the lease up
    await heldRead;
    b.release('session:t', 'e.1'); // …and ends the run before the look-up's answer is back
    await connection.send(undefined, ['PING']); // the release is applied
    gate.resolve();
    await settle(); // the look-up's takeover, if any, is applied
    assert.equal(b.has('session:t', 'e.1'), false, 'node B does not hold a lease that is gone');
    const field = JSON.stringify(['session:t', 'e.1']);
    assert.equal(await connection.send(undefined, ['ZSCORE', 'takeover:{leases}:deadlines', field]), null);
    assert.equal(await connection.send(undefined, ['HEXISTS', 'takeover:{leases}:records', field]), 0);
    assert.deepEqual(errors, []);
  });

  it('a takeover decided on a read from before someone else took the lease again leaves that lease alone', async (t) => {
    const { a, b, connection, errors, heldRead, gate, holdNextRead, settle } = await gatedNodes(t, 'retaken');
    await a.hold('session:t', 'e.1', 'conn-1', 5_000, 'agent');
    holdNextRead();
    b.touch('session:t', 'e.1', 'conn-2', 'agent'); // the agent, reconnected to B: B looks the lease up
    await heldRead;
    // before the look-up's answer is back, another publisher takes a lease on the message (a new take)
    await a.hold('session:t', 'e.1', 'conn-7', 5_000, 'other');
    gate.resolve();
    await settle(); // the look-up's takeover, if any, is applied
    const field = JSON.stringify(['session:t', 'e.1']);
    const record = JSON.parse(
      String(await connection.send(undefined, ['HGET', 'retaken:{leases}:records', field])),
    ) as { holder: string; clientId: string };
    assert.deepEqual(
      [record.holder, record.clientId],
      ['conn-7', 'other'],
      "the agent took the other's lease",
    );
    assert.equal(b.has('session:t', 'e.1'), false);
    assert.deepEqual(errors, []);
  });

  it('on a node that does not know the lease, a write of another anonymous holder does not take it over; its own holder’s does', async (t) => {
    const { connection, errors, leases } = await redisFor(t);
    const options = { expire: async () => true, prefix: 'anon', sweepInterval: 50, holderTtl: 10_000 };
    const a = leases(options);
    const b = leases(options);
    const records = 'anon:{leases}:records';
    const field = JSON.stringify(['session:v', 'v.1']);
    const holder = async () => {
      const raw = await connection.send(records, ['HGET', records, field]);
      return (JSON.parse(String(raw)) as { holder?: string }).holder;
    };
    // two tokens without a clientId: their holders (`holderKey`) tell them apart
    await a.hold('session:v', 'v.1', 'conn-1', 60_000, undefined, 'anonymous\u0000k\u0000A');
    b.touch('session:v', 'v.1', 'conn-9', undefined, 'anonymous\u0000k\u0000B');
    await new Promise((r) => setTimeout(r, 200)); // its look-up done, and its cache run out
    assert.equal(await holder(), 'conn-1', "visitor B's write took visitor A's lease over");
    assert.equal(b.has('session:v', 'v.1'), false);
    b.touch('session:v', 'v.1', 'conn-2', undefined, 'anonymous\u0000k\u0000A'); // A, reconnected to B
    await waitFor(async () => (await holder()) === 'conn-2', {
      message: 'visitor A on node B never took its lease over',
    });
    assert.deepEqual(errors, []);
  });

  it('a lease ended through another node is forgotten by the node whose connection holds it', async (t) => {
    // The agent's connection is on node A, its end (`lease: 0`) arrives through node B (a REST call,
    // or the agent's second connection). B releases the lease in Redis; A must forget it too, or it
    // renews it in vain (and takes it for held) for as long as the connection lives.
    const redis = await redisFor(t);
    const node = () =>
      redis.leases({ expire: async () => true, prefix: 'ended', sweepInterval: 50, holderTtl: 10_000 });
    const a = node();
    const b = node();
    await a.hold('session:e', 'e.1', 'conn-1', 5_000, 'agent', 'owner-1');
    assert.equal(await a.heldBy('owner-1'), 1);
    b.release('session:e', 'e.1');
    await waitFor(() => !a.has('session:e', 'e.1'), {
      timeout: 5_000,
      message: 'node A still holds a lease released through node B',
    });
    assert.equal(await a.heldBy('owner-1'), 0);
    assert.deepEqual(await a.list('session:e'), []);
    assert.deepEqual(redis.errors, []);
  });

  it('an owner count left behind by a release that did not keep it (an older node) heals', async (t) => {
    // During a rolling upgrade a node of an earlier version may end a run: it removes the lease's
    // deadline and record but knows nothing of the owners' counts. The walk over `owner-of` finds
    // the lease gone and uncounts it; the owner's other lease stays counted.
    const { connection, errors, leases } = await redisFor(t);
    const a = leases({ expire: async () => true, prefix: 'heal', sweepInterval: 20, holderTtl: 10_000 });
    await a.hold('session:h', 'h.1', 'conn-1', 60_000, 'agent', 'owner-1');
    await a.hold('session:h', 'h.2', 'conn-1', 60_000, 'agent', 'owner-1');
    assert.equal(await a.heldBy('owner-1'), 2);
    const field = JSON.stringify(['session:h', 'h.1']);
    await connection.send('heal:{leases}:deadlines', ['ZREM', 'heal:{leases}:deadlines', field]);
    await connection.send('heal:{leases}:records', ['HDEL', 'heal:{leases}:records', field]);
    await waitFor(async () => (await a.heldBy('owner-1')) === 1, {
      timeout: 5_000,
      message: 'the count of a lease whose record is gone never healed',
    });
    await new Promise((r) => setTimeout(r, 500)); // more walks: the live lease stays counted
    assert.equal(await a.heldBy('owner-1'), 1);
    // …and it is the live lease that is counted: its release takes the owner to 0
    await a.release('session:h', 'h.2');
    assert.equal(await a.heldBy('owner-1'), 0, 'the walk uncounted the live lease instead');
    assert.deepEqual(errors, []);
  });

  it('reserved leases count on every node until they are written or given back', async (t) => {
    // Two nodes' leases on one Redis: what one reserved is seen by the other's check at once; the
    // HOLD that writes a lease turns its place from reserved into counted in the same step (no
    // moment where it counts twice, which would refuse a create that fits); what a publish did not
    // write is given back.
    const { errors, leases } = await redisFor(t);
    const options = { expire: async () => true, prefix: 'reserve', sweepInterval: 1_000, holderTtl: 10_000 };
    const a = leases(options);
    const b = leases(options);
    const first = await a.reserve('owner-1', 2, 3);
    assert.ok('id' in first, 'two of three fit');
    assert.deepEqual(await b.reserve('owner-1', 2, 3), { held: 2 }, 'the other node sees the reservation');
    await a.hold('session:r', 'r.1', 'conn-1', 60_000, 'agent', 'owner-1', first.id);
    assert.equal(await a.heldBy('owner-1'), 1);
    // one counted, one still reserved (the publish is not done): two more would make four
    assert.deepEqual(await b.reserve('owner-1', 2, 3), { held: 2 }, 'a written lease counted once');
    await a.unreserve(first.id); // the publish wrote one of its two
    const second = await b.reserve('owner-1', 2, 3);
    assert.ok('id' in second, `the place not written was given back: ${JSON.stringify(second)}`);
    await b.unreserve(second.id);
    assert.deepEqual(errors, []);
  });

  it("a write of the lease's clientId from another connection takes the lease over; another clientId's write, or a run ended meanwhile, does not", async (t) => {
    const { connection, errors, leases } = await redisFor(t);
    const options = { expire: async () => true, prefix: 'touch', sweepInterval: 1_000, holderTtl: 10_000 };
    const a = leases(options);
    const records = 'touch:{leases}:records';
    const field = JSON.stringify(['session:t', 't.1']);
    /** The lease's record once what this node sent before is done (one connection: in order). */
    const record = async () => {
      await connection.send(undefined, ['PING']);
      const raw = await connection.send(records, ['HGET', records, field]);
      return raw === null
        ? undefined
        : (JSON.parse(String(raw)) as { holder?: string; clientId?: string; take?: string });
    };
    await a.hold('session:t', 't.1', 'conn-1', 60_000, 'agent');
    a.touch('session:t', 't.1', 'conn-2', 'intruder');
    const { take, ...unmoved } = (await record()) ?? {};
    assert.deepEqual(unmoved, {
      channel: 'session:t',
      serial: 't.1',
      ms: 60_000,
      clientId: 'agent',
      holder: 'conn-1',
    });
    a.touch('session:t', 't.1', 'conn-3', 'agent'); // the agent, reconnected
    const moved = await record();
    assert.equal(moved?.holder, 'conn-3', "the clientId's new connection did not take the lease over");
    assert.equal(moved?.take, take, 'a takeover moves the same take of the lease');
    // the run ends through another node; this node still knows the lease, and a late write of the
    // agent must not bring it back
    await leases(options).release('session:t', 't.1');
    a.touch('session:t', 't.1', 'conn-4', 'agent');
    assert.equal(await record(), undefined, 'a takeover brought an ended lease back');
    await waitFor(() => !a.has('session:t', 't.1'), { message: 'the node kept the ended lease' });
    assert.deepEqual(errors, []);
  });

  it("on a node that does not know the lease, a write of its clientId takes it over after a look-up; another clientId's write does not", async (t) => {
    const { connection, errors, leases } = await redisFor(t);
    // short sweeps: a look-up that found no lease to take is not repeated for one sweep interval
    const options = { expire: async () => true, prefix: 'lookup', sweepInterval: 50, holderTtl: 10_000 };
    const a = leases(options);
    const b = leases(options);
    const records = 'lookup:{leases}:records';
    const field = JSON.stringify(['session:l', 'l.1']);
    const holder = async () => {
      const raw = await connection.send(records, ['HGET', records, field]);
      return (JSON.parse(String(raw)) as { holder?: string }).holder;
    };
    await a.hold('session:l', 'l.1', 'conn-1', 60_000, 'agent');
    b.touch('session:l', 'l.1', 'conn-9', 'intruder');
    await new Promise((r) => setTimeout(r, 200)); // its look-up done, and its cache run out
    assert.equal(
      await holder(),
      'conn-1',
      'another clientId took the lease over on a node that looked it up',
    );
    assert.equal(b.has('session:l', 'l.1'), false);
    b.touch('session:l', 'l.1', 'conn-2', 'agent'); // the agent, reconnected to node B
    await waitFor(async () => (await holder()) === 'conn-2', {
      message: 'the agent on node B never took its lease over',
    });
    assert.ok(b.has('session:l', 'l.1'));
    assert.deepEqual(errors, []);
  });

  it("a live holder's list of leases outlives the recovery window it was written with: the sweeps keep refreshing it", async (t) => {
    // The list lets a node that recovers the connection take its leases along. Written with a TTL of
    // the recovery window, it would be gone for a connection that lived longer than that, and its
    // runs abandoned after a recovery elsewhere.
    const { connection, errors, leases } = await redisFor(t);
    const options = { expire: async () => true, prefix: 'list', sweepInterval: 50, holderTtl: 300 };
    const a = leases(options);
    await a.hold('session:k', 'k.1', 'conn-1', 60_000, 'agent');
    await new Promise((r) => setTimeout(r, 1_000)); // three windows and more
    const list = 'list:{leases}:holder:conn-1';
    assert.equal(await connection.send(list, ['EXISTS', list]), 1, "the live holder's list ran out");
    const b = leases(options);
    a.holderMoved('conn-1');
    b.holderBack('conn-1');
    await waitFor(() => b.has('session:k', 'k.1'), { message: 'the recovery elsewhere found no lease' });
    assert.deepEqual(errors, []);
  });

  it('a connection recovered on another node takes along only the leases it still holds', async (t) => {
    // Its list in Redis may name leases another connection of its clientId took over since, or that
    // ended: those are struck off the list, not adopted (renewed by two nodes, or brought back).
    const { connection, errors, leases } = await redisFor(t);
    const options = { expire: async () => true, prefix: 'adopt', sweepInterval: 1_000, holderTtl: 10_000 };
    const a = leases(options);
    const b = leases(options);
    await a.hold('session:a', 'a.1', 'conn-1', 60_000, 'agent'); // taken over below
    await a.hold('session:a', 'a.2', 'conn-1', 60_000, 'agent'); // ended below
    await a.hold('session:a', 'a.3', 'conn-1', 60_000, 'agent'); // still conn-1's
    a.touch('session:a', 'a.1', 'conn-2', 'agent');
    await a.release('session:a', 'a.2');
    a.holderMoved('conn-1'); // conn-1 is recovered on node B
    b.holderBack('conn-1');
    const list = 'adopt:{leases}:holder:conn-1';
    await waitFor(async () => ((await connection.send(list, ['SCARD', list])) as number) === 1, {
      message: 'the list still names leases conn-1 no longer holds',
    });
    await waitFor(() => b.has('session:a', 'a.3'), { message: 'the lease conn-1 holds was not adopted' });
    assert.equal(b.has('session:a', 'a.1'), false, 'a lease taken over by conn-2 was adopted');
    assert.equal(b.has('session:a', 'a.2'), false, 'an ended lease was adopted');
    assert.deepEqual(errors, []);
  });

  it("a holder's list names only the leases it holds: one released, expired, taken over or let go leaves it", async (t) => {
    // A recovery elsewhere reads the list. Struck off only by a recovery, entries of ended leases
    // piled up on a long-lived connection's list (outside review: 500 runs ended, 501 entries for 1
    // lease), and the recovery walked them all before renewing the live one.
    const { connection, errors, leases } = await redisFor(t);
    const expired: string[] = [];
    const options = {
      expire: async (_channel: string, serial: string) => {
        expired.push(serial);
        return true;
      },
      prefix: 'struck',
      sweepInterval: 50,
      holderTtl: 10_000,
    };
    const a = leases(options);
    const b = leases(options);
    const c = leases(options);
    const field = (channel: string, serial: string) => JSON.stringify([channel, serial]);
    const listed = async (id: string) => {
      const list = `struck:{leases}:holder:${id}`;
      return ((await connection.send(list, ['SMEMBERS', list])) as string[]).map(String).sort();
    };
    for (const serial of ['k.1', 'r.1', 'r.2', 't.1'])
      await a.hold('session:s', serial, 'conn-1', 60_000, 'agent');
    await a.hold('session:gone', 'g.1', 'conn-1', 60_000, 'agent');
    await c.hold('session:s', 'x.1', 'conn-1', 100, 'agent'); // held on node C, which loses the connection:
    c.holderLost('conn-1'); // the lease runs out there
    assert.equal((await listed('conn-1')).length, 6);
    await a.release('session:s', 'r.1'); // ended on its node
    await b.release('session:s', 'r.2'); // ended through another node
    a.touch('session:s', 't.1', 'conn-2', 'agent'); // taken over by another connection of its clientId
    a.holderLetGo('conn-1', (channel) => channel !== 'session:gone'); // its rights there taken away
    await waitFor(() => expired.includes('x.1'), { timeout: 5_000, message: 'the lease never ran out' });
    await waitFor(async () => (await listed('conn-1')).length === 1, {
      timeout: 5_000,
      message: 'the list still names leases conn-1 no longer holds',
    });
    assert.deepEqual(await listed('conn-1'), [field('session:s', 'k.1')]);
    assert.deepEqual(await listed('conn-2'), [field('session:s', 't.1')]);
    assert.deepEqual(errors, []);
  });

  it('an owner whose leases and reservations all ended leaves no count behind in Redis', async (t) => {
    // Counts that fall to 0 are removed, not kept at 0: one field per owner that ever held a lease
    // would pile up in the `owners` and `reserved` hashes otherwise.
    const { connection, errors, leases } = await redisFor(t);
    const a = leases({ expire: async () => true, prefix: 'zero', sweepInterval: 1_000, holderTtl: 10_000 });
    const fields = async (hash: string) => {
      const key = `zero:{leases}:${hash}`;
      return (await connection.send(key, ['HGETALL', key])) as string[];
    };
    const reservation = await a.reserve('owner-1', 2, 3);
    assert.ok('id' in reservation);
    await a.hold('session:z', 'z.1', 'conn-1', 60_000, 'agent', 'owner-1', reservation.id);
    assert.deepEqual(await fields('owners'), ['owner-1', '1']);
    assert.deepEqual(await fields('reserved'), ['owner-1', '1']);
    await a.unreserve(reservation.id); // the place the publish did not write
    assert.deepEqual(await fields('reserved'), [], 'a reservation given back left its owner at 0');
    await a.release('session:z', 'z.1');
    assert.deepEqual(await fields('owners'), [], 'a released lease left its owner at 0');
    // A reservation whose every place became a lease is gone with its last one, deadline and all.
    const one = await a.reserve('owner-1', 1, 3);
    assert.ok('id' in one);
    await a.hold('session:z', 'z.2', 'conn-1', 60_000, 'agent', 'owner-1', one.id);
    assert.deepEqual(await fields('reserved-by'), [], 'a used-up reservation was kept');
    assert.equal(
      await connection.send('zero:{leases}:reservations', ['ZCARD', 'zero:{leases}:reservations']),
      0,
    );
    assert.deepEqual(await fields('reserved'), []);
    await a.release('session:z', 'z.2');
    // A lease of no owner is counted for nobody.
    await a.hold('session:z', 'z.3', 'conn-1', 60_000, 'agent');
    assert.deepEqual(await fields('owners'), [], 'a lease of no owner was counted');
    await a.release('session:z', 'z.3');
    assert.deepEqual(errors, []);
  });

  it('a give-back sent before a reservation is done before it, also the first time Redis sees the script', async (t) => {
    // A publish gives its reservation back without waiting, and the owner's next create may follow
    // at once. A script Redis does not know yet (NOSCRIPT) must not be sent again behind it.
    const { errors, leases } = await redisFor(t);
    const a = leases({ expire: async () => true, prefix: 'order', sweepInterval: 1_000, holderTtl: 10_000 });
    await giveBackThenReserve(a);
    assert.deepEqual(errors, []);
  });

  it('…and after Redis lost its scripts and the connection was made again (a restart)', async (t) => {
    const { connection, errors, leases, url } = await redisFor(t);
    const a = leases({
      expire: async () => true,
      prefix: 'restart',
      sweepInterval: 1_000,
      holderTtl: 10_000,
    });
    const first = await a.reserve('owner-1', 1, 1);
    assert.ok('id' in first);
    await a.unreserve(first.id); // both scripts known to Redis and sent by SHA from here on
    // as after a restart: the scripts are gone, and the node's connection is made again
    const admin = await connectRedis(url, () => {});
    await admin.send(undefined, ['SCRIPT', 'FLUSH']);
    await admin.send(undefined, ['CLIENT', 'KILL', 'TYPE', 'normal']);
    await admin.close();
    await waitFor(
      async () =>
        connection.send(undefined, ['PING']).then(
          () => true,
          () => false,
        ),
      {
        message: 'the connection was never made again',
      },
    );
    await giveBackThenReserve(a);
    assert.deepEqual(errors, []);
  });

  it('a reservation whose node never gives it back stops counting after its deadline', async (t) => {
    const { errors, leases } = await redisFor(t);
    const options = { expire: async () => true, prefix: 'stale', sweepInterval: 1_000, holderTtl: 10_000 };
    const dying = leases({ ...options, reservationTtl: 200 });
    const other = leases(options);
    assert.ok('id' in (await dying.reserve('owner-1', 3, 3)));
    assert.deepEqual(await other.reserve('owner-1', 1, 3), { held: 3 });
    await new Promise((r) => setTimeout(r, 300));
    const after = await other.reserve('owner-1', 3, 3);
    assert.ok('id' in after, `a stale reservation still counted: ${JSON.stringify(after)}`);
    assert.deepEqual(errors, []);
  });

  it('a lease expired by another node is forgotten by the node that took it', async (t) => {
    // A REST publisher's lease (no connection holds it) is expired by whichever node claims it first.
    // Node A took it; node B expires it here (A's own expiry, if it claims first, waits until B's is
    // done, then finds the message changed): A must forget it, or it keeps a lease Redis no longer
    // has (in `has`, which decides whether a write takes a lease); and its owner's count drops.
    const redis = await redisFor(t);
    const expiredOnB = deferred<void>();
    const a = redis.leases({
      expire: async () => {
        await expiredOnB.promise;
        return false;
      },
      prefix: 'expired-elsewhere',
      sweepInterval: 50,
      retryAfter: 200,
      holderTtl: 10_000,
    });
    redis.leases({
      expire: async () => {
        expiredOnB.resolve();
        return true;
      },
      prefix: 'expired-elsewhere',
      sweepInterval: 50,
      retryAfter: 200,
      holderTtl: 10_000,
    });
    await a.hold('session:x', 'e.1', undefined, 100, 'agent', 'owner-1');
    assert.equal(await a.heldBy('owner-1'), 1);
    await expiredOnB.promise;
    await waitFor(() => !a.has('session:x', 'e.1'), {
      timeout: 5_000,
      message: 'node A still holds a lease node B expired',
    });
    // uncounted once node B's expiry removed it (node A may forget it a little earlier)
    await waitFor(async () => (await a.heldBy('owner-1')) === 0, {
      timeout: 5_000,
      message: 'Redis still counts the expired lease',
    });
    assert.deepEqual(redis.errors, []);
  });

  it('a lease released while a recovered connection adopts it is not kept on the adopting node', async (t) => {
    // A connection recovered on node B takes its leases along: B reads the holder's list with the
    // records (ADOPT), then holds the leases. A run that ends between that read and the hold must
    // not leave B holding (and counting) a lease Redis no longer has.
    const { a, b, connection, errors, heldRead, gate, holdNextRead, settle } = await gatedNodes(t, 'adopt');
    await a.hold('session:ad', 'e.1', 'conn-1', 5_000, 'agent');
    a.holderLost('conn-1'); // the connection left node A…
    // the script whose first key is the list: ADOPT's page
    holdNextRead((args) => args[0]!.startsWith('EVAL') && args[3] === 'adopt:{leases}:holder:conn-1');
    b.holderBack('conn-1'); // …and is recovered on node B, which reads the lease's record…
    await heldRead;
    a.release('session:ad', 'e.1'); // …while the run is ended (through node A)
    await connection.send(undefined, ['PING']);
    gate.resolve();
    await settle(); // the adoption has taken the lease (and its renewal may have answered)
    await waitFor(() => !b.has('session:ad', 'e.1'), {
      timeout: 5_000,
      message: 'node B holds a lease released while it adopted it',
    });
    assert.deepEqual(await b.list('session:ad'), []);
    assert.deepEqual(errors, []);
  });

  it('a renewal that overtakes a lease still being written does not forget the lease', async (t) => {
    // A script Redis forgot (a restart, a failover) is sent again in full after NOSCRIPT: a lease's
    // HOLD can then reach Redis after a renewal sent later, which finds the lease not there yet.
    const redis = await startRedis();
    const connection = await connectRedis(redis.url, () => {});
    const errors: unknown[] = [];
    const a = new RedisLeases({
      expire: async () => true,
      onError: (err) => errors.push(err),
      connection,
      prefix: 'overtake',
      sweepInterval: 60_000, // no tick during the test: the renewals are the ones it makes
      holderTtl: 60_000,
    });
    t.after(async () => {
      await a.close();
      await connection.close();
      await redis.close();
    });
    await a.hold('session:o', 'e.0', 'conn-0', 5_000, 'agent');
    await connection.send(undefined, ['SCRIPT', 'FLUSH']);
    a.holderLost('conn-0'); // a renewal: RENEW is loaded again, HOLD is not
    for (let i = 0; i < 3; i++) await connection.send(undefined, ['PING']);
    const holding = a.hold('session:o', 'e.1', 'conn-1', 5_000, 'agent'); // NOSCRIPT, then sent in full…
    a.holderLost('conn-1'); // …after this renewal, which finds no e.1 yet
    await holding;
    for (let i = 0; i < 3; i++) await connection.send(undefined, ['PING']);
    assert.equal(a.has('session:o', 'e.1'), true, 'the node forgot a lease Redis has');
    assert.equal((await a.list('session:o')).length, 2);
    assert.deepEqual(errors, []);
  });

  it('an end that is refused leaves no ending mark in Redis (a client cannot pile marks up)', async (t) => {
    // An end (`lease: 0`) marks its run in Redis before it is stored; only its release removes the
    // mark. An end the store refuses (a serial that does not exist) is never released: its mark must
    // run out on its own, or a publisher could fill Redis with marks, one per made-up serial.
    const redis = await startRedis();
    const connection = await connectRedis(redis.url, () => {});
    const errors: unknown[] = [];
    const service = new ChannelService(
      new MemoryStore(),
      new LocalHub(),
      DEFAULT_LIMITS,
      undefined,
      (err) => errors.push(err),
      (options) =>
        new RedisLeases({
          ...options,
          connection,
          prefix: 'marks',
          sweepInterval: 20,
          // a mark lives retryAfter: long enough to count all 20 on a loaded machine
          retryAfter: 3_000,
          holderTtl: 10_000,
        }),
    );
    t.after(async () => {
      await service.leases.close();
      await connection.close();
      await redis.close();
    });
    const identity = {
      keyName: 'k',
      viaToken: false,
      access: { allows: () => true },
      clientId: 'agent',
      connectionId: 'conn-1',
    };
    const [run] = await service.publish('session:m', [{ name: 'run', id: 'run-1', data: '' }], identity);
    const marks = async () =>
      ((await connection.send(undefined, ['KEYS', 'marks:{leases}:ending:*'])) as unknown[]).length;
    for (let i = 0; i < 20; i++) {
      const made = `${run!.serial.slice(0, -4)}${String(9000 + i)}`; // a serial of this log that does not exist
      await assert.rejects(
        service.publish(
          'session:m',
          [{ action: 'update', serial: made, id: `end-${i}`, lease: 0 }],
          identity,
        ),
        (err: Error & { code?: string }) => err.code === 'message_not_found',
      );
    }
    assert.equal(await marks(), 20, 'each end marked its run before it was refused');
    await waitFor(async () => (await marks()) === 0, {
      timeout: 15_000,
      message: 'the marks of refused ends stay in Redis',
    });
    assert.deepEqual(errors, []);
  });

  it('a publish that takes a lease is acknowledged only once the lease is recorded', async () => {
    // A lease recorded in Redis after the ack could be lost with a node killed in between, and the
    // run would then never expire (the Redis soak, seed 38: a run of a killed agent left running).
    const recorded = deferred<void>();
    let holds = 0;
    const service = new ChannelService(
      new MemoryStore(),
      new LocalHub(),
      DEFAULT_LIMITS,
      undefined,
      undefined,
      (options) => {
        const real = new LeaseManager(options);
        return new Proxy(real, {
          get(target, key) {
            if (key === 'hold')
              return (...args: Parameters<Leases['hold']>) => {
                holds++;
                Reflect.apply(target.hold, target, args);
                return recorded.promise; // written elsewhere, not yet
              };
            const value = Reflect.get(target, key, target);
            return typeof value === 'function' ? value.bind(target) : value;
          },
        });
      },
    );
    let acked = false;
    const publishing = service
      .publish('session:ack', [{ name: 'run', id: 'run-1', data: '', lease: 5_000 }], {
        keyName: 'k',
        viaToken: false,
        access: { allows: () => true },
        clientId: 'agent',
        connectionId: 'conn-1',
      })
      .then(() => {
        acked = true;
      });
    await waitFor(() => holds === 1);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(acked, false, 'acknowledged before its lease was recorded');
    recorded.resolve();
    await publishing;
    assert.equal(acked, true);
  });
});
