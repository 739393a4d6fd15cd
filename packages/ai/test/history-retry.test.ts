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
