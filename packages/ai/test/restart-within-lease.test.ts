// An agent restarted *within* the lease of the run its crashed predecessor left (a process manager
// restarts it at once; leases last 30 s by default) finds the run still `running`. When the lease
// runs out and the server marks it abandoned, the restarted agent (answerMissed, same run ids)
// resumes it in place. Found by the soak (`npm run soak`): the run stayed abandoned for good.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AgentSession } from '../src/agent-session.ts';
import { UserSession } from '../src/user-session.ts';
import { textOf } from './helpers/agents.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';

const AGENT = fileURLToPath(new URL('./helpers/agent-process.ts', import.meta.url));

it('a run still running when its agent restarts is resumed in place once its lease runs out', async (t) => {
  const server = await realServer(t);
  const name = sessionName();
  const child = spawn(process.execPath, [AGENT], {
    env: {
      ...process.env,
      MOORING_URL: server.url,
      MOORING_CHANNEL: name,
      MOORING_LEASE: '1000',
      MOORING_FIXED_RUN_ID: '1',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => child.kill('SIGKILL'));
  await once(child.stdout, 'data', { signal: AbortSignal.timeout(20_000) });
  const user = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
  t.after(() => user.close());
  await user.start();
  const inputId = await user.send('count');
  const runId = `run-for-${inputId}`;
  await waitFor(() => textOf(user.run(runId)?.message).split(' ').length > 10, {
    message: 'no text streamed',
  });
  child.kill('SIGKILL');
  await once(child, 'exit');

  // Restarted at once: the run is still `running` (its lease has not run out yet).
  const TOKENS = 40;
  const restarted = new AgentSession({
    channel: client(t, server.url, { clientId: 'crashing-agent' }).channels.get(name, { start: true }),
    agent: 'assistant',
    answerMissed: true,
    coalesceMs: 0,
    runId: (input) => `run-for-${input.id}`,
    onInput: async (_input, run) => {
      run.write({ type: 'text-start', id: 't' });
      for (let i = 0; i < TOKENS; i++) run.write({ type: 'text-delta', id: 't', delta: `token${i} ` });
      run.write({ type: 'text-end', id: 't' });
    },
  });
  t.after(() => restarted.close());
  await restarted.start();
  assert.equal(user.run(runId)?.status, 'running', 'restarted within the lease');
  await waitFor(() => user.run(runId)?.status === 'complete', {
    timeout: 15_000,
    message: 'the run was not resumed: it stays abandoned',
  });
  await user.ready();
  const expected = Array.from({ length: TOKENS }, (_, i) => `token${i} `).join('');
  assert.equal(textOf(user.run(runId)?.message), expected);
  assert.equal(user.tree.runs.length, 1, 'resumed in place, not a second run');
});
