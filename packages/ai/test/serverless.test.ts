// Serverless publishing over REST (ARCHITECTURE.md §1): a function without a connection loads the
// conversation, answers an input, and users see the run like any other; its lease is held by
// activity, so it stays alive while the function works and ends `abandoned` when the function dies.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { UIMessageChunk } from 'ai';
import { convertToModelMessages, streamText, toUIMessageStream } from 'ai';
import { loadSession } from '../src/load-session.ts';
import { publishUIMessageStream } from '../src/publish-ui-message-stream.ts';
import { historyOf } from '../src/run-message.ts';
import { UserSession } from '../src/user-session.ts';
import { textOf } from './helpers/agents.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';
import { collect, finish, messageFrom, normalize, scriptedModel, textParts } from './helpers/models.ts';

const FUNCTION = fileURLToPath(new URL('./helpers/serverless-process.ts', import.meta.url));

describe('serverless publishing (REST)', () => {
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
