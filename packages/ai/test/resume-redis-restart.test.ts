// A run resumed in place by a restarted agent (answerMissed, the same run ids) while Redis restarts
// under it. Found by the soak with Redis kills (`npm run soak -- --store redis --redis-kill-every 12`):
// runs resumed half a second before a Redis SIGKILL lost part of their text or held part of it twice.
// The resumed run's create, answered after the restart, was a duplicate in the new epoch (the crashed
// attempt's, with its old sequence); the agent's sink compared that serial with its position in the
// old epoch, took it for a new run, and wrote over the ids the crashed attempt had used: the server
// dropped its text as their duplicates.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startRedis } from '@mooring/testkit';
import { AgentSession } from '../src/agent-session.ts';
import { UserSession } from '../src/user-session.ts';
import { textOf } from './helpers/agents.ts';
import { countingRun, killAgent, spawnAgent, tokens } from './helpers/crashing-agent.ts';
import { client, realServer, restartRedis, sessionName, waitFor } from './helpers/fixture.ts';

const skip = process.env.MOORING_SKIP_REDIS === '1' ? 'MOORING_SKIP_REDIS=1' : undefined;

it('a run resumed in place goes on across a Redis restart: its whole text once, complete, for every reader', async (t) => {
  if (skip) return t.skip(skip);
  const redis = await startRedis({ appendonly: 'always' });
  t.after(() => redis.close());
  const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
  const name = sessionName();
  const { child } = await spawnAgent(t, server.url, name, 1_000, { fixedRunId: true });
  const { user, runId } = await countingRun(t, server.url, name);
  await killAgent(child);

  const TOKENS = 200;
  let started: () => void = () => {};
  const resumed = new Promise<void>((resolve) => {
    started = resolve;
  });
  const restarted = new AgentSession({
    channel: client(t, server.url, { clientId: 'crashing-agent' }).channels.get(name, { start: true }),
    agent: 'assistant',
    answerMissed: true,
    lease: 1_000,
    coalesceMs: 40,
    runId: (input) => `run-for-${input.id}`,
    onInput: async (_input, run) => {
      run.write({ type: 'text-start', id: 't' });
      for (let i = 0; i < TOKENS; i++) {
        if (i === 0) started();
        // a token every 10 ms, also while Redis is down and loading: operations in flight when it dies
        await sleep(10);
        run.write({ type: 'text-delta', id: 't', delta: `token${i} ` });
      }
      run.write({ type: 'text-end', id: 't' });
    },
  });
  t.after(() => restarted.close());
  await restarted.start();
  // the lease runs out, the server marks the run abandoned, the agent resumes it in place
  await resumed;

  await restartRedis(redis, server);

  await waitFor(() => user.run(runId)?.status === 'complete', {
    timeout: 20_000,
    message: 'the run never ended',
  });
  await user.ready();
  const read = textOf(user.run(runId)?.message);
  assert.equal(user.tree.runs.length, 1, 'resumed in place');
  // a fresh reader reads what the store holds
  const fresh = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
  t.after(() => fresh.close());
  await fresh.start();
  await waitFor(() => fresh.run(runId)?.status === 'complete', {
    message: 'a fresh reader does not see it ended',
  });
  await fresh.ready();
  assert.equal(textOf(fresh.run(runId)?.message), tokens(TOKENS), 'the store holds the whole text, once');
  assert.equal(read, tokens(TOKENS), 'the reader holds the whole text, once');
});
