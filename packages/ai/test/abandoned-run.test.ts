// An agent process killed mid-run (SIGKILL: no goodbye) leaves its run `abandoned` on every client
// within the lease — the server does it through message leases (ARCHITECTURE.md §5.6, PROTOCOL.md §7.1).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { UIMessageChunk } from 'ai';
import { UserSession } from '../src/user-session.ts';
import { textOf } from './helpers/agents.ts';
import { countingRun, killAgent, restartAgent, spawnAgent, tokens } from './helpers/crashing-agent.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';
import { collect } from './helpers/models.ts';

describe('a crashed agent', () => {
  it('ends its run abandoned on every client, keeping the partial output', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const { child, ready } = await spawnAgent(t, server.url, name, 500);
    assert.equal(ready, 'ready');

    const sessions = [0, 1].map(
      () => new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) }),
    );
    for (const s of sessions) {
      t.after(() => s.close());
      await s.start();
    }
    const [user, other] = sessions as [UserSession, UserSession];
    const streamed: Promise<UIMessageChunk[]>[] = [];
    user.on('run', (run) => streamed.push(collect(user.stream(run.id))));
    await user.send('go on forever');
    const runId = await waitFor(() => user.tree.runs[0]?.id);
    await waitFor(() => textOf(user.run(runId)?.message).length > 50, { message: 'no text streamed' });

    await killAgent(child);
    await waitFor(() => user.run(runId)?.status === 'abandoned' && other.run(runId)?.status === 'abandoned', {
      message: 'the run was not abandoned',
    });
    await user.ready();
    assert.match(textOf(user.run(runId)?.message), /^token0 token1 /);
    const chunks = await streamed[0]!;
    assert.deepEqual(chunks[chunks.length - 1], { type: 'abort', reason: 'abandoned' });
  });

  it('is answered again by a restarted agent (answerMissed): the same run id resumes, nothing twice', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const { child } = await spawnAgent(t, server.url, name, 300, { fixedRunId: true });
    const { user, runId } = await countingRun(t, server.url, name);
    await killAgent(child);
    await waitFor(() => user.run(runId)?.status === 'abandoned');

    // The restarted agent: same identity, same run ids, the same (deterministic) model, another
    // coalescing.
    const TOKENS = 60;
    await restartAgent(t, server.url, name, TOKENS, { coalesceMs: 25, pauses: true });
    await waitFor(() => user.run(runId)?.status === 'complete', { message: 'the run was not resumed' });
    await user.ready();
    assert.equal(textOf(user.run(runId)?.message), tokens(TOKENS));
    assert.equal(user.tree.runs.length, 1, 'resumed in place, not a second run');
  });
});
