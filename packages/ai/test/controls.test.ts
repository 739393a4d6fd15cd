// Controls (PROTOCOL.md §13.4): cancel reaches the model's abort signal and ends the run `cancelled`
// everywhere; steer reaches the model at the next step; two agents run concurrently in one session;
// a control naming a run reaches that run (or that run's agent) only; a human operator takes the
// session over and hands it back; `cancelling()` and `stop()` name the runs they should; a tool output
// carries what was given; `reply()` runs take the session's lease.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { convertToModelMessages, stepCountIs, streamText, toUIMessageStream } from 'ai';
import type { AgentInput } from '../src/agent-run.ts';
import { AgentSession } from '../src/agent-session.ts';
import { UserSession } from '../src/user-session.ts';
import { echoAgent, textOf } from './helpers/agents.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';
import type { ScriptOptions } from './helpers/models.ts';
import { finish, heldCountingModel, scriptedModel, textParts } from './helpers/models.ts';

const LONG = Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ');

type Model = ReturnType<typeof scriptedModel>;

function modelAgent(
  t: import('node:test').TestContext,
  url: string,
  name: string,
  agentName: string,
  model: Model,
  options: { steering?: boolean } = {},
): AgentSession {
  const agent = new AgentSession({
    channel: client(t, url, { clientId: agentName }).channels.get(name, { start: true }),
    agent: agentName,
    coalesceMs: 10,
    onInput: async (input: AgentInput, run) => {
      const result = streamText({
        model,
        messages: await convertToModelMessages(await input.history()),
        abortSignal: run.signal,
        stopWhen: stepCountIs(3),
        ...(options.steering ? { experimental_steering: run.steering } : {}),
      });
      await run.pipe(toUIMessageStream({ stream: result.stream }));
    },
  });
  t.after(() => agent.close());
  return agent;
}

async function user(t: import('node:test').TestContext, url: string, name: string, clientId = 'user') {
  const session = new UserSession({
    channel: client(t, url, { clientId }).channels.get(name, { start: true }),
    clientId,
  });
  t.after(() => session.close());
  await session.start();
  return session;
}

const slow = (ms: number): ScriptOptions => ({ gate: () => sleep(ms) });

describe('controls', () => {
  it('cancel fires the model abort signal and ends the run cancelled on every client', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const signals: AbortSignal[] = [];
    const model = scriptedModel([[...textParts('t', LONG), finish()]], { ...slow(5), signals });
    await modelAgent(t, server.url, name, 'assistant', model).start();
    const laptop = await user(t, server.url, name);
    const phone = await user(t, server.url, name);
    await laptop.send('tell me everything');
    const runId = await waitFor(() => phone.tree.runs[0]?.id);
    await waitFor(() => textOf(phone.run(runId)?.message).length > 20, { message: 'no text streamed' });

    await phone.cancel(runId);
    await waitFor(
      () => laptop.run(runId)?.status === 'cancelled' && phone.run(runId)?.status === 'cancelled',
    );
    assert.equal(signals.length, 1);
    assert.equal(signals[0]?.aborted, true, 'the model saw the abort');
    await laptop.ready();
    const text = textOf(laptop.run(runId)?.message);
    assert.ok(text.length > 0 && text.length < LONG.length, 'the partial text stays');
  });

  it('steer delivers a user message into the running run (next model step)', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const { model, release } = heldCountingModel();
    const agent = modelAgent(t, server.url, name, 'assistant', model, { steering: true });
    const steered: string[] = [];
    agent.on('run', (run) => run.on('steer', (m) => steered.push(textOf(m))));
    await agent.start();
    const session = await user(t, server.url, name);
    await session.send('count to three');
    const runId = await waitFor(() => session.tree.runs[0]?.id);
    await session.steer(runId, 'in French please');
    await waitFor(() => steered.length === 1);
    release();
    await waitFor(() => session.run(runId)?.status === 'complete');
    await session.ready();
    assert.deepEqual(steered, ['in French please']);
    assert.equal(model.doStreamCalls.length, 2, 'the steer made the model take another step');
    assert.match(JSON.stringify(model.doStreamCalls[1]?.prompt), /in French please/);
    const message = session.run(runId)!.message;
    assert.ok(message.parts.some((p) => p.type === 'steering-message'));
    assert.match(textOf(message), /un deux trois/);
  });

  it('runs two agents concurrently in one session; the view shows both, each with its own parts', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const a = scriptedModel(
      [[...textParts('t', 'Research notes: alpha beta gamma delta epsilon'), finish()]],
      slow(3),
    );
    const b = scriptedModel(
      [[...textParts('t', 'Draft: one two three four five six seven'), finish()]],
      slow(4),
    );
    await modelAgent(t, server.url, name, 'researcher', a).start();
    await modelAgent(t, server.url, name, 'writer', b).start();
    const session = await user(t, server.url, name);
    let together = 0;
    session.watch(() => {
      together = Math.max(together, session.running().length);
    });
    const inputId = await session.send('write about Greek letters');
    await waitFor(
      () => session.tree.runs.length === 2 && session.tree.runs.every((r) => r.status === 'complete'),
    );
    await session.ready();
    const view = session.view();
    assert.equal(view[0]?.id, inputId);
    assert.deepEqual(
      view
        .slice(1)
        .map((n) => (n.kind === 'run' ? n.agent : n.kind))
        .sort(),
      ['researcher', 'writer'],
    );
    const texts = Object.fromEntries(
      view.slice(1).map((n) => [n.kind === 'run' ? n.agent : '', textOf(n.message)]),
    );
    assert.equal(texts.researcher, 'Research notes: alpha beta gamma delta epsilon');
    assert.equal(texts.writer, 'Draft: one two three four five six seven');
    assert.equal(together, 2, 'both runs streamed at the same time');
  });

  it('a cancel or a tool approval naming a run reaches only that run; one naming none reaches every run', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const approvals = new Map<string, string[]>();
    const agent = new AgentSession({
      channel: client(t, server.url, { clientId: 'assistant' }).channels.get(name, { start: true }),
      agent: 'assistant',
      onInput: async (_input, run) => {
        approvals.set(run.runId, []);
        run.on('approval', (a) => approvals.get(run.runId)?.push(a.approvalId));
        // held until cancelled
        await new Promise<void>((resolve) => run.signal.addEventListener('abort', () => resolve()));
      },
    });
    t.after(() => agent.close());
    await agent.start();
    const session = await user(t, server.url, name);
    await session.send('one');
    await session.send('two');
    await waitFor(() => agent.runs.length === 2);
    const [one, two] = agent.runs.map((r) => r.runId) as [string, string];

    await session.approveTool({ runId: one, approvalId: 'for-one', approved: true });
    await waitFor(() => approvals.get(one)?.length === 1);
    await session.approveTool({ approvalId: 'for-all', approved: true });
    await waitFor(() => approvals.get(one)?.length === 2 && approvals.get(two)?.length === 1);
    assert.deepEqual(approvals.get(one), ['for-one', 'for-all']);
    assert.deepEqual(approvals.get(two), ['for-all']);

    await session.cancel(one);
    await waitFor(() => session.run(one)?.status === 'cancelled');
    assert.equal(session.run(two)?.status, 'running');
    assert.equal(agent.runs.find((r) => r.runId === two)?.signal.aborted, false);
    await session.cancel();
    await waitFor(() => session.run(two)?.status === 'cancelled');
  });

  it("cancelling() holds from this device's cancel of a run until it ends; stop() cancels only the runs in progress on the view", async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const agent = new AgentSession({
      channel: client(t, server.url, { clientId: 'assistant' }).channels.get(name, { start: true }),
      agent: 'assistant',
      onInput: async (_input, run) => {
        // held until cancelled
        await new Promise<void>((resolve) => run.signal.addEventListener('abort', () => resolve()));
      },
    });
    t.after(() => agent.close());
    await agent.start();
    const session = await user(t, server.url, name);
    await session.send('one');
    await session.send('two');
    await waitFor(() => session.tree.running().length === 2);
    const [one, two] = session.tree.running().map((r) => r.id) as [string, string];
    assert.equal(session.cancelling(one), false, 'nothing cancelled yet');

    const cancelled = session.cancel(one);
    assert.equal(session.cancelling(one), true, 'from the cancel on');
    assert.equal(session.cancelling(two), false, 'only the run named');
    await cancelled;
    await waitFor(() => session.run(one)?.status === 'cancelled');
    assert.equal(session.cancelling(one), false, 'not once the run ended');

    await session.send('three');
    await waitFor(() => session.tree.running().length === 2);
    const three = session.tree.running()[1]!.id;
    const stopped = session.stop();
    assert.equal(session.cancelling(two), true);
    assert.equal(session.cancelling(three), true);
    await stopped;
    await waitFor(() => session.tree.running().length === 0);
    assert.deepEqual(
      session.tree.controls.map((c) => c.control),
      [
        { type: 'cancel', runId: one },
        { type: 'cancel', runId: two },
        { type: 'cancel', runId: three },
      ],
    );
  });

  it("a regenerate naming a run is answered by that run's agent only; one naming only an input, by every agent", async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name);
    await echoAgent(t, server.url, name, { agent: 'writer' });
    const customer = await user(t, server.url, name, 'customer');
    const operator = await user(t, server.url, name, 'operator');
    const agentsOf = (inputId: string) =>
      customer.tree
        .runsOf(inputId)
        .map((r) => r.agent)
        .sort();
    const hi = await customer.send('hi');
    await waitFor(() => customer.tree.runsOf(hi).length === 2);
    const written = customer.tree.runsOf(hi).find((r) => r.agent === 'writer')!;
    await customer.regenerate(written.id);
    await waitFor(() => customer.tree.runsOf(hi).length >= 3);
    // the other agent does not take the writer's regenerate for its own
    await waitFor(() => customer.tree.runsOf(hi).every((r) => r.status === 'complete'));
    assert.deepEqual(agentsOf(hi), ['assistant', 'writer', 'writer']);

    // an input nobody answered (the session was held by a human): regenerating it asks every agent
    await operator.handover('human');
    await waitFor(() => customer.holder.holder === 'human');
    const unanswered = await customer.send('while a human held the session');
    await operator.handover('ai');
    await waitFor(() => customer.holder.holder === 'ai');
    assert.deepEqual(agentsOf(unanswered), []);
    await customer.regenerate(unanswered);
    await waitFor(() => customer.tree.runsOf(unanswered).length === 2);
    assert.deepEqual(agentsOf(unanswered), ['assistant', 'writer']);
  });

  it('with operators named, a handover by anyone else changes nothing: the agent answers on, readers show the AI holding', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const agent = await echoAgent(t, server.url, name, { operators: ['operator'] });
    const reader = new UserSession({
      channel: client(t, server.url, { clientId: 'watcher' }).channels.get(name, { start: true }),
      operators: ['operator'],
    });
    t.after(() => reader.close());
    const refused: string[] = [];
    reader.tree.on('malformed', (reason) => refused.push(reason));
    await reader.start();
    const mallory = await user(t, server.url, name, 'mallory');
    const operator = await user(t, server.url, name, 'operator');
    await mallory.handover('human');
    await waitFor(() => refused.length === 1);
    assert.match(refused[0] ?? '', /handover by mallory: not one of the session's operators/);
    const asked = await mallory.send('still answered?');
    await waitFor(() => reader.tree.runsOf(asked).some((r) => r.status === 'complete'));
    assert.equal(agent.holder.holder, 'ai');
    assert.equal(reader.holder.holder, 'ai');
    // a reader that names no operators follows every handover: the list must be the session's
    assert.equal(mallory.holder.holder, 'human');
    // the operator's own handover is followed
    await operator.handover('human');
    await waitFor(() => agent.holder.holder === 'human' && reader.holder.holder === 'human');
    assert.equal(reader.holder.operator, 'operator');
  });

  it('hands the session to a human operator and back', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const agent = await echoAgent(t, server.url, name);
    const skipped: string[] = [];
    agent.on('skip', ({ input, reason }) => skipped.push(`${textOf(input.message)}:${reason}`));
    const customer = await user(t, server.url, name, 'customer');
    const operator = await user(t, server.url, name, 'operator');
    await customer.send('hello');
    await waitFor(() => customer.tree.runs.length === 1);

    await operator.handover('human');
    await waitFor(() => agent.holder.holder === 'human' && customer.holder.holder === 'human');
    assert.equal(customer.holder.operator, 'operator');
    await customer.send('I want a human');
    await waitFor(() => skipped.length === 1);
    assert.deepEqual(skipped, ['I want a human:handover']);
    await waitFor(() => textOf(operator.tree.lastInput()?.message) === 'I want a human');
    await operator.reply('Hi, Sam here. How can I help?');
    await waitFor(() => customer.tree.runs.length === 2);
    await operator.handover('ai');
    await waitFor(() => agent.holder.holder === 'ai');
    await customer.send('thanks');
    await waitFor(
      () => customer.tree.runs.length === 3 && customer.tree.runs.every((r) => r.status === 'complete'),
    );
    await customer.ready();
    assert.deepEqual(
      customer.view().map((n) => `${n.kind === 'run' ? n.agent : 'user'}: ${textOf(n.message)}`),
      [
        'user: hello',
        'assistant: assistant#1: hello',
        'user: I want a human',
        'human:operator: Hi, Sam here. How can I help?',
        'user: thanks',
        'assistant: assistant#2: thanks',
      ],
    );
  });

  it('reply() runs take the lease set on the session: 30 000 ms by default, none with lease: 0', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const leases = async (lease: number | undefined) => {
      const session = new UserSession({
        channel: client(t, server.url, { clientId: 'operator' }).channels.get(name, { start: true }),
        clientId: 'operator',
        ...(lease === undefined ? {} : { lease }),
      });
      t.after(() => session.close());
      await session.start();
      const published: Array<number | undefined> = [];
      const publishResults = session.channel.publishResults.bind(session.channel);
      session.channel.publishResults = (ops) => {
        for (const op of ops) if ('lease' in op) published.push(op.lease);
        return publishResults(ops);
      };
      const input = await session.send('hello');
      await session.reply('hi', { input });
      return published;
    };
    assert.deepEqual(await leases(undefined), [30_000, 0], 'taken on the create, released at the end');
    assert.deepEqual(await leases(0), [], 'no operation carries a lease');
  });

  it('tool approval: the run waits for the answer, which reaches every device as part of the run', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const agent = new AgentSession({
      channel: client(t, server.url, { clientId: 'agent' }).channels.get(name, { start: true }),
      agent: 'assistant',
      onInput: async (_input, run) => {
        run.write({
          type: 'tool-input-available',
          toolCallId: 'c1',
          toolName: 'deleteFile',
          input: { path: '/tmp/x' },
        });
        run.write({ type: 'tool-approval-request', approvalId: 'ap1', toolCallId: 'c1' });
        const answer = await run.waitForApproval('ap1');
        run.write({ type: 'tool-output-available', toolCallId: 'c1', output: { deleted: answer.approved } });
        run.writeText(answer.approved ? 'Deleted.' : 'Kept.');
      },
    });
    t.after(() => agent.close());
    await agent.start();
    const laptop = await user(t, server.url, name);
    const phone = await user(t, server.url, name);
    await laptop.send('delete /tmp/x');
    const runId = await waitFor(() => phone.tree.runs[0]?.id);
    await waitFor(async () => {
      await phone.ready();
      return phone.run(runId)?.message.parts.some((p) => 'state' in p && p.state === 'approval-requested');
    });
    await phone.approveTool({ runId, approvalId: 'ap1', approved: true, reason: 'fine' });
    await waitFor(() => laptop.run(runId)?.status === 'complete');
    await laptop.ready();
    const tool = laptop.run(runId)!.message.parts.find((p) => p.type === 'tool-deleteFile') as
      | { state: string; approval?: { approved?: boolean; reason?: string }; output?: unknown }
      | undefined;
    assert.equal(tool?.state, 'output-available');
    assert.deepEqual(tool?.output, { deleted: true });
    assert.equal(tool?.approval?.approved, true);
    assert.equal(tool?.approval?.reason, 'fine');
    assert.equal(textOf(laptop.run(runId)?.message), 'Deleted.');
  });

  it('a tool output carries the output as given, a falsy one included; none given is null', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const session = await user(t, server.url, name);
    const outputs: Array<[string, unknown]> = [
      ['zero', 0],
      ['no', false],
      ['empty', ''],
      ['none', undefined],
    ];
    for (const [toolCallId, output] of outputs)
      await session.toolOutput({ runId: 'run_tools', toolCallId, output });
    await waitFor(() => session.tree.controls.length === 4);
    assert.deepEqual(
      session.tree.controls.map((c) => c.control),
      [
        { type: 'tool-output', runId: 'run_tools', toolCallId: 'zero', output: 0 },
        { type: 'tool-output', runId: 'run_tools', toolCallId: 'no', output: false },
        { type: 'tool-output', runId: 'run_tools', toolCallId: 'empty', output: '' },
        { type: 'tool-output', runId: 'run_tools', toolCallId: 'none', output: null },
      ],
    );
  });
});
