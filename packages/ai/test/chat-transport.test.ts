// MooringChatTransport driven by the AI SDK's own chat state (an AbstractChat, as @ai-sdk/react
// uses): send, regenerate, stop, resume after a reload (a new chat and transport replaying the run
// in progress — no duplicated text), and runs started on another device reaching the chat; which run
// a request waits for (its own input's, never another device's), what a message follows, what a
// continuation publishes, and what stop() and an abort leave behind.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { UIMessage } from 'ai';
import { convertToModelMessages, streamText, toUIMessageStream } from 'ai';
import { AgentSession } from '../src/agent-session.ts';
import { MooringChatTransport } from '../src/mooring-chat-transport.ts';
import { syncChat } from '../src/sync-chat.ts';
import { UserSession } from '../src/user-session.ts';
import { echoAgent, textOf } from './helpers/agents.ts';
import { client, realServer, sessionName, waitFor, within } from './helpers/fixture.ts';
import type { ScriptOptions } from './helpers/models.ts';
import { finish, normalize, scriptedModel, textParts } from './helpers/models.ts';
import { TestChat } from './helpers/test-chat.ts';

const ANSWER = Array.from({ length: 60 }, (_, i) => `w${i}`).join(' ');

async function startAgent(
  t: import('node:test').TestContext,
  url: string,
  name: string,
  options: ScriptOptions = {},
) {
  const model = scriptedModel([[...textParts('t', ANSWER), finish()]], options);
  const agent = new AgentSession({
    channel: client(t, url, { clientId: 'agent' }).channels.get(name, { start: true }),
    agent: 'assistant',
    coalesceMs: 5,
    onInput: async (input, run) => {
      const result = streamText({
        model,
        messages: await convertToModelMessages(await input.history()),
        abortSignal: run.signal,
      });
      await run.pipe(toUIMessageStream({ stream: result.stream }));
    },
  });
  t.after(() => agent.close());
  await agent.start();
  return model;
}

async function chatOn(t: import('node:test').TestContext, url: string, name: string, messages?: UIMessage[]) {
  const session = new UserSession({ channel: client(t, url).channels.get(name, { start: true }) });
  t.after(() => session.close());
  await session.ready();
  const transport = new MooringChatTransport({ session });
  const chat = new TestChat({ id: name, transport, messages: messages ?? session.messages });
  return { session, transport, chat };
}

describe('MooringChatTransport with the AI SDK chat', () => {
  it('sends and regenerates: the chat holds the same messages as the session', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await startAgent(t, server.url, name);
    const { session, chat } = await chatOn(t, server.url, name);

    await within(chat.sendMessage({ text: 'Say sixty words' }), {
      message: 'sendMessage() never returned: no answer reached the chat',
    });
    assert.equal(chat.status, 'ready');
    assert.equal(chat.messages.length, 2);
    const [question, answer] = chat.messages as [UIMessage, UIMessage];
    assert.equal(textOf(answer), ANSWER);
    const runId = session.tree.runs[0]!.id;
    assert.equal(answer.id, runId, 'the assistant message id is the run id');
    assert.equal(session.tree.input(question.id)?.id, question.id, 'the input keeps the chat message id');
    await session.ready();
    assert.deepEqual(normalize(answer), normalize(session.run(runId)!.message));

    await within(chat.regenerate(), {
      message: 'regenerate() never returned: no new answer reached the chat',
    });
    assert.equal(chat.messages.length, 2);
    const again = chat.messages[1]!;
    const second = session.tree.runs[1]!;
    assert.equal(again.id, second.id);
    assert.equal(second.replaces, runId);
    assert.equal(textOf(again), ANSWER);
  });

  it("regenerating one of two agents' answers by its message id asks that agent only", async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name);
    await echoAgent(t, server.url, name, { agent: 'writer' });
    const session = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => session.close());
    await session.start();
    const input = await session.send('hi');
    const done = (count: number) =>
      session.tree.runsOf(input).length === count &&
      session.tree.runsOf(input).every((r) => r.status === 'complete');
    await waitFor(() => done(2));
    await session.ready();
    const agents = () =>
      session.tree
        .runsOf(input)
        .map((r) => r.agent)
        .sort();
    for (const agent of ['writer', 'assistant']) {
      // the chat shows both answers; the one regenerated is first or last of them
      const chat = new TestChat({
        id: name,
        transport: new MooringChatTransport({ session }),
        messages: session.messages,
      });
      const target = session.tree.runsOf(input).find((r) => r.agent === agent)!;
      await within(chat.regenerate({ messageId: target.id }), { message: 'regenerate() never returned' });
      const count = session.tree.runsOf(input).length;
      await waitFor(() => done(count));
      await sleep(50); // another agent's answer would have started by now
      await session.ready();
    }
    assert.deepEqual(agents(), ['assistant', 'assistant', 'writer', 'writer']);
  });

  it('a chat waiting for its answer does not take a run another device started meanwhile for it', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    // The agent answers only the phone.
    await echoAgent(t, server.url, name, { accepts: (input) => textOf(input.message) === 'from the phone' });
    const laptop = await chatOn(t, server.url, name);
    void laptop.chat.sendMessage({ text: 'nobody answers this yet' });
    await waitFor(() => laptop.session.tree.inputs.length === 1 && laptop.chat.status === 'submitted');
    const phone = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => phone.close());
    await phone.start();
    await phone.send('from the phone');
    await waitFor(() => laptop.session.tree.runs[0]?.status === 'complete');
    await sleep(50);
    assert.equal(laptop.chat.status, 'submitted');
    assert.deepEqual(
      laptop.chat.messages.map((m) => m.role),
      ['user'],
    );
  });

  it('an edit of a chat message the session never received is sent as a new input', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name);
    // a message the chat holds but the session has not (its send never reached the channel)
    const local: UIMessage = { id: 'never-sent', role: 'user', parts: [{ type: 'text', text: 'draft' }] };
    const { session, chat } = await chatOn(t, server.url, name, [local]);
    await within(chat.sendMessage({ text: 'edited', messageId: 'never-sent' }), {
      message: 'sendMessage() never returned',
    });
    assert.equal(chat.error, undefined);
    assert.deepEqual(
      session.tree.inputs.map((i) => textOf(i.message)),
      ['edited'],
    );
    assert.equal(textOf(chat.messages[1]), 'assistant#1: edited');
  });

  it('a message follows the message before it in the chat, not what the session shows last', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name);
    const { session, chat } = await chatOn(t, server.url, name);
    await within(chat.sendMessage({ text: 'first' }), { message: 'sendMessage() never returned' });
    const answer = chat.messages[1]!.id;
    // another device, whose run this chat does not show (no syncChat), goes on after the answer
    const phone = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => phone.close());
    await phone.start();
    await phone.send('from the phone');
    await waitFor(() => session.tree.runs.length === 2);
    await within(chat.sendMessage({ text: 'second' }), { message: 'sendMessage() never returned' });
    const second = session.tree.inputs.find((i) => textOf(i.message) === 'second')!;
    assert.equal(second.parent, answer);
  });

  it('sendMessages refuses a request whose last message is not a user message', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const { session, transport } = await chatOn(t, server.url, name);
    const request = (messages: UIMessage[]) =>
      transport.sendMessages({
        trigger: 'submit-message',
        chatId: name,
        messageId: undefined,
        messages,
        abortSignal: undefined,
      });
    const system: UIMessage = { id: 's', role: 'system', parts: [{ type: 'text', text: 'be brief' }] };
    await assert.rejects(request([system]), /the last message is not a user message/);
    await assert.rejects(request([]), /the last message is not a user message/);
    assert.deepEqual(session.tree.inputs, []);
  });

  it('continuing an assistant message publishes its approval answers (with their reason) and client-side tool results, dynamic tools included', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const { session, transport } = await chatOn(t, server.url, name);
    const runId = 'run-that-has-ended';
    const answered: UIMessage = {
      id: runId,
      role: 'assistant',
      parts: [
        {
          type: 'tool-weather',
          toolCallId: 'c1',
          state: 'output-available',
          input: {},
          output: { temperature: 21 },
        },
        { type: 'tool-weather', toolCallId: 'c2', state: 'output-error', input: {}, errorText: 'no network' },
        { type: 'tool-weather', toolCallId: 'c3', state: 'input-available', input: {} },
        {
          type: 'dynamic-tool',
          toolName: 'lookup',
          toolCallId: 'c5',
          state: 'output-available',
          input: {},
          output: 'found',
        },
        {
          type: 'tool-weather',
          toolCallId: 'c4',
          state: 'approval-responded',
          input: {},
          approval: { id: 'a1', approved: false, reason: 'not today' },
        },
      ],
    };
    const user: UIMessage = { id: 'u', role: 'user', parts: [{ type: 'text', text: 'weather?' }] };
    // the run is not running here: what the message holds is published, then the request ends
    await assert.rejects(
      transport.sendMessages({
        trigger: 'submit-message',
        chatId: name,
        messageId: undefined,
        messages: [user, answered],
        abortSignal: undefined,
      }),
      { name: 'AbortError' },
    );
    await waitFor(() => session.tree.controls.length === 4);
    assert.deepEqual(
      session.tree.controls.map((c) => c.control),
      [
        { type: 'tool-output', runId, toolCallId: 'c1', output: { temperature: 21 } },
        { type: 'tool-output', runId, toolCallId: 'c2', errorText: 'no network' },
        { type: 'tool-output', runId, toolCallId: 'c5', output: 'found' },
        { type: 'tool-approval', runId, approvalId: 'a1', approved: false, reason: 'not today' },
      ],
    );
  });

  it('an abort only detaches the chat; transport.stop() cancels the run: the model is aborted, the run ends cancelled', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const signals: AbortSignal[] = [];
    await startAgent(t, server.url, name, { gate: () => sleep(5), signals });
    const { session, transport, chat } = await chatOn(t, server.url, name);
    const sent = chat.sendMessage({ text: 'long answer please' });
    await waitFor(() => chat.status === 'streaming' && textOf(chat.messages[1]).length > 10);
    // The SDK aborts on stop, unmount, StrictMode cleanup and superseding resumes alike: no cancel.
    await chat.stop();
    await sent;
    assert.equal(chat.status, 'ready');
    const runId = session.tree.runs[0]!.id;
    await waitFor(() => session.run(runId)?.status === 'complete', { message: 'an abort cancelled the run' });
    assert.equal(signals[0]?.aborted, false);

    const again = chat.sendMessage({ text: 'another long answer' });
    await waitFor(() => chat.status === 'streaming' && textOf(chat.messages[3]).length > 10);
    await transport.stop();
    const second = session.tree.runs[1]!.id;
    await waitFor(() => session.run(second)?.status === 'cancelled');
    await again;
    assert.equal(chat.status, 'ready');
    assert.equal(signals[1]?.aborted, true);
  });

  it('a stop before the run starts cancels that run only: a run another device starts meanwhile is not cancelled', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    t.after(() => release());
    // The agent answers only the phone, and holds its answer until released.
    const agent = new AgentSession({
      channel: client(t, server.url, { clientId: 'agent' }).channels.get(name, { start: true }),
      agent: 'assistant',
      accepts: (input) => textOf(input.message) === 'from the phone',
      onInput: async (_input, run) => {
        await released;
        run.writeText('answered');
      },
    });
    t.after(() => agent.close());
    await agent.start();
    const laptop = await chatOn(t, server.url, name);
    void laptop.chat.sendMessage({ text: 'nobody answers this yet' });
    await waitFor(() => laptop.session.tree.inputs.length === 1 && laptop.chat.status === 'submitted');
    await laptop.transport.stop(); // waits for the run answering the laptop's message

    const phone = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => phone.close());
    await phone.start();
    await phone.send('from the phone');
    const runId = await waitFor(() => laptop.session.tree.runs[0]?.id);
    await sleep(100); // a cancel sent on seeing it would be on its way by now
    release();
    await waitFor(() => laptop.session.run(runId)?.status !== 'running');
    assert.equal(laptop.session.run(runId)?.status, 'complete');
  });

  it('a request aborted before its run started is not cancelled by a later stop()', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const laptop = await chatOn(t, server.url, name);
    const sent = laptop.chat.sendMessage({ text: 'hello' });
    await waitFor(() => laptop.session.tree.inputs.length === 1 && laptop.chat.status === 'submitted');
    // an abort (an unmount, say) only detaches: it leaves nothing for stop() to cancel
    await laptop.chat.stop();
    await sent;
    await laptop.transport.stop();
    await echoAgent(t, server.url, name, {
      answerMissed: true,
      onInput: async (_input, run) => {
        // long enough for a cancel sent when the run shows up to arrive
        await Promise.race([
          sleep(300),
          new Promise((resolve) => run.signal.addEventListener('abort', resolve)),
        ]);
        run.writeText('answered');
      },
    });
    const runId = await waitFor(() => laptop.session.tree.runs[0]?.id);
    await waitFor(() => laptop.session.run(runId)?.status !== 'running');
    assert.equal(laptop.session.run(runId)?.status, 'complete');
  });

  it('resumes after a reload: a new chat replays the run in progress with the same id, no duplicated text', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await startAgent(t, server.url, name, { gate: () => sleep(5) });
    const first = await chatOn(t, server.url, name);
    const sent = first.chat.sendMessage({ text: 'long answer please' });
    await waitFor(() => textOf(first.chat.messages[1]).length > 30, { message: 'nothing streamed' });

    // "Reload": a new client, session, transport and chat, holding what the session shows now.
    const reloaded = await chatOn(t, server.url, name);
    const partial = reloaded.chat.messages[1];
    assert.ok(partial && textOf(partial).length < ANSWER.length, 'the run was still in progress');
    await reloaded.chat.resumeStream();
    assert.equal(reloaded.chat.messages.length, 2);
    assert.equal(reloaded.chat.messages[1]!.id, partial.id);
    assert.equal(textOf(reloaded.chat.messages[1]), ANSWER);
    await sent;
    assert.equal(textOf(first.chat.messages[1]), ANSWER);
    // Nothing runs any more: a resume finds nothing.
    const third = await chatOn(t, server.url, name);
    assert.equal(await third.transport.reconnectToStream({ chatId: name }), null);
  });

  it('brings runs started on another device into the chat (syncChat)', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await startAgent(t, server.url, name, { gate: () => sleep(2) });
    const phone = await chatOn(t, server.url, name);
    const laptop = await chatOn(t, server.url, name);
    const stop = syncChat(laptop.chat, laptop.session);
    t.after(stop);
    await within(phone.chat.sendMessage({ text: 'from the phone' }), {
      message: 'sendMessage() never returned: no answer reached the chat',
    });
    await waitFor(() => laptop.chat.messages.length === 2 && textOf(laptop.chat.messages[1]) === ANSWER, {
      message: 'the laptop chat never showed the phone run',
    });
    await waitFor(() => laptop.chat.status === 'ready');
    assert.deepEqual(normalize(laptop.chat.messages), normalize(phone.chat.messages));
  });
});
