// RunChunkEmitter (PROTOCOL.md §13.2, "Rebuilding the chunk stream of a run") on runs published into
// the in-memory log and folded: `skip` (a consumer that already holds the message — the `tail` mode
// of a continuation — gets only what comes next), a live sync giving only what is new, the chunks
// each way a run ends turns into, and chunk parts that are not replayed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EVENT_PART } from '@mooring/protocol/ai';
import type { UIMessageChunk } from 'ai';
import { ConversationTree } from '../src/conversation-tree.ts';
import { RunChunkEmitter } from '../src/run-chunk-emitter.ts';
import { RunPublisher } from '../src/run-publisher.ts';
import type { PartRecord } from '../src/wire.ts';
import { MemoryLog } from './helpers/memory-log.ts';

function publisher(log: MemoryLog, options: Partial<ConstructorParameters<typeof RunPublisher>[0]> = {}) {
  return new RunPublisher({ sink: log, runId: 'r1', agent: 'a', input: 'i1', coalesceMs: 0, ...options });
}

/** The run and its parts as a client folding the log has them now. */
function folded(log: MemoryLog) {
  const tree = new ConversationTree();
  for (const m of log.live) tree.apply(m);
  return { run: tree.run('r1')!, parts: tree.parts('r1') };
}

describe('RunChunkEmitter', () => {
  it('skip: a consumer that holds the message so far gets only what comes next — no start, no part again', async () => {
    const log = new MemoryLog();
    const p = publisher(log);
    p.write({ type: 'text-start', id: 'a' });
    p.write({ type: 'text-delta', id: 'a', delta: 'First part.' });
    p.write({ type: 'text-end', id: 'a' });
    p.write({ type: 'text-start', id: 'b' });
    p.write({ type: 'text-delta', id: 'b', delta: 'Second' });
    await p.flush();

    const emitter = new RunChunkEmitter();
    emitter.skip(folded(log).parts);

    p.write({ type: 'text-delta', id: 'b', delta: ' part.' });
    p.write({ type: 'text-end', id: 'b' });
    await p.end('complete');
    const { run, parts } = folded(log);
    assert.deepEqual(emitter.sync(run, parts), [
      { type: 'text-delta', id: 'b', delta: ' part.' },
      { type: 'text-end', id: 'b' },
      { type: 'finish' },
    ]);
    assert.equal(emitter.finished, true);
  });

  it("a full replay: start with the run's metadata, then the end: finish with its reason, abort with the cancel's reason, error with the failure's (or a default)", async () => {
    const endings: Array<[Parameters<RunPublisher['end']>, UIMessageChunk[]]> = [
      [['complete', { finishReason: 'length' }], [{ type: 'finish', finishReason: 'length' }]],
      [['complete', {}], [{ type: 'finish' }]],
      [['cancelled', { reason: 'the user stopped it' }], [{ type: 'abort', reason: 'the user stopped it' }]],
      [['cancelled', {}], [{ type: 'abort' }]],
      [
        ['error', { reason: 'the model is down' }],
        [{ type: 'error', errorText: 'the model is down' }, { type: 'finish' }],
      ],
      [
        ['error', {}],
        [{ type: 'error', errorText: 'the run failed' }, { type: 'finish' }],
      ],
    ];
    for (const [end, tail] of endings) {
      const log = new MemoryLog();
      const p = publisher(log, { metadata: { model: 'm1' } });
      p.write({ type: 'text-start', id: 't' });
      p.write({ type: 'text-delta', id: 't', delta: 'Hi' });
      p.write({ type: 'text-end', id: 't' });
      await p.end(...end);
      const { run, parts } = folded(log);
      assert.deepEqual(
        new RunChunkEmitter().sync(run, parts),
        [
          { type: 'start', messageId: 'r1', messageMetadata: { model: 'm1' } },
          { type: 'text-start', id: 't' },
          { type: 'text-delta', id: 't', delta: 'Hi' },
          { type: 'text-end', id: 't' },
          ...tail,
        ],
        JSON.stringify(end),
      );
    }
  });

  it('live: a sync after each change gives the start once, then only what is new (nothing when nothing is)', async () => {
    const log = new MemoryLog();
    const p = publisher(log);
    const emitter = new RunChunkEmitter();
    const live: UIMessageChunk[] = [];
    const sync = () => {
      const { run, parts } = folded(log);
      const out = emitter.sync(run, parts);
      live.push(...out);
      return out;
    };
    await p.start();
    assert.deepEqual(sync(), [{ type: 'start', messageId: 'r1' }]);
    assert.deepEqual(sync(), [], 'nothing new');
    p.write({ type: 'text-start', id: 't' });
    p.write({ type: 'text-delta', id: 't', delta: 'Hel' });
    await p.flush();
    assert.deepEqual(sync(), [
      { type: 'text-start', id: 't' },
      { type: 'text-delta', id: 't', delta: 'Hel' },
    ]);
    assert.deepEqual(sync(), [], 'no empty delta, no second text-start');
    p.write({ type: 'text-delta', id: 't', delta: 'lo' });
    p.write({ type: 'text-end', id: 't' });
    p.write({ type: 'tool-input-start', toolCallId: 'c1', toolName: 'weather' });
    p.write({ type: 'tool-input-delta', toolCallId: 'c1', inputTextDelta: '{"city":' });
    await p.flush();
    assert.deepEqual(sync(), [
      { type: 'text-delta', id: 't', delta: 'lo' },
      { type: 'text-end', id: 't' },
      { type: 'tool-input-start', toolCallId: 'c1', toolName: 'weather' },
      { type: 'tool-input-delta', toolCallId: 'c1', inputTextDelta: '{"city":' },
    ]);
    assert.deepEqual(sync(), [], 'no second text-end, no empty tool input delta');
    p.write({ type: 'tool-input-delta', toolCallId: 'c1', inputTextDelta: '"Lisbon"}' });
    p.write({
      type: 'tool-input-available',
      toolCallId: 'c1',
      toolName: 'weather',
      input: { city: 'Lisbon' },
    });
    await p.end('complete');
    assert.deepEqual(sync(), [
      { type: 'tool-input-delta', toolCallId: 'c1', inputTextDelta: '"Lisbon"}' },
      { type: 'tool-input-available', toolCallId: 'c1', toolName: 'weather', input: { city: 'Lisbon' } },
      { type: 'finish' },
    ]);
    assert.deepEqual(sync(), [], 'nothing after the end');
    assert.equal(live.filter((c) => c.type === 'start').length, 1);
  });

  it("a chunk part holding a start, finish or abort chunk (an untyped publisher's) is not replayed: the run's own status ends the stream", async () => {
    const log = new MemoryLog();
    const p = publisher(log);
    await p.start();
    const part = (chunk: Record<string, string>) => ({
      name: EVENT_PART,
      data: chunk,
      headers: { run: 'r1', kind: 'chunk', type: chunk.type! },
    });
    await log.publish([
      part({ type: 'start' }),
      part({ type: 'data-note', data: 'kept' } as never),
      part({ type: 'finish' }),
      part({ type: 'abort' }),
    ]);
    await p.end('complete');
    const { run, parts } = folded(log);
    assert.deepEqual(new RunChunkEmitter().sync(run, parts), [
      { type: 'start', messageId: 'r1' },
      { type: 'data-note', data: 'kept' },
      { type: 'finish' },
    ]);
  });

  it('a large chunk still arriving as JSON text holds back the parts after it, which follow once it is whole', async () => {
    const log = new MemoryLog();
    const p = publisher(log);
    await p.start();
    const big = { run: 'r1', kind: 'chunk', type: 'data-big', format: 'json-text' };
    const [created] = await log.publish([
      { name: EVENT_PART, data: '{"type":"data-big",', headers: { ...big, state: 'streaming' } },
    ]);
    await log.publish([
      {
        name: EVENT_PART,
        data: { type: 'data-after', data: 1 },
        headers: { run: 'r1', kind: 'chunk', type: 'data-after' },
      },
    ]);
    const emitter = new RunChunkEmitter();
    let { run, parts } = folded(log);
    assert.deepEqual(emitter.sync(run, parts), [{ type: 'start', messageId: 'r1' }], 'the later part waits');
    await log.publish([
      { action: 'append', serial: created!.serial, data: '"data":"x"}', headers: { ...big, state: 'done' } },
    ]);
    ({ run, parts } = folded(log));
    assert.deepEqual(emitter.sync(run, parts), [
      { type: 'data-big', data: 'x' },
      { type: 'data-after', data: 1 },
    ]);
  });

  it('a new epoch: the parts kept under the same sequences go on from what was emitted; a part emitted and gone from the new log ends the stream (abort "continuity lost"), never emitted twice', async () => {
    const log = new MemoryLog();
    const p = publisher(log);
    p.write({ type: 'text-start', id: 'a' });
    p.write({ type: 'text-delta', id: 'a', delta: 'Kept.' });
    p.write({ type: 'text-end', id: 'a' });
    await p.flush();
    const keptUpTo = log.live.length;
    p.write({ type: 'text-start', id: 'b' });
    p.write({ type: 'text-delta', id: 'b', delta: 'Lost' });
    await p.flush();
    // the log in a new epoch (PROTOCOL.md §15): the same sequences, up to `upTo` when given
    const renamed = (upTo = log.live.length) => {
      const tree = new ConversationTree();
      for (const m of log.live.slice(0, upTo))
        tree.apply({
          ...m,
          serial: m.serial.replace(/^a+/, 'b'.repeat(12)),
          version: m.version.replace(/^a+/, 'b'.repeat(12)),
        });
      return { run: tree.run('r1')!, parts: tree.parts('r1') };
    };

    const whole = new RunChunkEmitter();
    const { run, parts } = folded(log);
    assert.equal(whole.sync(run, parts).filter((c) => c.type === 'text-start').length, 2);
    p.write({ type: 'text-delta', id: 'b', delta: ' not.' });
    await p.flush();
    const after = renamed();
    assert.deepEqual(whole.sync(after.run, after.parts), [{ type: 'text-delta', id: 'b', delta: ' not.' }]);

    const lossy = new RunChunkEmitter();
    lossy.sync(run, parts);
    const kept = renamed(keptUpTo);
    assert.deepEqual(lossy.sync(kept.run, kept.parts), [{ type: 'abort', reason: 'continuity lost' }]);
    assert.equal(lossy.finished, true);
  });
  it('a new epoch: a part kept as it was emitted goes on — a chunk part whole, a tool input still streaming by a delta; one the new log has in an earlier state (a text ended, now streaming; a chunk changed) ends the stream', async () => {
    const log = new MemoryLog();
    const p = publisher(log);
    p.write({ type: 'text-start', id: 'a' });
    p.write({ type: 'text-delta', id: 'a', delta: 'Looking it up.' });
    p.write({ type: 'text-end', id: 'a' });
    p.write({ type: 'data-weather', data: { city: 'Lyon' } });
    p.write({ type: 'tool-input-start', toolCallId: 'c1', toolName: 'forecast' });
    p.write({ type: 'tool-input-delta', toolCallId: 'c1', inputTextDelta: '{"ci' });
    await p.flush();
    const { run, parts } = folded(log);
    assert.deepEqual(
      parts.map((part) => [part.kind, part.state]),
      [
        ['text', 'done'],
        ['chunk', 'done'],
        ['tool-input', 'streaming'],
      ],
    );
    // the same parts in the log's new epoch (PROTOCOL.md §15: the same sequences), each as `change` makes it
    const renamed = (change: (part: PartRecord) => PartRecord = (part) => part) =>
      parts.map((part) =>
        change({
          ...part,
          serial: part.serial.replace(/^a+/, 'b'.repeat(12)),
          version: part.version.replace(/^a+/, 'b'.repeat(12)),
        }),
      );
    const emitter = () => {
      const e = new RunChunkEmitter();
      e.sync(run, parts);
      return e;
    };

    const grown = renamed((part) =>
      part.kind === 'tool-input' ? { ...part, text: `${part.text}ty":"Lyon"}` } : part,
    );
    assert.deepEqual(emitter().sync(run, grown), [
      { type: 'tool-input-delta', toolCallId: 'c1', inputTextDelta: 'ty":"Lyon"}' },
    ]);

    const unended = renamed((part) => (part.kind === 'text' ? { ...part, state: 'streaming' } : part));
    assert.deepEqual(emitter().sync(run, unended), [{ type: 'abort', reason: 'continuity lost' }]);

    const changed = renamed((part) =>
      part.kind === 'chunk' ? { ...part, chunk: { type: 'data-weather', data: { city: 'Paris' } } } : part,
    );
    assert.deepEqual(emitter().sync(run, changed), [{ type: 'abort', reason: 'continuity lost' }]);
  });

  it('every part emitted deleted in this epoch leaves the stream as it was; every part lost with a new epoch that kept the run ends it (abort "continuity lost")', async () => {
    const log = new MemoryLog();
    const p = publisher(log);
    p.write({ type: 'text-start', id: 'a' });
    p.write({ type: 'text-delta', id: 'a', delta: 'Lost' });
    await p.flush();
    const { run, parts } = folded(log);
    const deleted = new RunChunkEmitter();
    deleted.sync(run, parts);
    assert.deepEqual(deleted.sync(run, []), []);
    assert.equal(deleted.finished, false);

    const lossy = new RunChunkEmitter();
    lossy.sync(run, parts);
    const kept = { ...run, serial: run.serial.replace(/^a+/, 'b'.repeat(12)) };
    assert.deepEqual(lossy.sync(kept, []), [{ type: 'abort', reason: 'continuity lost' }]);
    assert.equal(lossy.finished, true);
  });
});
