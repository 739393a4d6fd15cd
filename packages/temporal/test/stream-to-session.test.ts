// The streaming activity helper against a real Mooring server, in @temporalio/testing's
// MockActivityEnvironment (no Temporal server here): a retried attempt resumes the run in place
// (attempt 1 throws, or its process is SIGKILLed), a complete run is never published again, the lease
// spans the backoff or ends the run `abandoned`, heartbeats carry progress, cancellation ends the run.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadSession, UserSession } from '@mooring/ai';
import type { ServerOptions } from '@mooring/server';
import type { Info } from '@temporalio/activity';
import { CancelledFailure } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import type { UIMessageChunk } from 'ai';
import type { StreamHeartbeat, StreamToSessionOptions } from '../src/stream-to-session.ts';
import { streamToSession } from '../src/stream-to-session.ts';
import {
  ANSWER,
  client,
  realServer,
  scriptedModel,
  sessionName,
  textOf,
  waitFor,
  within,
} from './helpers/fixture.ts';

const WORKER = fileURLToPath(new URL('./helpers/activity-process.ts', import.meta.url));
const FULL = ANSWER.join('');
/** The failures here are on purpose: the mock worker's "activity failed" warnings are noise. */
const QUIET = { logger: new DefaultLogger('ERROR') };

async function session(t: TestContext, serverOptions: Partial<ServerOptions> = {}) {
  const server = await realServer(t, serverOptions);
  const name = sessionName();
  const user = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
  t.after(() => user.close());
  await user.start();
  const input = await user.send('Tell me about Temporal and Mooring');
  const rest = client(t, server.url, { autoConnect: false, clientId: 'worker' }).rest;
  return { server, name, user, input, rest };
}

/** One attempt of the activity: `MockActivityEnvironment` with that attempt's info. */
function attempt(workflowId: string, n: number, more: Partial<Info> = {}): Attempt {
  return new Attempt(
    {
      attempt: n,
      activityId: 'answer',
      workflowExecution: { workflowId, runId: 'wf-run-1' },
      ...more,
    },
    QUIET,
  );
}

class Attempt extends MockActivityEnvironment {
  exec<R>(fn: () => Promise<R>): Promise<R> {
    return this.run(fn) as Promise<R>;
  }
}

describe('streamToSession (a streaming activity)', () => {
  it('a retried attempt resumes the run in place: one assistant message, the text once', async (t) => {
    const { name, user, input, rest } = await session(t);
    const base: Omit<StreamToSessionOptions, 'stream'> = { rest, channel: name, input, coalesceMs: 0 };

    const first = attempt(name, 1);
    await assert.rejects(
      first.exec(() => streamToSession({ ...base, stream: () => scriptedModel({ failAfter: 5 }).stream })),
      /model connection reset/,
    );
    // Attempt 1 died mid-stream: its partial text is stored and the run is still running (its lease
    // spans the retry backoff), not ended `error`.
    const tree = await loadSession({ rest, channel: name });
    assert.equal(tree.runs.length, 1);
    const run = tree.runs[0];
    assert.equal(run?.status, 'running');
    const partial = tree.parts(run?.id ?? '')[0]?.text ?? '';
    assert.ok(partial.length > 0 && FULL.startsWith(partial) && partial !== FULL, `partial: ${partial}`);

    const second = attempt(name, 2);
    const result = await second.exec(() =>
      streamToSession({ ...base, stream: () => scriptedModel().stream }),
    );
    assert.deepEqual(result, { runId: run?.id, status: 'complete', reason: undefined, alreadyEnded: false });

    await waitFor(() => user.run(result.runId)?.status === 'complete');
    await user.ready();
    const view = user.view();
    assert.equal(view.length, 2, 'the input and one answer');
    assert.equal(user.messages.filter((m) => m.role === 'assistant').length, 1);
    assert.equal(textOf(user.run(result.runId)?.message), FULL);
    // A later reader (REST history) folds the same: one run, one text part with the text once.
    const after = await loadSession({ rest, channel: name });
    assert.equal(after.runs.length, 1);
    assert.deepEqual(
      after.parts(result.runId).map((p) => p.text),
      [FULL],
    );
  });

  it('a worker process killed mid-stream (SIGKILL): the next attempt finishes the same run once', async (t) => {
    const { server, name, user, input, rest } = await session(t);
    const child = spawn(process.execPath, ['--conditions=@mooring/source', WORKER], {
      env: {
        ...process.env,
        MOORING_URL: server.url,
        MOORING_CHANNEL: name,
        MOORING_INPUT: input,
        WORKFLOW_ID: name,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => child.kill('SIGKILL'));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('streaming') && resolve());
      child.once('exit', (code) => reject(new Error(`worker exited early (${code})`)));
    });
    const runId = await waitFor(async () => {
      const tree = await loadSession({ rest, channel: name });
      const run = tree.runs[0];
      return run && (tree.parts(run.id)[0]?.text ?? '').length > 0 ? run.id : undefined;
    });
    child.kill('SIGKILL');
    await once(child, 'exit');
    assert.equal(user.run(runId)?.status, 'running', 'the lease holds the run across the crash');

    const result = await attempt(name, 2).exec(() =>
      streamToSession({ rest, channel: name, input, coalesceMs: 0, stream: () => scriptedModel().stream }),
    );
    assert.equal(result.runId, runId, 'attempt 2 derives the same run id');
    assert.equal(result.status, 'complete');
    await waitFor(() => user.run(runId)?.status === 'complete');
    await user.ready();
    assert.equal(user.messages.filter((m) => m.role === 'assistant').length, 1);
    assert.equal(textOf(user.run(runId)?.message), FULL);
  });

  it('a run already complete is never published again, and the model is not called', async (t) => {
    const { name, input, rest } = await session(t);
    const base = { rest, channel: name, input, coalesceMs: 0 };
    const done = await attempt(name, 1).exec(() =>
      streamToSession({ ...base, stream: () => scriptedModel().stream }),
    );
    assert.equal(done.status, 'complete');
    const before = await rest.status(name);

    let called = false;
    const again = await attempt(name, 2).exec(() =>
      streamToSession({
        ...base,
        stream: () => {
          called = true;
          return scriptedModel().stream;
        },
      }),
    );
    assert.deepEqual(again, { runId: done.runId, status: 'complete', reason: undefined, alreadyEnded: true });
    assert.equal(called, false);
    assert.deepEqual(await rest.status(name), before, 'nothing was published');
  });

  it('the last attempt ends the run `error`; a failed attempt that is never retried ends `abandoned` by its lease', async (t) => {
    const { name, user, input, rest } = await session(t);
    const last = attempt(name, 3, { retryPolicy: { maximumAttempts: 3 } });
    await assert.rejects(
      last.exec(() =>
        streamToSession({ rest, channel: name, input, stream: () => scriptedModel({ failAfter: 4 }).stream }),
      ),
    );
    const ended = (await loadSession({ rest, channel: name })).runs[0];
    assert.equal(ended?.status, 'error');
    assert.match(ended?.reason ?? '', /model connection reset/);

    // Attempt 1 of another activity fails; Temporal would retry, but the workflow gives up: with
    // nothing renewing the lease any more, the server ends the run abandoned.
    const other = new Attempt(
      {
        attempt: 1,
        activityId: 'other',
        workflowExecution: { workflowId: name, runId: 'wf-run-1' },
      },
      QUIET,
    );
    await assert.rejects(
      other.exec(() =>
        streamToSession({
          rest,
          channel: name,
          input,
          lease: 300,
          stream: () => scriptedModel({ failAfter: 4 }).stream,
        }),
      ),
    );
    // settled: the view shows a run once its message is built
    const abandoned = await waitFor(() => user.running().length === 0 && user.settled && user.view().at(-1));
    assert.equal(abandoned.kind === 'run' && abandoned.status, 'abandoned');
  });

  it('a model stream that throws undefined (or null) fails the attempt like any throw: the last one ends the run `error`, never `complete`', async (t) => {
    const { name, input, rest } = await session(t);
    for (const [n, value] of [
      [1, undefined],
      [2, null],
    ] as const) {
      const last = new Attempt(
        {
          attempt: 1,
          activityId: `throws-${n}`,
          workflowExecution: { workflowId: name, runId: 'wf-run-1' },
          retryPolicy: { maximumAttempts: 1 },
        },
        QUIET,
      );
      await assert.rejects(
        last.exec(() =>
          streamToSession({
            rest,
            channel: name,
            input,
            stream: () =>
              new ReadableStream({
                pull() {
                  throw value;
                },
              }),
          }),
        ),
        new RegExp(`the model stream threw ${value}`),
      );
    }
    const ended = (await loadSession({ rest, channel: name })).runs.map((r) => [r.status, r.reason]);
    assert.deepEqual(ended, [
      ['error', 'the model stream threw undefined'],
      ['error', 'the model stream threw null'],
    ]);
  });

  it('heartbeats carry the run id, the attempt and the progress', async (t) => {
    const { name, input, rest } = await session(t);
    const env = attempt(name, 1);
    const beats: StreamHeartbeat[] = [];
    env.on('heartbeat', (details: StreamHeartbeat) => beats.push(details));
    const result = await env.exec(() =>
      streamToSession({
        rest,
        channel: name,
        input,
        heartbeatEvery: 0,
        stream: () => scriptedModel().stream,
      }),
    );
    assert.ok(beats.length >= 2);
    for (const beat of beats) {
      assert.equal(beat.runId, result.runId);
      assert.equal(beat.attempt, 1);
    }
    const counts = beats.map((b) => b.chunks);
    assert.deepEqual(
      counts,
      [...counts].sort((a, b) => a - b),
      'progress only grows',
    );
    assert.equal(counts.at(-1), ANSWER.length + 4, 'the last heartbeat counts every chunk');
    for (let n = 1; n <= ANSWER.length + 4; n++)
      assert.ok(
        counts.includes(n),
        `heartbeatEvery 0: a heartbeat after every chunk (none after chunk ${n})`,
      );
  });

  it("the run is stored with the caller's agent, metadata and the run it replaces; each `step` is a run of its own", async (t) => {
    const { name, user, input, rest } = await session(t);
    const env = attempt(name, 1);
    const first = await env.exec(() =>
      streamToSession({ rest, channel: name, input, step: 1, stream: () => scriptedModel().stream }),
    );
    const second = await env.exec(() =>
      streamToSession({
        rest,
        channel: name,
        input,
        step: 2,
        agent: 'critic',
        metadata: { model: 'scripted' },
        replaces: first.runId,
        stream: () => scriptedModel().stream,
      }),
    );
    assert.notEqual(second.runId, first.runId, 'another step, another run');
    assert.equal(second.alreadyEnded, false);
    const tree = await loadSession({ rest, channel: name });
    const run = tree.run(second.runId);
    assert.deepEqual(
      { agent: run?.agent, metadata: run?.metadata, replaces: run?.replaces, status: run?.status },
      { agent: 'critic', metadata: { model: 'scripted' }, replaces: first.runId, status: 'complete' },
    );
    assert.equal(tree.run(first.runId)?.agent, 'assistant');
    await waitFor(() => user.run(second.runId)?.status === 'complete');
  });

  it('a model stream that aborts ends the run `cancelled` with its reason', async (t) => {
    const { name, user, input, rest } = await session(t);
    const chunks: UIMessageChunk[] = [
      { type: 'start' },
      { type: 'text-start', id: 't0' },
      { type: 'text-delta', id: 't0', delta: 'Half an ans' },
      { type: 'abort', reason: 'the user stopped it' },
    ];
    const result = await attempt(name, 1).exec(() =>
      streamToSession({
        rest,
        channel: name,
        input,
        stream: async function* () {
          yield* chunks;
        },
      }),
    );
    assert.deepEqual(
      { status: result.status, reason: result.reason },
      { status: 'cancelled', reason: 'the user stopped it' },
    );
    await waitFor(() => user.run(result.runId)?.status === 'cancelled');
    assert.equal(user.run(result.runId)?.reason, 'the user stopped it');
  });

  it("the run's lease is renewed while the model streams: a stream longer than the lease completes", async (t) => {
    const { name, user, input, rest } = await session(t);
    const statuses: string[] = [];
    user.tree.on('change', (c) => {
      if (c.kind === 'run') statuses.push(c.node.status);
    });
    // 12 chunks 250 ms apart: 3 s, well past a 1 s lease that nothing would renew; each renewal
    // comes within a quarter of the lease, with room for a loaded machine's stalls.
    const result = await attempt(name, 1).exec(() =>
      streamToSession({
        rest,
        channel: name,
        input,
        lease: 1_000,
        stream: () => scriptedModel({ delay: 250 }).stream,
      }),
    );
    assert.equal(result.status, 'complete');
    await waitFor(() => user.run(result.runId)?.status === 'complete');
    assert.ok(!statuses.includes('abandoned'), `the run was abandoned mid-stream: ${statuses.join(', ')}`);
    assert.deepEqual(
      (await loadSession({ rest, channel: name })).parts(result.runId).map((p) => p.text),
      [FULL],
    );
  });

  it('`coalesceMs` reaches the publisher: with 0, the deltas of a fast model are operations of their own', async (t) => {
    const { server, name, input, rest } = await session(t);
    const appends: string[] = [];
    const watcher = client(t, server.url).channels.get(name);
    await watcher.subscribe((m) => {
      if (m.action === 'append') appends.push(String(m.data));
    });
    const result = await attempt(name, 1).exec(() =>
      streamToSession({ rest, channel: name, input, coalesceMs: 0, stream: () => scriptedModel().stream }),
    );
    assert.equal(result.status, 'complete');
    // (the default 40 ms window merges a fast model's deltas into the part's create)
    await waitFor(() => appends.filter((d) => d !== '').length >= 2, {
      message: `coalesceMs 0: every delta its own operation, got appends ${JSON.stringify(appends)}`,
    });
  });

  it('a permanent publishing failure stops reading the model and fails the attempt; the run ends `error`', async (t) => {
    // A text part may not grow past 512 bytes here: the model's answer is refused (`message_too_large`).
    const { name, user, input, rest } = await session(t, { limits: { maxMessageSize: 512 } });
    let runId = '';
    let read = 0;
    async function* model(): AsyncGenerator<UIMessageChunk> {
      read++;
      yield { type: 'start' };
      read++;
      yield { type: 'text-start', id: 't0' };
      read++;
      yield { type: 'text-delta', id: 't0', delta: 'x'.repeat(600) };
      // The model goes on only once the refusal has ended the run.
      await waitFor(() => user.run(runId)?.status === 'error');
      for (let i = 0; i < 5; i++) {
        read++;
        yield { type: 'text-delta', id: 't0', delta: 'more' };
      }
    }
    await assert.rejects(
      attempt(name, 1).exec(() =>
        streamToSession({
          rest,
          channel: name,
          input,
          coalesceMs: 0,
          stream: (context) => {
            runId = context.runId;
            return model();
          },
        }),
      ),
      (err: { code?: string }) => err.code === 'message_too_large',
    );
    assert.ok(read <= 4, `the model was read on after the failure: ${read} chunks`);
    assert.equal((await loadSession({ rest, channel: name })).run(runId)?.status, 'error');
  });

  it('a cancellation reaches the activity while the model is silent: the stream stops, the run ends `cancelled`', async (t) => {
    const model = scriptedModel({ stallAfter: 4 });
    // Registered before the server's close, so it runs first: a model still silent when the test ends
    // is let go, and an activity the cancellation never reached ends with the server still up, instead
    // of holding the test's process.
    const activities: Promise<unknown>[] = [];
    t.after(async () => {
      model.release();
      await Promise.allSettled(activities);
    });
    const { name, user, input, rest } = await session(t);
    const env = attempt(name, 1);
    const running = env.exec(() =>
      streamToSession({ rest, channel: name, input, coalesceMs: 0, stream: () => model.stream }),
    );
    activities.push(running);
    const runId = await waitFor(() => user.running()[0]?.id);
    await waitFor(() => textOf(user.run(runId)?.message).length > 0);
    env.cancel();
    await assert.rejects(
      within(running, {
        message:
          'the cancelled activity never ended: the cancellation did not reach it while its model was silent',
      }),
      (err) => err instanceof CancelledFailure,
    );
    assert.equal(model.cancelled, true, 'the model stream was cancelled');
    await waitFor(() => user.run(runId)?.status === 'cancelled', {
      message: 'the run never ended `cancelled`',
    });
  });
});
