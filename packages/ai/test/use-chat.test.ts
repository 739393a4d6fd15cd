// The REAL `useChat` of @ai-sdk/react 4 (React Testing Library, happy-dom, StrictMode on) against a
// real Mooring server, two or three "devices" (each its own client, session and hook): stop from any
// device and after a reload, unmounting mid-answer, tool approvals and client-side tools while the
// run stays open, no request loop with `sendAutomaticallyWhen`, one resume per reload.
import './helpers/dom.ts';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { UIMessage } from 'ai';
import {
  lastAssistantMessageIsCompleteWithApprovalResponses,
  lastAssistantMessageIsCompleteWithToolCalls,
} from 'ai';
import type { AgentRun } from '../src/agent-run.ts';
import type { UserSession } from '../src/user-session.ts';
import { echoAgent, textOf } from './helpers/agents.ts';
import { realServer, sessionName, waitFor, within } from './helpers/fixture.ts';
import { device } from './helpers/use-chat-device.ts';

/** Lets every pending task run: a page whose main thread is spun by a request loop never gets here. */
async function turns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** An agent that streams words until released or cancelled (the "model" paces itself at 10 ms). */
async function streamingAgent(t: TestContext, url: string, name: string) {
  const signals: AbortSignal[] = [];
  let released = false;
  await echoAgent(t, url, name, {
    coalesceMs: 0,
    onInput: async (_input, run) => {
      signals.push(run.signal);
      run.write({ type: 'text-start', id: 't' });
      for (let i = 0; i < 3000 && !released && !run.signal.aborted; i++) {
        run.write({ type: 'text-delta', id: 't', delta: `w${i} ` });
        await sleep(10);
      }
      run.write({ type: 'text-end', id: 't' });
    },
  });
  return {
    signals,
    release() {
      released = true;
    },
  };
}

function toolPart(message: UIMessage | undefined, toolCallId: string): Record<string, unknown> | undefined {
  return message?.parts.find((p) => (p as { toolCallId?: string }).toolCallId === toolCallId) as
    | Record<string, unknown>
    | undefined;
}

describe('useChat (@ai-sdk/react) over Mooring', () => {
  it('unmounting mid-answer never cancels; stop on another device, after a reload, does — and stays stopped', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const agent = await streamingAgent(t, server.url, name);
    t.after(() => agent.release());

    const laptop = device(t, server.url, name);
    void laptop.chat.sendMessage({ text: 'tell me everything' });
    await waitFor(() => laptop.chat.status === 'streaming' && textOf(laptop.chat.messages[1]).length > 20);
    const runId = laptop.session.tree.runs[0]!.id;

    const phone = device(t, server.url, name, { resume: true });
    await waitFor(() => phone.chat.status === 'streaming' && textOf(phone.chat.messages[1]).length > 0, {
      message: 'the phone never followed the run',
    });
    // A plain useChat({ transport }) following the run too: its unmount calls chat.stop().
    const tablet = device(t, server.url, name, { resume: true, plain: true });
    await waitFor(() => tablet.chat.status === 'streaming');

    laptop.unmount(); // a route change in the sending tab
    tablet.unmount();
    const atUnmount = textOf(phone.chat.messages[1]).length;
    await waitFor(() => textOf(phone.chat.messages[1]).length > atUnmount + 50, {
      message: 'the answer stopped growing when devices unmounted',
    });
    assert.equal(phone.session.run(runId)?.status, 'running');
    assert.equal(agent.signals[0]?.aborted, false);

    // The phone reloads (a new client, session and chat), then the user presses stop there.
    phone.unmount();
    const reloaded = device(t, server.url, name, { resume: true });
    await waitFor(() => reloaded.chat.status === 'streaming' && textOf(reloaded.chat.messages[1]).length > 0);
    const reconnects = reloaded.transport.reconnects;
    await reloaded.chat.stop();
    await waitFor(() => reloaded.session.run(runId)?.status === 'cancelled', {
      message: 'stop never reached the agent',
    });
    assert.equal(agent.signals[0]?.aborted, true);
    await waitFor(() => reloaded.session.settled && reloaded.chat.messages[1]?.id === runId);
    await turns();
    assert.equal(reloaded.chat.status, 'ready', 'the chat stays stopped');
    assert.equal(reloaded.transport.reconnects, reconnects, 'no resume of the stopped run');
  });

  it('a stop before the run starts cancels it as soon as it starts', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    let gate: () => void = () => {};
    const opened = new Promise<void>((resolve) => {
      gate = resolve;
    });
    const agent = await streamingAgent(t, server.url, name);
    t.after(() => agent.release());
    const laptop = device(t, server.url, name);
    // Hold the session's publishes until the stop has been pressed.
    await laptop.session.start();
    const publish = laptop.session.channel.publish.bind(laptop.session.channel);
    laptop.session.channel.publish = (async (...args: Parameters<typeof publish>) => {
      await opened;
      return publish(...args);
    }) as typeof publish;
    void laptop.chat.sendMessage({ text: 'hello' });
    await waitFor(() => laptop.chat.status === 'submitted');
    const stopped = laptop.chat.stop();
    gate();
    await stopped;
    const run = await waitFor(() => laptop.session.tree.runs[0]);
    await waitFor(() => laptop.session.run(run.id)?.status === 'cancelled', {
      message: 'the run was not cancelled',
    });
  });

  it('tool approval while the run stays open: reaches the agent, continues the same message on every device, pending across a reload', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const answers: boolean[] = [];
    await echoAgent(t, server.url, name, {
      onInput: async (_input, run: AgentRun) => {
        run.write({ type: 'start-step' });
        run.write({ type: 'tool-input-start', toolCallId: 'call-1', toolName: 'deleteFile' });
        run.write({
          type: 'tool-input-available',
          toolCallId: 'call-1',
          toolName: 'deleteFile',
          input: { path: '/tmp/x' },
        });
        run.write({ type: 'tool-approval-request', toolCallId: 'call-1', approvalId: 'ap-1' });
        const answer = await run.waitForApproval('ap-1');
        answers.push(answer.approved);
        run.write({ type: 'tool-output-available', toolCallId: 'call-1', output: { deleted: true } });
        run.write({ type: 'finish-step' });
        run.write({ type: 'start-step' });
        run.writeText('Deleted /tmp/x.');
      },
    });
    const laptop = device(t, server.url, name);
    const phone = device(t, server.url, name, { resume: true });
    void laptop.chat.sendMessage({ text: 'delete /tmp/x' });
    const asked = (d: typeof laptop) =>
      toolPart(d.chat.messages[1], 'call-1')?.state === 'approval-requested';
    await waitFor(() => asked(laptop) && asked(phone), {
      message: 'the approval request did not show everywhere',
    });
    assert.equal(laptop.chat.status, 'streaming', 'the run stays open while it waits');

    // The phone reloads while the approval is pending: still pending after it.
    phone.unmount();
    const reloaded = device(t, server.url, name, { resume: true });
    await waitFor(() => asked(reloaded), { message: 'the pending approval was lost in the reload' });

    const sends = laptop.transport.sends;
    await laptop.chat.addToolApprovalResponse({ id: 'ap-1', approved: true });
    const done = (d: typeof laptop) =>
      d.chat.status === 'ready' &&
      textOf(d.chat.messages[1]) === 'Deleted /tmp/x.' &&
      d.chat.messages.length === 2;
    await waitFor(() => done(laptop) && done(reloaded), { message: 'the approval never reached the agent' });
    assert.deepEqual(answers, [true]);
    const runId = laptop.session.tree.runs[0]!.id;
    for (const d of [laptop, reloaded]) {
      assert.equal(d.chat.messages[1]!.id, runId, 'one assistant message: the run');
      assert.equal(toolPart(d.chat.messages[1], 'call-1')?.state, 'output-available');
    }
    await turns();
    assert.equal(laptop.transport.sends, sends, 'no extra request for the approval');
  });

  it('client-side tools: onToolCall runs once, on the sending device; the output reaches the agent and survives a reload; no request loop', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name, {
      onInput: async (_input, run: AgentRun) => {
        run.write({ type: 'start-step' });
        run.write({ type: 'tool-input-start', toolCallId: 'loc-1', toolName: 'getLocation' });
        run.write({ type: 'tool-input-available', toolCallId: 'loc-1', toolName: 'getLocation', input: {} });
        const { output } = await run.waitForToolOutput('loc-1');
        // Text in the same step after the tool: `lastAssistantMessageIsCompleteWithToolCalls` stays
        // true once the run ends — the case that used to spin the page.
        run.writeText(`You are in ${(output as { city: string }).city}.`);
      },
    });
    const calls: string[] = [];
    const chatOptions = (who: string) => ({
      sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls,
      onToolCall: ({ toolCall }: { toolCall: { toolCallId: string; toolName: string } }) => {
        calls.push(who);
        void laptop.chat.addToolOutput({
          tool: toolCall.toolName,
          toolCallId: toolCall.toolCallId,
          output: { city: who === 'laptop' ? 'Lyon' : 'Oslo' },
        } as never);
      },
    });
    const laptop = device(t, server.url, name, { chat: chatOptions('laptop') });
    const phone = device(t, server.url, name, { resume: true, chat: chatOptions('phone') });
    void laptop.chat.sendMessage({ text: 'where am I?' });
    const done = (d: typeof laptop) =>
      d.chat.status === 'ready' && textOf(d.chat.messages[1]) === 'You are in Lyon.';
    await waitFor(() => done(laptop) && done(phone), { message: 'the tool output never reached the agent' });
    await turns();
    assert.deepEqual(calls, ['laptop'], 'onToolCall ran once, on the device that sent');
    assert.ok(laptop.transport.sends <= 2, `the laptop made ${laptop.transport.sends} requests`);
    assert.ok(phone.transport.sends <= 1, `the phone made ${phone.transport.sends} requests`);

    const reloaded = device(t, server.url, name, { resume: true, chat: chatOptions('reloaded') });
    await waitFor(() => reloaded.session.settled && textOf(reloaded.chat.messages[1]) === 'You are in Lyon.');
    assert.equal(toolPart(reloaded.chat.messages[1], 'loc-1')?.state, 'output-available');
    assert.deepEqual(toolPart(reloaded.chat.messages[1], 'loc-1')?.output, { city: 'Lyon' });
    await turns();
    assert.deepEqual(calls, ['laptop']);
  });

  it('an agent that ends its response at an approval request: the approval is sent, no request loop', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name, {
      onInput: (_input, run: AgentRun) => {
        run.write({ type: 'start-step' });
        run.write({ type: 'tool-input-start', toolCallId: 'c1', toolName: 'pay' });
        run.write({ type: 'tool-input-available', toolCallId: 'c1', toolName: 'pay', input: { amount: 5 } });
        run.write({ type: 'tool-approval-request', toolCallId: 'c1', approvalId: 'a1' });
      },
    });
    const laptop = device(t, server.url, name, {
      chat: { sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses },
    });
    await within(laptop.chat.sendMessage({ text: 'pay 5' }), {
      message: 'sendMessage() never returned: no answer reached the chat',
    });
    await waitFor(
      () =>
        laptop.chat.status === 'ready' &&
        toolPart(laptop.chat.messages[1], 'c1')?.state === 'approval-requested',
    );
    const controls: string[] = [];
    laptop.session.channel.subscribe((m) => {
      if (m.name === 'ai.control') controls.push(String(m.headers?.control));
    });
    await laptop.chat.addToolApprovalResponse({ id: 'a1', approved: true });
    await waitFor(() => controls.includes('tool-approval'), { message: 'the approval was not published' });
    await turns();
    assert.ok(laptop.transport.sends <= 2, `${laptop.transport.sends} requests: a loop`);
    assert.equal(laptop.chat.status, 'ready');
    assert.equal(laptop.chat.error, undefined);
  });

  it('resume: true resumes once per (StrictMode) load, syncChat included', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const agent = await streamingAgent(t, server.url, name);
    t.after(() => agent.release());
    const laptop = device(t, server.url, name);
    void laptop.chat.sendMessage({ text: 'go' });
    await waitFor(() => textOf(laptop.chat.messages[1]).length > 20);
    const phone = device(t, server.url, name, { resume: true });
    await waitFor(() => phone.chat.status === 'streaming' && textOf(phone.chat.messages[1]).length > 0);
    agent.release();
    await waitFor(
      () => phone.chat.status === 'ready' && phone.session.running().length === 0 && phone.session.settled,
    );
    await turns();
    assert.equal(phone.transport.reconnects, 1);
    assert.equal(textOf(phone.chat.messages[1]), textOf(laptop.session.messages[1]));
  });

  it('an edit shows the new input id at once', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    let released = false;
    t.after(() => {
      released = true;
    });
    let n = 0;
    await echoAgent(t, server.url, name, {
      onInput: async (_input, run: AgentRun) => {
        if (++n === 1) return run.writeText('first answer');
        // The edit's answer streams until the test has looked.
        run.write({ type: 'text-start', id: 't' });
        for (let i = 0; i < 3000 && !released; i++) {
          run.write({ type: 'text-delta', id: 't', delta: `w${i} ` });
          await sleep(10);
        }
        run.write({ type: 'text-end', id: 't' });
      },
    });
    const laptop = device(t, server.url, name);
    await within(laptop.chat.sendMessage({ text: 'first' }), {
      message: 'sendMessage() never returned: no answer reached the chat',
    });
    await waitFor(() => laptop.chat.status === 'ready' && laptop.chat.messages.length === 2); // rendered
    const original = laptop.chat.messages[0]!.id;
    const edited = laptop.chat.sendMessage({ text: 'first, edited', messageId: original });
    await waitFor(() => laptop.chat.status === 'streaming');
    const input = laptop.session.tree.inputs.find((i) => i.forkOf === original);
    assert.ok(input, 'the edit is an input with forkOf');
    assert.equal(laptop.chat.messages[0]!.id, input.id, 'the chat shows the new input id while answering');
    released = true;
    await edited;
    assert.equal(laptop.chat.messages[0]!.id, input.id);
  });

  it('onToolCall runs once per tool call, also when the chat replays the run before the tool’s result is in it', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name, {
      onInput: async (_input, run: AgentRun) => {
        run.write({ type: 'start-step' });
        run.write({ type: 'tool-input-start', toolCallId: 'ask-1', toolName: 'askUser' });
        run.write({ type: 'tool-input-available', toolCallId: 'ask-1', toolName: 'askUser', input: {} });
        const { output } = await run.waitForToolOutput('ask-1');
        run.writeText(`You said ${(output as { answer: string }).answer}.`);
      },
    });
    const calls: string[] = [];
    const laptop = device(t, server.url, name, {
      // The app asks its user: the answer comes later, after the chat replayed the run.
      chat: { onToolCall: ({ toolCall }) => void calls.push(toolCall.toolCallId) },
    });
    void laptop.chat.sendMessage({ text: 'ask me' });
    await waitFor(() => calls.length === 1, { message: 'onToolCall never ran' });
    void laptop.chat.resumeStream(); // a remount with resume: true, a reconnect: the run replayed
    await waitFor(() => laptop.transport.reconnects === 1);
    await waitFor(() => toolPart(laptop.chat.messages[1], 'ask-1')?.state === 'input-available');
    await turns();
    assert.deepEqual(calls, ['ask-1'], 'the replayed tool call was not run again');
    await laptop.chat.addToolOutput({
      tool: 'askUser',
      toolCallId: 'ask-1',
      output: { answer: 'yes' },
    } as never);
    await waitFor(
      () => laptop.chat.status === 'ready' && textOf(laptop.chat.messages[1]) === 'You said yes.',
      {
        message: 'the tool output never reached the agent',
      },
    );
    assert.deepEqual(calls, ['ask-1']);
  });

  it('addToolOutput reaches the run that made the call: two agents’ runs each wait for a client-side tool, the older one’s input came whole (no tool-input-start)', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const toolAgent = (agent: string, streamed: boolean) =>
      echoAgent(t, server.url, name, {
        agent,
        answerMissed: true,
        onInput: async (_input, run: AgentRun) => {
          const toolCallId = `call-${agent}`;
          run.write({ type: 'start-step' });
          if (streamed) run.write({ type: 'tool-input-start', toolCallId, toolName: 'pick' });
          run.write({ type: 'tool-input-available', toolCallId, toolName: 'pick', input: {} });
          const { output } = await run.waitForToolOutput(toolCallId);
          run.writeText(`${agent} got ${(output as { pick: string }).pick}`);
        },
      });
    const asked = (session: UserSession, toolCallId: string) =>
      session.tree.runs.some((r) =>
        session.tree.parts(r.id).some((p) => p.headers.toolCallId === toolCallId),
      );
    await toolAgent('whole', false);
    const laptop = device(t, server.url, name, { agents: ['whole', 'streamed'] });
    void laptop.chat.sendMessage({ text: 'pick one each' });
    await waitFor(() => asked(laptop.session, 'call-whole'), { message: 'the first tool call never came' });
    // A second agent joins and answers the input too: its run is the newer one, with a tool-input part.
    await toolAgent('streamed', true);
    await waitFor(() => asked(laptop.session, 'call-streamed'), {
      message: 'the second tool call never came',
    });
    void laptop.chat.addToolOutput({
      tool: 'pick',
      toolCallId: 'call-whole',
      output: { pick: 'A' },
    } as never);
    void laptop.chat.addToolOutput({
      tool: 'pick',
      toolCallId: 'call-streamed',
      output: { pick: 'B' },
    } as never);
    await waitFor(() => laptop.session.tree.running().length === 0 && laptop.session.settled, {
      message: 'a tool output never reached its run',
    });
    const texts = laptop.session.tree.runs.map(
      (r) => `${r.agent} ${r.status}: ${textOf(laptop.session.run(r.id)?.message)}`,
    );
    assert.deepEqual(texts, ['whole complete: whole got A', 'streamed complete: streamed got B']);
  });

  it('a tool approval answered with a reason reaches the agent with that reason', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name, {
      onInput: async (_input, run: AgentRun) => {
        run.write({ type: 'start-step' });
        run.write({ type: 'tool-input-start', toolCallId: 'rm-1', toolName: 'deleteFile' });
        run.write({ type: 'tool-input-available', toolCallId: 'rm-1', toolName: 'deleteFile', input: {} });
        run.write({ type: 'tool-approval-request', toolCallId: 'rm-1', approvalId: 'ap-rm' });
        const answer = await run.waitForApproval('ap-rm');
        run.write({ type: 'finish-step' });
        run.writeText(`${answer.approved ? 'approved' : 'denied'}: ${answer.reason}`);
      },
    });
    const laptop = device(t, server.url, name);
    void laptop.chat.sendMessage({ text: 'delete it' });
    await waitFor(() => toolPart(laptop.chat.messages[1], 'rm-1')?.state === 'approval-requested', {
      message: 'the approval request never showed',
    });
    await laptop.chat.addToolApprovalResponse({ id: 'ap-rm', approved: false, reason: 'keep it' });
    await waitFor(() => laptop.session.tree.running().length === 0 && laptop.session.settled, {
      message: 'the answer never reached the agent',
    });
    assert.equal(textOf(laptop.session.messages[1]), 'denied: keep it');
  });

  it('a tab reloaded mid-run runs no onToolCall for a tool call the run already holds a result of (output, error or denial)', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    let released = false;
    t.after(() => {
      released = true;
    });
    await echoAgent(t, server.url, name, {
      coalesceMs: 0,
      onInput: async (_input, run: AgentRun) => {
        run.write({ type: 'start-step' });
        for (const toolCallId of ['c-ok', 'c-err']) {
          run.write({ type: 'tool-input-available', toolCallId, toolName: 'locate', input: {} });
          await run.waitForToolOutput(toolCallId);
        }
        run.write({ type: 'tool-input-available', toolCallId: 'c-no', toolName: 'locate', input: {} });
        run.write({ type: 'tool-approval-request', toolCallId: 'c-no', approvalId: 'ap-no' });
        await run.waitForApproval('ap-no');
        run.write({ type: 'tool-output-denied', toolCallId: 'c-no' });
        run.write({ type: 'finish-step' });
        // The run goes on (the answer streams) while a tab reloads.
        run.write({ type: 'text-start', id: 't' });
        for (let i = 0; i < 3000 && !released; i++) {
          run.write({ type: 'text-delta', id: 't', delta: `w${i} ` });
          await sleep(10);
        }
        run.write({ type: 'text-end', id: 't' });
      },
    });
    const calls: string[] = [];
    let tab: ReturnType<typeof device> | undefined;
    const onToolCall = ({ toolCall }: { toolCall: { toolCallId: string; toolName: string } }) => {
      calls.push(toolCall.toolCallId);
      const { toolCallId } = toolCall;
      if (toolCallId === 'c-ok')
        void tab?.chat.addToolOutput({ tool: 'locate', toolCallId, output: { city: 'Lyon' } } as never);
      if (toolCallId === 'c-err')
        void tab?.chat.addToolOutput({
          tool: 'locate',
          toolCallId,
          state: 'output-error',
          errorText: 'no signal',
        } as never);
    };
    tab = device(t, server.url, name, { device: 'tab-1', chat: { onToolCall } });
    void tab.chat.sendMessage({ text: 'where am I?' });
    await waitFor(() => toolPart(tab?.chat.messages[1], 'c-no')?.state === 'approval-requested', {
      message: 'the tool calls were never answered',
    });
    await tab.chat.addToolApprovalResponse({ id: 'ap-no', approved: false });
    const states = (d: typeof tab) =>
      ['c-ok', 'c-err', 'c-no'].map((id) => toolPart(d?.chat.messages[1], id)?.state).join();
    const answered = 'output-available,output-error,output-denied';
    await waitFor(() => states(tab) === answered && textOf(tab?.chat.messages[1]).length > 0, {
      message: 'the run never went on past its tool calls',
    });
    assert.deepEqual(calls, ['c-ok', 'c-err', 'c-no']);

    // The tab reloads (same device id: its tool calls are still its own) while the run streams.
    tab.unmount();
    calls.length = 0;
    tab = device(t, server.url, name, { device: 'tab-1', resume: true, chat: { onToolCall } });
    await waitFor(
      () =>
        tab?.chat.status === 'streaming' &&
        states(tab) === answered &&
        textOf(tab.chat.messages[1]).length > 0,
      { message: 'the reloaded tab never followed the run' },
    );
    await turns();
    assert.deepEqual(calls, [], 'no tool call ran again');
    released = true;
  });
});
