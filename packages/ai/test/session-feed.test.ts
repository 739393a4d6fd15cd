// The session feed (`session-feed.ts`) under both session sides: "live" means attached, not catching
// up and not reloading; run streams emit only then, and a session is settled only then.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { UserSession } from '../src/user-session.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';

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
