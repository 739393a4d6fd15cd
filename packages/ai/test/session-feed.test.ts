// The session feed (`session-feed.ts`) under both session sides: "live" means attached, not catching
// up and not reloading; run streams emit only then, and a session is settled only then.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import type { UIMessageChunk } from 'ai';
import { fakeClient, sent } from '../../client/test/helpers/fake-client.ts';
import { flush } from '../../client/test/helpers/fake-transport.ts';
import { lossyNodes } from '../../server/test/support/redis-fixtures.ts';
import { ConversationTree } from '../src/conversation-tree.ts';
import { channelSink } from '../src/operation-sink.ts';
import { runChunkStream } from '../src/run-chunk-stream.ts';
import { RunPublisher } from '../src/run-publisher.ts';
import { SessionFeed } from '../src/session-feed.ts';
import { UserSession } from '../src/user-session.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';
import { MemoryLog } from './helpers/memory-log.ts';

it('a session is not live while its channel is detached, and live again once it attaches', async (t) => {
  const server = await realServer(t);
  const session = new UserSession({
    channel: client(t, server.url).channels.get(sessionName(), { start: true }),
  });
  t.after(() => session.close());
  await session.start();
  assert.equal(session.live, true);
  const lives: boolean[] = [];
  session.watch((change) => {
    if (change.kind === 'live') lives.push(session.live);
  });
  await session.channel.detach();
  assert.equal(session.channel.state, 'detached');
  assert.equal(session.live, false, 'not live while detached');
  assert.equal(session.settled, false);
  await session.channel.attach();
  await waitFor(() => lives.length === 1, { message: 'the session never became live again' });
  assert.equal(session.live, true);
  assert.deepEqual(lives, [true]);
});

it('a session on a channel opened without start keeps its attach mode: only what comes after it is folded', async (t) => {
  const server = await realServer(t);
  const name = sessionName();
  const writer = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
  t.after(() => writer.close());
  await writer.start();
  await writer.send('before the late session');
  const late = new UserSession({ channel: client(t, server.url).channels.get(name) });
  t.after(() => late.close());
  await late.start();
  const after = await writer.send('after it');
  await waitFor(() => late.tree.input(after) !== undefined, {
    message: 'the late session never got the new message',
  });
  assert.deepEqual(
    late.tree.inputs.map((n) => n.id),
    [after],
    'no replay of the conversation before it',
  );
});

it('a live `rolledUp` frame (a node read back what its bus lost) is folded whole before run streams emit: parts come out in the run order, not in the order of their last change', async () => {
  // the client plays against a scripted server. The agent interleaves two text parts: a, then b,
  // then more of a. A node whose bus lost all three reads them back rolled up, in last-change
  // order (b, then a); a stream that emitted while folding them would give b before a
  const log = new MemoryLog();
  const publisher = new RunPublisher({ sink: log, runId: 'r1', agent: 'a', input: 'i1', coalesceMs: 0 });
  publisher.write({ type: 'text-start', id: 'a' });
  publisher.write({ type: 'text-delta', id: 'a', delta: 'A1 ' });
  await publisher.flush();
  publisher.write({ type: 'text-start', id: 'b' });
  publisher.write({ type: 'text-delta', id: 'b', delta: 'B' });
  await publisher.flush();
  publisher.write({ type: 'text-delta', id: 'a', delta: 'A2' });
  await publisher.flush();

  const { client: mooring, connect } = fakeClient();
  const t = await connect();
  const name = 'session:rolled-up';
  const feed = new SessionFeed(mooring.channels.get(name, { start: true }), new ConversationTree());
  const starting = feed.start();
  await flush();
  const attach = sent(t, 'attach')[0]!;
  // the run message (created with the first part) came live; what follows was lost on the bus
  assert.equal(log.live[0]?.name, 'ai.run');
  const position = log.live[0]!.version;
  t.frame({ type: 'messages', channel: name, messages: log.live.slice(0, 1) });
  t.frame({
    type: 'attached',
    ref: attach.ref,
    channel: name,
    resumed: false,
    epoch: 'aaaaaaaaaaaa',
    position,
  });
  await starting;
  const chunks: UIMessageChunk[] = [];
  const reader = runChunkStream(feed, 'r1').getReader();
  void (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      chunks.push(value);
    }
  })();
  await new Promise((r) => setImmediate(r));
  const rolledUp = log.rolledUp().filter((m) => m.version > position);
  assert.deepEqual(
    rolledUp.map((m) => m.headers?.partId),
    ['b', 'a'],
    'the read-back comes in last-change order',
  );
  t.frame({ type: 'messages', channel: name, messages: rolledUp, after: position, rolledUp: true });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    chunks.map((c) => ('id' in c ? `${c.type} ${c.id}` : c.type)),
    ['start', 'text-start a', 'text-delta a', 'text-start b', 'text-delta b'],
  );
  assert.equal(feed.live, true);
  await reader.cancel();
  feed.close();
  mooring.close();
});

it('a read-back in several pages (a node whose bus lost a run’s parts) is folded whole before run streams emit: parts come out in the run order, not page by page', async (t) => {
  // two nodes on one Redis; the user's node loses every bus message marked LOST and reads back two
  // messages a page. The agent writes part a, four parts b1..b4, then more of a: in last-change
  // order (the read-back's) a comes after the b parts, in the last page. A stream that emitted
  // between pages would give b1 and b2 before a
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const redis = await startRedis();
  t.after(() => redis.close());
  const { lossy, other, repairs } = await lossyNodes(t, redis.url, { readBackPage: 2 });
  const name = sessionName();
  const user = new UserSession({
    channel: client(t, lossy.url, { clientId: 'alice' }).channels.get(name, { start: true }),
  });
  t.after(() => user.close());
  await user.start();
  const agent = client(t, other.url, { clientId: 'agent' }).channels.get(name);
  await agent.attach();
  const publisher = new RunPublisher({
    sink: channelSink(agent),
    runId: 'r1',
    agent: 'agent',
    input: 'i1',
    coalesceMs: 0,
  });
  await publisher.start(); // not lost: the run reaches the user live
  await waitFor(() => user.tree.run('r1') !== undefined, { message: 'the run never reached the user' });

  const chunks: UIMessageChunk[] = [];
  const reader = user.stream('r1').getReader();
  const read = (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      chunks.push(value);
    }
  })();
  const repairsBefore = repairs();
  publisher.write({ type: 'text-start', id: 'a-LOST' });
  publisher.write({ type: 'text-delta', id: 'a-LOST', delta: 'A1 LOST ' });
  await publisher.flush();
  for (const b of ['b1', 'b2', 'b3', 'b4']) {
    publisher.write({ type: 'text-start', id: `${b}-LOST` });
    publisher.write({ type: 'text-delta', id: `${b}-LOST`, delta: `${b} LOST` });
    await publisher.flush();
  }
  publisher.write({ type: 'text-delta', id: 'a-LOST', delta: 'A2 LOST' });
  await publisher.flush();
  // not lost: the jump, read back with the rest
  publisher.write({ type: 'text-start', id: 'c' });
  publisher.write({ type: 'text-delta', id: 'c', delta: 'C' });
  await publisher.flush();
  await publisher.end('complete');
  await waitFor(() => chunks.at(-1)?.type === 'finish', { message: 'the run stream never finished' });
  await read;
  assert.ok(repairs() > repairsBefore, 'the node read back what its bus lost');
  assert.deepEqual(
    chunks.filter((c) => c.type === 'text-start').map((c) => c.id),
    ['a-LOST', 'b1-LOST', 'b2-LOST', 'b3-LOST', 'b4-LOST', 'c'],
    'the parts come out in the order the agent began them',
  );
  assert.deepEqual(
    chunks.flatMap((c) => (c.type === 'text-delta' && c.id === 'a-LOST' ? [c.delta] : [])),
    ['A1 LOST A2 LOST'],
  );
});
