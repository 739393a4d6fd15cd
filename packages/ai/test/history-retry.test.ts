// A session started on a channel that already has a position must fold the conversation up to it:
// when nothing has attached the channel yet (a tab reloaded with its recovery key), the attach
// replays the log from its start and brings it all; when the channel is attached or attaching
// already, the session reads it over REST, beside the attach. If that read fails (the server was
// restarting, the link dropped) even after the REST client's own retries, the session keeps
// retrying it rather than going live without the conversation. Found by the soak (`npm run soak`):
// a reloaded tab whose history read failed once showed an empty conversation for good.
import assert from 'node:assert/strict';
import { it, type TestContext } from 'node:test';
import type { Channel, FetchLike } from '@mooring/client';
import { UserSession } from '../src/user-session.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';

/** A tab that sent `texts` and then closed: the server, the session, the input ids, its recovery key. */
async function closedTab(t: TestContext, texts: string[]) {
  const server = await realServer(t);
  const name = sessionName();
  const first = client(t, server.url, { clientId: 'user' });
  const tab = new UserSession({ channel: first.channels.get(name, { start: true }) });
  t.after(() => tab.close());
  await tab.start();
  const ids: string[] = [];
  for (const text of texts) ids.push(await tab.send(text));
  await waitFor(() => tab.view().length === texts.length, { message: 'the messages never showed' });
  const key = first.recoveryKey();
  first.close();
  return { server, name, ids, key };
}

it('a session joining an attached channel retries a failed history read and shows the whole conversation', async (t) => {
  const { server, name, ids } = await closedTab(t, ['hello', 'are you there?']);

  let failed = 0;
  const flaky: FetchLike = (url, init) => {
    // Down for longer than the REST client's own retries (3 attempts).
    if (failed < 3 && url.includes('/messages')) {
      failed++;
      return Promise.reject(new TypeError('fetch failed'));
    }
    return globalThis.fetch(url, init);
  };
  const reloaded = client(t, server.url, { clientId: 'user', fetch: flaky });
  const channel = reloaded.channels.get(name, { start: true });
  await channel.attach(); // the app attached it first: the catch-up went to no one
  const again = new UserSession({ channel });
  t.after(() => again.close());
  await again.ready();
  assert.equal(failed, 3, 'the history read failed three times in a row');
  await waitFor(() => again.view().length === 2, { message: 'the conversation never came back' });
  assert.deepEqual(
    again.view().map((n) => n.id),
    ids,
  );
});

/**
 * A new tab from the recovery key of `tab` on its session: `prepare` sees the channel before the
 * session starts. Resolves once the session is ready and shows the whole conversation, with the
 * channel's state at each history read.
 */
async function reopen(
  t: TestContext,
  tab: Awaited<ReturnType<typeof closedTab>>,
  prepare: (channel: Channel) => void = () => {},
): Promise<string[]> {
  const statesAtRead: string[] = [];
  let channel: Channel | undefined;
  const watching: FetchLike = (url, init) => {
    if (url.includes('/messages')) statesAtRead.push(channel?.state ?? 'none');
    return globalThis.fetch(url, init);
  };
  const reloaded = client(t, tab.server.url, { clientId: 'user', recover: tab.key, fetch: watching });
  channel = reloaded.channels.get(tab.name, { start: true });
  prepare(channel);
  const again = new UserSession({ channel });
  t.after(() => again.close());
  await again.ready();
  assert.deepEqual(
    again.view().map((n) => n.id),
    tab.ids,
    'the whole conversation',
  );
  return statesAtRead;
}

it('a tab reloaded with its recovery key gets the whole conversation in its attach: no history read', async (t) => {
  const tab = await closedTab(t, ['hello', 'are you there?']);
  const reads = await reopen(t, tab, (channel) =>
    assert.notEqual(channel.position, '', 'the recovery key restored a position'),
  );
  assert.deepEqual(reads, [], 'no history read: the catch-up replayed the log from its start');
});

it('a tab whose channel is already attaching from its recovery key reads the conversation beside the attach, not after it', async (t) => {
  const tab = await closedTab(t, ['hello']);
  // e.g. the app entered presence first: attaching from the recovered position
  const statesAtRead = await reopen(t, tab, (channel) => void channel.attach());
  assert.equal(statesAtRead.length, 1, 'one history read');
  assert.notEqual(statesAtRead[0], 'attached', 'the history read went out before the attach completed');
});

/**
 * A client on the server of `tab` whose history reads wait for `release()`: the session on it
 * joins the channel once the app has attached it, so it reads the conversation itself.
 */
async function joinHeld(t: TestContext, tab: Awaited<ReturnType<typeof closedTab>>) {
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  let reads = 0;
  const held: FetchLike = async (url, init) => {
    if (!url.includes('/messages')) return globalThis.fetch(url, init);
    reads++;
    await gate;
    return globalThis.fetch(url, init);
  };
  const reloaded = client(t, tab.server.url, { clientId: 'user', fetch: held });
  const channel = reloaded.channels.get(tab.name, { start: true });
  await channel.attach();
  const session = new UserSession({ channel });
  t.after(() => session.close());
  const errors: Error[] = [];
  session.on('error', (err) => errors.push(err));
  const started = session.start();
  await waitFor(() => reads === 1, { message: 'the session never read the history' });
  return { session, started, release, errors };
}

it('a session joining an attached channel is not live until the conversation up to its position is folded, and reports no error', async (t) => {
  const tab = await closedTab(t, ['hello', 'are you there?']);
  const { session, started, release, errors } = await joinHeld(t, tab);
  assert.equal(session.channel.state, 'attached');
  assert.equal(session.live, false, 'not live while the history read is under way');
  release();
  await started;
  await session.ready();
  assert.equal(session.live, true);
  assert.deepEqual(
    session.view().map((n) => n.id),
    tab.ids,
  );
  assert.deepEqual(errors, [], 'a read of one page is not an error');
});

it('a session closed while its history read is under way folds nothing of it', async (t) => {
  const tab = await closedTab(t, ['hello', 'are you there?']);
  const { session, started, release } = await joinHeld(t, tab);
  session.close();
  release();
  await started;
  assert.equal(session.live, false);
  assert.deepEqual(session.tree.inputs, [], 'the page read for a closed session was not folded');
});

it('a session joining an attached channel that holds nothing yet reads no history', async (t) => {
  const server = await realServer(t);
  let reads = 0;
  const counting: FetchLike = (url, init) => {
    if (url.includes('/messages')) reads++;
    return globalThis.fetch(url, init);
  };
  const channel = client(t, server.url, { fetch: counting }).channels.get(sessionName(), { start: true });
  await channel.attach();
  assert.equal(channel.position, '', 'an empty log: no position');
  const session = new UserSession({ channel });
  t.after(() => session.close());
  await session.ready();
  const id = await session.send('the first message');
  await waitFor(() => session.view().length === 1);
  assert.equal(session.view()[0]?.id, id);
  assert.equal(reads, 0, 'nothing to read up to');
});
