// When the server cannot resume the session channel (its log was recreated: a memory store
// restarted), the user session raises no silent gap: it reloads the conversation from history by
// itself and carries on live (ARCHITECTURE.md §4.2, §11).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ContinuityLost } from '@mooring/client';
import { UserSession } from '../src/user-session.ts';
import { echoAgent, textOf } from './helpers/agents.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';

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
});
