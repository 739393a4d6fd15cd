// An agent restarted *within* the lease of the run its crashed predecessor left (a process manager
// restarts it at once; leases last 30 s by default) finds the run still `running`. When the lease
// runs out and the server marks it abandoned, the restarted agent (answerMissed, same run ids)
// resumes it in place. Found by the soak (`npm run soak`): the run stayed abandoned for good.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { UserSession } from '../src/user-session.ts';
import { echoAgent, textOf } from './helpers/agents.ts';
import { countingRun, killAgent, restartAgent, spawnAgent, tokens } from './helpers/crashing-agent.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';

it('a run still running when its agent restarts is resumed in place once its lease runs out', async (t) => {
  const server = await realServer(t);
  const name = sessionName();
  const { child } = await spawnAgent(t, server.url, name, 1_000, { fixedRunId: true });
  const { user, runId } = await countingRun(t, server.url, name);
  await killAgent(child);

  // Restarted at once: the run is still `running` (its lease has not run out yet).
  const TOKENS = 40;
  await restartAgent(t, server.url, name, TOKENS);
  assert.equal(user.run(runId)?.status, 'running', 'restarted within the lease');
  await waitFor(() => user.run(runId)?.status === 'complete', {
    timeout: 15_000,
    message: 'the run was not resumed: it stays abandoned',
  });
  await user.ready();
  assert.equal(textOf(user.run(runId)?.message), tokens(TOKENS));
  assert.equal(user.tree.runs.length, 1, 'resumed in place, not a second run');
});

// The soak (seed 20261202) once saw an expiry stored after the run's end: the run read `abandoned`
// though its agent had ended it. An agent that answers missed runs must not take that for a crash
// of its own and answer again. The stale expiry is written here by another client, as the server
// writes one (an update of the run message's headers, status `abandoned`).
it('a run this agent ended is not answered again when a stale expiry marks it abandoned', async (t) => {
  const server = await realServer(t);
  const name = sessionName();
  let answered = 0;
  const agent = await echoAgent(t, server.url, name, {
    answerMissed: true,
    runId: (input) => `run-${input.id}`,
    onInput: (_input, run) => {
      answered++;
      run.writeText('done');
    },
  });
  const user = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
  t.after(() => user.close());
  await user.start();
  await user.send('hi');
  const runId = await waitFor(() => user.tree.runs[0]?.id);
  await waitFor(() => user.run(runId)?.status === 'complete' && agent.runs.length === 0, {
    message: 'the run did not end',
  });

  const run = user.tree.run(runId)!;
  const stale = client(t, server.url, { clientId: 'expiry' }).channels.get(name);
  await stale.publishBatch([
    {
      action: 'update',
      serial: run.serial,
      headers: { run: runId, agent: run.agent, status: 'abandoned' },
    },
  ]);
  // the agent reacts to the change as it folds it (a resumed run would be driven at once)
  await waitFor(() => agent.tree.run(runId)?.status === 'abandoned', {
    message: 'the agent never saw the expiry',
  });
  assert.equal(answered, 1, 'the ended run was answered again');
  assert.equal(agent.runs.length, 0);
  await waitFor(() => user.run(runId)?.status === 'abandoned');
  assert.equal(user.tree.runs.length, 1);
});
