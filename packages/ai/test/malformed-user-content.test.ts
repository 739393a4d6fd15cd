// A member's user content that the AI SDK cannot read (review findings 1 and 2): a `steer` or an
// `ai.input` whose parts hold `null`, `{}` or a file without a URL. `convertToModelMessages` throws
// on such parts. A steer was delivered outside any handler, so the rejection went unhandled and ended
// the agent process; an input stayed in every later history of its branch, so every later run failed.
// Now both are malformed records (refused by the wire check, reported, never folded), and a steer
// that fails anyway is reported through the session's `error` event.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { JsonValue } from '@mooring/protocol';
import type { UIMessage } from 'ai';
import { convertToModelMessages, stepCountIs, streamText, toUIMessageStream } from 'ai';
import { AgentRun } from '../src/agent-run.ts';
import { AgentSession } from '../src/agent-session.ts';
import { MooringAiError } from '../src/errors.ts';
import type { RunPublisher } from '../src/run-publisher.ts';
import { UserSession } from '../src/user-session.ts';
import { EVENT_CONTROL, EVENT_INPUT } from '../src/wire.ts';
import { textOf } from './helpers/agents.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';
import { heldCountingModel } from './helpers/models.ts';

/** Collects the process's unhandled rejections while a test runs (each one would end an agent). */
function unhandledRejections(t: TestContext): unknown[] {
  const seen: unknown[] = [];
  const listener = (reason: unknown) => seen.push(reason);
  process.on('unhandledRejection', listener);
  t.after(() => process.off('unhandledRejection', listener));
  return seen;
}

function errors(session: {
  on(event: 'error', listener: (err: Error) => void): () => void;
}): MooringAiError[] {
  const list: MooringAiError[] = [];
  session.on('error', (err) => {
    if (err instanceof MooringAiError) list.push(err);
  });
  return list;
}

async function userSession(t: TestContext, url: string, name: string, clientId: string) {
  const session = new UserSession({
    channel: client(t, url, { clientId }).channels.get(name, { start: true }),
  });
  const reported = errors(session);
  t.after(() => session.close());
  await session.start();
  return { session, reported };
}

describe('user content the AI SDK cannot read', () => {
  it('a steer with a null part is refused as malformed, one the AI SDK cannot convert is reported: the agent lives on, the run takes the next steer', async (t) => {
    const unhandled = unhandledRejections(t);
    const server = await realServer(t);
    const name = sessionName();
    const { model, release } = heldCountingModel();
    const agent = new AgentSession({
      channel: client(t, server.url, { clientId: 'assistant' }).channels.get(name, { start: true }),
      agent: 'assistant',
      onInput: async (input, run) => {
        const result = streamText({
          model,
          messages: await convertToModelMessages(await input.history()),
          abortSignal: run.signal,
          stopWhen: stepCountIs(3),
          experimental_steering: run.steering,
        });
        await run.pipe(toUIMessageStream({ stream: result.stream }));
      },
    });
    t.after(() => agent.close());
    const agentErrors = errors(agent);
    const steered: UIMessage[] = [];
    agent.on('run', (run) => run.on('steer', (m) => steered.push(m)));
    await agent.start();
    const { session } = await userSession(t, server.url, name, 'alice');
    await session.send('count to three');
    const runId = await waitFor(() => session.tree.runs[0]?.id);

    const mallory = client(t, server.url, { clientId: 'mallory' }).channels.get(name);
    const poison = { id: 'x', role: 'user', parts: [null] } as JsonValue;
    await mallory.publish(
      EVENT_CONTROL,
      { type: 'steer', runId, message: poison },
      { headers: { control: 'steer', run: runId } },
    );
    await waitFor(
      () => agentErrors.some((e) => /steer needs runId and a UIMessage: parts\[0\]/.test(e.message)),
      {
        message: `the malformed steer was not reported: ${agentErrors.map((e) => e.message).join('; ')}`,
      },
    );
    // What the wire check cannot foresee fails in the AI SDK: the session reports it as well.
    agent.runs[0]!.steer({ id: 'direct', role: 'user', parts: [null] } as unknown as UIMessage);
    await waitFor(() => agentErrors.some((e) => /steer direct not delivered/.test(e.message)));
    await session.steer(runId, 'in French please');
    await waitFor(() => steered.length === 2);
    release();
    await waitFor(() => session.run(runId)?.status === 'complete');
    await session.ready();

    assert.deepEqual(
      steered.map((m) => (m.id === 'direct' ? m.id : textOf(m))),
      ['direct', 'in French please'],
      "mallory's malformed steer never reached the run",
    );
    assert.equal(model.doStreamCalls.length, 2, 'the good steer made the model take another step');
    assert.match(textOf(session.run(runId)!.message), /un deux trois/);
    assert.deepEqual(unhandled, []);
  });

  it("a steer the AI SDK cannot convert is reported through the run's onError, before or after steering is read, and never left unhandled", async (t) => {
    const unhandled = unhandledRejections(t);
    const reported: Error[] = [];
    // The steer paths never touch the publisher; a run not ended never writes.
    const run = new AgentRun<UIMessage>({
      runId: 'run_1',
      agent: 'assistant',
      input: {
        id: 'u1',
        message: { id: 'u1', role: 'user', parts: [] },
        parent: undefined,
        forkOf: undefined,
        clientId: 'alice',
        replaces: undefined,
        history: async () => [],
      },
      publisher: {} as RunPublisher,
      onError: (err) => reported.push(err),
    });
    // Past the wire check (a caller handing the run a message itself, or a part shape the check
    // does not know): convertToModelMessages throws on a null part.
    const bad = { id: 'x', role: 'user', parts: [null] } as unknown as UIMessage;
    run.steer(bad); // before `steering` is read: kept, delivered on the first read
    void run.steering;
    run.steer({ ...bad, id: 'y' }); // after
    await waitFor(() => reported.length === 2);
    await sleep(20); // a rejection is reported unhandled after the microtask queue drains
    assert.deepEqual(unhandled, []);
    for (const err of reported) {
      assert.ok(err instanceof MooringAiError);
      assert.equal(err.code, 'malformed_message');
      assert.match(err.message, /run run_1: steer [xy] not delivered: .*null/);
    }
    assert.equal(run.status, 'running', 'the run goes on');
  });

  it('an input with a null part is malformed: not folded, reported, and the next runs on the branch answer', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const seen: string[][] = [];
    const agent = new AgentSession({
      channel: client(t, server.url, { clientId: 'assistant' }).channels.get(name, { start: true }),
      agent: 'assistant',
      onInput: async (input, run) => {
        // the README's handler: the whole branch's history goes to the model
        const messages = await convertToModelMessages(await input.history());
        seen.push(messages.map((m) => m.role));
        run.writeText(`ok (${messages.length} messages)`);
      },
    });
    t.after(() => agent.close());
    const agentErrors = errors(agent);
    await agent.start();
    const { session, reported } = await userSession(t, server.url, name, 'alice');
    await session.send('hello');
    await waitFor(() => session.tree.runs[0]?.status === 'complete');
    await session.ready();

    const mallory = client(t, server.url, { clientId: 'mallory' }).channels.get(name);
    const last = session.tree.last()!.id;
    for (const [id, part] of [
      ['evil-null', null],
      ['evil-empty', {}],
      ['evil-file', { type: 'file', mediaType: 'image/png', url: 'not a url' }],
    ] as const)
      await mallory.publish(
        EVENT_INPUT,
        { message: { id, role: 'user', parts: [part] }, parent: last },
        { headers: { input: id } },
      );
    await waitFor(
      () => reported.filter((e) => /not a user UIMessage: parts\[0\]/.test(e.message)).length === 3,
      {
        message: `not reported: ${reported.map((e) => e.message).join('; ')}`,
      },
    );
    await waitFor(() => agentErrors.filter((e) => /not a user UIMessage/.test(e.message)).length === 3);

    for (const text of ['question 2', 'question 3']) {
      await session.send(text);
      const count = session.tree.runs.length + 1;
      await waitFor(
        () => session.tree.runs.length === count && session.tree.runs.at(-1)?.status !== 'running',
      );
    }
    await session.ready();
    assert.deepEqual(
      session.view().map((n) => (n.kind === 'run' ? `run:${n.status}` : `input:${n.clientId}`)),
      ['input:alice', 'run:complete', 'input:alice', 'run:complete', 'input:alice', 'run:complete'],
    );
    assert.equal(session.tree.inputs.length, 3, 'no malformed input is in the tree');
    assert.deepEqual(seen.at(-1), ['user', 'assistant', 'user', 'assistant', 'user']);
  });
});
