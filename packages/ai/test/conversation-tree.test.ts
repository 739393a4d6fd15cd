// The conversation tree (PROTOCOL.md §13.1): regenerate adds a sibling run, edit a sibling input,
// the view follows the newest alternative, branch navigation selects others, and a shared
// selection follows the user across devices.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UserSession } from '../src/user-session.ts';
import { echoAgent, textOf } from './helpers/agents.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';

async function userSession(
  t: import('node:test').TestContext,
  url: string,
  name: string,
  options: { sharedSelection?: boolean } = {},
): Promise<UserSession> {
  const session = new UserSession({
    channel: client(t, url).channels.get(name, { start: true }),
    ...options,
  });
  t.after(() => session.close());
  await session.start();
  return session;
}

/** The view as [kind, text] pairs, once every run on it is complete and rebuilt. */
async function shown(session: UserSession): Promise<string[]> {
  // ready() first: read for the first time, the view stops before a run not built yet
  await session.ready();
  await waitFor(() => session.view().every((n) => n.kind === 'input' || n.status !== 'running'));
  await session.ready();
  return session.view().map((n) => `${n.kind}:${textOf(n.message)}`);
}

describe('conversation tree', () => {
  it('regenerate adds a sibling run; the view shows the newest; select goes back', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name);
    const user = await userSession(t, server.url, name);
    await user.send('hello');
    await waitFor(() => user.tree.runs.length === 1);
    assert.deepEqual(await shown(user), ['input:hello', 'run:assistant#1: hello']);
    const first = user.tree.runs[0]!.id;

    await user.regenerate(first);
    await waitFor(() => user.tree.runs.length === 2);
    assert.deepEqual(await shown(user), ['input:hello', 'run:assistant#2: hello']);
    const second = user.tree.runs[1]!;
    assert.equal(second.replaces, first);
    assert.deepEqual(
      user.siblings(second.id).map((n) => n.id),
      [first, second.id],
    );
    assert.deepEqual(user.view()[1]?.siblings, [first, second.id]);

    await user.select(first);
    assert.deepEqual(await shown(user), ['input:hello', 'run:assistant#1: hello']);
    // A message sent now follows the selected branch.
    await user.send('more');
    await waitFor(() => user.tree.runs.length === 3);
    assert.deepEqual(await shown(user), [
      'input:hello',
      'run:assistant#1: hello',
      'input:more',
      'run:assistant#3: more',
    ]);
    // Regenerating an input regenerates the answers the view shows for it.
    await user.regenerate(user.tree.lastInput()!.id);
    await waitFor(() => user.tree.runs.length === 4);
    assert.deepEqual(await shown(user), [
      'input:hello',
      'run:assistant#1: hello',
      'input:more',
      'run:assistant#4: more',
    ]);
  });

  it('edit adds a sibling input with the same parent; branches stay navigable', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name);
    const user = await userSession(t, server.url, name);
    await user.send('one');
    await waitFor(() => user.tree.runs.length === 1);
    const two = await user.send('two');
    await waitFor(() => user.tree.runs.length === 2);
    const edited = await user.edit(two, 'TWO');
    await waitFor(() => user.tree.runs.length === 3);
    assert.deepEqual(await shown(user), [
      'input:one',
      'run:assistant#1: one',
      'input:TWO',
      'run:assistant#3: TWO',
    ]);
    const node = user.tree.input(edited)!;
    assert.equal(node.forkOf, two);
    assert.equal(node.parent, user.tree.input(two)!.parent);
    assert.deepEqual(
      user.siblings(edited).map((n) => n.id),
      [two, edited],
    );

    await user.select(two);
    assert.deepEqual(await shown(user), [
      'input:one',
      'run:assistant#1: one',
      'input:two',
      'run:assistant#2: two',
    ]);
  });

  it("an edit keeps a message id given for it; one repeating the edited input's id gets a new one", async (t) => {
    const server = await realServer(t);
    const user = await userSession(t, server.url, sessionName());
    const one = await user.send('one');
    const mine = await user.edit(one, { id: 'msg_mine', parts: [{ type: 'text', text: 'uno' }] });
    assert.equal(mine, 'msg_mine');
    const again = await user.edit(one, { id: one, parts: [{ type: 'text', text: 'eins' }] });
    assert.notEqual(again, one);
    await waitFor(() => user.tree.inputs.length === 3);
    assert.deepEqual(
      user.siblings(one).map((n) => `${n.id === again ? 'new id' : n.id}:${textOf(n.message)}`),
      [`${one}:one`, 'msg_mine:uno', 'new id:eins'],
    );
  });

  it('shares the selection across devices when asked to, and a late joiner computes the same view', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name);
    const laptop = await userSession(t, server.url, name, { sharedSelection: true });
    const phone = await userSession(t, server.url, name, { sharedSelection: true });
    const local = await userSession(t, server.url, name);
    await laptop.send('hi');
    await waitFor(() => laptop.tree.runs.length === 1);
    const first = laptop.tree.runs[0]!.id;
    await laptop.regenerate(first);
    await waitFor(() => phone.tree.runs.length === 2 && local.tree.runs.length === 2);
    assert.deepEqual(await shown(phone), ['input:hi', 'run:assistant#2: hi']);

    await laptop.select(first);
    await waitFor(() => phone.tree.view()[1]?.id === first, { message: 'the phone did not follow' });
    assert.deepEqual(await shown(phone), ['input:hi', 'run:assistant#1: hi']);
    assert.deepEqual(await shown(local), ['input:hi', 'run:assistant#2: hi'], 'a local-only view stays');

    const late = await userSession(t, server.url, name, { sharedSelection: true });
    assert.deepEqual(await shown(late), await shown(laptop));
  });

  it('a second session on a channel the client already follows reads the history itself', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name);
    const shared = client(t, server.url);
    const first = new UserSession({ channel: shared.channels.get(name, { start: true }) });
    t.after(() => first.close());
    await first.start();
    await first.send('before the second session');
    await waitFor(() => first.tree.runs[0]?.status === 'complete');
    const second = new UserSession({ channel: shared.channels.get(name) });
    t.after(() => second.close());
    await second.start();
    assert.deepEqual(await shown(second), await shown(first));
    await second.send('after');
    await waitFor(() => first.tree.runs.length === 2 && second.tree.runs.length === 2);
    assert.deepEqual(await shown(second), await shown(first));
  });
});
