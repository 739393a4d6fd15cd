// An agent restarted *within* the lease of the run its crashed predecessor left (a process manager
// restarts it at once; leases last 30 s by default) finds the run still `running`. When the lease
// runs out and the server marks it abandoned, the restarted agent (answerMissed, same run ids)
// resumes it in place. Found by the soak (`npm run soak`): the run stayed abandoned for good.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { textOf } from './helpers/agents.ts';
import { countingRun, killAgent, restartAgent, spawnAgent, tokens } from './helpers/crashing-agent.ts';
import { realServer, sessionName, waitFor } from './helpers/fixture.ts';

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
