// The chat transport and the chat's state across a Redis restart (PROTOCOL.md §15, "A new Redis, a
// new epoch"): a response streaming to the AI SDK chat while Redis is SIGKILLed and restarted. A real
// server on a real redis-server; the chat reads the `UIMessageChunk` stream the transport returns.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { ContinuityLost } from '@mooring/client';
import { parseSerial } from '@mooring/protocol';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import type { UIMessage, UIMessageChunk } from 'ai';
import { MooringChatTransport } from '../src/mooring-chat-transport.ts';
import { UserSession } from '../src/user-session.ts';
import { gatedAgent, HALF, textOf, WORDS } from './helpers/agents.ts';
import { client, realServer, restartRedis, sessionName, waitFor, within } from './helpers/fixture.ts';

const skip = redisSkipReason();

/** Reads a chunk stream in the background: `chunks` so far, `done` once it closed. */
function collect(stream: ReadableStream<UIMessageChunk>) {
  const chunks: UIMessageChunk[] = [];
  const done = (async () => {
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      chunks.push(value);
    }
  })();
  return { chunks, done };
}

const deltas = (chunks: UIMessageChunk[]) =>
  chunks.flatMap((c) => (c.type === 'text-delta' ? [c.delta] : []));

async function chatSession(t: TestContext, url: string, name: string) {
  const session = new UserSession({ channel: client(t, url).channels.get(name, { start: true }) });
  t.after(() => session.close());
  await session.ready();
  return { session, transport: new MooringChatTransport({ session }) };
}

function send(transport: MooringChatTransport, name: string, text: string) {
  const message: UIMessage = { id: `q-${text}`, role: 'user', parts: [{ type: 'text', text }] };
  return transport.sendMessages({
    trigger: 'submit-message',
    chatId: name,
    messageId: undefined,
    messages: [message],
    abortSignal: undefined,
  });
}

describe('the chat transport across a Redis restart', () => {
  it('lossless (AOF always): the response streams on to its whole text, each delta once, then finish', async (t) => {
    if (skip) return t.skip(skip);
    const redis = await startRedis({ appendonly: 'always' });
    t.after(() => redis.close());
    const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
    const name = sessionName();
    const { release } = await gatedAgent(t, server.url, name);
    const { session, transport } = await chatSession(t, server.url, name);

    const read = collect(await send(transport, name, 'go'));
    await waitFor(() => deltas(read.chunks).length === HALF, { message: 'the first half never streamed' });
    let lost = 0;
    session.channel.on('continuityLost', () => lost++);
    await restartRedis(redis, server);
    release();
    await waitFor(
      async () => {
        await Promise.race([read.done, new Promise((r) => setTimeout(r, 50))]);
        return read.chunks.some((c) => c.type === 'finish' || c.type === 'abort');
      },
      { message: `the stream never ended: ${JSON.stringify(read.chunks.map((c) => c.type))}` },
    );
    await read.done;
    assert.equal(lost, 1, 'the chat saw the new epoch');
    // each word once, in order (those written while the chat was not attached come as one delta)
    assert.equal(deltas(read.chunks).join(''), WORDS.join(''));
    assert.deepEqual(
      read.chunks.map((c) => c.type).filter((type) => type !== 'text-delta'),
      ['start', 'text-start', 'text-end', 'finish'],
    );
    const runId = session.tree.runs[0]!.id;
    await session.ready();
    assert.equal(session.run(runId)?.status, 'complete');
    assert.equal(textOf(session.run(runId)?.message), WORDS.join(''));
  });
});

describe('the chat transport across a Redis restored from an older snapshot', () => {
  it('lossy (RDB taken mid-answer, more words, SIGKILL): the stream ends with abort "continuity lost", no text twice; the session shows what the new Redis has', async (t) => {
    if (skip) return t.skip(skip);
    const redis = await startRedis(); // RDB only: what was written after the SAVE is lost
    t.after(() => redis.close());
    const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
    const name = sessionName();
    const { release } = await gatedAgent(t, server.url, name, HALF / 2);
    const { session, transport } = await chatSession(t, server.url, name);

    const read = collect(await send(transport, name, 'go'));
    await waitFor(() => deltas(read.chunks).length === HALF / 2, {
      message: 'the first quarter never streamed',
    });
    await redis.command('SAVE');
    release();
    await waitFor(() => deltas(read.chunks).length === HALF, { message: 'the first half never streamed' });
    let lost: ContinuityLost | undefined;
    session.channel.on('continuityLost', (l) => {
      lost = l;
    });
    await restartRedis(redis, server);
    release();
    await within(read.done, { message: `the stream never ended: ${JSON.stringify(read.chunks)}` });
    assert.ok(
      (parseSerial(lost?.kept ?? '')?.seq ?? 0) < (parseSerial(lost?.previousPosition ?? '')?.seq ?? 0),
      'the new Redis lost what the chat held',
    );
    // What the chat was shown stands (words 5-9 included, which the new Redis lost); nothing of it
    // comes again, and the stream says that it cannot go on.
    assert.deepEqual(deltas(read.chunks), WORDS.slice(0, HALF));
    assert.deepEqual(read.chunks.at(-1), { type: 'abort', reason: 'continuity lost' });
    assert.equal(read.chunks.filter((c) => c.type === 'text-start').length, 1);
    // The session (and so a chat that syncs with it, or a resume) has what the new Redis has: the
    // words up to the snapshot, then those written after the restart.
    const runId = session.tree.runs[0]!.id;
    await waitFor(() => session.run(runId)?.status === 'complete', { message: 'the run never ended' });
    await session.ready();
    assert.equal(
      textOf(session.run(runId)?.message),
      [...WORDS.slice(0, HALF / 2), ...WORDS.slice(HALF)].join(''),
    );
  });
});
