// Operation sizes in bytes, against a real server (PROTOCOL.md §10 `maxOperationSize`, §13.2): the
// server counts an operation's UTF-8 bytes (data and headers as JSON), so content of many bytes per
// character — CJK (3 bytes), emoji (surrogate pairs, 4 bytes), characters JSON writes as `\uXXXX`
// (6 bytes) — must be split by what it weighs, not by how many characters it has. A refused
// operation (`operation_too_large`) is not retryable: it would end the whole run `error`.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { describe, it } from 'node:test';
import { utf8Length } from '@mooring/protocol';
import type { UIMessage, UIMessageChunk } from 'ai';
import { AgentSession } from '../src/agent-session.ts';
import { ConversationTree } from '../src/conversation-tree.ts';
import { MAX_APPEND_CHARS } from '../src/operation-queue.ts';
import { channelSink } from '../src/operation-sink.ts';
import { buildRunMessage } from '../src/run-message.ts';
import { MAX_CHUNK_JSON_BYTES, RunPublisher } from '../src/run-publisher.ts';
import { UserSession } from '../src/user-session.ts';
import { client, realServer, sessionName, waitFor, within } from './helpers/fixture.ts';
import { MemoryLog } from './helpers/memory-log.ts';
import { messageFrom, normalize } from './helpers/models.ts';

/** UTF-8 bytes of a value as the server counts operation data (a string as is, anything else as JSON). */
function bytes(value: unknown): number {
  return Buffer.byteLength(typeof value === 'string' ? value : JSON.stringify(value));
}

/**
 * Publishes `chunks` as one run through a real server with `RunPublisher` over a channel, and reads
 * it back on another client. Returns the run's final status, the publishing failure (if any) and the
 * message rebuilt from what the server stored.
 */
async function roundTrip(t: TestContext, chunks: UIMessageChunk[], runId = 'r1') {
  const server = await realServer(t);
  const name = sessionName();
  const writer = client(t, server.url, { clientId: 'agent' }).channels.get(name, { start: true });
  const reader = client(t, server.url, { clientId: 'reader' }).channels.get(name, { start: true });
  const tree = new ConversationTree();
  await reader.subscribe((m) => tree.apply(m));
  const failures: unknown[] = [];
  const publisher = new RunPublisher({
    sink: channelSink(writer),
    runId,
    agent: 'assistant',
    input: 'i1',
    coalesceMs: 0,
    onError: (err) => failures.push(err),
  });
  await publisher.start();
  for (const chunk of chunks) publisher.write(chunk);
  await within(publisher.end('complete'), { message: 'the run never ended' });
  const run = await waitFor(() => {
    const node = tree.run(runId);
    return node && node.status !== 'running' ? node : undefined;
  });
  const message = normalize(await buildRunMessage(run, tree.parts(runId)));
  return { status: run.status, reason: run.reason, failures, message };
}

describe('operations are sized in UTF-8 bytes', () => {
  it('a tool output of 30 000 CJK characters (90 KB of UTF-8, under 48 K characters) is stored, the run complete', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const output = { text: '漢字かな交じり文'.repeat(3_750) }; // 30 000 characters, 90 000 bytes
    assert.ok(JSON.stringify(output).length < 48 * 1024, 'below the old threshold in characters');
    assert.ok(bytes(output) > 64 * 1024, 'above maxOperationSize in bytes');
    const errors: Error[] = [];
    const agent = new AgentSession({
      channel: client(t, server.url, { clientId: 'agent' }).channels.get(name, { start: true }),
      agent: 'assistant',
      onInput: (_input, run) => {
        run.write({ type: 'tool-input-start', toolCallId: 'c1', toolName: 'read' });
        run.write({
          type: 'tool-input-available',
          toolCallId: 'c1',
          toolName: 'read',
          input: { file: '文書' },
        });
        run.write({ type: 'tool-output-available', toolCallId: 'c1', output });
        run.write({ type: 'text-start', id: 't' });
        run.write({ type: 'text-delta', id: 't', delta: '読みました。'.repeat(5_000) });
        run.write({ type: 'text-end', id: 't' });
      },
    });
    agent.on('error', (err) => errors.push(err));
    t.after(() => agent.close());
    await agent.start();

    const user = new UserSession({
      channel: client(t, server.url, { clientId: 'user' }).channels.get(name, { start: true }),
    });
    t.after(() => user.close());
    await user.start();
    await user.send('読んで');
    const run = await waitFor(() => user.tree.runs.find((r) => r.status !== 'running'));
    assert.equal(run.status, 'complete', `the run ended ${run.status}: ${run.reason ?? ''}`);
    assert.deepEqual(errors, []);
    const message = await waitFor(() => {
      const m = user.run(run.id)?.message as UIMessage | undefined;
      return m?.parts.some((p) => p.type === 'text') ? m : undefined;
    });
    const tool = message.parts.find((p) => p.type === 'tool-read');
    assert.ok(tool && 'output' in tool, 'the tool part has its output');
    assert.deepEqual(tool.output, output);
    const text = message.parts.find((p) => p.type === 'text');
    assert.equal(text?.type === 'text' ? text.text : undefined, '読みました。'.repeat(5_000));
  });

  it('emoji (surrogate pairs) and characters JSON escapes as \\uXXXX, in chunks and in text', async (t) => {
    const emoji = '😀🎉👍🏽'.repeat(5_000); // 30 000 UTF-16 units, 60 000 bytes; with the escapes below, above 64 KiB
    const escaped = '\u0001\u001f'.repeat(4_000); // 8 000 characters, 48 000 bytes of JSON
    const chunks: UIMessageChunk[] = [
      { type: 'start', messageId: 'r1' },
      { type: 'data-emoji', data: { emoji } },
      { type: 'data-escaped', data: { escaped } },
      { type: 'data-both', data: { emoji, escaped } },
      { type: 'text-start', id: 't' },
      // an odd offset, so that the 8 192-unit split points fall inside surrogate pairs
      { type: 'text-delta', id: 't', delta: `x${emoji}` },
      { type: 'text-delta', id: 't', delta: escaped },
      { type: 'text-end', id: 't' },
    ];
    const result = await roundTrip(t, chunks);
    assert.deepEqual(result.failures, []);
    assert.equal(result.status, 'complete', result.reason);
    assert.deepEqual(result.message, await messageFrom(chunks, 'r1'));
  });

  it('chunks written at once go in batches that fit the frame limit', async (t) => {
    // 30 chunks of ~40 KiB each, queued behind the run's create: ~1.2 MB together, above
    // maxFrameSize (1 MiB); each alone is below the 48 KiB threshold and goes as one create.
    const chunks: UIMessageChunk[] = [{ type: 'start', messageId: 'r1' }];
    for (let i = 0; i < 30; i++)
      chunks.push({ type: 'data-row', id: `d${i}`, data: { i, v: 'é'.repeat(20_000) } });
    const result = await roundTrip(t, chunks);
    assert.deepEqual(result.failures, []);
    assert.equal(result.status, 'complete', result.reason);
    assert.deepEqual(result.message, await messageFrom(chunks, 'r1'));
  });
});

describe('the chunk threshold, in bytes', () => {
  /** A data chunk whose JSON is exactly `size` bytes, of `unit` repeated (`unit` of 1 or 3 bytes). */
  function chunkOf(size: number, unit: string): UIMessageChunk {
    const empty = bytes({ type: 'data-x', data: '' });
    const n = (size - empty) / bytes(unit);
    assert.ok(Number.isInteger(n), 'the size is reachable with whole units');
    return { type: 'data-x', data: unit.repeat(n) };
  }

  async function formats(chunk: UIMessageChunk): Promise<unknown[]> {
    const log = new MemoryLog();
    const p = new RunPublisher({ sink: log, runId: 'r1', agent: 'a', input: 'i1', coalesceMs: 0 });
    p.write(chunk);
    await p.end('complete');
    const ops = log.ops.flat().filter((o) => o.headers?.kind === 'chunk' && o.action !== 'append');
    return ops.map((o) => o.headers?.format);
  }

  it('ASCII: one create up to exactly 48 KiB of JSON, JSON text above (as before)', async () => {
    assert.deepEqual(await formats(chunkOf(MAX_CHUNK_JSON_BYTES, 'a')), [undefined]);
    assert.deepEqual(await formats(chunkOf(MAX_CHUNK_JSON_BYTES + 1, 'a')), ['json-text']);
  });

  it('3-byte characters: the same bounds in bytes, a third of the characters', async () => {
    const base = bytes({ type: 'data-x', data: '' }); // 27: ASCII, so the rest is whole characters of 3 bytes
    const at = MAX_CHUNK_JSON_BYTES - ((MAX_CHUNK_JSON_BYTES - base) % 3);
    assert.deepEqual(await formats(chunkOf(at, '漢')), [undefined]);
    assert.deepEqual(await formats(chunkOf(at + 3, '漢')), ['json-text']);
    assert.ok(JSON.stringify(chunkOf(at + 3, '漢')).length < MAX_CHUNK_JSON_BYTES / 2);
  });

  it('a backlog of deltas JSON escapes 6 bytes a character goes in frames under 1 MiB', async () => {
    const log = new MemoryLog();
    const runId = `r${'x'.repeat(200)}`; // long ids: the operations' own fields weigh too
    const p = new RunPublisher({ sink: log, runId, agent: 'a', input: 'i1', coalesceMs: 0 });
    log.hold = true; // the run's create waits: everything below piles up behind it
    p.write({ type: 'text-start', id: 't' });
    for (let i = 0; i < 100; i++) p.write({ type: 'text-delta', id: 't', delta: '\u0001'.repeat(8_192) });
    p.write({ type: 'text-end', id: 't' });
    const ended = p.end('complete');
    await new Promise((resolve) => setTimeout(resolve, 10));
    log.hold = false;
    log.release();
    await ended;
    assert.equal(p.failure, undefined);
    const channel = `session:${'c'.repeat(248)}`;
    for (const ops of log.ops) {
      const frame = { type: 'publish', ref: 1_000_000, channel, ops };
      assert.ok(bytes(frame) <= 1024 * 1024, `a frame of ${bytes(frame)} bytes`);
    }
    assert.ok(log.ops.length > 2, 'the backlog took several publishes');
  });

  it('utf8Length counts as the server does (Buffer.byteLength), surrogates included', () => {
    const lone = ['\ud83d', 'x\ude00y', '\ud83d\ud83d\ude00', '\ude00\ud83d']; // lone surrogates
    for (const text of ['', 'a', 'é', '€', '漢', '😀', '👍🏽', '\u0001', 'a😀b', ...lone])
      assert.equal(utf8Length(text), Buffer.byteLength(text), JSON.stringify(text));
    assert.ok(MAX_APPEND_CHARS * 3 + 1024 < 64 * 1024, 'an append of the longest text fits an operation');
  });
});
