// When the server cannot resume the session channel (its log was recreated: a memory store
// restarted), the user session raises no silent gap: it reloads the conversation from history by
// itself and carries on live (ARCHITECTURE.md §4.2, §11); an agent back in the new log answers what
// it missed there.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ContinuityLost } from '@mooring/client';
import { Mooring } from '@mooring/client';
import { createToken } from '@mooring/server';
import { UserSession } from '../src/user-session.ts';
import { echoAgent, textOf } from './helpers/agents.ts';
import { client, FAST, KEY, proxyTo, realServer, sessionName, waitFor } from './helpers/fixture.ts';

describe('continuity lost', () => {
  it('reloads the conversation from history and converges to the new log', async (t) => {
    const first = await realServer(t);
    const port = first.port;
    const name = sessionName();
    const agent = await echoAgent(t, first.url, name);
    const user = new UserSession({ channel: client(t, first.url).channels.get(name, { start: true }) });
    t.after(() => user.close());
    const reloads: ContinuityLost[] = [];
    user.on('reloaded', (lost) => reloads.push(lost));
    await user.start();
    await user.send('in the old log');
    await waitFor(() => user.tree.runs[0]?.status === 'complete');

    await first.close();
    await waitFor(() => user.channel.state !== 'attached' || user.tree.runs.length === 1);
    const second = await realServer(t, { port }); // same address, empty memory store: a new epoch
    // Someone else starts the conversation afresh in the new log (the agent reconnects too).
    const other = new UserSession({ channel: client(t, second.url).channels.get(name, { start: true }) });
    t.after(() => other.close());
    await other.start();
    await waitFor(() => agent.channel.state === 'attached');
    await other.send('in the new log');

    await waitFor(() => reloads.length === 1, { message: 'no reload after continuityLost' });
    assert.equal(reloads[0]?.reason, 'epoch_changed');
    await waitFor(() => user.tree.runs.some((r) => r.status === 'complete'));
    await user.ready();
    assert.deepEqual(
      user.view().map((n) => textOf(n.message)),
      ['in the new log', 'assistant#2: in the new log'],
      'nothing of the old log is left, nothing of the new one is missing',
    );
    // And it is live: a new message goes through.
    await user.send('still here');
    await waitFor(() => user.tree.runs.length === 2 && user.tree.runs.every((r) => r.status === 'complete'));
    await user.ready();
    assert.deepEqual(
      user.view().map((n) => textOf(n.message)),
      ['in the new log', 'assistant#2: in the new log', 'still here', 'assistant#3: still here'],
    );
  });

  it('a viewer without history keeps its conversation across history_required, reports the gap and shows what comes next', async (t) => {
    // PROTOCOL §6.2 "Reading back without history": a `subscribe`-only holder away longer than
    // connectionStateTtl is answered `history_required`, live from the head; reading the history is
    // refused `forbidden`. The tree must not be wiped for a reload that cannot happen.
    const server = await realServer(t, { connectionStateTtl: 300 });
    const proxy = await proxyTo(t, server);
    const name = sessionName();
    await echoAgent(t, server.url, name);
    const writer = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => writer.close());
    await writer.start();
    await writer.send('one');
    await waitFor(() => writer.tree.runs[0]?.status === 'complete');

    const viewerClient = new Mooring({
      url: proxy.url('/'),
      authCallback: () =>
        createToken(KEY, { clientId: 'viewer', capability: { [name]: ['subscribe'] }, ttl: 600_000 }),
      environment: null,
      ...FAST,
      connectionStateTtl: 60_000, // the client waits to resume; the server forgets it after 300 ms
    });
    t.after(() => viewerClient.close());
    const viewer = new UserSession({ channel: viewerClient.channels.get(name, { start: true }) });
    t.after(() => viewer.close());
    const reloads: ContinuityLost[] = [];
    const errors: Array<string | undefined> = [];
    viewer.on('reloaded', (lost) => reloads.push(lost));
    viewer.on('error', (error) => errors.push((error as { code?: string }).code));
    await viewer.ready();
    const texts = () => viewer.view().map((n) => textOf(n.message));
    assert.deepEqual(texts(), ['one', 'assistant#1: one']);

    proxy.refuse();
    await proxy.reset();
    await writer.send('while away');
    await waitFor(
      () => writer.tree.runs.length === 2 && writer.tree.runs.every((r) => r.status === 'complete'),
    );
    await new Promise((r) => setTimeout(r, 800)); // past the server's connectionStateTtl
    proxy.pass();

    await waitFor(() => reloads.length === 1, { message: 'no continuityLost after the long drop' });
    assert.equal(reloads[0]?.reason, 'history_required');
    await viewer.ready();
    assert.deepEqual(texts(), ['one', 'assistant#1: one'], 'the conversation held was wiped');
    assert.ok(errors.includes('history_gap'), `the gap was not reported (errors: ${errors.join(', ')})`);

    await writer.send('after');
    await waitFor(
      () => writer.tree.runs.length === 3 && writer.tree.runs.every((r) => r.status === 'complete'),
    );
    // the run's node may show before its text has arrived on the viewer: wait for the whole answer
    const expected = ['one', 'assistant#1: one', 'after', 'assistant#3: after'];
    await waitFor(() => JSON.stringify(texts()) === JSON.stringify(expected), {
      message: 'what came after the gap is not shown',
    });
    assert.deepEqual(texts(), expected);
  });

  it('an agent back after its log was recreated answers what was sent while it was away, only at the end of each branch', async (t) => {
    const first = await realServer(t);
    const port = first.port;
    const proxy = await proxyTo(t, first);
    const name = sessionName();
    const agent = await echoAgent(t, proxy.url('/'), name);
    const session = (url: string, clientId: string) => {
      const s = new UserSession({
        channel: client(t, url, { clientId }).channels.get(name, { start: true }),
        clientId,
      });
      t.after(() => s.close());
      return s;
    };
    const before = session(first.url, 'user');
    await before.start();
    await before.send('in the old log');
    await waitFor(() => agent.tree.runs[0]?.status === 'complete');

    proxy.refuse(); // the agent cannot come back until the test lets it
    await first.close();
    const second = await realServer(t, { port }); // same address, empty memory store: a new epoch
    // Meanwhile, in the new log: an operator answers a first message, and the user follows up.
    const user = session(second.url, 'user');
    const operator = session(second.url, 'op');
    await user.start();
    await operator.start();
    await user.send('answered by the operator');
    await waitFor(() => operator.tree.inputs.length === 1);
    await operator.reply('the operator answers');
    await waitFor(() => user.tree.runs.length === 1);
    await user.send('sent while the agent was away');

    proxy.pass();
    const answered = () =>
      user.tree.runs
        .filter((r) => r.agent === 'assistant')
        .map((r) => textOf(user.tree.input(r.input)?.message));
    await waitFor(() => answered().length > 0, { message: 'the agent answered nothing it missed' });
    await waitFor(() => user.tree.runs.every((r) => r.status !== 'running') && agent.runs.length === 0);
    await user.ready();
    assert.deepEqual(answered(), ['sent while the agent was away']);
  });
});
