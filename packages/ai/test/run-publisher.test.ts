// The chunk → operations publisher (PROTOCOL.md §13.2), against an in-memory log: deterministic ids,
// order, coalescing within a window but never across another operation, size limits, retries.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OperationInput } from '@mooring/protocol';
import type { UIMessageChunk } from 'ai';
import { ConversationTree } from '../src/conversation-tree.ts';
import type { PublishedOperation } from '../src/operation-sink.ts';
import { buildRunMessage } from '../src/run-message.ts';
import { RunPublisher } from '../src/run-publisher.ts';
import { MemoryLog } from './helpers/memory-log.ts';
import { messageFrom, normalize } from './helpers/models.ts';

function publisher(log: MemoryLog, options: Partial<ConstructorParameters<typeof RunPublisher>[0]> = {}) {
  return new RunPublisher({ sink: log, runId: 'r1', agent: 'a', input: 'i1', ...options });
}

async function rebuilt(log: MemoryLog, messages = log.live) {
  const tree = new ConversationTree();
  for (const m of messages) tree.apply(m);
  return normalize(await buildRunMessage(tree.run('r1')!, tree.parts('r1')));
}

const CHUNKS: UIMessageChunk[] = [
  { type: 'start', messageMetadata: { model: 'm1' } },
  { type: 'start-step' },
  { type: 'text-start', id: '0' },
  { type: 'text-delta', id: '0', delta: 'Hel' },
  { type: 'text-delta', id: '0', delta: 'lo' },
  { type: 'data-note', data: { n: 1 } },
  { type: 'text-delta', id: '0', delta: ' world' },
  { type: 'text-end', id: '0', providerMetadata: { p: { x: 1 } } },
  { type: 'finish-step' },
  { type: 'start-step' },
  { type: 'text-start', id: '0' },
  { type: 'text-delta', id: '0', delta: 'Second step, same chunk id.' },
  { type: 'text-end', id: '0' },
  { type: 'finish-step' },
  { type: 'finish', finishReason: 'stop', messageMetadata: { tokens: 12 } },
];

describe('RunPublisher', () => {
  it('gives every operation a deterministic id and keeps the chunk order (coalesceMs: 0)', async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 0, lease: 1000 });
    for (const c of CHUNKS) p.write(c);
    await p.end('complete');
    const ops = log.ops.flat();
    assert.equal(ops[0]?.id, 'run:r1');
    assert.equal(ops[0]?.lease, 1000);
    assert.deepEqual(
      ops.slice(1, -1).map((o) => o.id),
      [
        'r1:p0:0', // start's metadata as a message-metadata part
        'r1:p1:0', // start-step
        'r1:p2:0', // text create
        'r1:p2:1',
        'r1:p2:2',
        'r1:p3:0', // data-note
        'r1:p2:3',
        'r1:p2:4', // text done
        'r1:p4:0',
        'r1:p5:0',
        'r1:p6:0', // the second text part: its own message although its chunk id repeats; its one
        // delta rides in it (queued behind it, unsent, in a new run); the first part's create had
        // already gone out with the run's ack, so its deltas are appends
        'r1:p6:1', // text done
        'r1:p7:0',
        'r1:p8:0', // finish's metadata
      ],
    );
    const end = ops[ops.length - 1]!;
    assert.equal(end.id, 'run:r1:end');
    assert.equal(end.lease, 0);
    assert.equal(end.headers?.status, 'complete');
    assert.deepEqual(await rebuilt(log), await messageFrom(CHUNKS, 'r1'));
  });

  it('merges deltas while a batch is in flight, but never across another operation', async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 5 });
    log.hold = true;
    void p.start();
    await new Promise((r) => setTimeout(r, 1));
    p.write({ type: 'text-start', id: 't' });
    for (const d of ['a', 'b', 'c']) p.write({ type: 'text-delta', id: 't', delta: d });
    p.write({ type: 'data-x', data: 1 });
    for (const d of ['d', 'e']) p.write({ type: 'text-delta', id: 't', delta: d });
    p.write({ type: 'text-end', id: 't' });
    const ended = p.end('complete');
    for (let i = 0; i < 10; i++) {
      log.release();
      await new Promise((r) => setTimeout(r, 10));
    }
    log.hold = false;
    log.release();
    await ended;
    // a, b, c waited behind the run's create: they ride in their part's create (a new run)
    const appends = log.ops.flat().filter((o) => o.action === 'append');
    assert.deepEqual(
      appends.map((o) => o.data),
      ['de', ''],
    );
    const kinds = log.ops
      .flat()
      .map((o) =>
        o.action === 'append'
          ? `+${o.data}`
          : o.action === 'update'
            ? 'end'
            : `${String(o.headers?.kind ?? o.name)}${typeof o.data === 'string' && o.data !== '' ? `=${o.data}` : ''}`,
      );
    assert.deepEqual(kinds, ['ai.run', 'text=abc', 'chunk', '+de', '+', 'end']);
  });

  it('keeps every operation under the size limit: long deltas split, big chunks sent as JSON text', async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 0 });
    const long = '€'.repeat(20_000) + '😀'.repeat(5_000);
    const big: UIMessageChunk = {
      type: 'data-table',
      data: { rows: Array.from({ length: 5000 }, (_, i) => ({ i, v: `value ${i}` })) },
    };
    const chunks: UIMessageChunk[] = [
      { type: 'text-start', id: 't' },
      { type: 'text-delta', id: 't', delta: long },
      { type: 'text-end', id: 't' },
      big,
    ];
    for (const c of chunks) p.write(c);
    await p.end('complete');
    for (const op of log.ops.flat())
      assert.ok(Buffer.byteLength(JSON.stringify(op)) < 64 * 1024, `op ${op.id} too large`); // the server counts bytes
    assert.ok(log.ops.flat().some((o) => o.headers?.format === 'json-text'));
    assert.deepEqual(await rebuilt(log), await messageFrom(chunks, 'r1'));
  });

  it('retries a retryable failure with the same ids (stored once), and stops on a permanent one', async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 0 });
    log.failures.push(Object.assign(new Error('rate limited'), { retryable: true }));
    p.write({ type: 'text-start', id: 't' });
    p.write({ type: 'text-delta', id: 't', delta: 'once' });
    await p.end('complete');
    assert.equal(log.live.filter((m) => m.id === 'run:r1').length, 1);
    assert.equal((await rebuilt(log)).parts.length, 1);

    const broken = new MemoryLog();
    const errors: unknown[] = [];
    const q = publisher(broken, { onError: (e) => errors.push(e) });
    await q.start();
    broken.failures.push(Object.assign(new Error('not_owner'), { retryable: false }));
    q.write({ type: 'data-x', data: 1 });
    await q.flush();
    assert.equal(errors.length, 1);
    await new Promise((r) => setTimeout(r, 10));
    const runMessage = broken.rolledUp().find((m) => m.name === 'ai.run');
    assert.equal(runMessage?.headers?.status, 'error', 'the run is ended, not left streaming');
  });

  it('folds to the same message from live operations and from a rolled-up catch-up in version order', async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 0 });
    const chunks: UIMessageChunk[] = [
      { type: 'text-start', id: 'a' },
      { type: 'tool-input-start', toolCallId: 'c', toolName: 'search' },
      { type: 'tool-input-delta', toolCallId: 'c', inputTextDelta: '{"q":"x"}' },
      { type: 'tool-input-available', toolCallId: 'c', toolName: 'search', input: { q: 'x' } },
      { type: 'text-delta', id: 'a', delta: 'text that grows after the tool part' },
      { type: 'text-end', id: 'a' },
    ];
    for (const c of chunks) p.write(c);
    await p.end('complete');
    const rolled = log.rolledUp();
    // The text part changed last, so a catch-up delivers it after the tool part and the run last.
    assert.deepEqual(
      rolled.map((m) => m.headers?.kind ?? m.name),
      ['tool-input', 'chunk', 'text', 'ai.run'],
    );
    const expected = await messageFrom(chunks, 'r1');
    assert.deepEqual(await rebuilt(log, rolled), expected);
    assert.deepEqual(await rebuilt(log), expected);
  });

  describe('a retried run (same run id, a new process)', () => {
    const stored = (log: MemoryLog) => () => {
      const tree = new ConversationTree();
      for (const m of log.live) tree.apply(m);
      const run = tree.run('r1');
      return run && { status: run.status, parts: tree.parts('r1') };
    };
    const text = async (log: MemoryLog) =>
      (await rebuilt(log)).parts.map((p) => ('text' in p ? p.text : '')).join('|');

    it('appends nothing twice, whatever the coalescing of either attempt', async () => {
      const log = new MemoryLog();
      const first = publisher(log, { coalesceMs: 0 });
      first.write({ type: 'text-start', id: 't' });
      for (const d of ['Hel', 'lo', ' wor']) first.write({ type: 'text-delta', id: 't', delta: d });
      await first.flush(); // …and the process dies: no end

      const second = publisher(log, { coalesceMs: 5, stored: stored(log) });
      log.hold = true;
      second.write({ type: 'text-start', id: 't' });
      for (const d of ['Hel', 'lo', ' wor', 'ld', '!'])
        second.write({ type: 'text-delta', id: 't', delta: d });
      second.write({ type: 'text-end', id: 't' });
      const ended = second.end('complete');
      for (let i = 0; i < 5; i++) {
        log.release();
        await new Promise((r) => setTimeout(r, 10));
      }
      log.hold = false;
      log.release();
      await ended;
      assert.equal(await text(log), 'Hello world!');
      const tree = new ConversationTree();
      for (const m of log.live) tree.apply(m);
      assert.equal(tree.run('r1')?.status, 'complete');
      assert.equal(tree.parts('r1')[0]?.state, 'done');
    });

    it('replaces a part whose text diverges, and runs again after being abandoned', async () => {
      const log = new MemoryLog();
      const first = publisher(log, { coalesceMs: 0 });
      first.write({ type: 'text-start', id: 't' });
      first.write({ type: 'text-delta', id: 't', delta: 'The answer is 41' });
      await first.flush();
      const runSerial = log.live[0]!.serial;
      await log.publish([
        {
          action: 'update',
          id: `lease-expired:${runSerial}`,
          serial: runSerial,
          headers: { run: 'r1', agent: 'a', status: 'abandoned' },
        },
      ]);

      const second = publisher(log, { coalesceMs: 0, stored: stored(log) });
      second.write({ type: 'text-start', id: 't' });
      for (const d of ['The answer ', 'is 42.']) second.write({ type: 'text-delta', id: 't', delta: d });
      second.write({ type: 'text-end', id: 't' });
      await second.flush();
      const statuses = log.live.filter((m) => m.serial === runSerial).map((m) => m.headers?.status);
      assert.deepEqual(statuses, ['running', 'abandoned', 'running']);
      await second.end('complete');
      assert.equal(await text(log), 'The answer is 42.');
    });

    it('without knowing what was stored, replaces each part with the new attempt', async () => {
      const log = new MemoryLog();
      const first = publisher(log, { coalesceMs: 0 });
      first.write({ type: 'text-start', id: 't' });
      first.write({ type: 'text-delta', id: 't', delta: 'partial, from the first attempt' });
      await first.flush();
      const second = publisher(log, { coalesceMs: 0 });
      second.write({ type: 'text-start', id: 't' });
      second.write({ type: 'text-delta', id: 't', delta: 'complete, from the second' });
      second.write({ type: 'text-end', id: 't' });
      await second.end('complete');
      assert.equal(await text(log), 'complete, from the second');
    });

    // The soak with Redis kills: each attempt after a restart could not read what was stored (its
    // tree held the run under the old epoch's serial) and replaced the part under the same ids as the
    // attempt before it (`@0:0`, `@0:1`, …): its update and appends came back duplicates of the
    // earlier attempt's, and the text held pieces of both.
    it('two attempts in a row that cannot read what was stored: the last one replaces the part, its ids are not the one before it', async () => {
      const log = new MemoryLog();
      const first = publisher(log, { coalesceMs: 0 });
      first.write({ type: 'text-start', id: 't' });
      first.write({ type: 'text-delta', id: 't', delta: 'one, ' });
      await first.flush(); // …and it dies
      const unknown = async () => undefined;
      const second = publisher(log, { coalesceMs: 0, stored: unknown });
      second.write({ type: 'text-start', id: 't' });
      for (const d of ['one, ', 'two, ', 'thr']) second.write({ type: 'text-delta', id: 't', delta: d });
      await second.flush(); // …and it dies too
      const third = publisher(log, { coalesceMs: 0, stored: unknown });
      third.write({ type: 'text-start', id: 't' });
      for (const d of ['one, ', 'two! ', 'three.']) third.write({ type: 'text-delta', id: 't', delta: d });
      third.write({ type: 'text-end', id: 't' });
      await third.end('complete');
      assert.equal(await text(log), 'one, two! three.');
    });

    it("a resumed run's lease renewals are its own: none is taken for one of the crashed attempt's", async () => {
      const log = new MemoryLog();
      const renewalsOf = (ops: OperationInput[]) =>
        ops.filter((o) => o.lease === 300 && o.action === 'update');
      const first = publisher(log, { coalesceMs: 0, lease: 300, renewLease: true });
      first.write({ type: 'text-start', id: 't' });
      await first.flush();
      await new Promise((r) => setTimeout(r, 450)); // a renewal every 100 ms
      await first.end('error'); // (here it ends: a crashed one's timers die with it)
      const before = log.ops.flat().length;
      const ids = new Set(renewalsOf(log.ops.flat()).map((o) => o.id));
      assert.ok(ids.size >= 2, 'the first attempt renewed its lease');
      const second = publisher(log, { coalesceMs: 0, lease: 300, renewLease: true, stored: stored(log) });
      second.write({ type: 'text-start', id: 't' });
      await second.flush();
      await new Promise((r) => setTimeout(r, 450));
      await second.end('complete');
      const again = renewalsOf(log.ops.flat().slice(before));
      assert.ok(again.length >= 2, 'the second attempt renewed its lease');
      assert.deepEqual(
        again.filter((o) => ids.has(o.id)).map((o) => o.id),
        [],
        "a renewal under the crashed attempt's id would be a duplicate: no renewal",
      );
    });
  });
});

describe("RunPublisher: the first tokens ride in their part's create", () => {
  const text = async (log: MemoryLog) =>
    (await rebuilt(log)).parts.map((p) => ('text' in p ? p.text : '')).join('|');
  const stored = (log: MemoryLog) => async () => {
    const tree = new ConversationTree();
    for (const m of log.live) tree.apply(m);
    const run = tree.run('r1');
    return run && { status: run.status, parts: tree.parts('r1') };
  };
  const settle = async (log: MemoryLog) => {
    for (let i = 0; i < 5; i++) {
      log.release();
      await new Promise((r) => setTimeout(r, 10));
    }
    log.hold = false;
    log.release();
  };

  it('in a new run, deltas written before their part was sent go with its create, not after its ack', async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 40 });
    log.hold = true; // the run's create is in flight
    void p.start();
    await new Promise((r) => setTimeout(r, 1));
    p.write({ type: 'text-start', id: 't' });
    p.write({ type: 'text-delta', id: 't', delta: 'Hel' });
    p.write({ type: 'text-delta', id: 't', delta: 'lo' });
    log.release(); // the run's create is acknowledged: a new run
    await new Promise((r) => setTimeout(r, 5));
    p.write({ type: 'text-delta', id: 't', delta: ' there' }); // the part's create is still held
    p.write({ type: 'text-end', id: 't' });
    const ended = p.end('complete');
    await settle(log);
    await ended;
    const ops = log.ops.flat();
    const create = ops.find((o) => o.action === 'create' && o.headers?.kind === 'text');
    assert.equal(create?.data, 'Hello', 'the first tokens were sent with the part');
    assert.deepEqual(
      ops.filter((o) => o.action === 'append').map((o) => o.data),
      [' there', ''],
      'a token written after the create was sent is an append',
    );
    assert.equal(await text(log), 'Hello there');
    assert.equal(new Set(ops.map((o) => o.id)).size, ops.length, 'every operation once');
  });

  it('a retried run never folds (its appends are compared with what the first attempt stored), and stores nothing twice', async () => {
    const log = new MemoryLog();
    const first = publisher(log, { coalesceMs: 40 });
    log.hold = true;
    void first.start();
    await new Promise((r) => setTimeout(r, 1));
    first.write({ type: 'text-start', id: 't' });
    for (const d of ['Hel', 'lo', ' wor']) first.write({ type: 'text-delta', id: 't', delta: d });
    await settle(log);
    await first.flush(); // …and the process dies: no end
    assert.equal(
      log.ops.flat().find((o) => o.headers?.kind === 'text')?.data,
      'Hello wor',
      'the first attempt folded its tokens into the create',
    );

    const second = publisher(log, { coalesceMs: 40, stored: stored(log) });
    log.hold = true;
    void second.start();
    await new Promise((r) => setTimeout(r, 1));
    second.write({ type: 'text-start', id: 't' });
    for (const d of ['Hel', 'lo', ' wor', 'ld', '!']) second.write({ type: 'text-delta', id: 't', delta: d });
    second.write({ type: 'text-end', id: 't' });
    const ended = second.end('complete');
    await settle(log);
    await ended;
    assert.equal(await text(log), 'Hello world!');
    const tree = new ConversationTree();
    for (const m of log.live) tree.apply(m);
    assert.equal(tree.run('r1')?.status, 'complete');
    assert.equal(tree.parts('r1').length, 1);
  });

  it("with coalesceMs: 0 every delta stays its own operation: the first rides in its part's create alone", async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 0 });
    log.hold = true;
    void p.start();
    await new Promise((r) => setTimeout(r, 1));
    p.write({ type: 'text-start', id: 't' });
    p.write({ type: 'text-delta', id: 't', delta: 'a' });
    p.write({ type: 'text-delta', id: 't', delta: 'b' });
    p.write({ type: 'text-end', id: 't' });
    const ended = p.end('complete');
    await settle(log);
    await ended;
    const ops = log.ops.flat();
    assert.equal(ops.find((o) => o.headers?.kind === 'text')?.data, 'a');
    assert.deepEqual(
      ops.filter((o) => o.action === 'append').map((o) => o.data),
      ['b', ''],
    );
    assert.equal(await text(log), 'ab');
  });

  it("with coalesceMs: 0 a first token written with its part (the run already stored) skips the wait for the part's ack", async () => {
    const log = new MemoryLog();
    const p = publisher(log, { coalesceMs: 0 });
    await p.start(); // the run's create is acknowledged: a new run
    p.write({ type: 'text-start', id: 't' });
    p.write({ type: 'text-delta', id: 't', delta: 'Hi' }); // same turn: the part's create is not sent yet
    await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(
      log.ops.map((batch) => batch.map((o) => `${o.action}:${o.data}`)),
      [[`create:${log.ops[0]![0]!.data}`], ['create:Hi']],
      'the first token went with its part: no append waited for the part to be acknowledged',
    );
    p.write({ type: 'text-delta', id: 't', delta: ' there' }); // the create is sent: an append
    p.write({ type: 'text-end', id: 't' });
    const ended = p.end('complete');
    await settle(log);
    await ended;
    assert.deepEqual(
      log.ops
        .flat()
        .filter((o) => o.action === 'append')
        .map((o) => o.data),
      [' there', ''],
    );
    assert.equal(await text(log), 'Hi there');
  });
});

describe('RunPublisher: a create that was sent never changes', () => {
  it('a delta written while a sent create waits to be resent (its ack was lost) is appended, not folded into it', async () => {
    /** Stores the batch holding the text part's create, then reports a retryable failure once. */
    class LostAck extends MemoryLog {
      lost = false;
      override async publish(ops: OperationInput[]): Promise<PublishedOperation[]> {
        const results = await super.publish(ops);
        if (!this.lost && ops.some((o) => o.headers?.kind === 'text')) {
          this.lost = true;
          throw Object.assign(new Error('connection lost before the ack'), { retryable: true });
        }
        return results;
      }
    }
    const log = new LostAck();
    const p = publisher(log, { coalesceMs: 40 });
    await p.start(); // a new run: folding is on
    p.write({ type: 'text-start', id: 't' });
    while (!log.lost) await new Promise((r) => setTimeout(r, 1));
    await new Promise((r) => setTimeout(r, 5)); // the create is queued again, waiting for its retry
    p.write({ type: 'text-delta', id: 't', delta: 'Hi' });
    p.write({ type: 'text-end', id: 't' });
    await p.end('complete');
    assert.equal(await text(log), 'Hi', 'the delta is not lost in a resent (duplicate) create');
  });
});

const text = async (log: MemoryLog) =>
  (await rebuilt(log)).parts.map((p) => ('text' in p ? p.text : '')).join('|');
