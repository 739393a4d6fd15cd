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
import { channelSink } from '../src/operation-sink.ts';
import { RunPublisher } from '../src/run-publisher.ts';
import { type SyncableChat, syncChat } from '../src/sync-chat.ts';
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

/** A chat as syncChat sees it, set by the test; its resumes end when the test says so. */
class FakeChat implements SyncableChat<UIMessage> {
  status: SyncableChat<UIMessage>['status'] = 'ready';
  messages: UIMessage[] = [];
  resumes = 0;
  readonly #resuming: Array<() => void> = [];

  resumeStream(): Promise<void> {
    this.resumes++;
    return new Promise((resolve) => this.#resuming.push(resolve));
  }

  endResumes(): void {
    for (const resolve of this.#resuming.splice(0)) resolve();
  }
}

/** Lets every queued task run (the session's change events, syncChat's microtasks). */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A session showing a question, an operator's answer and a follow-up; `touch()` makes it change locally. */
async function answeredSession(t: import('node:test').TestContext) {
  const server = await realServer(t);
  const name = sessionName();
  const session = new UserSession({
    channel: client(t, server.url, { clientId: 'op' }).channels.get(name, { start: true }),
    clientId: 'op',
  });
  t.after(() => session.close());
  await session.start();
  await session.send('the question');
  await waitFor(() => session.tree.inputs.length === 1);
  await session.reply('the answer');
  await session.send('a follow-up');
  await waitFor(() => session.view().length === 3);
  await session.ready();
  const touch = async () => {
    await session.select(session.view()[0]!.id); // a local change: a `change` event, the view as it was
    await turn();
  };
  return { server, name, session, touch };
}

/** A run by another client that stays `running` until `end()`. */
async function runningRun(t: import('node:test').TestContext, url: string, name: string, input: string) {
  const agentClient = client(t, url, { clientId: 'agent' });
  const publisher = new RunPublisher({
    sink: channelSink(agentClient.channels.get(name)),
    runId: `run_${input}`,
    agent: 'assistant',
    input,
    coalesceMs: 0,
  });
  publisher.write({ type: 'text-start', id: 't' });
  publisher.write({ type: 'text-delta', id: 't', delta: 'thinking' });
  await publisher.flush();
  return publisher;
}

describe('syncChat', () => {
  it("puts the session's messages into an idle chat, leaves a chat that streams or is submitted alone, and does nothing once stopped", async (t) => {
    const { session, touch } = await answeredSession(t);
    const chat = new FakeChat();
    const own: UIMessage[] = [];
    chat.messages = own;
    chat.status = 'streaming';
    const stop = syncChat(chat, session);
    t.after(stop);
    await turn();
    assert.equal(chat.messages, own, 'a streaming chat is left alone');
    chat.status = 'submitted';
    await touch();
    assert.equal(chat.messages, own, 'a submitted chat is left alone');
    chat.status = 'error';
    await touch();
    assert.equal(chat.messages, session.messages, 'an idle chat shows the session');
    stop();
    chat.messages = own;
    await touch();
    assert.equal(chat.messages, own, 'stopped: the chat is left alone');
    assert.equal(chat.resumes, 0, 'no run in progress: nothing to resume');
  });

  it('replaces what differs from the view (a message, its parts, the last one’s content) and keeps a chat that already shows it', async (t) => {
    const { session, touch } = await answeredSession(t);
    const view = session.messages;
    const chat = new FakeChat();
    const copy = structuredClone(view);
    chat.messages = copy;
    const stop = syncChat(chat, session);
    t.after(stop);
    await turn();
    assert.equal(chat.messages, copy, 'the same messages (copies): kept');
    const variants: Array<[string, (m: UIMessage[]) => void]> = [
      [
        'a message of another id',
        (m) => {
          m[1]!.id = 'another';
        },
      ],
      [
        'a message with another part',
        (m) => {
          m[1]!.parts.push({ type: 'text', text: 'more' });
        },
      ],
      [
        'the last message with other text',
        (m) => {
          m[2]!.parts[0] = { type: 'text', text: 'other' };
        },
      ],
      [
        'a message less',
        (m) => {
          m.pop();
        },
      ],
    ];
    for (const [what, change] of variants) {
      const shown = structuredClone(view);
      change(shown);
      chat.messages = shown;
      await touch();
      assert.equal(chat.messages, session.messages, what);
    }
  });

  it('resumes a run in progress on the view once, not again until that resume ends; not a run this device is cancelling, nor one that ended', async (t) => {
    const { server, name, session, touch } = await answeredSession(t);
    const chat = new FakeChat();
    const stop = syncChat(chat, session);
    t.after(stop);
    await turn();
    assert.equal(chat.resumes, 0, 'runs that ended are not resumed');
    const input = session.view()[2]!.id;
    const publisher = await runningRun(t, server.url, name, input);
    await waitFor(() => chat.resumes === 1, { message: 'the run in progress was never resumed' });
    await touch();
    await touch();
    assert.equal(chat.resumes, 1, 'one resume at a time');
    chat.endResumes();
    await waitFor(() => chat.resumes === 2, { message: 'the run still in progress was not resumed again' });
    await session.cancel(publisher.runId);
    chat.endResumes();
    await touch();
    await touch();
    assert.equal(chat.resumes, 2, 'a run this device is cancelling is not resumed');
    await publisher.end('complete');
    await waitFor(() => {
      const run = session.view()[3];
      return run?.kind === 'run' && run.status !== 'running';
    });
    await touch();
    assert.equal(chat.resumes, 2, 'nor one that ended');
  });

  it('stopped while a resume is under way: when that resume ends, nothing more', async (t) => {
    const { server, name, session } = await answeredSession(t);
    const chat = new FakeChat();
    const stop = syncChat(chat, session);
    t.after(stop);
    const publisher = await runningRun(t, server.url, name, session.view()[2]!.id);
    t.after(() => publisher.end('complete'));
    await waitFor(() => chat.resumes === 1, { message: 'the run in progress was never resumed' });
    stop();
    const own: UIMessage[] = [];
    chat.messages = own;
    chat.endResumes();
    await turn();
    await turn();
    assert.equal(chat.resumes, 1, 'no resume after stop()');
    assert.equal(chat.messages, own, 'the chat is left alone');
  });

  it('follows nothing while the session is not settled, and catches up once it is', async (t) => {
    const { session, touch } = await answeredSession(t);
    const chat = new FakeChat();
    const stop = syncChat(chat, session);
    t.after(stop);
    await waitFor(() => chat.messages === session.messages);
    await session.channel.detach();
    const own: UIMessage[] = [];
    chat.messages = own;
    await touch();
    assert.equal(chat.messages, own, 'not live: the chat is left alone');
    await session.channel.attach();
    await waitFor(() => chat.messages === session.messages, { message: 'the chat never caught up' });
  });
});
