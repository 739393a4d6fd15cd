// Serverless publishing over REST (ARCHITECTURE.md §1): a function without a connection loads the
// conversation, answers an input, and users see the run like any other; its lease is held by
// activity, so it stays alive while the function works and ends `abandoned` when the function dies.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { TestContext } from 'node:test';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { UIMessageChunk } from 'ai';
import { convertToModelMessages, streamText, toUIMessageStream } from 'ai';
import { loadSession } from '../src/load-session.ts';
import { channelSink } from '../src/operation-sink.ts';
import { publishUIMessageStream } from '../src/publish-ui-message-stream.ts';
import { historyOf } from '../src/run-message.ts';
import { RunPublisher } from '../src/run-publisher.ts';
import { UserSession } from '../src/user-session.ts';
import { textOf } from './helpers/agents.ts';
import { client, KEY, realServer, sessionName, waitFor } from './helpers/fixture.ts';
import { collect, finish, messageFrom, normalize, scriptedModel, textParts } from './helpers/models.ts';

const FUNCTION = fileURLToPath(new URL('./helpers/serverless-process.ts', import.meta.url));

describe('serverless publishing (REST)', () => {
  it("loadSession builds its tree with the session's agents and operators: a run or a handover by anyone else is not in it", async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const mallory = new UserSession({
      channel: client(t, server.url, { clientId: 'mallory' }).channels.get(name, { start: true }),
      clientId: 'mallory',
    });
    t.after(() => mallory.close());
    await mallory.start();
    const input = await mallory.send('hello');
    // mallory claims a run as if it were the agent's, and takes the session over
    const run = new RunPublisher({
      sink: channelSink(mallory.channel),
      runId: 'fake',
      agent: 'assistant',
      input,
    });
    await run.start();
    run.write({ type: 'text-start', id: 't' });
    run.write({ type: 'text-delta', id: 't', delta: 'not the agent' });
    run.write({ type: 'text-end', id: 't' });
    await run.end('complete');
    await mallory.handover('human');

    const rest = client(t, server.url, { autoConnect: false, clientId: 'fn' }).rest;
    const open = await loadSession({ rest, channel: name });
    assert.deepEqual(
      [open.runs.map((r) => r.id), open.handover.holder],
      [['fake'], 'human'],
      'naming no one, the tree takes both',
    );
    const named = await loadSession({ rest, channel: name, agents: ['assistant'], operators: ['operator'] });
    assert.deepEqual([named.runs.map((r) => r.id), named.handover.holder], [[], 'ai']);
  });

  it('publishes a streamed run that users see exactly as the model produced it', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const user = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => user.close());
    await user.start();
    const inputId = await user.send('Hi from the browser');

    // The "function": REST only, no realtime connection.
    const rest = client(t, server.url, { autoConnect: false, clientId: 'fn' }).rest;
    const tree = await loadSession({ rest, channel: name });
    const history = await historyOf(tree, inputId);
    assert.deepEqual(history.map(textOf), ['Hi from the browser']);
    const model = scriptedModel(
      [[...textParts('t', 'Hello from a serverless function, streamed over REST.'), finish()]],
      {
        gate: () => sleep(3),
      },
    );
    const result = streamText({ model, messages: await convertToModelMessages(history) });
    const [toSession, toTest] = toUIMessageStream({ stream: result.stream }).tee();
    const produced = collect(toTest);
    const published = await publishUIMessageStream({
      rest,
      channel: name,
      input: inputId,
      stream: toSession,
      lease: 300,
      metadata: { model: 'scripted', region: 'eu' }, // known at the start: the message's metadata
    });
    assert.equal(published.status, 'complete');

    await waitFor(() => user.run(published.runId)?.status === 'complete');
    await user.ready();
    assert.deepEqual(normalize(user.run(published.runId)?.message), {
      ...(await messageFrom(await produced, published.runId)),
      metadata: { model: 'scripted', region: 'eu' },
    });
  });

  it('holds the lease by activity while the function works, and abandons the run when it dies', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const user = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => user.close());
    await user.start();
    const inputId = await user.send('think slowly');
    const rest = client(t, server.url, { autoConnect: false }).rest;
    // every status a run shows on the way (an expiry would show `abandoned` before the end overrides it)
    const statuses = new Set<string>();
    user.on('change', () => {
      for (const run of user.tree.runs) statuses.add(run.status);
    });

    // Slow but alive: silent for longer than the lease between chunks; renewals keep it running.
    let silentFor = 0;
    const slow = new ReadableStream<UIMessageChunk>({
      async start(c) {
        c.enqueue({ type: 'text-start', id: 't' });
        for (const word of ['one ', 'two ', 'three']) {
          await sleep(350);
          silentFor += 350;
          c.enqueue({ type: 'text-delta', id: 't', delta: word });
        }
        c.enqueue({ type: 'text-end', id: 't' });
        c.close();
      },
    });
    const done = await publishUIMessageStream({
      rest,
      channel: name,
      input: inputId,
      stream: slow,
      lease: 300,
    });
    assert.ok(silentFor > 300);
    await waitFor(() => user.run(done.runId)?.status === 'complete');
    assert.equal(
      user.tree.runs.some((r) => r.status === 'abandoned'),
      false,
    );
    assert.equal(statuses.has('abandoned'), false, 'the lease ran out while the function was working');

    // A function that dies mid-stream (killed: no goodbye) — one lease after its last renewal.
    const second = await user.send('again');
    const child = spawn(process.execPath, [FUNCTION], {
      env: {
        ...process.env,
        MOORING_URL: server.url,
        MOORING_CHANNEL: name,
        MOORING_INPUT: second,
        MOORING_LEASE: '300',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => child.kill('SIGKILL'));
    await once(child.stdout, 'data', { signal: AbortSignal.timeout(20_000) });
    await waitFor(() => textOf(user.run('run-dies')?.message) === 'partial');
    assert.equal(user.run('run-dies')?.status, 'running');
    child.kill('SIGKILL');
    await waitFor(() => user.run('run-dies')?.status === 'abandoned', {
      message: 'the run was not abandoned',
    });
    await user.ready();
    assert.equal(textOf(user.run('run-dies')?.message), 'partial');
  });
});

describe('publishUIMessageStream: its options and how a run ends', () => {
  async function session(t: TestContext, options: Parameters<typeof realServer>[1] = {}) {
    const server = await realServer(t, options);
    const name = sessionName();
    const user = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => user.close());
    await user.start();
    const inputId = await user.send('hi');
    const rest = client(t, server.url, { autoConnect: false, clientId: 'fn' }).rest;
    return { server, name, user, inputId, rest };
  }
  // the chunks, then the end (an error only once they were read: `error()` drops what is queued)
  const stream = (chunks: UIMessageChunk[], fail?: Error) => {
    let i = 0;
    return new ReadableStream<UIMessageChunk>({
      pull(c) {
        const chunk = chunks[i++];
        if (chunk) c.enqueue(chunk);
        else if (fail) c.error(fail);
        else c.close();
      },
    });
  };
  const text = (words: string[]): UIMessageChunk[] => [
    { type: 'text-start', id: 't' },
    ...words.map((delta) => ({ type: 'text-delta' as const, id: 't', delta })),
    { type: 'text-end', id: 't' },
  ];

  it('a stream that fails ends the run error with the failure, the text so far kept', async (t) => {
    const { name, user, inputId, rest } = await session(t);
    const done = await publishUIMessageStream({
      rest,
      channel: name,
      input: inputId,
      stream: stream(
        [
          { type: 'text-start', id: 't' },
          { type: 'text-delta', id: 't', delta: 'so far' },
        ],
        new Error('model overloaded'),
      ),
    });
    assert.deepEqual([done.status, done.reason], ['error', 'model overloaded']);
    await waitFor(() => user.run(done.runId)?.status === 'error');
    await user.ready();
    assert.equal(textOf(user.run(done.runId)?.message), 'so far');
    assert.equal(user.run(done.runId)?.reason, 'model overloaded', 'every device sees why');
  });

  it("an abort chunk, or the caller's signal, ends the run cancelled (with the abort's reason)", async (t) => {
    const { name, user, inputId, rest } = await session(t);
    const aborted = await publishUIMessageStream({
      rest,
      channel: name,
      input: inputId,
      stream: stream([...text(['partial']), { type: 'abort', reason: 'user stopped' }]),
    });
    assert.deepEqual([aborted.status, aborted.reason], ['cancelled', 'user stopped']);
    await waitFor(() => user.run(aborted.runId)?.status === 'cancelled');
    assert.equal(user.run(aborted.runId)?.reason, 'user stopped');

    const controller = new AbortController();
    let pulled = 0;
    const endless = new ReadableStream<UIMessageChunk>({
      async pull(c) {
        pulled++;
        if (pulled === 1) c.enqueue({ type: 'text-start', id: 't' });
        else c.enqueue({ type: 'text-delta', id: 't', delta: `w${pulled} ` });
        if (pulled === 5) controller.abort();
        await sleep(1);
      },
    });
    const stopped = await publishUIMessageStream({
      rest,
      channel: name,
      input: inputId,
      stream: endless,
      signal: controller.signal,
    });
    assert.equal(stopped.status, 'cancelled');
    assert.ok(pulled < 10, `read on after the abort: ${pulled} chunks`);
    await waitFor(() => user.run(stopped.runId)?.status === 'cancelled');
  });

  it('replaces and coalesceMs reach the run: an alternative to the run it replaces, each delta its own operation', async (t) => {
    const { server, name, user, inputId, rest } = await session(t);
    const first = await publishUIMessageStream({
      rest,
      channel: name,
      input: inputId,
      stream: stream(text(['one'])),
    });
    const watcher = client(t, server.url).channels.get(name);
    let appends = 0;
    await watcher.subscribe((m) => {
      if (m.action === 'append') appends++;
    });
    const words = ['a ', 'b ', 'c ', 'd ', 'e'];
    const second = await publishUIMessageStream({
      rest,
      channel: name,
      input: inputId,
      stream: stream(text(words)),
      replaces: first.runId,
      coalesceMs: 0,
    });
    await waitFor(() => user.run(second.runId)?.status === 'complete');
    assert.equal(user.tree.runs.find((r) => r.id === second.runId)?.replaces, first.runId);
    await waitFor(() => appends >= words.length - 1, {
      message: `the deltas were merged (${appends} appends) though coalesceMs was 0`,
    });
  });

  it('a publish the server refuses for good stops reading the stream and rejects', async (t) => {
    const { server, name, inputId } = await session(t, {
      keys: [KEY, { name: 'reader', secret: 'secret', capability: { '*': ['subscribe', 'history'] } }],
    });
    const readOnly = client(t, server.url, {
      autoConnect: false,
      clientId: 'fn',
      key: 'reader:secret',
    }).rest;
    let pulled = 0;
    const long = new ReadableStream<UIMessageChunk>({
      pull(c) {
        pulled++;
        if (pulled > 2_000) c.close();
        else
          c.enqueue(
            pulled === 1 ? { type: 'text-start', id: 't' } : { type: 'text-delta', id: 't', delta: 'x' },
          );
      },
    });
    await assert.rejects(
      publishUIMessageStream({ rest: readOnly, channel: name, input: inputId, stream: long }),
      (e: { code?: string }) => e.code === 'forbidden',
    );
    assert.ok(pulled < 1_000, `the stream was read on after the refusal: ${pulled} chunks`);
  });
});
