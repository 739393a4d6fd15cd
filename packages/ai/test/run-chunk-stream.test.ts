// runChunkStream (`run-chunk-stream.ts`) over a source whose tree is fed by hand from the in-memory
// log, and whose "live" the test sets: a run's chunk stream emits only while the source is live,
// each change of its run as it is folded, waits for a run it has not seen yet, ends with an abort when
// a reload takes away a run it had shown, and closes after the run's end.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { UIMessageChunk } from 'ai';
import { ConversationTree, type TreeChange } from '../src/conversation-tree.ts';
import { type RunStreamOptions, type RunStreamSource, runChunkStream } from '../src/run-chunk-stream.ts';
import { RunPublisher } from '../src/run-publisher.ts';
import { MemoryLog } from './helpers/memory-log.ts';

/** A session as a run stream sees it: a tree, a live flag, change notices. */
class Source implements RunStreamSource {
  readonly tree = new ConversationTree();
  readonly log = new MemoryLog();
  live = true;
  readonly watchers = new Set<(change: TreeChange | { kind: 'live' }) => void>();
  #folded = 0;

  constructor() {
    this.tree.on('change', (change) => {
      for (const fn of [...this.watchers]) fn(change);
    });
  }

  watch(fn: (change: TreeChange | { kind: 'live' }) => void): () => void {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }

  /** Folds what the log holds that the tree has not folded yet. */
  fold(): void {
    for (const m of this.log.live.slice(this.#folded)) this.tree.apply(m);
    this.#folded = this.log.live.length;
  }

  becomeLive(): void {
    this.live = true;
    for (const fn of [...this.watchers]) fn({ kind: 'live' });
  }
}

/** Reads `stream` in the background: what came so far, and whether it closed. */
function reading(stream: ReadableStream<UIMessageChunk>) {
  const state = { chunks: [] as UIMessageChunk[], closed: false };
  const reader = stream.getReader();
  void (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      state.chunks.push(value);
    }
    state.closed = true;
  })();
  return state;
}

/** Lets every queued read settle (all in memory: no I/O, no timer). */
const settle = () => new Promise<void>((r) => setImmediate(r));

function publisher(source: Source): RunPublisher {
  return new RunPublisher({ sink: source.log, runId: 'r1', agent: 'a', input: 'i1', coalesceMs: 0 });
}

function open(source: Source, options: RunStreamOptions = {}) {
  return reading(runChunkStream(source, 'r1', options));
}

describe('runChunkStream', () => {
  it('emits each change of its run as it is folded, not only at the end, and closes after the end', async () => {
    const source = new Source();
    const p = publisher(source);
    const read = open(source);
    p.write({ type: 'text-start', id: 't' });
    p.write({ type: 'text-delta', id: 't', delta: 'Hel' });
    await p.flush();
    source.fold();
    await settle();
    assert.deepEqual(read.chunks, [
      { type: 'start', messageId: 'r1' },
      { type: 'text-start', id: 't' },
      { type: 'text-delta', id: 't', delta: 'Hel' },
    ]);
    p.write({ type: 'text-delta', id: 't', delta: 'lo' });
    await p.flush();
    source.fold();
    await settle();
    assert.deepEqual(read.chunks.slice(3), [{ type: 'text-delta', id: 't', delta: 'lo' }]);
    assert.equal(read.closed, false);
    p.write({ type: 'text-end', id: 't' });
    await p.end('complete');
    source.fold();
    await settle();
    assert.deepEqual(read.chunks.slice(4), [{ type: 'text-end', id: 't' }, { type: 'finish' }]);
    assert.equal(read.closed, true);
    assert.equal(source.watchers.size, 0, 'no longer watching the session');
  });

  it('emits nothing while the source is not live, and what the run holds once it is', async () => {
    const source = new Source();
    const p = publisher(source);
    source.live = false; // e.g. catching up
    const read = open(source);
    p.write({ type: 'text-start', id: 't' });
    p.write({ type: 'text-delta', id: 't', delta: 'Hello' });
    await p.flush();
    source.fold();
    await settle();
    assert.deepEqual(read.chunks, [], 'nothing while not live');
    source.becomeLive();
    await settle();
    assert.deepEqual(read.chunks, [
      { type: 'start', messageId: 'r1' },
      { type: 'text-start', id: 't' },
      { type: 'text-delta', id: 't', delta: 'Hello' },
    ]);
  });

  it('waits for a run it has not seen yet; a run it has shown that a reload takes away ends it with an abort', async () => {
    const source = new Source();
    const read = open(source);
    await settle();
    assert.deepEqual(read.chunks, []);
    assert.equal(read.closed, false, 'a run not seen yet is waited for');
    const p = publisher(source);
    await p.start();
    source.fold();
    await settle();
    assert.deepEqual(read.chunks, [{ type: 'start', messageId: 'r1' }]);
    source.tree.reset(); // continuity lost: the new log does not have the run
    source.becomeLive();
    await settle();
    assert.deepEqual(read.chunks.slice(1), [{ type: 'abort', reason: 'continuity lost' }]);
    assert.equal(read.closed, true);
  });

  it('tail: the start, then only what the run adds from now; replay (the default): everything so far', async () => {
    const source = new Source();
    const p = publisher(source);
    p.write({ type: 'text-start', id: 't' });
    p.write({ type: 'text-delta', id: 't', delta: 'so far' });
    await p.flush();
    source.fold();
    const tail = open(source, { mode: 'tail' });
    const replay = open(source);
    p.write({ type: 'text-delta', id: 't', delta: ', and more' });
    await p.flush();
    source.fold();
    await settle();
    assert.deepEqual(tail.chunks, [
      { type: 'start', messageId: 'r1' },
      { type: 'text-delta', id: 't', delta: ', and more' },
    ]);
    assert.deepEqual(replay.chunks, [
      { type: 'start', messageId: 'r1' },
      { type: 'text-start', id: 't' },
      { type: 'text-delta', id: 't', delta: 'so far' },
      { type: 'text-delta', id: 't', delta: ', and more' },
    ]);
  });

  it('an aborted signal closes the stream and stops watching, the run going on', async () => {
    const source = new Source();
    const p = publisher(source);
    await p.start();
    source.fold();
    const aborter = new AbortController();
    const read = open(source, { signal: aborter.signal });
    await settle();
    assert.equal(source.watchers.size, 1);
    aborter.abort();
    await settle();
    assert.equal(read.closed, true);
    assert.equal(source.watchers.size, 0);
    const early = open(source, { signal: AbortSignal.abort() });
    await settle();
    assert.deepEqual(early.chunks, [], 'a signal aborted already: nothing');
    assert.equal(early.closed, true);
    assert.equal(source.watchers.size, 0);
  });
});
