/**
 * On Redis, what a clientId's dropped connections keep for a recovery (members in their grace, then
 * their records) is bounded by `maxDroppedBytesPerClient` for all nodes together, as on one node:
 * past it, the oldest is let go — its members leave now and a recovery enters nothing again — so
 * connecting, entering and dropping without end (on any nodes) holds no more than the bound in Redis.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import { createClient } from 'redis';
import type { MooringServer } from '../src/index.ts';
import { DROPPED_MEMBER_COST } from '../src/presence-budget.ts';
import { rest } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';
import { presenceNode, redisNode } from './support/redis-fixtures.ts';

const skip = redisSkipReason();
const data = 'x'.repeat(742); // 744 bytes as JSON
const COST = 744 + DROPPED_MEMBER_COST; // 1,000
const CAP = 2 * 1000; // maxConnectionsPerClient × maxPresenceBytesPerConnection: two dropped connections fit exactly, not three

const isLeaveOf = (connectionId: string) => (f: ServerFrame) =>
  f.type === 'presence' && f.action === 'leave' && f.member.connectionId === connectionId;

async function members(server: MooringServer): Promise<string[]> {
  const res = await rest(server, '/v1/channels/p:0/presence');
  return (res.body.members as Array<{ connectionId: string }>).map((m) => m.connectionId).sort();
}

/** A connection of `mallory` on `server` that enters p:0 and then drops without a close. */
async function enterAndDrop(server: MooringServer): Promise<RawClient> {
  const before = server.connections;
  const client = await RawClient.connect(server.url, { clientId: 'mallory' });
  const answer = await client.request({ type: 'presence', channel: 'p:0', action: 'enter', data });
  assert.equal(answer.type, 'ack', JSON.stringify(answer));
  client.kill();
  for (let i = 0; i < 500 && server.connections > before; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(server.connections, before, 'the node saw the drop');
  return client;
}

/** Two RedisPresence nodes (key prefix `prefix`) on a fresh redis-server, a plain client to inspect it, and the errors they reported. */
async function twoPresenceNodes(t: { after(fn: () => unknown): void }, prefix: string) {
  const redis = await startRedis();
  t.after(() => redis.close());
  const errors: unknown[] = [];
  const node = () =>
    presenceNode(t, redis.url, {
      prefix,
      grace: 60_000,
      maxDroppedBytesPerClient: CAP,
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

/** Waits (up to 5 s) for `ok`, then asserts it. */
async function until(what: string, ok: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500 && !(await ok()); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(await ok(), what);
}

describe('Redis presence: dropped connections per clientId', () => {
  it(
    'keeps at most maxDroppedBytesPerClient over all nodes: the oldest leaves at once and recovers without its presence; the newer ones keep theirs',
    { skip },
    async (t) => {
      assert.ok(2 * COST === CAP && 3 * COST > CAP, 'two fill the bound exactly, three are over it');
      const redis = await startRedis();
      t.after(() => redis.close());
      const options = {
        presenceGrace: 60_000, // a leave seen now is the bound's, not the grace's
        limits: { maxConnectionsPerClient: 2, maxPresenceBytesPerConnection: 1000 },
      };
      const a = await redisNode(redis.url, options);
      t.after(() => a.close());
      const b = await redisNode(redis.url, options);
      t.after(() => b.close());
      const watcher = await RawClient.connect(b.url, { clientId: 'watcher' });
      t.after(() => watcher.close());
      await watcher.attach('p:0');

      const first = await enterAndDrop(a);
      const second = await enterAndDrop(b);
      assert.deepEqual(
        await members(a),
        [first.connected.connectionId, second.connected.connectionId].sort(),
        'two dropped connections fit: both stay in their grace',
      );
      const third = await enterAndDrop(a); // over the bound: the oldest (on node a) is let go
      const left = await watcher.next(isLeaveOf(first.connected.connectionId));
      assert.ok(left.type === 'presence');
      assert.deepEqual(
        await members(b),
        [second.connected.connectionId, third.connected.connectionId].sort(),
        'the newer two stay',
      );

      const inspect = createClient({ url: redis.url });
      inspect.on('error', () => {}); // Redis stops first at the end
      await inspect.connect();
      t.after(() => inspect.destroy());
      const [ledger] = await inspect.keys('*{presence-dropped:mallory}');
      assert.ok(ledger, 'a ledger for the clientId');
      assert.deepEqual(
        (await inspect.zRange(ledger, 0, -1)).sort(),
        [second.connected.connectionId, third.connected.connectionId].sort(),
      );
      assert.equal(Number(await inspect.hGet(`${ledger}:cost`, '')), 2 * COST, 'the total it counts');
      assert.deepEqual(
        await inspect.keys(`*presence-connection:${first.connected.connectionId}`),
        [],
        'the record of the one let go is deleted',
      );

      // the one let go recovers (on the other node) without its presence; the newest keeps its own
      const back = await RawClient.connect(b.url, {
        clientId: 'mallory',
        recover: first.connected.connectionKey,
      });
      t.after(() => back.close());
      assert.equal(back.connected.resumed, true);
      const newest = await RawClient.connect(b.url, {
        clientId: 'mallory',
        recover: third.connected.connectionKey,
      });
      t.after(() => newest.close());
      assert.equal(newest.connected.resumed, true);
      for (let i = 0; i < 200 && (await inspect.zCard(ledger)) !== 1; i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(
        await inspect.zRange(ledger, 0, -1),
        [second.connected.connectionId],
        'recovered: not counted',
      );
      assert.equal(Number(await inspect.hGet(`${ledger}:cost`, '')), COST);
      assert.deepEqual(
        await members(b),
        [second.connected.connectionId, third.connected.connectionId].sort(),
        'the connection let go did not enter again',
      );
      assert.equal(
        watcher.frames.filter((f) => f.type === 'presence' && f.action === 'leave').length,
        1,
        'only the one let go left',
      );

      // the last dropped one recovers too: the ledger counts nothing and is gone
      const last = await RawClient.connect(a.url, {
        clientId: 'mallory',
        recover: second.connected.connectionKey,
      });
      t.after(() => last.close());
      for (let i = 0; i < 200 && (await inspect.exists(ledger)) === 1; i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.equal(await inspect.exists([ledger, `${ledger}:cost`]), 0, 'no ledger left behind');
    },
  );

  it(
    'never lets go of the connection just dropped, even when it alone is over the bound',
    { skip },
    async (t) => {
      const redis = await startRedis();
      t.after(() => redis.close());
      // 2 × 400 bytes of data and 2 member records: 1,312 over a bound of 1,000
      const limits = { maxConnectionsPerClient: 1, maxPresenceBytesPerConnection: 1000 };
      const a = await redisNode(redis.url, { presenceGrace: 60_000, limits });
      t.after(() => a.close());
      const client = await RawClient.connect(a.url, { clientId: 'solo' });
      for (const channel of ['p:0', 'p:1']) {
        const answer = await client.request({
          type: 'presence',
          channel,
          action: 'enter',
          data: 'x'.repeat(398),
        });
        assert.equal(answer.type, 'ack', JSON.stringify(answer));
      }
      client.kill();
      const inspect = createClient({ url: redis.url });
      inspect.on('error', () => {}); // Redis stops first at the end
      await inspect.connect();
      t.after(() => inspect.destroy());
      let ledger: string | undefined;
      for (let i = 0; i < 500 && ledger === undefined; i++) {
        [ledger] = await inspect.keys('*{presence-dropped:solo}');
        if (ledger === undefined) await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(ledger, 'the drop was counted and kept');
      assert.deepEqual(await inspect.zRange(ledger, 0, -1), [client.connected.connectionId]);
      assert.deepEqual(await members(a), [client.connected.connectionId], 'still in its grace');
    },
  );

  it(
    'a connection let go from the ledger leaves only where the node that dropped it still holds it: recovered on another node before that node saw the drop, it stays',
    { skip },
    async (t) => {
      // the order of a half-open transport: the client recovers on node B before node A notices the
      // drop, so A counts it in the ledger after B took it out; then another drop goes over the bound
      const { a, b, inspect, errors } = await twoPresenceNodes(t, 'pd');
      const ids = async () => (await b.members('p:0')).map((m) => m.connectionId).sort();

      await a.enter('p:0', 'c', 'mallory', data);
      b.connectionResumed('c');
      await until('node b took the member over', async () => b.channelsOf('c').includes('p:0'));
      a.connectionLost('c'); // a sees the drop only now: counted in the ledger as held by a
      const ledger = 'pd:{presence-dropped:mallory}';
      await until('counted', async () => (await inspect.zScore(ledger, 'c')) !== null);
      for (const id of ['d1', 'd2']) {
        await a.enter('p:0', id, 'mallory', data);
        a.connectionLost(id);
      }
      // d2 goes over the bound: the oldest, c, is let go (its record read and deleted, then a leave
      // naming node a: three round trips after the ledger's)
      await until('c let go', async () => (await inspect.zScore(ledger, 'c')) === null);
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(await ids(), ['c', 'd1', 'd2'], 'c, live on node b, is still present');
      assert.deepEqual(errors, []);
    },
  );
  it(
    'a drop a node counted after the connection recovered on another node is taken out of the ledger when the node is told it moved: no share of the bound, its record kept',
    { skip },
    async (t) => {
      const { a, b, inspect, errors } = await twoPresenceNodes(t, 'pm');
      const ledger = 'pm:{presence-dropped:mallory}';

      await a.enter('p:0', 'c', 'mallory', data);
      b.connectionResumed('c');
      await until('node b took the member over', async () => b.channelsOf('c').includes('p:0'));
      a.connectionLost('c'); // a saw the drop only now: counted after b took it out
      a.connectionMoved('c'); // then the recovery's notice reached it
      await until('out of the ledger again', async () => (await inspect.zScore(ledger, 'c')) === null);
      // two other drops fill the bound exactly: nobody is let go, c's record (for its next recovery) stays
      for (const id of ['d1', 'd2']) {
        await a.enter('p:0', id, 'mallory', data);
        a.connectionLost(id);
      }
      await until('both counted', async () => (await inspect.zCard(ledger)) === 2);
      await new Promise((r) => setTimeout(r, 300)); // a let-go would follow the count
      assert.deepEqual((await inspect.zRange(ledger, 0, -1)).sort(), ['d1', 'd2']);
      assert.equal(await inspect.exists('pm:presence-connection:c'), 1, "c's record is kept");
      assert.deepEqual(errors, []);
    },
  );
});
