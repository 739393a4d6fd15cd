// An agent whose channel is attached with `echo: false` (PROTOCOL.md §6.2 "Echo"): the server does
// not send its own output back, and the agent still knows it — folded from its acks — so the next
// input's history holds the earlier answer and the tree holds its runs.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Message } from '@mooring/protocol';
import type { UIMessage } from 'ai';
import { AgentSession } from '../src/agent-session.ts';
import { UserSession } from '../src/user-session.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';

it('echo: false — the agent receives none of its own tokens, and folds them itself', async (t) => {
  const server = await realServer(t);
  const name = sessionName();
  const channel = client(t, server.url, { clientId: 'agent' }).channels.get(name, {
    start: true,
    echo: false,
  });
  const received: Message[] = [];
  const histories: UIMessage[][] = [];
  const agent = new AgentSession({
    channel,
    agent: 'assistant',
    coalesceMs: 0, // every delta its own operation
    onInput: async (input, run) => {
      histories.push(await input.history());
      run.write({ type: 'text-start', id: 't' });
      for (let i = 0; i < 20; i++) run.write({ type: 'text-delta', id: 't', delta: `w${i} ` });
      run.write({ type: 'text-end', id: 't' });
    },
  });
  t.after(() => agent.close());
  await agent.start();
  void channel.subscribe((m) => received.push(m));

  const user = new UserSession({
    channel: client(t, server.url, { clientId: 'user' }).channels.get(name, { start: true }),
  });
  t.after(() => user.close());
  await user.start();
  await user.send('first');
  const first = await waitFor(() => user.tree.runs.find((r) => r.status === 'complete'));
  await user.send('second');
  await waitFor(() => user.tree.runs.filter((r) => r.status === 'complete').length === 2);

  const text = Array.from({ length: 20 }, (_, i) => `w${i} `).join('');
  // what the server sent the agent: the user's two inputs, nothing of its own
  assert.deepEqual(
    received.map((m) => m.clientId),
    ['user', 'user'],
  );
  assert.equal(channel.gapsRepaired, 0);
  // …and yet the agent's tree holds its runs, complete, and the second input's history the answer
  assert.equal(agent.tree.run(first.id)?.status, 'complete');
  const history = histories[1]!;
  assert.deepEqual(
    history.map((m) => m.role),
    ['user', 'assistant', 'user'],
  );
  const answer = history[1]!.parts.find((p) => p.type === 'text');
  assert.equal(answer?.type === 'text' ? answer.text : undefined, text);
});
