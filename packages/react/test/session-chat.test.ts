// useSession and useMooringChat against a real server and a real agent (AgentSession), under
// StrictMode: the conversation view and its controls; useChat's messages and status; a second
// device following; stop from another device; an unmount that cancels nothing.
import './helpers/dom.ts';
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { ViewNode } from '@mooring/ai';
import { AgentSession } from '@mooring/ai';
import { within } from '@mooring/testkit';
import { act, cleanup, render } from '@testing-library/react';
import type { UIMessage } from 'ai';
import { createElement } from 'react';
import type { UseMooringChatResult } from '../src/chat.ts';
import { useMooringChat } from '../src/chat.ts';
import type { UseSessionResult } from '../src/index.ts';
import { MooringProvider, useSession } from '../src/index.ts';
import { closeDom } from './helpers/dom.ts';
import { agent, client, realServer, sessionName, textOf, waitFor } from './helpers/fixture.ts';
import { mount } from './helpers/mount.ts';

after(async () => {
  cleanup();
  await closeDom();
});

describe('useSession', () => {
  it('shows the view and drives send, regenerate, select, cancel, handover and reply', async (t) => {
    const server = await realServer(t);
    const channel = sessionName();
    await agent(t, server.url, channel);
    const user = client(t, server.url, { clientId: 'user' });
    const s = mount(t, user, () => useSession(channel));
    const current = (): UseSessionResult => s.current();

    await act(() => current().send('hi'));
    await waitFor(() => current().view.find((n) => n.kind === 'run' && n.status === 'complete'));
    assert.deepEqual(
      current().messages.map((m) => [m.role, textOf(m)]),
      [
        ['user', 'hi'],
        ['assistant', 'answer: hi'],
      ],
    );
    const first = current().view[1]?.id ?? '';

    await act(() => current().regenerate(first));
    await waitFor(() => {
      const last = current().view[1];
      return (
        last?.kind === 'run' && last.id !== first && last.status === 'complete' && last.siblings.length === 2
      );
    });
    await act(() => current().select(first));
    await waitFor(() => current().view[1]?.id === first);

    await act(() => current().send('slow'));
    const slow = await waitFor(() => current().running[0]);
    await act(() => current().cancel(slow.id));
    await waitFor(() =>
      current().view.find((n) => n.id === slow.id && n.kind === 'run' && n.status === 'cancelled'),
    );
    assert.equal(current().running.length, 0);

    await act(() => current().handover('human'));
    await waitFor(() => current().holder.holder === 'human');
    assert.equal(current().holder.operator, 'user');
    await act(() => current().send('is anyone there?'));
    await act(() =>
      current()
        .reply('a human here')
        .then(() => undefined),
    );
    await waitFor(() => {
      const last = current().view[current().view.length - 1];
      return last?.kind === 'run' && last.agent === 'human:user' && textOf(last.message) === 'a human here';
    });
    await act(() => current().handover('ai'));
    await waitFor(() => current().holder.holder === 'ai');
  });

  it('drives edit, steer and approveTool, each with all its arguments', async (t) => {
    const server = await realServer(t);
    const channel = sessionName();
    const assistant = new AgentSession({
      channel: client(t, server.url, { clientId: 'assistant' }).channels.get(channel, { start: true }),
      agent: 'assistant',
      coalesceMs: 0,
      onInput: async (input, run) => {
        const text = textOf(input.message);
        if (text === 'wait for a steer') {
          const steer = await new Promise<UIMessage>((resolve) => run.on('steer', resolve));
          run.writeText(`steered: ${textOf(steer)}`);
        } else if (text === 'delete /tmp/x') {
          run.write({ type: 'tool-input-available', toolCallId: 'c1', toolName: 'deleteFile', input: {} });
          run.write({ type: 'tool-approval-request', approvalId: 'ap1', toolCallId: 'c1' });
          const answer = await run.waitForApproval('ap1');
          run.writeText(answer.approved ? `deleted (${answer.reason})` : 'kept');
        } else run.writeText(`answer: ${text}`);
      },
    });
    t.after(() => assistant.close());
    await assistant.start();
    const s = mount(t, client(t, server.url, { clientId: 'user' }), () => useSession(channel));
    const current = (): UseSessionResult => s.current();
    const texts = () => current().messages.map((m) => textOf(m));

    let hi = '';
    await act(async () => {
      hi = await current().send('hi');
    });
    await waitFor(() => texts()[1] === 'answer: hi');
    await act(() =>
      current()
        .edit(hi, 'hello')
        .then(() => undefined),
    );
    await waitFor(() => texts().join('|') === 'hello|answer: hello');
    assert.equal(current().view[0]?.siblings.length, 2, 'the edit is a sibling of the input it edits');

    await act(() =>
      current()
        .send('wait for a steer')
        .then(() => undefined),
    );
    const waiting = await waitFor(() => current().running[0]);
    await act(() => current().steer(waiting.id, 'in French'));
    await waitFor(() => texts().at(-1) === 'steered: in French');

    await act(() =>
      current()
        .send('delete /tmp/x')
        .then(() => undefined),
    );
    const asking = await waitFor(() => current().running[0]);
    await act(() =>
      current().approveTool({ runId: asking.id, approvalId: 'ap1', approved: true, reason: 'fine' }),
    );
    await waitFor(() => texts().at(-1) === 'deleted (fine)');
  });

  it('passes the options of send, handover and reply on to the session', async (t) => {
    const server = await realServer(t);
    const channel = sessionName();
    await agent(t, server.url, channel);
    const s = mount(t, client(t, server.url, { clientId: 'user' }), () => useSession(channel));
    const current = (): UseSessionResult => s.current();
    const texts = () => current().messages.map((m) => textOf(m));

    let one = '';
    await act(async () => {
      one = await current().send('one');
    });
    await waitFor(() => texts()[1] === 'answer: one');
    const answer = current().view[1]?.id ?? '';
    await act(() =>
      current()
        .send('two')
        .then(() => undefined),
    );
    await waitFor(() => texts()[3] === 'answer: two');
    await act(() =>
      current()
        .send('branch', { parent: answer })
        .then(() => undefined),
    );
    await waitFor(() => texts().join('|') === 'one|answer: one|branch|answer: branch');

    await act(() => current().handover('human', { operator: 'Sam' }));
    await waitFor(() => current().holder.holder === 'human');
    assert.equal(current().holder.operator, 'Sam');
    let reply = '';
    await act(async () => {
      reply = await current().reply('a human here', { input: one });
    });
    await waitFor(() => current().session?.run(reply));
    assert.equal(current().session?.run(reply)?.input, one);
  });

  it('passes its options to the session: device, agents, shared selection', async (t) => {
    const server = await realServer(t);
    const channel = sessionName();
    await agent(t, server.url, channel);
    const laptop = mount(t, client(t, server.url, { clientId: 'user' }), () =>
      useSession(channel, { sharedSelection: true, device: 'laptop-tab' }),
    );
    const phone = mount(t, client(t, server.url, { clientId: 'user' }), () =>
      useSession(channel, { sharedSelection: true }),
    );
    const others = mount(t, client(t, server.url, { clientId: 'user' }), () =>
      useSession(channel, { agents: ['another-agent'] }),
    );
    await waitFor(() => laptop.current().session !== undefined);
    assert.equal(laptop.current().session?.device, 'laptop-tab');

    await act(() =>
      laptop
        .current()
        .send('hi')
        .then(() => undefined),
    );
    const complete = (node: ViewNode | undefined) => node?.kind === 'run' && node.status === 'complete';
    await waitFor(() => complete(laptop.current().view[1]));
    const first = laptop.current().view[1]?.id ?? '';
    await act(() => laptop.current().regenerate(first));
    await waitFor(() => phone.current().view[1]?.id !== first && complete(phone.current().view[1]));
    await act(() => laptop.current().select(first));
    await waitFor(() => phone.current().view[1]?.id === first, {
      message: 'the phone did not follow the selection',
    });

    // runs of agents it was not told of are not shown
    await waitFor(() => others.current().settled && others.current().view.length >= 1);
    assert.deepEqual(
      others.current().view.map((n) => n.kind),
      ['input'],
    );
  });

  it('works without StrictMode too: the first hook starts the session', async (t) => {
    const server = await realServer(t);
    const channel = sessionName();
    await agent(t, server.url, channel);
    let latest: UseSessionResult | undefined;
    function Probe() {
      latest = useSession(channel);
      return null;
    }
    const view = render(
      createElement(
        MooringProvider,
        { client: client(t, server.url, { clientId: 'user' }) },
        createElement(Probe),
      ),
    );
    t.after(() => view.unmount());
    await waitFor(() => latest?.settled, { message: 'the session never started' });
    await act(() => latest?.send('hi').then(() => undefined) ?? Promise.resolve());
    await waitFor(() => textOf(latest?.messages[1]) === 'answer: hi');
  });

  it('keeps one snapshot object until the session changes (no render loop)', async (t) => {
    const server = await realServer(t);
    const channel = sessionName();
    const user = client(t, server.url, { clientId: 'user' });
    const snapshots: unknown[] = [];
    const s = mount(t, user, () => {
      const result = useSession(channel);
      snapshots.push(result.view);
      return result;
    });
    await waitFor(() => s.current().settled);
    const before = s.current().view;
    const renders = snapshots.length;
    assert.ok(renders < 20, `rendered ${renders} times for an empty session`);
    assert.equal(s.current().view, before);
  });
});

describe('useMooringChat', () => {
  it('useChat over the session: messages, status, a second device, stop from it, and an unmount that cancels nothing', async (t) => {
    const server = await realServer(t);
    const channel = sessionName();
    const agentSession = await agent(t, server.url, channel);
    const ends: string[] = [];
    agentSession.on('run', (run) => run.on('end', (status) => ends.push(`${run.runId}:${status}`)));

    const statuses: string[] = [];
    const first = mount(t, client(t, server.url, { clientId: 'user' }), () => {
      const result = useMooringChat({ channel });
      if (statuses.at(-1) !== result.status) statuses.push(result.status);
      return result;
    });
    const chat = (): UseMooringChatResult => first.current();
    await act(() =>
      within(chat().sendMessage({ text: 'hello' }), {
        message: 'sendMessage() never returned: no answer reached useChat',
      }),
    );
    await waitFor(() => chat().status === 'ready' && textOf(chat().messages[1]) === 'answer: hello');
    assert.deepEqual(
      chat().messages.map((m) => m.role),
      ['user', 'assistant'],
    );
    assert.equal(chat().messages[1]?.id, chat().session.view[1]?.id, 'the assistant message is the run');
    // nothing is sent again by itself (no sendAutomaticallyWhen given): one request, not a second
    // one when the answer finished (which the transport would end at once, the run being over)
    await act(() => new Promise((r) => setTimeout(r, 50)));
    assert.deepEqual(
      statuses.filter((s) => s === 'submitted'),
      ['submitted'],
      `the chat sent again on its own: ${statuses}`,
    );
    assert.equal(statuses.at(-1), 'ready');
    assert.deepEqual(
      chat().session.view.map((n) => n.kind),
      ['input', 'run'],
      'the chat sent again on its own',
    );

    // a second device shows the same conversation, then follows a run started on the first
    const second = mount(t, client(t, server.url, { clientId: 'user' }), () => useMooringChat({ channel }));
    await waitFor(() => textOf(second.current().messages[1]) === 'answer: hello');
    void chat().sendMessage({ text: 'slow' }); // resolves when the answer ends: not awaited
    await waitFor(
      () => second.current().status === 'streaming' && textOf(second.current().messages[3]).length > 20,
      {
        message: 'the second device does not stream the run started on the first',
      },
    );
    const runId = second.current().messages[3]?.id ?? '';

    // unmounting the device that sent it cancels nothing: the agent keeps writing
    first.unmount();
    const shown = textOf(second.current().messages[3]).length;
    await waitFor(() => textOf(second.current().messages[3]).length > shown + 40);
    assert.deepEqual(
      ends.filter((e) => e.startsWith(runId)),
      [],
      'the unmount cancelled the run',
    );

    // Stop on the device that did not send it reaches the agent
    await act(() => second.current().stop());
    await waitFor(() => ends.includes(`${runId}:cancelled`), {
      message: 'stop on the second device did not cancel the run',
    });
    await waitFor(() => second.current().status === 'ready');
  });

  it('passes throttle on to useChat: a streamed answer updates the messages at most once per interval', async (t) => {
    const server = await realServer(t);
    const channel = sessionName();
    await agent(t, server.url, channel);
    const updates = { throttled: 0, alias: 0, plain: 0 };
    const watch = (key: keyof typeof updates, options: Parameters<typeof useMooringChat>[0]) => {
      let last = '';
      return mount(t, client(t, server.url, { clientId: 'user' }), () => {
        const result = useMooringChat(options);
        const text = textOf(result.messages[1]);
        if (text !== last) {
          last = text;
          updates[key]++;
        }
        return result;
      });
    };
    const plain = watch('plain', { channel });
    watch('throttled', { channel, throttle: 60_000 });
    watch('alias', { channel, experimental_throttle: 60_000 });
    void plain.current().sendMessage({ text: 'slow' }); // streams until cancelled
    await waitFor(() => updates.plain >= 20, { message: 'the answer did not stream' });
    await act(() => plain.current().stop());
    assert.ok(
      updates.throttled <= 2,
      `throttle: ${updates.throttled} updates while unthrottled saw ${updates.plain}`,
    );
    assert.ok(updates.alias <= 2, `experimental_throttle: ${updates.alias} updates`);
  });
});
