// UserSession views are snapshots a UI can hold: the same objects until something changed (so
// `useSyncExternalStore` can read `view()` / `messages` directly, under StrictMode), and ONE
// consistent moment — a run reported `complete` never carries an earlier rebuild's text, even while
// a catch-up after a disconnect delivers the run's end and its rolled-up text.
import './helpers/dom.ts';
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { renderHook } from '@testing-library/react';
import type { UIMessage } from 'ai';
import { createElement, type ReactNode, StrictMode, useSyncExternalStore } from 'react';
import type { AgentRun } from '../src/agent-run.ts';
import { channelSink } from '../src/operation-sink.ts';
import { RunPublisher } from '../src/run-publisher.ts';
import { UserSession } from '../src/user-session.ts';
import { echoAgent, textOf } from './helpers/agents.ts';
import { client, proxyTo, realServer, sessionName, waitFor } from './helpers/fixture.ts';

Object.assign(globalThis, { IS_REACT_ACT_ENVIRONMENT: false });

const WORDS = Array.from({ length: 40 }, (_, i) => `w${i} `);
const FULL = WORDS.join('');

/** An agent writing WORDS one by one, holding after the first `hold` words until released. */
async function heldAgent(t: import('node:test').TestContext, url: string, name: string, hold: number) {
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  await echoAgent(t, url, name, {
    coalesceMs: 0,
    onInput: async (_input, run: AgentRun) => {
      run.write({ type: 'text-start', id: 't' });
      for (const [i, w] of WORDS.entries()) {
        if (i === hold) await released;
        run.write({ type: 'text-delta', id: 't', delta: w });
        await run.flush();
      }
      run.write({ type: 'text-end', id: 't' });
    },
  });
  return release;
}

function statusAt(session: UserSession, index: number): string | undefined {
  const node = session.view()[index];
  return node?.kind === 'run' ? node.status : undefined;
}

/** A run answering `input` as the session's agent publishes it, every delta its own operation. */
function agentRun(t: TestContext, url: string, name: string, runId: string, input: string): RunPublisher {
  return new RunPublisher({
    sink: channelSink(client(t, url, { clientId: 'agent' }).channels.get(name)),
    runId,
    agent: 'assistant',
    input,
    coalesceMs: 0,
  });
}

describe('UserSession snapshots', () => {
  it('view() and messages are the same objects until something changes; unchanged nodes keep their identity', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const release = await heldAgent(t, server.url, name, 0);
    release();
    const session = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => session.close());
    await session.ready();
    await session.send('hello');
    await waitFor(() => session.settled && statusAt(session, 1) === 'complete');
    const view = session.view();
    const messages = session.messages;
    assert.equal(session.view(), view);
    assert.equal(session.messages, messages);
    await session.send('again');
    await waitFor(
      () => session.settled && session.view().length === 4 && statusAt(session, 3) === 'complete',
    );
    const next = session.view();
    assert.notEqual(next, view);
    assert.notEqual(session.messages, messages);
    assert.equal(next[0], view[0], 'the first input is the same node object');
    assert.equal(session.messages[1], messages[1], 'the first answer is the same message object');
  });

  it('a change off the view (a control) leaves view() and messages the same objects', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const session = new UserSession({
      channel: client(t, server.url, { clientId: 'user' }).channels.get(name, { start: true }),
      clientId: 'user',
    });
    t.after(() => session.close());
    await session.ready();
    const input = await session.send('hello');
    await session.reply('hi', { input });
    await waitFor(() => session.settled && statusAt(session, 1) === 'complete');
    const view = session.view();
    const messages = session.messages;
    await session.approveTool({ approvalId: 'nothing-asked', approved: true });
    await waitFor(() => session.tree.controls.length === 1 && session.settled);
    assert.equal(session.view(), view);
    assert.equal(session.messages, messages);
  });

  it('useSyncExternalStore over session.messages under StrictMode renders the stream without a loop', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const release = await heldAgent(t, server.url, name, 5);
    const session = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => session.close());
    const errors: unknown[] = [];
    const consoleError = console.error;
    console.error = (...args: unknown[]) => errors.push(args);
    t.after(() => {
      console.error = consoleError;
    });
    const subscribe = (fn: () => void) => session.on('change', fn);
    const view = renderHook(() => useSyncExternalStore(subscribe, () => session.messages), {
      wrapper: ({ children }: { children: ReactNode }) => createElement(StrictMode, null, children),
    });
    t.after(() => view.unmount());
    await session.ready();
    await session.send('stream please');
    await waitFor(() => textOf(view.result.current[1] as UIMessage | undefined).length > 0);
    release();
    await waitFor(() => textOf(view.result.current[1] as UIMessage | undefined) === FULL, {
      message: 'the stream never rendered whole',
    });
    assert.deepEqual(errors, []);
  });

  it('a view is one consistent moment under catch-up: a finished run never shows an earlier rebuild’s text', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const release = await heldAgent(t, server.url, name, 10);
    const proxy = await proxyTo(t, server);
    const session = new UserSession({
      channel: client(t, proxy.url('/')).channels.get(name, { start: true }),
    });
    t.after(() => session.close());
    const violations: string[] = [];
    let checks = 0;
    const check = () => {
      checks++;
      for (const node of session.view())
        if (node.kind === 'run' && node.status !== 'running' && textOf(node.message) !== FULL)
          violations.push(`${node.status} with ${JSON.stringify(textOf(node.message))}`);
    };
    session.on('change', check);
    session.on('runEnd', check);
    await session.ready();
    await session.send('go');
    await waitFor(() => textOf(session.view()[1]?.message).length > 0, { message: 'nothing streamed' });
    // Cut the user off while the run finishes; it catches up on the rolled-up text and the end.
    proxy.refuse();
    await proxy.reset();
    release();
    const observer = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => observer.close());
    await observer.ready();
    await waitFor(() => observer.tree.running().length === 0 && observer.tree.runs.length === 1, {
      message: 'the run never ended',
    });
    proxy.pass();
    await waitFor(() => session.settled && statusAt(session, 1) === 'complete', {
      message: 'the session never caught up',
    });
    check();
    assert.equal(textOf(session.view()[1]?.message), FULL);
    assert.deepEqual(violations, [], `${violations.length} inconsistent views in ${checks} checks`);
  });
  it('a branch selection shows at once, even while the session is not live', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const session = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => session.close());
    await session.ready();
    const one = await session.send('one');
    const uno = await session.edit(one, 'uno');
    await waitFor(() => session.settled && session.view()[0]?.id === uno);
    await session.channel.detach();
    assert.equal(session.live, false);
    await session.select(one);
    assert.deepEqual(
      session.view().map((n) => n.id),
      [one],
    );
  });

  it('after a branch selection, a catch-up again shows the last settled view: no finished run without its text', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const proxy = await proxyTo(t, server);
    const session = new UserSession({
      channel: client(t, proxy.url('/'), { clientId: 'user' }).channels.get(name, { start: true }),
      clientId: 'user',
    });
    t.after(() => session.close());
    const violations: string[] = [];
    session.on('change', () => {
      for (const node of session.view())
        if (node.kind === 'run' && node.status !== 'running' && textOf(node.message) === '')
          violations.push(`${node.id} ${node.status} with no text`);
    });
    await session.ready();
    const first = await session.send('one');
    await session.reply('answer one', { input: first });
    await waitFor(() => session.settled && session.view().length === 2);
    await session.select(first);
    await waitFor(() => session.settled);
    // Cut the user off while another member asks and is answered; the user catches up on both.
    proxy.refuse();
    await proxy.reset();
    const other = new UserSession({
      channel: client(t, server.url, { clientId: 'operator' }).channels.get(name, { start: true }),
      clientId: 'operator',
    });
    t.after(() => other.close());
    await other.ready();
    const second = await other.send('two');
    await other.reply('answer two', { input: second });
    proxy.pass();
    await waitFor(() => session.settled && textOf(session.view()[3]?.message) === 'answer two', {
      message: 'the session never caught up',
    });
    assert.deepEqual(violations, []);
  });
});

describe('UserSession events', () => {
  it('run once when a run appears, runEnd once when it ends, with the status it ended with', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const session = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => session.close());
    await session.start();
    const events: string[] = [];
    session.on('run', (run) => events.push(`run ${run.id} ${run.status}`));
    session.on('runEnd', (run) => events.push(`runEnd ${run.id} ${run.status}`));
    const input = await session.send('hello');
    const publisher = agentRun(t, server.url, name, 'run_events', input);
    publisher.write({ type: 'text-start', id: 't' });
    publisher.write({ type: 'text-delta', id: 't', delta: 'hi' });
    await publisher.flush();
    await waitFor(() => events.length === 1, { message: 'no run event' });
    publisher.write({ type: 'text-end', id: 't' });
    await publisher.end('cancelled', { reason: 'enough' });
    await waitFor(() => session.tree.run('run_events')?.status === 'cancelled');
    await session.ready();
    assert.deepEqual(events, ['run run_events running', 'runEnd run_events cancelled']);
  });
});

/** Counts the session's run-message rebuilds (each one reads the run's parts from the tree). */
function countRebuilds(session: UserSession): { count: number } {
  const counter = { count: 0 };
  const parts = session.tree.parts.bind(session.tree);
  session.tree.parts = (runId) => {
    counter.count++;
    return parts(runId);
  };
  return counter;
}

describe('UserSession rebuilds', () => {
  it('a session nobody reads rebuilds no run message, even with run and runEnd listeners; the first read rebuilds it', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const session = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => session.close());
    await session.start();
    const rebuilds = countRebuilds(session);
    const ended: string[] = [];
    session.on('run', () => {});
    session.on('runEnd', (run) => ended.push(run.id));
    const input = await session.send('hello');
    const publisher = agentRun(t, server.url, name, 'run_lazy', input);
    publisher.write({ type: 'text-start', id: 't' });
    for (const word of ['one ', 'two ', 'three']) {
      publisher.write({ type: 'text-delta', id: 't', delta: word });
      await publisher.flush();
    }
    publisher.write({ type: 'text-end', id: 't' });
    await publisher.end('complete');
    await waitFor(() => ended.length === 1, { message: 'the run never ended' });
    assert.equal(rebuilds.count, 0, 'no rebuild before anything reads the messages');
    await session.ready();
    assert.ok(rebuilds.count > 0, 'ready() rebuilds what is stale');
    assert.equal(textOf(session.run('run_lazy')?.message), 'one two three');
    assert.equal(session.run('run_lazy')?.status, 'complete');
  });

  it('read for the first time on a live session, the view stops before a run whose message is not built yet: never an ended run without its text', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const writer = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => writer.close());
    await writer.start();
    const input = await writer.send('hello');
    const publisher = agentRun(t, server.url, name, 'run_late', input);
    publisher.write({ type: 'text-start', id: 't' });
    publisher.write({ type: 'text-delta', id: 't', delta: 'all there' });
    publisher.write({ type: 'text-end', id: 't' });
    await publisher.end('complete');
    // A component mounted later: the session is live (started elsewhere), nothing has read it yet.
    const late = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => late.close());
    await late.start();
    await waitFor(() => late.running().length === 0 && late.tree.run('run_late')?.status === 'complete');
    const first = late.view();
    for (const node of first)
      assert.ok(
        node.kind !== 'run' || node.status === 'running' || textOf(node.message) !== '',
        `run ${node.id} shown ended with no text`,
      );
    assert.deepEqual(
      first.map((n) => n.kind),
      ['input'],
      'the input, and the run once its message is built',
    );
    await late.ready();
    const settled = late.view();
    assert.deepEqual(
      settled.map((n) => (n.kind === 'run' ? [n.status, textOf(n.message)] : [n.kind])),
      [['input'], ['complete', 'all there']],
    );
  });

  it('a change listener alone has every change rebuilt as it happens', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const session = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => session.close());
    await session.start();
    const rebuilds = countRebuilds(session);
    session.on('change', () => {});
    const input = await session.send('hello');
    const publisher = agentRun(t, server.url, name, 'run_watched', input);
    publisher.write({ type: 'text-start', id: 't' });
    publisher.write({ type: 'text-delta', id: 't', delta: 'hi' });
    await publisher.flush();
    await waitFor(() => rebuilds.count > 0, { message: 'a change listener did not start rebuilds' });
    await publisher.end('complete');
  });
});

describe('UserSession run nodes', () => {
  it('a run’s view node keeps its identity while nothing on it changes', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const release = await heldAgent(t, server.url, name, 0);
    release();
    const session = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => session.close());
    await session.ready();
    await session.send('hello');
    await waitFor(() => session.settled && statusAt(session, 1) === 'complete');
    const answer = session.view()[1];
    await session.send('again');
    await waitFor(
      () => session.settled && session.view().length === 4 && statusAt(session, 3) === 'complete',
    );
    assert.equal(session.view()[1], answer, 'the first answer is the same node object');
  });

  it('run() reports the status from the moment its message was built: a run that just ended shows running with its last rebuilt text until the rebuild with its end', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const session = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => session.close());
    await session.ready();
    const input = await session.send('hello');
    const publisher = agentRun(t, server.url, name, 'run_moment', input);
    publisher.write({ type: 'text-start', id: 't' });
    publisher.write({ type: 'text-delta', id: 't', delta: 'hi' });
    await publisher.flush();
    await waitFor(() => session.settled && textOf(session.run('run_moment')?.message) === 'hi', {
      message: 'the first text was never rebuilt',
    });
    const atEnd: string[] = [];
    session.on('runEnd', (run) => {
      const shown = session.run(run.id);
      atEnd.push(`${shown?.status} ${JSON.stringify(textOf(shown?.message))}`);
    });
    publisher.write({ type: 'text-delta', id: 't', delta: ' there' });
    publisher.write({ type: 'text-end', id: 't' });
    await publisher.end('complete');
    await waitFor(() => atEnd.length === 1, { message: 'no runEnd' });
    await session.ready();
    assert.deepEqual(atEnd, ['running "hi"'], 'the end is shown only with the text it came with');
    const shown = session.run('run_moment');
    assert.equal(shown?.status, 'complete');
    assert.equal(textOf(shown?.message), 'hi there');
  });
});
