/**
 * A node's presence index on Redis (`<prefix>:presence-node:<node>`: the members it holds, for the
 * sweep that makes them leave at its death) lists what the node holds, and a dead node's index is
 * swept once, in batches. Found by an outside review of the Redis engine: no path of a live node took
 * an entry out (300 connections that entered and closed left 300 entries, with no TTL, while the
 * channels held none), and the sweep, started every second with no guard against the last one still
 * running, read the whole set each time and ran one awaited leave and one SREM per entry: a dead
 * node's 100,600 entries took another node 37 s, 770,534 leave scripts and ~60 whole-set SMEMBERS.
 * Counts here, not times: the leaves a sweeper sends, per entry and at once, are counted on its own
 * connection.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import { redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { createClient } from 'redis';
import type { MooringServer } from '../src/index.ts';
import { RedisPresence, type RedisPresenceOptions } from '../src/redis-presence.ts';
import { connectRedis, type RedisConnection } from '../src/store/redis-connection.ts';
import { RawClient } from './support/raw-client.ts';
import { presenceNode, redisNode } from './support/redis-fixtures.ts';

const skip = redisSkipReason();
const entry = (channel: string, connectionId: string) => JSON.stringify([channel, connectionId]);
const ack = (f: ServerFrame) => assert.equal(f.type, 'ack', JSON.stringify(f));

/** What a node sent on its connection: the presence script's leaves, and the other commands by name. */
interface Watch {
  /** Leaves run for a node (by its id), per index entry: how many times each was sent. */
  leaves: Map<string, Map<string, number>>;
  /** Presence-script leaves sent and not answered yet, and the most there were at once. */
  inFlight: number;
  maxInFlight: number;
  /** The other commands sent (not scripts): name and key. */
  commands: Array<[string, string]>;
  /** Refuse (without sending) the presence-script ops this says to: as a Redis that did not run them. */
  refuse: (op: string, node: string) => boolean;
}

/** `connection`, watched: every presence-script op and every other command it sends are counted in `watch`. */
function watched(connection: RedisConnection, watch: Watch): RedisConnection {
  const send: RedisConnection['send'] = (key, args, readonly) => {
    if (args[0] !== 'EVAL' && args[0] !== 'EVALSHA') {
      watch.commands.push([String(args[0]).toUpperCase(), String(args[1])]);
      return connection.send(key, args, readonly);
    }
    const keys = Number(args[2]);
    if (!String(args[3]).endsWith(':presence')) return connection.send(key, args, readonly);
    const [op, connectionId, node] = [args[3 + keys]!, args[4 + keys]!, args[5 + keys]!];
    if (watch.refuse(op, node)) return Promise.reject(new Error(`refused ${op} (test)`));
    if (op !== 'leave') return connection.send(key, args, readonly);
    const channel = JSON.parse(args[8 + keys]!) as string;
    let counts = watch.leaves.get(node);
    if (!counts) {
      counts = new Map();
      watch.leaves.set(node, counts);
    }
    const at = entry(channel, connectionId);
    counts.set(at, (counts.get(at) ?? 0) + 1);
    watch.inFlight += 1;
    watch.maxInFlight = Math.max(watch.maxInFlight, watch.inFlight);
    const sent = connection.send(key, args, readonly);
    const done = () => {
      watch.inFlight -= 1;
    };
    sent.then(done, done);
    return sent;
  };
  return new Proxy(connection, {
    get: (target, prop) => (prop === 'send' ? send : Reflect.get(target, prop)),
  });
}

/** A presence node whose connection is watched (`watched`), closed after the test. */
async function watchedNode(
  t: { after(fn: () => unknown): void },
  url: string,
  options: Pick<RedisPresenceOptions, 'prefix' | 'grace'> & { onError: (err: unknown) => void },
): Promise<{ node: RedisPresence; watch: Watch }> {
  const watch: Watch = { leaves: new Map(), inFlight: 0, maxInFlight: 0, commands: [], refuse: () => false };
  const connection = await connectRedis(url, options.onError);
  const node = new RedisPresence({
    connection: watched(connection, watch),
    maxMembers: 100,
    maxChannelsPerConnection: 10,
    maxBytesPerConnection: 1000,
    maxDroppedBytesPerClient: 100_000,
    recoverWithin: 60_000,
    nodeTtl: 300,
    sweepInterval: 100,
    ...options,
  });
  t.after(async () => {
    await node.close();
    await connection.close();
  });
  return { node, watch };
}

/** A fresh redis-server and a plain client to look into it, both stopped after the test. */
async function redisWithInspect(t: { after(fn: () => unknown): void }) {
  const redis = await startRedis();
  t.after(() => redis.close());
  const inspect = createClient({ url: redis.url });
  inspect.on('error', () => {}); // Redis stops first at the end
  await inspect.connect();
  t.after(() => inspect.destroy());
  return { redis, inspect };
}

/** Waits until the index `key` lists exactly `entries` (in any order), then asserts it. */
async function indexHolds(
  inspect: ReturnType<typeof createClient>,
  key: string,
  entries: string[],
  message: string,
): Promise<void> {
  const want = [...entries].sort();
  const listed = async () => (await inspect.sMembers(key)).sort();
  await waitFor(async () => JSON.stringify(await listed()) === JSON.stringify(want), {
    timeout: 5_000,
  }).catch(() => {});
  assert.deepEqual(await listed(), want, message);
}

describe('Redis presence: a node’s index lists what it holds', () => {
  it(
    'members that left, whose connection closed, or whose grace ended after a drop leave their node’s index; one still present stays',
    { skip },
    async (t) => {
      const { redis, inspect } = await redisWithInspect(t);
      const server: MooringServer = await redisNode(redis.url, { presenceGrace: 300 });
      t.after(() => server.close());
      const channel = 'room:index';
      const N = 20;
      const present = async (name: string, count: number) =>
        Promise.all(
          Array.from({ length: count }, async (_, i) => {
            const client = await RawClient.connect(server.url, { clientId: `${name}-${i}` });
            t.after(() => client.close());
            ack(await client.request({ type: 'presence', channel, action: 'enter' }));
            return client;
          }),
        );
      const [stays] = await present('stays', 1);
      const [index, ...others] = await inspect.keys('mooring:presence-node:*');
      assert.ok(index && others.length === 0, 'one node, one index');
      await indexHolds(
        inspect,
        index,
        [entry(channel, stays!.connected.connectionId)],
        'listed once entered',
      );

      const left = await present('left', N);
      for (const c of left) ack(await c.request({ type: 'presence', channel, action: 'leave' }));
      const closed = await present('closed', N);
      await Promise.all(
        closed.map((c) => {
          c.send({ type: 'close' });
          return c.closed();
        }),
      );
      const dropped = await present('dropped', N);
      for (const c of dropped) c.kill();
      await waitFor(async () => (await inspect.hLen(`mooring:{${channel}}:presence`)) === 1, {
        message: 'the members never all left',
      });
      await indexHolds(
        inspect,
        index,
        [entry(channel, stays!.connected.connectionId)],
        'the index lists only the member still present',
      );
    },
  );

  it(
    'a connection recovered on another node leaves the first node’s index once that node took its members over, not before',
    { skip },
    async (t) => {
      const { redis, inspect } = await redisWithInspect(t);
      const errors: unknown[] = [];
      const node = () =>
        presenceNode(t, redis.url, {
          prefix: 'mv',
          grace: 60_000,
          maxDroppedBytesPerClient: 100_000,
          nodeTtl: 300,
          sweepInterval: 100,
          onError: (err) => errors.push(err),
        });
      const a = await node();
      const b = await node();
      const [ofA, ofB] = [`mv:presence-node:${a.nodeId}`, `mv:presence-node:${b.nodeId}`];
      await a.enter('p:0', 'c', 'u', undefined);
      await a.enter('p:1', 'c', 'u', undefined);
      await a.enter('p:0', 'stays', 'v', undefined);
      await a.enter('p:0', 'late', 'w', undefined);
      b.connectionResumed('c');
      await waitFor(() => b.channelsOf('c').length === 2, { message: 'node b never took c over' });
      a.connectionMoved('c');
      // its notice before the take-over: still held by a, so still listed there (a's death must make it leave)
      a.connectionMoved('late');
      await indexHolds(
        inspect,
        ofA,
        [entry('p:0', 'stays'), entry('p:0', 'late')],
        'c out of a’s index, late (still held by a) in it',
      );
      await indexHolds(inspect, ofB, [entry('p:0', 'c'), entry('p:1', 'c')], 'c in b’s index');
      await new Promise((resolve) => setTimeout(resolve, 500)); // five of a's beats
      assert.ok(await inspect.sIsMember(ofA, entry('p:0', 'late')), 'late, still held by a, is still listed');
      b.connectionResumed('late');
      await indexHolds(inspect, ofA, [entry('p:0', 'stays')], 'late out of a’s index once b took it over');
      assert.deepEqual(errors, []);
    },
  );

  it(
    'members replaced at maxMembersPerClient, or let go past maxDroppedBytesPerClient, leave their node’s index',
    { skip },
    async (t) => {
      const { redis, inspect } = await redisWithInspect(t);
      const errors: unknown[] = [];
      const node = (
        prefix: string,
        extra: { maxMembersPerClient?: number; maxDroppedBytesPerClient?: number },
      ) =>
        presenceNode(t, redis.url, {
          prefix,
          grace: 60_000, // no leave here is the grace's
          maxDroppedBytesPerClient: 100_000,
          nodeTtl: 300,
          sweepInterval: 100,
          onError: (err) => errors.push(err),
          ...extra,
        });
      const clientsHash = (prefix: string, channel: string) => `${prefix}:{${channel}}:presence-clients`;

      // replaced by a new member of its clientId on the same node: out at once
      const a = await node('cap', { maxMembersPerClient: 1 });
      const ofA = `cap:presence-node:${a.nodeId}`;
      await a.enter('room:a', 'c1', 'tabs', undefined);
      a.connectionLost('c1');
      await waitFor(async () =>
        /^[1-9]/.test((await inspect.hGet(clientsHash('cap', 'room:a'), '"tabs"')) ?? ''),
      );
      await a.enter('room:a', 'c2', 'tabs', undefined);
      assert.deepEqual(
        (await a.members('room:a')).map((m) => m.connectionId),
        ['c2'],
        'c1 replaced',
      );
      await indexHolds(inspect, ofA, [entry('room:a', 'c2')], 'the member replaced on its own node is out');

      // replaced through another node: out of its node's index when that node's recovery finds it gone
      const b = await node('cap', { maxMembersPerClient: 1 });
      await a.enter('room:b', 'd1', 'pads', undefined);
      a.connectionLost('d1');
      await waitFor(async () =>
        /^[1-9]/.test((await inspect.hGet(clientsHash('cap', 'room:b'), '"pads"')) ?? ''),
      );
      await b.enter('room:b', 'd2', 'pads', undefined);
      assert.deepEqual(
        (await b.members('room:b')).map((m) => m.connectionId),
        ['d2'],
        'd1 replaced',
      );
      a.connectionResumed('d1'); // gone: it enters again, refused (d2 is connected)
      await indexHolds(inspect, ofA, [entry('room:a', 'c2')], 'the member replaced on another node is out');

      // let go past the bound on what a clientId's dropped connections keep (two of 1,000 fit)
      const data = 'x'.repeat(742); // 1,000 with its record
      const g = await node('go', { maxDroppedBytesPerClient: 2_000 });
      const ofG = `go:presence-node:${g.nodeId}`;
      for (const id of ['e1', 'e2', 'e3']) {
        await g.enter('p:0', id, 'mallory', data);
        g.connectionLost(id);
      }
      await waitFor(async () => (await g.members('p:0')).length === 2, { message: 'e1 was never let go' });
      await indexHolds(inspect, ofG, [entry('p:0', 'e2'), entry('p:0', 'e3')], 'the member let go is out');
      assert.deepEqual(errors, []);
    },
  );

  it(
    'a leave Redis did not run leaves the member listed: its index entry goes only after the leave',
    { skip },
    async (t) => {
      const { redis, inspect } = await redisWithInspect(t);
      const errors: unknown[] = [];
      const { node, watch } = await watchedNode(t, redis.url, {
        prefix: 'ord',
        grace: 60_000,
        onError: (err) => errors.push(err),
      });
      const index = `ord:presence-node:${node.nodeId}`;
      await node.enter('p:0', 'c', 'u', undefined);
      await indexHolds(inspect, index, [entry('p:0', 'c')], 'listed');
      watch.refuse = (op) => op === 'leave';
      node.leave('p:0', 'c');
      await waitFor(() => errors.length === 1, { message: 'the refused leave was never reported' });
      await node.count('p:0'); // a round trip behind anything the node sent on its connection
      assert.equal(Number(await inspect.hExists('ord:{p:0}:presence', 'c')), 1, 'still present in Redis');
      assert.deepEqual(await inspect.sMembers(index), [entry('p:0', 'c')], 'and still listed for this node');
    },
  );
});

describe('Redis presence: a dead node’s index is swept', () => {
  it(
    'in batches, one sweep at a time: each of 20,003 entries’ leaves sent once, a batch at once, and every member of the dead node leaves',
    { skip },
    async (t) => {
      const { redis, inspect } = await redisWithInspect(t);
      const errors: unknown[] = [];
      const a = await presenceNode(t, redis.url, {
        prefix: 'big',
        grace: 60_000,
        maxDroppedBytesPerClient: 100_000,
        nodeTtl: 300,
        sweepInterval: 100,
        onError: (err) => errors.push(err),
      });
      const { node: b, watch } = await watchedNode(t, redis.url, {
        prefix: 'big',
        grace: 200,
        onError: (err) => errors.push(err),
      });
      const real = [1, 2, 3].map((i) => [`room:${i}`, `real-${i}`] as const);
      const left: string[] = [];
      for (const [channel, id] of real) {
        await a.enter(channel, id, `user-${id}`, undefined);
        b.subscribe(channel, (frame) => {
          const event = JSON.parse(frame.toString()) as { action: string; member: { connectionId: string } };
          if (event.action === 'leave') left.push(event.member.connectionId);
        });
      }
      // what a long-lived node's index held before (entries its members' leaves never took out)
      const index = `big:presence-node:${a.nodeId}`;
      const SEEDED = 20_000;
      for (let i = 0; i < SEEDED; i += 1_000)
        await inspect.sAdd(
          index,
          Array.from({ length: 1_000 }, (_, j) => entry(`room:${(i + j) % 7}`, `gone-${i + j}`)),
        );
      assert.equal(await inspect.sCard(index), SEEDED + real.length);

      await a.close(); // as a node that dies: its liveness key runs out, its members and index stay
      await waitFor(
        async () => (await inspect.exists(index)) === 0 && !(await inspect.sIsMember('big:nodes', a.nodeId)),
        { timeout: 60_000, interval: 50, message: 'the dead node’s index was never swept' },
      );
      await waitFor(() => left.length === real.length, { message: 'the dead node’s members never all left' });
      assert.deepEqual(left.sort(), real.map(([, id]) => id).sort(), 'each member left once');
      for (const [channel] of real) assert.equal(await b.count(channel), 0);

      const leaves = watch.leaves.get(a.nodeId) ?? new Map<string, number>();
      assert.equal(leaves.size, SEEDED + real.length, 'a leave for every entry');
      const twice = [...leaves].filter(([, n]) => n > 1);
      assert.deepEqual(twice.slice(0, 5), [], `${twice.length} entries had their leave run more than once`);
      assert.ok(
        watch.maxInFlight >= 200,
        `a batch's leaves are sent together (at most ${watch.maxInFlight} at once)`,
      );
      const onIndex = (name: string) =>
        watch.commands.filter(([c, key]) => c === name && key === index).length;
      assert.equal(onIndex('SMEMBERS'), 0, 'the whole set is never read');
      assert.ok(
        onIndex('SREM') <= Math.ceil((SEEDED + real.length) / 200),
        `one SREM per batch (${onIndex('SREM')})`,
      );
      assert.deepEqual(errors, []);
    },
  );

  it(
    'entries whose leaves failed stay listed, and their members leave at a later sweep',
    { skip },
    async (t) => {
      const { redis, inspect } = await redisWithInspect(t);
      const errors: unknown[] = [];
      const a = await presenceNode(t, redis.url, {
        prefix: 'retry',
        grace: 60_000,
        maxDroppedBytesPerClient: 100_000,
        nodeTtl: 300,
        sweepInterval: 100,
      });
      const { node: b, watch } = await watchedNode(t, redis.url, {
        prefix: 'retry',
        grace: 200,
        onError: (err) => errors.push(err),
      });
      for (const id of ['r1', 'r2', 'r3']) await a.enter('room:r', id, id, undefined);
      // the first two leaves for the dead node are refused (as by a Redis out of reach for them)
      let refused = 0;
      watch.refuse = (op, node) => op === 'leave' && node === a.nodeId && refused++ < 2;
      await a.close();
      await waitFor(async () => (await b.count('room:r')) === 0, {
        message: 'members whose leaves failed never left',
      });
      assert.equal(refused >= 2, true);
      await waitFor(async () => (await inspect.exists(`retry:presence-node:${a.nodeId}`)) === 0, {
        message: 'the index was never removed',
      });
      assert.ok(errors.length >= 1, 'the failed leaves were reported');
    },
  );
});
