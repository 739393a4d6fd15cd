/**
 * The crash tests' three steps, shared by abandoned-run, restart-within-lease and redis-node-loss:
 * start the agent of agent-process.ts in its own process (killed with SIGKILL when the test ends),
 * have a user start a run on it and see it stream, and restart the agent in this process with the
 * same identity and run ids (`answerMissed`), as a process manager would after the crash.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AgentSession } from '../../src/agent-session.ts';
import { UserSession } from '../../src/user-session.ts';
import { textOf } from './agents.ts';
import { client, waitFor } from './fixture.ts';

const AGENT = fileURLToPath(new URL('./agent-process.ts', import.meta.url));

/** Resolves once the agent process printed its first line ("ready"); returns the process and that line. */
export async function spawnAgent(
  t: TestContext,
  url: string,
  channel: string,
  lease: number,
  options: { fixedRunId?: boolean; readyWithin?: number } = {},
): Promise<{ child: ChildProcess; ready: string }> {
  const child = spawn(process.execPath, [AGENT], {
    env: {
      ...process.env,
      MOORING_URL: url,
      MOORING_CHANNEL: channel,
      MOORING_LEASE: String(lease),
      ...(options.fixedRunId ? { MOORING_FIXED_RUN_ID: '1' } : {}),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => child.kill('SIGKILL'));
  const [line] = (await once(child.stdout!, 'data', {
    signal: AbortSignal.timeout(options.readyWithin ?? 20_000),
  })) as [Buffer];
  return { child, ready: line.toString().trim() };
}

/** SIGKILL, no goodbye; resolves once the process is gone. */
export async function killAgent(child: ChildProcess): Promise<void> {
  child.kill('SIGKILL');
  await once(child, 'exit');
}

/**
 * A user who sends "count" to an agent with fixed run ids and waits until its run streamed some
 * words; returns the session (closed when the test ends) and the run id.
 */
export async function countingRun(
  t: TestContext,
  url: string,
  channel: string,
  clientId?: string,
): Promise<{ user: UserSession; runId: string }> {
  const c = client(t, url, clientId === undefined ? {} : { clientId });
  const user = new UserSession({ channel: c.channels.get(channel, { start: true }) });
  t.after(() => user.close());
  await user.start();
  const inputId = await user.send('count');
  const runId = `run-for-${inputId}`;
  await waitFor(() => textOf(user.run(runId)?.message).split(' ').length > 10, {
    message: 'no text streamed',
  });
  return { user, runId };
}

/** The text the restarted agent writes: `tokens` words `token<i> `. */
export function tokens(n: number): string {
  return Array.from({ length: n }, (_, i) => `token${i} `).join('');
}

/**
 * The crashed agent started again: the same identity (op ids are unique per publisher, PROTOCOL.md
 * §7), the same run ids, answering what it missed with `count` tokens (pausing 5 ms every 7th when
 * `pauses`, so the coalescing window cuts the stream somewhere else than the first time).
 */
export async function restartAgent(
  t: TestContext,
  url: string,
  channel: string,
  count: number,
  options: { coalesceMs?: number; pauses?: boolean } = {},
): Promise<AgentSession> {
  const restarted = new AgentSession({
    channel: client(t, url, { clientId: 'crashing-agent' }).channels.get(channel, { start: true }),
    agent: 'assistant',
    answerMissed: true,
    coalesceMs: options.coalesceMs ?? 0,
    runId: (input) => `run-for-${input.id}`,
    onInput: async (_input, run) => {
      run.write({ type: 'text-start', id: 't' });
      for (let i = 0; i < count; i++) {
        run.write({ type: 'text-delta', id: 't', delta: `token${i} ` });
        if (options.pauses && i % 7 === 0) await new Promise((r) => setTimeout(r, 5));
      }
      run.write({ type: 'text-end', id: 't' });
    },
  });
  t.after(() => restarted.close());
  await restarted.start();
  return restarted;
}
