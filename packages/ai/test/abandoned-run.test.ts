// An agent process killed mid-run (SIGKILL: no goodbye) leaves its run `abandoned` on every client
// within the lease — the server does it through message leases (ARCHITECTURE.md §5.6, PROTOCOL.md §7.1).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { UIMessageChunk } from 'ai';
import { AgentSession } from '../src/agent-session.ts';
import { UserSession } from '../src/user-session.ts';
import { textOf } from './helpers/agents.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';
import { collect } from './helpers/models.ts';

const AGENT = fileURLToPath(new URL('./helpers/agent-process.ts', import.meta.url));

describe('a crashed agent', () => {
  it('ends its run abandoned on every client, keeping the partial output', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const child = spawn(process.execPath, [AGENT], {
      env: { ...process.env, MOORING_URL: server.url, MOORING_CHANNEL: name, MOORING_LEASE: '500' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => child.kill('SIGKILL'));
    const [line] = (await once(child.stdout, 'data', { signal: AbortSignal.timeout(20_000) })) as [Buffer];
    assert.equal(line.toString().trim(), 'ready');

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

    child.kill('SIGKILL');
    await once(child, 'exit');
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
    const child = spawn(process.execPath, [AGENT], {
      env: {
        ...process.env,
        MOORING_URL: server.url,
        MOORING_CHANNEL: name,
        MOORING_LEASE: '300',
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
    await waitFor(() => user.run(runId)?.status === 'abandoned');

    // The restarted agent: same identity (op ids are unique per publisher, PROTOCOL.md §7), same run
    // ids, the same (deterministic) model, another coalescing.
    const TOKENS = 60;
    const restarted = new AgentSession({
      channel: client(t, server.url, { clientId: 'crashing-agent' }).channels.get(name, { start: true }),
      agent: 'assistant',
      answerMissed: true,
      coalesceMs: 25,
      runId: (input) => `run-for-${input.id}`,
      onInput: async (_input, run) => {
        run.write({ type: 'text-start', id: 't' });
        for (let i = 0; i < TOKENS; i++) {
          run.write({ type: 'text-delta', id: 't', delta: `token${i} ` });
          if (i % 7 === 0) await new Promise((r) => setTimeout(r, 5));
        }
        run.write({ type: 'text-end', id: 't' });
      },
    });
    t.after(() => restarted.close());
    await restarted.start();
    await waitFor(() => user.run(runId)?.status === 'complete', { message: 'the run was not resumed' });
    await user.ready();
    const expected = Array.from({ length: TOKENS }, (_, i) => `token${i} `).join('');
    assert.equal(textOf(user.run(runId)?.message), expected);
    assert.equal(user.tree.runs.length, 1, 'resumed in place, not a second run');
  });
});
