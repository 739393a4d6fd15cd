// A listener that throws in a session (an outside review, stop 59): the sessions' own events — an
// AgentSession's `run`, a run's `end`, the tree's `change` (where `accepts` runs), a UserSession's
// `run` — go where their channel's client sends its listeners' exceptions. With `onListenerError`
// on the client the agent keeps answering and nothing reaches `uncaughtException`, which in Node
// would end the agent's process.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UserSession } from '../src/user-session.ts';
import { echoAgent, textOf } from './helpers/agents.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';

/** What reaches `uncaughtException` while `run` goes on (the test runner would fail the file on it). */
async function uncaught(run: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  process.setUncaughtExceptionCaptureCallback((error) => seen.push(error));
  try {
    await run();
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.setUncaughtExceptionCaptureCallback(null);
  }
  return seen;
}

class Bad extends Error {}

describe('a session listener that throws', () => {
  it("reaches the client's onListenerError: the agent keeps answering, nothing is uncaught", async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const hooked: string[] = [];
    const onListenerError = (error: unknown, event: string) => {
      assert.ok(error instanceof Bad, `not the listener's error: ${String(error)}`);
      hooked.push(event);
    };
    const escaped = await uncaught(async () => {
      const user = new UserSession({
        channel: client(t, server.url, { clientId: 'user', onListenerError }).channels.get(name, {
          start: true,
        }),
        clientId: 'user',
      });
      t.after(() => user.close());
      user.on('run', () => {
        throw new Bad('user run');
      });
      await user.start();
      const hookedAgent = await echoAgent(t, server.url, name, {
        channel: client(t, server.url, { clientId: 'assistant', onListenerError }).channels.get(name, {
          start: true,
        }),
        accepts: (input) => {
          if (textOf(input.message) === 'poison') throw new Bad('accepts');
          return true;
        },
      });
      hookedAgent.on('run', (run) => {
        run.on('end', () => {
          throw new Bad('end');
        });
        throw new Bad('run');
      });
      await user.send('first');
      await user.send('poison');
      await user.send('last');
      await waitFor(() => user.tree.runs.filter((r) => r.status === 'complete').length === 2, {
        message: 'the agent stopped answering',
      });
      await waitFor(() => hookedAgent.runs.length === 0);
      assert.deepEqual(
        user.tree.runs.map((r) => textOf(user.tree.input(r.input)?.message)),
        ['first', 'last'],
      );
    });
    assert.deepEqual(escaped, [], 'an exception reached uncaughtException');
    assert.deepEqual(
      [...hooked].sort(),
      ['change', 'end', 'end', 'run', 'run', 'run', 'run'],
      `hooked: ${hooked.join(', ')}`,
    );
  });
});
