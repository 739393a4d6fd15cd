// What an AgentSession answers (ARCHITECTURE.md §11): at start the log is history, answered only with
// `answerMissed`, and then only the inputs at the end of their branch that this agent has not
// answered; `close()` cancels the runs in progress unless asked to drain them; its publishing options
// reach every run; a run ends by what the stream its handler piped did (failed, error chunk, abort).
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { UIMessageChunk } from 'ai';
import type { AgentSession } from '../src/agent-session.ts';
import { UserSession } from '../src/user-session.ts';
import { echoAgent, textOf } from './helpers/agents.ts';
import { client, realServer, sessionName, waitFor, within } from './helpers/fixture.ts';
import { MemoryLog } from './helpers/memory-log.ts';

async function userSession(
  t: TestContext,
  url: string,
  name: string,
  clientId?: string,
): Promise<UserSession> {
  const session = new UserSession({
    channel: client(t, url, clientId === undefined ? {} : { clientId }).channels.get(name, { start: true }),
    ...(clientId === undefined ? {} : { clientId }),
  });
  t.after(() => session.close());
  await session.start();
  return session;
}

/** The texts of the inputs that runs of `agent` answer, in run order. */
function answered(user: UserSession, agent: string): string[] {
  return user.tree.runs
    .filter((r) => r.agent === agent)
    .map((r) => textOf(user.tree.input(r.input)?.message));
}

/** Waits until every run on the user's tree has ended and the agent drives none. */
async function settled(user: UserSession, agent: AgentSession): Promise<void> {
  await waitFor(() => agent.runs.length === 0 && user.tree.runs.every((r) => r.status !== 'running'));
  await user.ready();
}

describe('AgentSession', () => {
  it('an agent started on a session with history answers none of it, only what comes after', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const user = await userSession(t, server.url, name);
    await user.send('before the agent');
    const agent = await echoAgent(t, server.url, name);
    await user.send('after the agent started');
    await waitFor(() => user.tree.runs.some((r) => r.status === 'complete'));
    await settled(user, agent);
    assert.deepEqual(answered(user, 'assistant'), ['after the agent started']);
  });

  it('answerMissed answers the last input of each branch it has not answered: not one followed, edited or answered', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const user = await userSession(t, server.url, name);
    const operator = await userSession(t, server.url, name, 'op');
    // Nobody serves the session yet: an operator answers the first input, the user follows up and
    // edits the follow-up.
    await user.send('answered by the operator');
    await waitFor(() => operator.tree.inputs.length === 1);
    await operator.reply('the operator answers');
    await waitFor(() => user.tree.runs.length === 1);
    const followUp = await user.send('edited away');
    await user.edit(followUp, 'the edit');
    await waitFor(() => user.tree.inputs.length === 3);

    const first = await echoAgent(t, server.url, name, { answerMissed: true });
    await waitFor(() => answered(user, 'assistant').length === 1);
    await settled(user, first);
    assert.deepEqual(answered(user, 'assistant'), ['the edit']);
    await first.close();

    // Restarted: the edit has this agent's (complete) answer, so nothing is answered again.
    const second = await echoAgent(t, server.url, name, { answerMissed: true });
    await user.send('live');
    await waitFor(() => answered(user, 'assistant').includes('live'));
    await settled(user, second);
    assert.deepEqual(answered(user, 'assistant'), ['the edit', 'live']);
  });

  it('close() cancels the runs in progress and resolves once their end is stored; close({ drain: true }) lets them finish', async (t) => {
    const server = await realServer(t);
    for (const drain of [false, true]) {
      const name = sessionName();
      let release: () => void = () => {};
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      const agent = await echoAgent(t, server.url, name, {
        onInput: async (_input, run) => {
          run.write({ type: 'text-start', id: 't' });
          run.write({ type: 'text-delta', id: 't', delta: 'working' });
          const aborted = new Promise<void>((resolve) =>
            run.signal.addEventListener('abort', () => resolve()),
          );
          await Promise.race([released, aborted]);
          run.write({ type: 'text-end', id: 't' });
        },
      });
      const user = await userSession(t, server.url, name);
      await user.send('take your time');
      const runId = await waitFor(() => user.tree.runs[0]?.id);
      await waitFor(() => agent.runs.length === 1);
      const closing = agent.close(drain ? { drain: true } : {});
      if (drain) {
        await sleep(100);
        assert.equal(agent.runs[0]?.signal.aborted, false, 'a drained run is not cancelled');
        release();
      }
      await within(closing, { message: `close(${drain ? 'drain' : ''}) did not resolve` });
      await waitFor(() => user.run(runId)?.status !== 'running');
      assert.equal(user.run(runId)?.status, drain ? 'complete' : 'cancelled');
      release();
    }
  });

  it("the session's coalesceMs and timers reach the publisher of every run", async (t) => {
    const server = await realServer(t);
    const deltas = ['one ', 'two ', 'three'];

    // coalesceMs 0: deltas written in one turn stay one operation each (the default 40 ms window
    // would merge them into the part's create)
    const name = sessionName();
    const log = new MemoryLog();
    await echoAgent(t, server.url, name, {
      sink: log,
      coalesceMs: 0,
      onInput: (_input, run) => {
        run.write({ type: 'text-start', id: 't' });
        for (const delta of deltas) run.write({ type: 'text-delta', id: 't', delta });
        run.write({ type: 'text-end', id: 't' });
      },
    });
    await (await userSession(t, server.url, name)).send('hi');
    await waitFor(() => log.ops.flat().some((op) => op.headers?.status === 'complete'));
    const appends = log.ops.flat().filter((op) => op.action === 'append' && op.data !== '');
    assert.ok(appends.length >= 2, `every delta its own operation: ${JSON.stringify(log.ops)}`);

    // timers: the merge window of deltas written a few ms apart is timed by the given timers
    const timed = sessionName();
    const timedLog = new MemoryLog();
    let timersSet = 0;
    await echoAgent(t, server.url, timed, {
      sink: timedLog,
      timers: {
        setTimeout: (fn, ms) => {
          timersSet++;
          return setTimeout(fn, ms);
        },
        clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
      },
      onInput: async (_input, run) => {
        run.write({ type: 'text-start', id: 't' });
        for (const delta of deltas) {
          run.write({ type: 'text-delta', id: 't', delta });
          await sleep(5);
        }
        run.write({ type: 'text-end', id: 't' });
      },
    });
    await (await userSession(t, server.url, timed)).send('hi');
    await waitFor(() => timedLog.ops.flat().some((op) => op.headers?.status === 'complete'));
    assert.ok(timersSet > 0, 'no timer went through the given timers');
  });

  it("pipe: a stream that fails ends the run `error` with the failure's message, the text so far kept", async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name, {
      onInput: async (_input, run) => {
        let sent = false;
        await run.pipe(
          new ReadableStream<UIMessageChunk>({
            pull(controller) {
              if (sent) return controller.error(new Error('the model connection dropped'));
              sent = true;
              controller.enqueue({ type: 'text-start', id: 't' });
              controller.enqueue({ type: 'text-delta', id: 't', delta: 'so far' });
            },
          }),
        );
      },
    });
    const user = await userSession(t, server.url, name);
    await user.send('hi');
    const run = await waitFor(() => user.tree.runs.find((r) => r.status !== 'running'));
    assert.deepEqual(
      { status: run.status, reason: run.reason },
      { status: 'error', reason: 'the model connection dropped' },
    );
    await user.ready();
    assert.equal(textOf(user.run(run.id)?.message), 'so far');
  });

  it('pipe: an `error` chunk ends the run `error` and lets go of the rest of the stream', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    let cancelled = false;
    let pulledAfterError = 0;
    await echoAgent(t, server.url, name, {
      onInput: async (_input, run) => {
        let n = 0;
        await run.pipe(
          new ReadableStream<UIMessageChunk>(
            {
              pull(controller) {
                n++;
                if (n === 1) controller.enqueue({ type: 'error', errorText: 'rate limited' });
                else {
                  pulledAfterError++;
                  controller.enqueue({ type: 'text-start', id: `t${n}` });
                }
              },
              cancel() {
                cancelled = true;
              },
            },
            { highWaterMark: 0 },
          ),
        );
      },
    });
    const user = await userSession(t, server.url, name);
    await user.send('hi');
    const run = await waitFor(() => user.tree.runs.find((r) => r.status !== 'running'));
    assert.deepEqual({ status: run.status, reason: run.reason }, { status: 'error', reason: 'rate limited' });
    assert.equal(cancelled, true, 'the stream was cancelled');
    assert.equal(pulledAfterError, 0, 'nothing was read after the error chunk');
  });

  it('pipe: a run ended while it pipes cancels the stream, so the model behind it stops', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    let cancelled = false;
    await echoAgent(t, server.url, name, {
      onInput: async (_input, run) => {
        let n = 0;
        await run.pipe(
          new ReadableStream<UIMessageChunk>(
            {
              async pull(controller) {
                n++;
                if (n === 1) controller.enqueue({ type: 'text-start', id: 't' });
                else controller.enqueue({ type: 'text-delta', id: 't', delta: `w${n} ` });
                if (n === 3) void run.end('complete'); // the handler decides it has enough
                await new Promise((resolve) => setTimeout(resolve, 1));
              },
              cancel() {
                cancelled = true;
              },
            },
            { highWaterMark: 0 },
          ),
        );
      },
    });
    const user = await userSession(t, server.url, name);
    await user.send('hi');
    await waitFor(() => user.tree.runs.find((r) => r.status === 'complete'));
    await waitFor(() => cancelled, { message: 'the stream was left unread, not cancelled' });
  });

  it("a handler that returns after piping a stream that aborted: the run ends `cancelled` with the abort's reason", async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name, {
      onInput: async (_input, run) => {
        await run.pipe(
          (async function* (): AsyncGenerator<UIMessageChunk> {
            yield { type: 'text-start', id: 't' };
            yield { type: 'text-delta', id: 't', delta: 'half' };
            yield { type: 'abort', reason: 'stopped by the tool' };
          })(),
        );
      },
    });
    const user = await userSession(t, server.url, name);
    await user.send('hi');
    const run = await waitFor(() => user.tree.runs.find((r) => r.status !== 'running'));
    assert.deepEqual(
      { status: run.status, reason: run.reason },
      { status: 'cancelled', reason: 'stopped by the tool' },
    );
  });
});
