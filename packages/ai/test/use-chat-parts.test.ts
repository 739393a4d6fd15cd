// Everything else `useChat` (@ai-sdk/react 4, StrictMode, happy-dom) shows, over a real Mooring
// server on two devices and after a reload: message metadata, reasoning, sources, files, data parts
// (transient ones only through onData), files and metadata on the user's message, a custom chat id,
// initial messages, setMessages, experimental_throttle, regenerate, and a run that fails.
import './helpers/dom.ts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { UIMessage, UIMessageChunk } from 'ai';
import type { AgentRun } from '../src/agent-run.ts';
import { echoAgent, textOf } from './helpers/agents.ts';
import { realServer, sessionName, waitFor, within } from './helpers/fixture.ts';
import { messageFrom, normalize } from './helpers/models.ts';
import { device } from './helpers/use-chat-device.ts';

const CHUNKS: UIMessageChunk[] = [
  { type: 'start', messageMetadata: { model: 'scripted-1' } },
  { type: 'start-step' },
  { type: 'reasoning-start', id: 'r' },
  { type: 'reasoning-delta', id: 'r', delta: 'Thinking about ' },
  { type: 'reasoning-delta', id: 'r', delta: 'the weather.' },
  { type: 'reasoning-end', id: 'r' },
  { type: 'source-url', sourceId: 's1', url: 'https://example.com/weather', title: 'Weather' },
  { type: 'file', url: 'data:text/plain;base64,aGk=', mediaType: 'text/plain' },
  { type: 'data-weather', id: 'w1', data: { city: 'Lyon', temp: 21 } },
  { type: 'data-notice', data: { text: 'fetching…' }, transient: true },
  { type: 'text-start', id: 't' },
  { type: 'text-delta', id: 't', delta: 'It is 21 °C ' },
  { type: 'text-delta', id: 't', delta: 'in Lyon.' },
  { type: 'text-end', id: 't' },
  { type: 'finish-step' },
  { type: 'finish', messageMetadata: { tokens: 12 } },
];

function data(onData: unknown[]) {
  return { onData: (part: unknown) => onData.push(normalize(part)) };
}

describe('useChat (@ai-sdk/react) over Mooring: parts, metadata and chat options', () => {
  it('metadata, reasoning, sources, files and data parts arrive as useChat builds them, on every device and after a reload', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const inputs: UIMessage[] = [];
    await echoAgent(t, server.url, name, {
      onInput: (input, run: AgentRun) => {
        inputs.push(input.message);
        for (const chunk of CHUNKS) run.write(chunk);
      },
    });
    const laptopData: unknown[] = [];
    const phoneData: unknown[] = [];
    const initial: UIMessage = { id: 'greeting', role: 'assistant', parts: [{ type: 'text', text: 'Hi!' }] };
    const laptop = device(t, server.url, name, {
      chat: { id: 'my-chat', messages: [initial], ...data(laptopData) },
    });
    assert.equal(laptop.chat.id, 'my-chat', 'custom chat id');
    assert.deepEqual(laptop.chat.messages, [initial], 'initial messages show at once');
    const phone = device(t, server.url, name, { resume: true, throttle: 30, chat: data(phoneData) });
    await waitFor(() => laptop.session.settled && laptop.chat.messages.length === 0, {
      message: 'the session view did not replace the initial messages once caught up',
    });

    await within(
      laptop.chat.sendMessage({
        text: 'Weather?',
        files: [{ type: 'file', mediaType: 'text/plain', url: 'data:text/plain;base64,aGk=' }],
        metadata: { lang: 'en' },
      }),
      { message: 'sendMessage() never returned: no answer reached the chat' },
    );
    const [sent] = inputs;
    assert.deepEqual(
      normalize(sent?.metadata),
      { lang: 'en' },
      'the user message metadata reaches the agent',
    );
    assert.ok(
      sent?.parts.some((p) => p.type === 'file'),
      'the file reaches the agent',
    );

    const runId = laptop.session.tree.runs[0]!.id;
    const expected = await messageFrom(CHUNKS, runId);
    assert.ok(!JSON.stringify(expected).includes('fetching'), 'the transient part is not in the message');
    const reloaded = device(t, server.url, name, { resume: true });
    for (const d of [laptop, phone, reloaded]) {
      await waitFor(
        () =>
          d.chat.status === 'ready' &&
          d.chat.messages.length === 2 &&
          textOf(d.chat.messages[1]) === 'It is 21 °C in Lyon.',
      );
      assert.deepEqual(normalize(d.chat.messages[1]), expected);
    }
    assert.deepEqual(
      laptopData.map((p) => (p as { type: string }).type),
      ['data-weather', 'data-notice'],
      'onData sees the data parts, transient ones included',
    );
    await waitFor(() => phoneData.length === 2, { message: 'the following device got no onData' });

    // setMessages works on the chat as without Mooring.
    laptop.chat.setMessages((messages) => messages.slice(0, 1));
    await waitFor(() => laptop.chat.messages.length === 1);
  });

  it('regenerate, and a failing run: status and error as useChat reports them', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    let n = 0;
    await echoAgent(t, server.url, name, {
      onInput: (_input, run: AgentRun) => {
        n++;
        if (n === 3) {
          run.write({ type: 'error', errorText: 'the model is down' });
          return;
        }
        run.writeText(`answer ${n}`);
      },
    });
    const laptop = device(t, server.url, name);
    await within(laptop.chat.sendMessage({ text: 'q' }), {
      message: 'sendMessage() never returned: no answer reached the chat',
    });
    await waitFor(() => laptop.chat.status === 'ready' && textOf(laptop.chat.messages[1]) === 'answer 1');
    await within(laptop.chat.regenerate(), {
      message: 'regenerate() never returned: no regenerated answer reached useChat',
    });
    await waitFor(() => laptop.chat.status === 'ready' && textOf(laptop.chat.messages[1]) === 'answer 2');
    assert.equal(laptop.chat.messages.length, 2);
    const [first, second] = laptop.session.tree.runs;
    assert.equal(second?.replaces, first?.id);
    assert.equal(laptop.chat.messages[1]!.id, second?.id);

    await within(laptop.chat.sendMessage({ text: 'again' }), {
      message: 'sendMessage() never returned: no answer reached the chat',
    });
    await waitFor(() => laptop.chat.status === 'error', {
      message: 'the failed run did not set status error',
    });
    assert.equal(laptop.chat.error?.message, 'the model is down');
  });
});
