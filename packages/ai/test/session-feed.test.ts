// The session feed (`session-feed.ts`) under both session sides: "live" means attached, not catching
// up and not reloading; run streams emit only then, and a session is settled only then.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { UIMessageChunk } from 'ai';
import { fakeClient, sent } from '../../client/test/helpers/fake-client.ts';
import { flush } from '../../client/test/helpers/fake-transport.ts';
import { ConversationTree } from '../src/conversation-tree.ts';
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
