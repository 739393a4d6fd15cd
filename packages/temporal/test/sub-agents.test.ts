// Sub-agents (PROTOCOL.md §13.3): two child workflows' activities answer one input at once; both runs
// stream into the same session live, each attributed to its agent, and the user's view shows both
// answers under the input, each with its own text once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UserSession } from '@mooring/ai';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { StreamedRun } from '../src/stream-to-session.ts';
import { streamToSession } from '../src/stream-to-session.ts';
import { planSubAgents } from '../src/workflow/sub-agents.ts';
import {
  ANSWER,
  client,
  realServer,
  scriptedModel,
  sessionName,
  textOf,
  waitFor,
} from './helpers/fixture.ts';

describe('sub-agents in one session', () => {
  it('two child workflows answer one input: both runs live at once, each attributed to its agent', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const user = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => user.close());
    await user.start();
    const input = await user.send('Plan a weekend in Lisbon');
    const rest = client(t, server.url, { autoConnect: false, clientId: 'worker' }).rest;

    let bothLive = false;
    user.on('change', () => {
      if (user.running().length === 2) bothLive = true;
    });
    const plan = planSubAgents({ parentWorkflowId: 'parent-wf', input, agents: ['researcher', 'critic'] });
    const results = await Promise.all(
      plan.map((task) => {
        // Each child workflow runs its own activity (its own workflow id) with the run id the parent planned.
        const env = new MockActivityEnvironment({
          activityId: '1',
          workflowExecution: { workflowId: task.workflowId, runId: 'child-run' },
        });
        return env.run(() =>
          streamToSession({
            rest,
            channel: name,
            input,
            runId: task.runId,
            agent: task.agent,
            coalesceMs: 0,
            stream: () => scriptedModel({ delay: 15 }).stream,
          }),
        ) as Promise<StreamedRun>;
      }),
    );
    await waitFor(() => user.running().length === 0 && user.view().length === 3);
    await user.ready();
    assert.ok(bothLive, 'the user saw both runs streaming at the same time');

    const view = user.view();
    assert.equal(view[0]?.kind, 'input');
    const runs = view.slice(1);
    assert.deepEqual(runs.map((n) => (n.kind === 'run' ? n.agent : '')).sort(), ['critic', 'researcher']);
    for (const [i, task] of plan.entries()) {
      const run = user.run(task.runId);
      assert.equal(results[i]?.runId, task.runId);
      assert.equal(run?.agent, task.agent);
      assert.equal(run?.input, input);
      assert.equal(run?.status, 'complete');
      assert.equal(textOf(run?.message), ANSWER.join(''));
    }
  });
});
