// RunPublisher behaviour no other test held (found by a mutation sweep of run-publisher.ts): the
// lease (none when disabled, renewed while the run lives, never renewed after its end), the `meta`
// header of streamed parts (start / end provider metadata, citations; none when there is nothing to
// say), the toolCallId header of chunk parts, an end without a start, writes after the end, and a
// retried run set running again before anything else it sends. All against the in-memory log, with
// the test's own timers: nothing here waits on the clock.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OperationInput } from '@mooring/protocol';
import type { UIMessageChunk } from 'ai';
import { ConversationTree } from '../src/conversation-tree.ts';
import { RunChunkEmitter } from '../src/run-chunk-emitter.ts';
import type { PublisherTimers } from '../src/run-publisher.ts';
import { RunPublisher } from '../src/run-publisher.ts';
import { readMeta } from '../src/wire.ts';
import { MemoryLog } from './helpers/memory-log.ts';

function publisher(log: MemoryLog, options: Partial<ConstructorParameters<typeof RunPublisher>[0]> = {}) {
  return new RunPublisher({ sink: log, runId: 'r1', agent: 'a', input: 'i1', ...options });
}

/** Timers the test fires by hand. `canCancel: false`: clearTimeout does nothing (a late timer still runs). */
class ManualTimers implements PublisherTimers {
  readonly pending = new Map<number, { fn: () => void; ms: number }>();
  /** Every delay ever asked for, in order. */
  readonly asked: number[] = [];
  readonly canCancel: boolean;
  #next = 0;
  constructor(canCancel = true) {
    this.canCancel = canCancel;
  }
  setTimeout = (fn: () => void, ms: number): unknown => {
    const handle = ++this.#next;
    this.pending.set(handle, { fn, ms });
    this.asked.push(ms);
    return handle;
  };
  clearTimeout = (handle: unknown): void => {
    if (this.canCancel) this.pending.delete(handle as number);
  };
  now = (): number => 0;
  /** Runs every pending timer of `ms` (once each). */
  fire(ms: number): number {
    let fired = 0;
    for (const [handle, timer] of [...this.pending]) {
      if (timer.ms !== ms) continue;
      this.pending.delete(handle);
      timer.fn();
      fired++;
    }
    return fired;
  }
  delays(): number[] {
    return [...this.pending.values()].map((t) => t.ms);
  }
}

/** `n` turns of the event loop (the memory log answers within one). */
const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

const tree = (log: MemoryLog) => {
  const t = new ConversationTree();
  for (const m of log.live) t.apply(m);
  return t;
};

/** The chunk stream a client replaying the run from the channel gets. */
const replay = (log: MemoryLog): UIMessageChunk[] => {
  const t = tree(log);
  return new RunChunkEmitter().sync(t.run('r1')!, t.parts('r1'));
};

const stored = (log: MemoryLog) => () => {
  const t = tree(log);
  const run = t.run('r1');
  return run && { status: run.status, parts: t.parts('r1') };
};

/** Marks the run abandoned, as the server does when its lease runs out. */
async function abandon(log: MemoryLog): Promise<string> {
  const runSerial = log.live.find((m) => m.id === 'run:r1')!.serial;
  await log.publish([
    {
      action: 'update',
      id: `lease-expired:${runSerial}`,
      serial: runSerial,
      headers: { run: 'r1', agent: 'a', status: 'abandoned' },
    },
  ]);
  return runSerial;
}

const ops = (log: MemoryLog): OperationInput[] => log.ops.flat();

describe('RunPublisher: the lease', () => {
  it('lease: 0 takes no lease: no operation carries one, and nothing is renewed (renewLease or not)', async () => {
    const log = new MemoryLog();
    const timers = new ManualTimers();
    const p = publisher(log, { lease: 0, renewLease: true, coalesceMs: 0, timers });
    p.write({ type: 'text-start', id: 't' });
    p.write({ type: 'text-delta', id: 't', delta: 'no lease' });
    p.write({ type: 'text-end', id: 't' });
    await p.end('complete');
    assert.deepEqual(
      ops(log)
        .filter((o) => 'lease' in o)
        .map((o) => `${o.id} lease ${o.lease}`),
      [],
      'neither the create, nor the end (nor a renewal) carries a lease field',
    );
    assert.deepEqual(timers.asked, [], 'no renewal timer');
    assert.equal(tree(log).run('r1')?.status, 'complete');
  });

  it('lease: 0 on a retried run: setting an abandoned run running again carries no lease', async () => {
    const log = new MemoryLog();
    const first = publisher(log, { lease: 0, coalesceMs: 0 });
    first.write({ type: 'text-start', id: 't' });
    first.write({ type: 'text-delta', id: 't', delta: 'first' });
    await first.flush(); // …and the process dies
    await abandon(log);
    const second = publisher(log, { lease: 0, coalesceMs: 0, stored: stored(log) });
    second.write({ type: 'text-start', id: 't' });
    second.write({ type: 'text-delta', id: 't', delta: 'first' });
    await second.flush();
    await second.flush();
    const resumed = ops(log).find((o) => o.id?.startsWith('run:r1:resumed:'));
    assert.equal(resumed?.headers?.status, 'running', 'the run is set running again');
    assert.ok(!('lease' in resumed), `no lease field (got ${String(resumed.lease)})`);
    await second.end('complete');
    assert.deepEqual(
      ops(log).filter((o) => 'lease' in o),
      [],
    );
  });

  it('lease: 0 and a permanent failure: the best-effort error end carries no lease (and with a lease, releases it)', async () => {
    for (const lease of [0, 5000]) {
      const log = new MemoryLog();
      const errors: unknown[] = [];
      const p = publisher(log, { lease, coalesceMs: 0, onError: (e) => errors.push(e) });
      await p.start();
      log.failures.push(Object.assign(new Error('forbidden'), { retryable: false }));
      p.write({ type: 'data-x', data: 1 });
      await p.flush();
      await turns(20); // the error end is published on its own, not through the queue
      assert.equal(errors.length, 1);
      const end = ops(log).find((o) => o.headers?.status === 'error');
      assert.ok(end, `lease ${lease}: the run is ended error`);
      if (lease === 0) assert.ok(!('lease' in end), `lease 0: no lease field (got ${String(end.lease)})`);
      else assert.equal(end.lease, 0, 'the lease is released');
      assert.equal(tree(log).run('r1')?.status, 'error');
    }
  });

  it('renewLease: renews every lease / 3 while the run lives, and leaves no renewal timer once it ends', async () => {
    const log = new MemoryLog();
    const timers = new ManualTimers();
    const p = publisher(log, { lease: 3000, renewLease: true, coalesceMs: 0, timers });
    await p.start();
    const runSerial = log.live[0]!.serial;
    assert.deepEqual(timers.delays(), [1000], 'a renewal is due in lease / 3');
    for (let i = 0; i < 2; i++) {
      assert.equal(timers.fire(1000), 1);
      await p.flush();
      assert.deepEqual(timers.delays(), [1000], 'the next renewal is scheduled');
    }
    const renewals = ops(log).filter((o) => o.id?.startsWith('r1:run+:'));
    assert.deepEqual(
      renewals.map((o) => [o.action, o.serial, o.lease, o.headers?.status]),
      [
        ['update', runSerial, 3000, 'running'],
        ['update', runSerial, 3000, 'running'],
      ],
    );
    await p.end('complete');
    assert.deepEqual(timers.delays(), [], 'the renewal timer is cancelled: nothing holds the process');
    const last = ops(log).at(-1)!;
    assert.equal(last.id, 'run:r1:end');
    assert.equal(last.lease, 0);
    assert.equal(tree(log).run('r1')?.status, 'complete');
  });

  it('a renewal timer that fires after the end anyway (timers that cannot cancel) sends nothing', async () => {
    const log = new MemoryLog();
    const timers = new ManualTimers(false);
    const p = publisher(log, { lease: 3000, renewLease: true, coalesceMs: 0, timers });
    await p.start();
    await p.end('complete');
    const sent = ops(log).length;
    assert.equal(timers.fire(1000), 1, 'the late renewal timer runs');
    await p.flush();
    await turns(5);
    assert.equal(ops(log).length, sent, 'nothing is sent after the end');
    assert.deepEqual(timers.delays(), [], 'and nothing is scheduled again');
    assert.equal(
      tree(log).run('r1')?.status,
      'complete',
      'the run stays complete (not running, leased again)',
    );
  });
});

describe('RunPublisher: the meta header of streamed parts', () => {
  it('keeps the start metadata, the last metadata seen on a delta, and the citations; a replay gives them back', async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 0 });
    const citations = [
      {
        source: {
          type: 'source' as const,
          sourceType: 'url' as const,
          id: 's1',
          url: 'https://example.com/a',
        },
      },
    ];
    p.write({ type: 'text-start', id: 't', providerMetadata: { prov: { phase: 'start' } } });
    p.write({ type: 'text-delta', id: 't', delta: 'Hi', providerMetadata: { prov: { tokens: 1 } } });
    p.write({ type: 'text-delta', id: 't', delta: '!', providerMetadata: { prov: { tokens: 2 } } });
    p.write({ type: 'text-end', id: 't', citations }); // no providerMetadata of its own: the last delta's
    await p.end('complete');

    const create = ops(log).find((o) => o.action === 'create' && o.headers?.kind === 'text')!;
    assert.deepEqual(readMeta(create.headers!), { start: { prov: { phase: 'start' } } }, 'while streaming');
    const part = tree(log).parts('r1')[0]!;
    assert.equal(part.state, 'done');
    assert.deepEqual(readMeta(part.headers), {
      start: { prov: { phase: 'start' } },
      end: { prov: { tokens: 2 } },
      citations,
    });
    const chunks = replay(log);
    assert.deepEqual(
      chunks.find((c) => c.type === 'text-start'),
      { type: 'text-start', id: 't', providerMetadata: { prov: { phase: 'start' } } },
    );
    assert.deepEqual(
      chunks.find((c) => c.type === 'text-end'),
      { type: 'text-end', id: 't', providerMetadata: { prov: { tokens: 2 } }, citations },
    );
  });

  it('writes no meta header where there is nothing to say (text, reasoning, tool input without extras)', async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 0 });
    const chunks: UIMessageChunk[] = [
      { type: 'reasoning-start', id: 'r' },
      { type: 'reasoning-delta', id: 'r', delta: 'thinking' },
      { type: 'reasoning-end', id: 'r' },
      { type: 'text-start', id: 't' },
      { type: 'text-delta', id: 't', delta: 'plain' },
      { type: 'text-end', id: 't' },
      { type: 'tool-input-start', toolCallId: 'c', toolName: 'search' },
      { type: 'tool-input-delta', toolCallId: 'c', inputTextDelta: '{}' },
      { type: 'tool-input-available', toolCallId: 'c', toolName: 'search', input: {} },
    ];
    for (const c of chunks) p.write(c);
    await p.end('complete');
    assert.deepEqual(
      ops(log)
        .filter((o) => o.headers !== undefined && 'meta' in o.headers)
        .map((o) => `${o.id}: meta ${String(o.headers?.meta)}`),
      [],
    );
    assert.equal(
      tree(log)
        .parts('r1')
        .filter((part) => part.state === 'done').length,
      4,
    );
  });
});

describe('RunPublisher: the toolCallId header of chunk parts', () => {
  it('names the tool call of a chunk part (how a tool output finds its run)', async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 0 });
    // a provider that does not stream tool input: no tool-input part names the call
    p.write({ type: 'tool-input-available', toolCallId: 'c1', toolName: 'search', input: { q: 'x' } });
    p.write({ type: 'tool-output-available', toolCallId: 'c1', output: { hits: 1 } });
    p.write({ type: 'data-x', data: 1 });
    await p.end('complete');
    const parts = tree(log).parts('r1');
    assert.deepEqual(
      parts.map((part) => [part.headers.type, part.headers.toolCallId]),
      [
        ['tool-input-available', 'c1'],
        ['tool-output-available', 'c1'],
        ['data-x', undefined],
      ],
    );
  });

  it('gives no toolCallId header when a chunk (from an untyped agent) has one that is not a string', async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 0 });
    // a header holds strings, numbers and booleans only: an object would get the whole batch refused
    p.write({
      type: 'tool-output-available',
      toolCallId: { id: 'c1' },
      output: 1,
    } as unknown as UIMessageChunk);
    await p.end('complete');
    const part = ops(log).find((o) => o.headers?.kind === 'chunk')!;
    assert.ok(!('toolCallId' in part.headers!), `no toolCallId header (got ${JSON.stringify(part.headers)})`);
    assert.deepEqual(part.data, { type: 'tool-output-available', toolCallId: { id: 'c1' }, output: 1 });
  });
});

describe('RunPublisher: starting and ending', () => {
  it('end() without start() or any chunk creates the run and ends it', async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 0 });
    const ended = p.end('cancelled', { reason: 'stopped before the first chunk' });
    // bounded: an end waiting for a run create that was never queued would never resolve
    const done = await Promise.race([ended.then(() => true), turns(20).then(() => false)]);
    assert.ok(done, 'end() resolved');
    assert.deepEqual(
      ops(log).map((o) => [o.id, o.lease]),
      [
        ['run:r1', 30_000],
        ['run:r1:end', 0],
      ],
    );
    const run = tree(log).run('r1');
    assert.equal(run?.status, 'cancelled');
    assert.equal(run?.reason, 'stopped before the first chunk');
  });

  it('ignores chunks written after end(): nothing is stored after the run ended, its finishReason stays', async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 0 });
    p.write({ type: 'text-start', id: 't' });
    p.write({ type: 'text-delta', id: 't', delta: 'done' });
    p.write({ type: 'text-end', id: 't' });
    p.write({ type: 'finish', finishReason: 'stop' });
    await p.end('complete');
    const sent = ops(log).length;
    p.write({ type: 'data-late', data: 1 });
    p.write({ type: 'text-start', id: 'late' });
    p.write({ type: 'text-delta', id: 'late', delta: 'late' });
    p.write({ type: 'finish', finishReason: 'length' });
    p.write({ type: 'error', errorText: 'late' });
    await p.flush();
    await turns(5);
    assert.equal(ops(log).length, sent, 'nothing after the end');
    assert.equal(ops(log).at(-1)?.id, 'run:r1:end');
    assert.equal(p.finishReason, 'stop');
    assert.equal(p.streamError, undefined);
    assert.equal(tree(log).parts('r1').length, 1);
  });

  it("end()'s finishReason is taken as given, over the finish chunk's, even when empty", async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 0 });
    p.write({ type: 'finish', finishReason: 'stop' });
    await p.end('complete', { finishReason: '' });
    const end = ops(log).find((o) => o.id === 'run:r1:end')!;
    assert.equal((end.data as { finishReason?: string }).finishReason, '');
  });
});

describe('RunPublisher: a retried run', () => {
  it('sets an abandoned run running again before anything else it sends', async () => {
    const log = new MemoryLog();
    const first = publisher(log, { coalesceMs: 0 });
    first.write({ type: 'text-start', id: 't' });
    first.write({ type: 'text-delta', id: 't', delta: 'The answer' });
    await first.flush(); // …and the process dies: no end
    const runSerial = await abandon(log);
    const mark = log.live.length;

    const second = publisher(log, { coalesceMs: 0, stored: stored(log) });
    second.write({ type: 'text-start', id: 't' });
    second.write({ type: 'text-delta', id: 't', delta: 'The answer' });
    second.write({ type: 'text-delta', id: 't', delta: ' is 42.' });
    second.write({ type: 'text-end', id: 't' });
    second.write({ type: 'data-x', data: 1 });
    await second.flush();
    await second.flush(); // the update setting it running came after the first flush was asked for
    const stored2 = log.live.slice(mark);
    assert.deepEqual(
      stored2.map((m) => (m.serial === runSerial ? `run ${String(m.headers?.status)}` : `part ${m.action}`)),
      ['run running', 'part append', 'part append', 'part create'],
      'the run is running again before its parts grow (the two creates were duplicates or new)',
    );
    await second.end('complete');
    assert.equal(tree(log).run('r1')?.status, 'complete');
  });
});
