// MooringChatTransport driven by the AI SDK's own chat state (an AbstractChat, as @ai-sdk/react
// uses): send, regenerate, stop, resume after a reload (a new chat and transport replaying the run
// in progress — no duplicated text), and runs started on another device reaching the chat.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { UIMessage } from 'ai';
import { convertToModelMessages, streamText, toUIMessageStream } from 'ai';
import { AgentSession } from '../src/agent-session.ts';
import { MooringChatTransport } from '../src/mooring-chat-transport.ts';
import { syncChat } from '../src/sync-chat.ts';
import { UserSession } from '../src/user-session.ts';
import { textOf } from './helpers/agents.ts';
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
