/**
 * `maxPresenceMembersPerClient` (PROTOCOL.md §6.4, §10): one clientId holds at most that many
 * members in a channel, those in their grace after a drop included. Before it, one account's
 * connections — dropped ones staying members for the grace while they no longer count as
 * connections — held about a third of a channel's `maxPresenceMembers`, and three accounts locked
 * everyone else out. A new member at the cap replaces the clientId's oldest member still in its
 * grace (a leave, as when the grace ends); only members whose connections are all live refuse it.
 * Over real WebSockets on one node (memory, SQLite, Redis), then across Redis nodes, whose scripts
 * count a clientId's members for all of them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import { redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { createClient } from 'redis';
import type { MooringServer } from '../src/index.ts';
import { RedisStore } from '../src/store/redis-store.ts';
import { rest, startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';
import { presenceNode, redisNode } from './support/redis-fixtures.ts';

const skip = redisSkipReason();
const outcome = (f: ServerFrame) => (f.type === 'error' ? f.error.code : 'ok');
const isLeaveOf = (connectionId: string) => (f: ServerFrame) =>
  f.type === 'presence' && f.action === 'leave' && f.member.connectionId === connectionId;
const enter = (c: RawClient, channel: string, data?: unknown) =>
  c.request({ type: 'presence', channel, action: 'enter', ...(data === undefined ? {} : { data }) });

async function memberIds(server: MooringServer, channel: string): Promise<string[]> {
  const res = await rest(server, `/v1/channels/${channel}/presence`);
  return (res.body.members as Array<{ connectionId: string }>).map((m) => m.connectionId).sort();
}

/** Kills `client`'s socket and waits until `server` saw it go (its members are then in their grace). */
async function drop(server: MooringServer, client: RawClient): Promise<void> {
  const before = server.connections;
  client.kill();
  await waitFor(() => server.connections < before, { message: 'the node never saw the drop' });
}

const kinds = skip ? (['memory', 'sqlite'] as const) : (['memory', 'sqlite', 'redis'] as const);
for (const kind of kinds)
  describe(`maxPresenceMembersPerClient (${kind})`, () => {
    it('refuses a clientId’s member past the cap while all its members are connected (too_many_members, naming the limit); an update is no new member; another clientId still enters; a leave makes room', async (t) => {
      const fx = await startFixture(kind, { limits: { maxPresenceMembersPerClient: 3 } });
      t.after(() => fx.close());
      const url = fx.server.url;
      const channel = 'room:cap';
      const tabs = await Promise.all(
        Array.from({ length: 4 }, () => RawClient.connect(url, { clientId: 'tabs' })),
      );
      t.after(() => Promise.all(tabs.map((c) => c.close())));
      for (const tab of tabs.slice(0, 3)) assert.equal(outcome(await enter(tab, channel)), 'ok');

      const refused = await enter(tabs[3]!, channel);
      assert.ok(refused.type === 'error', JSON.stringify(refused));
      assert.equal(refused.error.code, 'too_many_members');
      assert.equal(refused.error.retryable, true);
      assert.match(refused.error.message, /maxPresenceMembersPerClient/);
      assert.match(refused.error.message, /clientId tabs already has 3 presence members in channel room:cap/);

      // entering again and updating are changes of a member, not new members
      assert.equal(outcome(await enter(tabs[0]!, channel, { v: 2 })), 'ok');
      assert.equal(
        outcome(await tabs[1]!.request({ type: 'presence', channel, action: 'update', data: 'x' })),
        'ok',
      );
      // the cap is per clientId and per channel
      const other = await RawClient.connect(url, { clientId: 'other' });
      t.after(() => other.close());
      assert.equal(outcome(await enter(other, channel)), 'ok', 'another clientId was locked out');
      assert.equal(outcome(await enter(tabs[3]!, 'room:elsewhere')), 'ok', 'the cap is per channel');
      assert.equal((await memberIds(fx.server, channel)).length, 4);

      assert.equal(outcome(await tabs[0]!.request({ type: 'presence', channel, action: 'leave' })), 'ok');
      assert.equal(outcome(await enter(tabs[3]!, channel)), 'ok', 'a leave made no room');
      assert.deepEqual(
        await memberIds(fx.server, channel),
        [...tabs.slice(1).map((c) => c.connected.connectionId), other.connected.connectionId].sort(),
      );
    });

    it('counts members in their grace, and a new member replaces the oldest of them (a leave a watcher sees) instead of being refused', async (t) => {
      // a grace far longer than the test: every leave seen is a replacement's
      const fx = await startFixture(kind, {
        presenceGrace: 60_000,
        limits: { maxPresenceMembersPerClient: 2 },
      });
      t.after(() => fx.close());
      const { server } = fx;
      const channel = 'room:reload';
      const watcher = await RawClient.connect(server.url, { clientId: 'watcher' });
      t.after(() => watcher.close());
      await watcher.attach(channel);
      const tab = () => RawClient.connect(server.url, { clientId: 'tabs' });
      // the clientId's oldest dropped connection is a member elsewhere only: nothing to replace here
      const elsewhere = await tab();
      assert.equal(outcome(await enter(elsewhere, 'room:elsewhere')), 'ok');
      await drop(server, elsewhere);
      const [first, second] = [await tab(), await tab()];
      assert.equal(outcome(await enter(first, channel)), 'ok');
      assert.equal(outcome(await enter(second, channel)), 'ok');
      await drop(server, first);
      await drop(server, second);
      assert.deepEqual(
        await memberIds(server, channel),
        [first.connected.connectionId, second.connected.connectionId].sort(),
        'both stay in their grace, and count',
      );

      // a reload: the new tab's member takes the place of the oldest dropped one
      const third = await tab();
      t.after(() => third.close());
      assert.equal(outcome(await enter(third, channel)), 'ok', 'a reloading user was refused');
      await watcher.next(isLeaveOf(first.connected.connectionId));
      assert.deepEqual(
        await memberIds(server, channel),
        [second.connected.connectionId, third.connected.connectionId].sort(),
      );
      const fourth = await tab();
      t.after(() => fourth.close());
      assert.equal(outcome(await enter(fourth, channel)), 'ok');
      await watcher.next(isLeaveOf(second.connected.connectionId));

      // now both members are connected: the next one is refused, and nobody leaves
      const fifth = await tab();
      t.after(() => fifth.close());
      assert.equal(outcome(await enter(fifth, channel)), 'too_many_members');
      assert.deepEqual(
        await memberIds(server, channel),
        [third.connected.connectionId, fourth.connected.connectionId].sort(),
      );
      const leaves = watcher.frames.filter((f) => f.type === 'presence' && f.action === 'leave');
      assert.equal(leaves.length, 2, JSON.stringify(leaves));
    });

    it('a member whose connection was recovered in its grace counts as connected again: it is not replaced', async (t) => {
      const fx = await startFixture(kind, {
        presenceGrace: 60_000,
        limits: { maxPresenceMembersPerClient: 1 },
      });
      t.after(() => fx.close());
      const { server } = fx;
      const channel = 'room:back';
      const phone = await RawClient.connect(server.url, { clientId: 'tabs' });
      assert.equal(outcome(await enter(phone, channel)), 'ok');
      await drop(server, phone);
      const back = await RawClient.connect(server.url, {
        clientId: 'tabs',
        recover: phone.connected.connectionKey,
      });
      t.after(() => back.close());
      assert.equal(back.connected.resumed, true);
      if (server.store instanceof RedisStore) {
        // on Redis the node takes the members over after the handshake: until then they are dropped
        const { connection, prefix } = server.store;
        const key = `${prefix}:{${channel}}:presence-clients`;
        await waitFor(
          async () =>
            (await connection.send(key, ['HGET', key, '"tabs"'])) === `0 ${phone.connected.connectionId}`,
          { message: 'the recovered member never counted as connected' },
        );
      }
      const tab = await RawClient.connect(server.url, { clientId: 'tabs' });
      t.after(() => tab.close());
      assert.equal(
        outcome(await enter(tab, channel)),
        'too_many_members',
        'the recovered member was replaced',
      );
      assert.deepEqual(await memberIds(server, channel), [phone.connected.connectionId]);
    });
  });

describe('maxPresenceMembersPerClient across Redis nodes', () => {
  it(
    'counts a clientId’s members on every node: enters racing through two nodes take exactly the cap',
    { skip },
    async (t) => {
      const redis = await startRedis();
      t.after(() => redis.close());
      const options = { limits: { maxPresenceMembersPerClient: 2 } };
      const a = await redisNode(redis.url, options);
      t.after(() => a.close());
      const b = await redisNode(redis.url, options);
      t.after(() => b.close());
      const tabs = await Promise.all(
        [a, a, a, b, b, b].map((node) => RawClient.connect(node.url, { clientId: 'tabs' })),
      );
      t.after(() => Promise.all(tabs.map((c) => c.close())));
      for (let round = 0; round < 3; round++) {
        const channel = `room:race-${round}`;
        // all sent before any answer: each node alone sees at most three
        const answers = await Promise.all(tabs.map((c) => enter(c, channel)));
        assert.deepEqual(
          answers.map(outcome).sort(),
          ['ok', 'ok', 'too_many_members', 'too_many_members', 'too_many_members', 'too_many_members'],
          `round ${round}`,
        );
        assert.equal((await memberIds(b, channel)).length, 2);
      }
      const other = await RawClient.connect(b.url, { clientId: 'other' });
      t.after(() => other.close());
      assert.equal(outcome(await enter(other, 'room:race-0')), 'ok', 'another clientId was locked out');
    },
  );

  it(
    'a member whose connection dropped on one node makes room for the clientId’s new member on another: it leaves, seen on both nodes',
    { skip },
    async (t) => {
      const redis = await startRedis();
      t.after(() => redis.close());
      const options = { presenceGrace: 60_000, limits: { maxPresenceMembersPerClient: 1 } };
      const a = await redisNode(redis.url, options);
      t.after(() => a.close());
      const b = await redisNode(redis.url, options);
      t.after(() => b.close());
      const channel = 'room:moved';
      const watchers = await Promise.all(
        [a, b].map((n) => RawClient.connect(n.url, { clientId: 'watcher' })),
      );
      t.after(() => Promise.all(watchers.map((w) => w.close())));
      for (const w of watchers) await w.attach(channel);

      const onA = await RawClient.connect(a.url, { clientId: 'tabs' });
      assert.equal(outcome(await enter(onA, channel)), 'ok');
      const onB = await RawClient.connect(b.url, { clientId: 'tabs' });
      t.after(() => onB.close());
      assert.equal(outcome(await enter(onB, channel)), 'too_many_members', 'its member on a is connected');

      await drop(a, onA);
      // a marks the member dropped in Redis as it sees the drop; the enter on b follows that mark
      const inspect = createClient({ url: redis.url });
      inspect.on('error', () => {}); // Redis stops first at the end
      await inspect.connect();
      t.after(() => inspect.destroy());
      await waitFor(
        async () =>
          /^[1-9]\d* /.test((await inspect.hGet(`mooring:{${channel}}:presence-clients`, '"tabs"')) ?? ''),
        { message: 'the drop was never marked in Redis' },
      );
      assert.equal(outcome(await enter(onB, channel)), 'ok', 'refused though its other member was dropped');
      for (const w of watchers) await w.next(isLeaveOf(onA.connected.connectionId));
      assert.deepEqual(await memberIds(a, channel), [onB.connected.connectionId]);
      assert.equal(
        await inspect.hGet(`mooring:{${channel}}:presence-clients`, '"tabs"'),
        `0 ${onB.connected.connectionId}`,
        'the clientId counts its one connected member',
      );
      assert.equal(outcome(await onB.request({ type: 'presence', channel, action: 'leave' })), 'ok');
      assert.equal(
        await inspect.exists(`mooring:{${channel}}:presence-clients`),
        0,
        'nothing is left behind once the clientId has no member',
      );
    },
  );

  it(
    'the members of a node that died count as dropped from when a sweeper first sees it dead: a new member of their clientId replaces them',
    { skip },
    async (t) => {
      const redis = await startRedis();
      t.after(() => redis.close());
      const errors: unknown[] = [];
      const node = () =>
        presenceNode(t, redis.url, {
          prefix: 'dead',
          grace: 60_000,
          maxDroppedBytesPerClient: 100_000,
          maxMembersPerClient: 1,
          nodeTtl: 300,
          sweepInterval: 100,
          onError: (err) => errors.push(err),
        });
      const a = await node();
      const b = await node();
      const channel = 'room:dead';
      await a.enter(channel, 'c-on-a', 'tabs', { on: 'a' });
      await assert.rejects(b.enter(channel, 'c-on-b', 'tabs', { on: 'b' }), { code: 'too_many_members' });
      const left: string[] = [];
      b.subscribe(channel, (frame) => {
        const event = JSON.parse(frame.toString()) as { action: string; member: { connectionId: string } };
        if (event.action === 'leave') left.push(event.member.connectionId);
      });
      await a.close(); // as a node that dies: its members stay in Redis, its liveness key runs out
      await waitFor(
        () =>
          b.enter(channel, 'c-on-b', 'tabs', { on: 'b' }).then(
            () => true,
            (err: { code?: string }) => {
              if (err.code !== 'too_many_members') throw err;
              return false;
            },
          ),
        { message: 'the dead node’s member was never replaced', interval: 50 },
      );
      assert.deepEqual(
        (await b.members(channel)).map((m) => m.connectionId),
        ['c-on-b'],
      );
      await waitFor(() => left.includes('c-on-a'), { message: 'its leave was never announced' });
      assert.deepEqual(errors, []);
    },
  );

  /** Two RedisPresence nodes under `prefix`, cap 1 per clientId, quick beats, and a client to look into Redis. */
  async function presenceNodes(t: { after(fn: () => unknown): void }, prefix: string) {
    const redis = await startRedis();
    t.after(() => redis.close());
    const errors: unknown[] = [];
    const node = () =>
      presenceNode(t, redis.url, {
        prefix,
        grace: 60_000,
        maxDroppedBytesPerClient: 100_000,
        maxMembersPerClient: 1,
        nodeTtl: 300,
        sweepInterval: 100,
        onError: (err) => errors.push(err),
      });
    const a = await node();
    const b = await node();
    const inspect = createClient({ url: redis.url });
    inspect.on('error', () => {}); // Redis stops first at the end
    await inspect.connect();
    t.after(() => inspect.destroy());
    return { a, b, inspect, errors };
  }

  it(
    'a line left behind by an older node (its member gone, the line not removed) does not count',
    { skip },
    async (t) => {
      const { a, inspect, errors } = await presenceNodes(t, 'stale');
      const channel = 'room:stale';
      await inspect.hSet(`stale:{${channel}}:presence-clients`, '"tabs"', '0 ghost');
      await a.enter(channel, 'c-1', 'tabs', undefined);
      assert.equal(await inspect.hGet(`stale:{${channel}}:presence-clients`, '"tabs"'), '0 c-1');
      assert.deepEqual(errors, []);
    },
  );

  it(
    'a Redis that lost its presence gets a member in its grace back as dropped: a new member still replaces it',
    { skip },
    async (t) => {
      const { a, b, inspect, errors } = await presenceNodes(t, 'healed');
      const channel = 'room:healed';
      await a.enter(channel, 'c-on-a', 'tabs', undefined);
      a.connectionLost('c-on-a');
      await inspect.flushAll();
      // a's next beat finds itself no longer listed and writes its members again
      const line = await waitFor(() => inspect.hGet(`healed:{${channel}}:presence-clients`, '"tabs"'), {
        message: 'the member was never written again',
      });
      assert.match(line, /^[1-9]\d* c-on-a$/);
      await b.enter(channel, 'c-on-b', 'tabs', undefined);
      assert.deepEqual(
        (await b.members(channel)).map((m) => m.connectionId),
        ['c-on-b'],
      );
      assert.deepEqual(errors, []);
    },
  );

  it(
    'a node taken for dead and back (Redis out of reach) takes its members back, and those in their grace stay dropped',
    { skip },
    async (t) => {
      const { a, b, inspect, errors } = await presenceNodes(t, 'back');
      const channel = 'room:back';
      await a.enter(channel, 'c-on-a', 'tabs', undefined);
      a.connectionLost('c-on-a');
      await a.enter(channel, 'c-live', 'phone', undefined);
      const dead = `back:node-dead:${a.nodeId}`;
      await inspect.set(dead, '0');
      await waitFor(async () => (await inspect.exists(dead)) === 0, { message: 'a never cleared its mark' });
      // its members taken back (a read and a script each, on a Redis next door) well before this
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.match(
        (await inspect.hGet(`back:{${channel}}:presence-clients`, '"tabs"')) ?? '',
        /^[1-9]\d* c-on-a$/,
      );
      assert.equal(await inspect.hGet(`back:{${channel}}:presence-clients`, '"phone"'), '0 c-live');
      await b.enter(channel, 'c-on-b', 'tabs', undefined);
      await assert.rejects(b.enter(channel, 'c-phone-b', 'phone', undefined), { code: 'too_many_members' });
      assert.deepEqual((await b.members(channel)).map((m) => m.connectionId).sort(), ['c-live', 'c-on-b']);
      assert.deepEqual(errors, []);
    },
  );
});
