/**
 * A connection dropped on node A and recovered on node B while Redis cannot answer (a restart):
 * B's take-over of its presence members fails, and without another try A lets them leave once its
 * grace is over — the client recovered its connection, so it does not enter again, and is missing
 * from the set for good (found by the soak with Redis and nodes killed, seed 5012). B makes the
 * take-over again with backoff while the connection is still there. Two RedisPresence nodes on a
 * real redis-server, SIGKILLed and restarted.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import { createClient } from 'redis';
import { presenceNode } from './support/redis-fixtures.ts';

const GRACE = 1_500;

it('a connection recovered on another node while Redis is down keeps its presence once Redis is back', async (t) => {
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const redis = await startRedis({ appendonly: 'always' });
  t.after(() => redis.close());
  const node = () =>
    presenceNode(t, redis.url, { prefix: 'resume', grace: GRACE, maxDroppedBytesPerClient: 100_000 });
  const a = await node();
  const b = await node();
  await a.enter('p:0', 'c1', 'alice', 'here', 6);
  a.connectionLost('c1'); // dropped on A: its grace runs there
  // what it keeps for a recovery is written (the record a recovering node takes the members over from)
  const inspect = createClient({ url: redis.url });
  inspect.on('error', () => {});
  await inspect.connect();
  for (let i = 0; i < 500 && (await inspect.hLen('resume:presence-connection:c1')) === 0; i++)
    await sleep(10);
  assert.equal(await inspect.hLen('resume:presence-connection:c1'), 1);
  inspect.destroy();
  await redis.stop('SIGKILL');
  b.connectionResumed('c1'); // recovered on B: the take-over cannot reach Redis
  await sleep(100);
  await redis.restart();
  // past A's grace (and a beat or two): the member is B's, present — at once, or once B's next
  // take-over comes (its backoff, 250 ms doubling, restarts from whenever Redis failed it last: on a
  // busy machine that can be after A's grace let the member go, and B enters it again)
  await sleep(GRACE + 1_500);
  const present = async () =>
    JSON.stringify((await b.members('p:0')).map((m) => [m.connectionId, m.data])) === '[["c1","here"]]';
  for (let i = 0; i < 100 && !(await present()); i++) await sleep(100);
  assert.deepEqual(
    (await b.members('p:0')).map((m) => [m.connectionId, m.data]),
    [['c1', 'here']],
    'the recovered connection is missing from the presence set',
  );
});

it('a node that writes its members back into Redis leaves a dropped one that another node recovered meanwhile to that node', async (t) => {
  // What the test above met once in 18 runs, made certain: A holds c1 dropped (its grace running),
  // B has recovered it, and then A writes back what it holds (its `restore`: after a Redis restart
  // it cannot know what Redis kept). A's claim to a connection it lost is the weaker one: it used to
  // take the member back, and its grace then removed it while the client was connected to B.
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const redis = await startRedis();
  t.after(() => redis.close());
  const node = () =>
    presenceNode(t, redis.url, { prefix: 'restore', grace: GRACE, maxDroppedBytesPerClient: 100_000 });
  const a = await node();
  const b = await node();
  await a.enter('p:0', 'c1', 'alice', 'here', 6);
  a.connectionLost('c1');
  b.connectionResumed('c1');
  const inspect = createClient({ url: redis.url });
  inspect.on('error', () => {});
  await inspect.connect();
  t.after(() => inspect.destroy());
  const holder = async () => (await inspect.hGet('restore:{p:0}:presence', 'c1'))?.split('\n')[0];
  for (let i = 0; i < 500 && (await holder()) !== b.nodeId; i++) await sleep(10);
  assert.equal(await holder(), b.nodeId, 'B never took the member over');
  // Redis no longer lists A (as after a restart): A's next beat writes back what it holds
  await inspect.sRem('restore:nodes', a.nodeId);
  for (let i = 0; i < 500 && !(await inspect.sIsMember('restore:nodes', a.nodeId)); i++) await sleep(10);
  assert.ok(await inspect.sIsMember('restore:nodes', a.nodeId), "A's beat never came");
  await sleep(GRACE + 500); // A's write-back, then its grace
  assert.equal(await holder(), b.nodeId, 'A took the member back from B');
  assert.deepEqual(
    (await b.members('p:0')).map((m) => [m.connectionId, m.data]),
    [['c1', 'here']],
    'the recovered connection is missing from the presence set',
  );
});
