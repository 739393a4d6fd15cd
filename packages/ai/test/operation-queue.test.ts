// OperationQueue pipelining (operation-queue.ts): with a sink that keeps order (`window` > 1), plain
// deltas go out while earlier batches are in flight; structural operations go alone; after a
// retryable failure the text is whole and in order, whatever was stored around it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Channel } from '@mooring/client';
import { MooringError } from '@mooring/client';
import type { OperationInput } from '@mooring/protocol';
import { within } from '@mooring/testkit';
import { MAX_APPEND_CHARS, OperationQueue, splitText } from '../src/operation-queue.ts';
import { channelSink, type OperationSink, type PublishedOperation } from '../src/operation-sink.ts';
import { MemoryLog } from './helpers/memory-log.ts';

/** A sink whose publishes the test settles one by one; stored in the log only when acked. */
class ControlledSink implements OperationSink {
  readonly maxOpsPerPublish = 100;
  readonly window: number;
  readonly log = new MemoryLog();
  readonly flights: Array<{
    ops: OperationInput[];
    /** The batch's precondition: the op id it must be stored behind. */
    after: string | undefined;
    ack(): Promise<void>;
    fail(error: unknown): void;
    /** Stores the batch, then fails it: its answer was lost (e.g. the connection was suspended). */
    storeThenFail(error: unknown): Promise<void>;
  }> = [];
  inFlight = 0;
  maxInFlight = 0;
  /** In-flight count seen when each batch holding something other than plain deltas went out. */
  structuralSentWith: number[] = [];
  /** Batches sent while one holding something other than plain deltas was in flight (must stay 0). */
  sentBesideStructural = 0;
  #structuralInFlight = 0;

  constructor(window: number) {
    this.window = window;
  }

  /** A failure is a refusal (nothing of the batch stored) when the test says so. */
  refused(error: unknown): boolean {
    return (error as { refused?: unknown }).refused === true;
  }

  publish(ops: OperationInput[], after?: string): Promise<PublishedOperation[]> {
    const structural = ops.some((op) => op.action !== 'append' || op.headers !== undefined);
    if (structural) this.structuralSentWith.push(this.inFlight);
    if (this.#structuralInFlight > 0) this.sentBesideStructural++;
    if (structural) this.#structuralInFlight++;
    const landed = () => {
      this.inFlight--;
      if (structural) this.#structuralInFlight--;
    };
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise((resolve, reject) => {
      this.flights.push({
        ops,
        after,
        // the log checks the precondition as the server does: refused `out_of_order` when not met
        ack: async () => {
          landed();
          try {
            resolve(await this.log.publish(ops, after));
          } catch (error) {
            reject(error);
          }
        },
        fail: (error) => {
          landed();
          reject(error);
        },
        storeThenFail: async (error) => {
          landed();
          await this.log.publish(ops, after).catch(() => {}); // not stored when its precondition fails
          reject(error);
        },
      });
    });
  }
}

const timers = () => {
  const due: Array<() => void> = [];
  return {
    due,
    // a coalescing wait (0 here) runs on the next turn; a retry's backoff when the test says
    setTimeout: (fn: () => void, ms: number) => {
      if (ms === 0) setImmediate(fn);
      else due.push(fn);
      return fn;
    },
    clearTimeout: () => {},
  };
};

const tick = () => new Promise((resolve) => setImmediate(resolve));

/**
 * `queue.flush()`, bounded: a queue that never stores all it was given (a repair that went wrong)
 * fails its test with a reason instead of holding it until the runner's timeout.
 */
const flushed = (queue: OperationQueue) =>
  within(queue.flush(), {
    timeout: 10_000,
    message: 'flush() never returned: the queue did not store all it was given',
  });

function queueOn(sink: ControlledSink, t = timers(), coalesceMs = 0) {
  return new OperationQueue({
    sink,
    runId: 'r',
    coalesceMs,
    timers: t,
    onCreated: () => {},
    onFailed: (error) => assert.fail(`failed: ${String(error)}`),
  });
}

// A long window (the timers are the test's): a slow machine cannot make a delta look "quiet".
const windowed = (sink: ControlledSink, t = timers()) => queueOn(sink, t, 60_000);

/** The part's text as a catch-up would deliver it. */
const textOf = (log: MemoryLog) => log.rolledUp().find((m) => m.name === 'part')?.data;

/** Creates part 't' and acknowledges its create, so that its deltas go out as appends. */
async function createPart(sink: ControlledSink, queue: OperationQueue): Promise<void> {
  queue.create('t', { name: 'part', id: queue.nextId('t'), data: '' });
  await tick();
  await sink.flights.shift()!.ack();
}

/** A queue on a sink that holds up to 4 batches in flight, its part 't' created and acknowledged. */
async function partInFlightWindow() {
  const sink = new ControlledSink(4);
  const t = timers();
  const queue = queueOn(sink, t);
  await createPart(sink, queue);
  return { sink, t, queue };
}

/** Acknowledges everything in flight, waits for the queue to drain, and checks the text stored. */
async function settlesAs(sink: ControlledSink, queue: OperationQueue, text: string): Promise<void> {
  await ackAll(sink);
  await flushed(queue);
  assert.equal(textOf(sink.log), text);
}

/** An attempt of run 'r' publishing to `log`, uncoalesced (a retried run starts one per attempt). */
const attempt = (log: MemoryLog) =>
  new OperationQueue({
    sink: log,
    runId: 'r',
    coalesceMs: 0,
    timers: timers(),
    onCreated: () => {},
    onFailed: (error) => assert.fail(`failed: ${String(error)}`),
  });

/** A first attempt that stored part 't' with `text`. */
async function stored(log: MemoryLog, text: string): Promise<void> {
  const earlier = attempt(log);
  earlier.create('t', { name: 'part', id: earlier.nextId('t'), data: '' });
  earlier.delta('t', text);
  await flushed(earlier);
}

/** The operations published to `log` since it held `before` publishes, creates left out. */
const sentSince = (log: MemoryLog, before: number): OperationInput[] =>
  log.ops
    .slice(before)
    .flat()
    .filter((op) => (op.action ?? 'create') !== 'create');

/**
 * A second attempt of a run whose first stored `first` of part 't': it creates 't' again, writes
 * `deltas` while paused, and resumes knowing what the first stored. Returns what it sent, creates
 * left out.
 */
async function resumeAfter(
  log: MemoryLog,
  first: string,
  deltas: readonly string[],
): Promise<OperationInput[]> {
  await stored(log, first);
  const queue = attempt(log);
  queue.pause();
  queue.create('t', { name: 'part', id: queue.nextId('t'), data: '' });
  for (const delta of deltas) queue.delta('t', delta);
  const before = log.ops.length;
  queue.resume(new Map([['t', { text: first, done: false }]]));
  await flushed(queue);
  return sentSince(log, before);
}

/** Writes each delta of part 't' on its own turn, as from a model. */
async function write(queue: OperationQueue, deltas: readonly string[]): Promise<void> {
  for (const delta of deltas) {
    queue.delta('t', delta);
    await tick();
  }
}

/** Acknowledges every batch in flight, and those sent meanwhile, in order; returns what they held. */
async function ackAll(sink: ControlledSink): Promise<OperationInput[]> {
  const sent: OperationInput[] = [];
  while (sink.flights.length > 0) {
    const flight = sink.flights.shift()!;
    sent.push(...flight.ops);
    await flight.ack();
    await tick();
  }
  return sent;
}

it("never puts more than the sink's maxOpsPerPublish operations in one publish", async () => {
  const sink = new ControlledSink(1);
  (sink as { maxOpsPerPublish: number }).maxOpsPerPublish = 3;
  const queue = queueOn(sink);
  // ten creates queued in one task: they leave in batches of at most three, one after another
  for (let i = 0; i < 10; i++) queue.create(`p${i}`, { name: 'part', id: queue.nextId(`p${i}`), data: '' });
  await tick();
  const sizes: number[] = [];
  while (sink.flights.length > 0) {
    const flight = sink.flights.shift()!;
    sizes.push(flight.ops.length);
    await flight.ack();
    await tick();
  }
  assert.deepEqual(sizes, [3, 3, 3, 1]);
  await flushed(queue);
});

describe('OperationQueue pipelining', () => {
  it('sends plain deltas while earlier batches are in flight, up to the window, in order', async () => {
    const sink = new ControlledSink(4);
    const queue = queueOn(sink);
    await createPart(sink, queue);
    await tick();
    const words = Array.from({ length: 12 }, (_, i) => `w${i} `);
    for (const w of words) {
      queue.delta('t', w);
      await tick(); // each token on its own turn, as from a model
    }
    // one batch per token while the window has room: no token waited for the previous ack
    assert.equal(sink.inFlight, 4);
    assert.equal(sink.maxInFlight, 4);
    await ackAll(sink);
    await flushed(queue);
    assert.equal(textOf(sink.log), words.join(''));
    assert.equal(sink.log.live.length, new Set(sink.log.live.map((m) => m.id)).size, 'each op once');
  });

  it('sends a structural operation alone, and holds the next batches until its ack', async () => {
    const sink = new ControlledSink(4);
    const queue = queueOn(sink);
    await createPart(sink, queue);
    queue.delta('t', 'a');
    await tick();
    queue.delta('t', 'b');
    await tick();
    queue.append('t', '', { state: 'done' }); // marks the part done: structural
    queue.delta('t', 'c');
    await tick();
    assert.equal(sink.flights.length, 2, 'the structural batch waits for the window to empty');
    for (let i = 0; i < 4 && sink.flights.length > 0; i++) {
      await sink.flights.shift()!.ack();
      await tick();
    }
    await flushed(queue);
    assert.deepEqual(sink.structuralSentWith, [0, 0]);
    assert.equal(sink.sentBesideStructural, 0, "'c' waited for the structural batch's ack");
    assert.equal(textOf(sink.log), 'abc');
  });

  it('holds a delta written while an append with headers (structural) is in flight until its ack', async () => {
    const sink = new ControlledSink(4);
    const queue = queueOn(sink);
    await createPart(sink, queue);
    queue.append('t', 'a', { note: 'checkpoint' }); // headers: structural, goes alone
    await tick();
    assert.equal(sink.flights.length, 1);
    queue.delta('t', 'b');
    await tick();
    assert.equal(sink.flights.length, 1, "'b' waits for the structural batch's ack");
    assert.equal(sink.sentBesideStructural, 0);
    await settlesAs(sink, queue, 'ab');
  });

  it('names the last operation in flight as the precondition of each batch sent beside it', async () => {
    const sink = new ControlledSink(4);
    const queue = queueOn(sink);
    await createPart(sink, queue);
    await write(queue, ['a', 'b', 'c']);
    assert.deepEqual(
      sink.flights.map((f) => f.after),
      [undefined, sink.flights[0]!.ops.at(-1)!.id, sink.flights[1]!.ops.at(-1)!.id],
    );
    await ackAll(sink);
    await write(queue, ['d']); // nothing in flight: nothing to follow
    assert.equal(sink.flights[0]!.after, undefined);
    await settlesAs(sink, queue, 'abcd');
  });

  it('a batch refused for a moment is not overtaken: the next, refused out_of_order, is resent behind it', async () => {
    // 'b' refused (the store down a moment, a rate); 'c', in flight behind it, reaches the store
    // once it is back — and is refused too, so both are resent in order: readers see a, b, c
    // appended, never "ac" then a repair.
    const { sink, t, queue } = await partInFlightWindow();
    await write(queue, ['a', 'b', 'c']);
    const ids = sink.flights.slice(1).flatMap((f) => f.ops.map((op) => op.id));
    await sink.flights[0]!.ack();
    sink.flights[1]!.fail(Object.assign(new Error('store unavailable'), { retryable: true, refused: true }));
    await sink.flights[2]!.ack(); // the store is back: refused, 'b' is not stored
    sink.flights.splice(0, 3);
    await tick();
    assert.equal(textOf(sink.log), 'a');
    t.due.shift()!(); // the retry after its backoff
    await tick();
    const sent = await ackAll(sink);
    await flushed(queue);
    assert.deepEqual(
      sent.map((op) => op.id),
      ids,
      'resent in order with the same ids',
    );
    assert.equal(textOf(sink.log), 'abc');
    assert.deepEqual(
      sink.log.live.filter((m) => m.action !== 'create').map((m) => `${m.action} ${m.data}`),
      ['append a', 'append b', 'append c'],
    );
  });

  it('after a batch whose answer was lost and a later one stored, the part ends whole and in order', async () => {
    const { sink, t, queue } = await partInFlightWindow();
    await write(queue, ['a', 'b', 'c']);
    assert.equal(sink.flights.length, 3);
    const b = sink.flights[1]!.ops;
    await sink.flights[0]!.ack(); // 'a' stored
    // 'b' stored, its answer lost: the queue cannot tell it from a refusal
    await sink.flights[1]!.storeThenFail(Object.assign(new Error('suspended'), { retryable: true }));
    await sink.flights[2]!.ack(); // 'c' stored behind it
    sink.flights.splice(0, 3);
    await tick();
    assert.equal(textOf(sink.log), 'abc');
    queue.delta('t', 'd');
    t.due.shift()!(); // the retry after its backoff
    await tick();
    await settlesAs(sink, queue, 'abcd');
    // a copy of 'b' still on its way (sent on a transport that died) lands late: a duplicate now
    await sink.log.publish(b);
    assert.equal(textOf(sink.log), 'abcd');
  });

  it('after a retryable failure of every batch in flight, resends them in order with the same ids', async () => {
    const { sink, t, queue } = await partInFlightWindow();
    await write(queue, ['a', 'b', 'c']);
    const ids = sink.flights.flatMap((f) => f.ops.map((op) => op.id));
    for (const f of sink.flights.splice(0)) f.fail(Object.assign(new Error('gone'), { retryable: true }));
    await tick();
    t.due.shift()!();
    await tick();
    const resent = sink.flights.flatMap((f) => f.ops.map((op) => op.id));
    assert.deepEqual(resent, ids);
    await settlesAs(sink, queue, 'abc');
  });

  it('backs off longer after each failure in a row (100 ms doubling, at most 5 s), and from 100 ms after a success', async () => {
    const sink = new ControlledSink(1);
    const t = timers();
    const delays: number[] = [];
    const queue = queueOn(sink, {
      ...t,
      setTimeout: (fn: () => void, ms: number) => {
        if (ms > 0) delays.push(ms);
        return t.setTimeout(fn, ms);
      },
    });
    await createPart(sink, queue);
    await write(queue, ['a']);
    for (let i = 0; i < 8; i++) {
      sink.flights.shift()!.fail(Object.assign(new Error('rate limited'), { retryable: true }));
      await tick();
      t.due.shift()!(); // the backoff ends: 'a' again
      await tick();
    }
    assert.deepEqual(delays, [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
    await sink.flights.shift()!.ack();
    await tick();
    await write(queue, ['b']);
    sink.flights.shift()!.fail(Object.assign(new Error('rate limited'), { retryable: true }));
    await tick();
    assert.equal(delays.at(-1), 100, 'a stored batch starts the backoff over');
    t.due.shift()!();
    await tick();
    await settlesAs(sink, queue, 'ab');
  });

  it('a retry whose backoff ends while a structural batch is in flight waits for its ack', async () => {
    // The backoff's timer calls the send directly: the window is checked there too, or the resent
    // delta would go out beside a batch that must be alone in flight.
    const { sink, t, queue } = await partInFlightWindow();
    await write(queue, ['a']);
    sink.flights.shift()!.fail(Object.assign(new Error('rate limited'), { retryable: true }));
    await tick();
    assert.equal(t.due.length, 1, 'the retry waits for its backoff');
    // meanwhile a new part is created: 'a' (back at the head of the queue) goes with it, alone
    queue.create('u', { name: 'part', id: queue.nextId('u'), data: '' });
    await tick();
    assert.equal(sink.flights.length, 1);
    queue.delta('t', 'b');
    await tick();
    t.due.shift()!(); // the backoff ends with the structural batch still in flight
    await tick();
    assert.equal(sink.flights.length, 1, "'b' waits for the structural batch's ack");
    assert.deepEqual(sink.structuralSentWith, [0, 0]);
    await ackAll(sink);
    await flushed(queue);
    const parts = sink.log.rolledUp().filter((m) => m.name === 'part');
    assert.deepEqual(parts.map((m) => m.data).sort(), ['', 'ab']);
  });
  it('after a refused batch and a later one whose answer was lost, resends both in order', async () => {
    // 'b' is refused (nothing stored); 'c', sent behind it, lost its answer (both reported failed).
    // 'c' cannot have been stored (its precondition: 'b'), so both are resent with their ids.
    const { sink, t, queue } = await partInFlightWindow();
    await write(queue, ['a', 'b', 'c']);
    assert.equal(sink.flights.length, 3);
    await sink.flights[0]!.ack();
    sink.flights[1]!.fail(Object.assign(new Error('rate limited'), { retryable: true, refused: true }));
    await sink.flights[2]!.storeThenFail(Object.assign(new Error('suspended'), { retryable: true }));
    sink.flights.splice(0, 3);
    await tick();
    assert.equal(textOf(sink.log), 'a');
    t.due.shift()!(); // the retry after its backoff
    await tick();
    const sent = await ackAll(sink);
    await flushed(queue);
    assert.equal(textOf(sink.log), 'abc');
    // appended in order, no replacement needed (readers see a, b, c)
    assert.deepEqual(
      sent.map((op) => `${op.action} ${op.data}`),
      ['append b', 'append c'],
    );
  });

  it('replaces a part whose appends the acks show stored out of order, whatever the cause', async () => {
    // 'b' refused on a connection that then died (the refusal never arrived), 'c' stored on it; 'b'
    // resent on the next one lands behind 'c', and 'c' resent comes back a duplicate below it.
    const sink = new ControlledSink(4);
    const queue = queueOn(sink);
    await createPart(sink, queue);
    await write(queue, ['a', 'b', 'c', 'd']);
    assert.equal(sink.flights.length, 4);
    await sink.flights[0]!.ack();
    await sink.log.publish(sink.flights[2]!.ops); // 'c' stored first
    await sink.flights[1]!.ack(); // 'b' stored behind it
    await sink.flights[2]!.ack(); // 'c' again: a duplicate, at the serial below 'b'
    await tick();
    assert.equal(textOf(sink.log), 'acb');
    queue.delta('t', 'e'); // written while 'd' is in flight: queued behind the repair
    await tick();
    assert.equal(sink.flights.length, 4, 'the repair waits for the batch in flight');
    await sink.flights[3]!.ack();
    sink.flights.splice(0, 4);
    await tick();
    let done = false;
    const flushing = queue.flush().then(() => {
      done = true;
    });
    await tick();
    assert.equal(done, false, 'flush() waits for the repair (and what is behind it) to be stored');
    const sent = await ackAll(sink);
    await flushing;
    await flushed(queue);
    assert.equal(sent[0]?.action, 'update', 'the repair goes first');
    assert.equal(sent[0]?.data, 'abcd', 'with the text sent so far, not the delta queued behind it');
    assert.equal(textOf(sink.log), 'abcde');
  });

  it('after failures that are all refusals, resends the batches in order with the same ids', async () => {
    const { sink, t, queue } = await partInFlightWindow();
    await write(queue, ['a', 'b', 'c']);
    const ids = sink.flights.flatMap((f) => f.ops.map((op) => op.id));
    for (const f of sink.flights.splice(0))
      f.fail(Object.assign(new Error('rate limited'), { retryable: true, refused: true }));
    await tick();
    t.due.shift()!();
    await tick();
    assert.deepEqual(
      sink.flights.flatMap((f) => f.ops.map((op) => op.id)),
      ids,
    );
    await settlesAs(sink, queue, 'abc');
  });
});

describe('OperationQueue replacing a long part', () => {
  /** Every operation's data fits one operation (the server refuses one above maxOperationSize). */
  const assertOpsFit = (ops: OperationInput[]) => {
    for (const op of ops)
      assert.ok(
        typeof op.data !== 'string' || op.data.length <= MAX_APPEND_CHARS,
        `${op.action} ${op.id} carries ${String(op.data).length} chars`,
      );
  };

  it('repairs a part longer than one operation with an update and appends, in order', async () => {
    const { sink, t, queue } = await partInFlightWindow();
    const words = ['a', 'b', 'c'].map((c) => c.repeat(6_000));
    await write(queue, words);
    assert.equal(sink.flights.length, 3);
    await sink.flights[0]!.ack();
    await sink.flights[1]!.storeThenFail(Object.assign(new Error('suspended'), { retryable: true }));
    await sink.flights[2]!.ack(); // stored after one whose answer was lost: repaired with the whole text
    sink.flights.splice(0, 3);
    await tick();
    t.due.shift()!();
    await tick();
    const sent = await ackAll(sink);
    await flushed(queue);
    assert.deepEqual(
      sent.map((op) => op.action),
      ['append', 'update', 'append', 'append'],
      "the unanswered append's id again (empty), then the text as an update and appends",
    );
    assertOpsFit(sent);
    assert.equal(textOf(sink.log), words.join(''));
  });

  it('replaces a diverging resumed part longer than one operation with an update and appends', async () => {
    const log = new MemoryLog();
    const text = 'x'.repeat(2 * MAX_APPEND_CHARS) + 'y'.repeat(3_000);
    const sent = await resumeAfter(log, `${text.slice(0, 2 * MAX_APPEND_CHARS)}DIVERGED`, [text]);
    assert.ok(
      sent.some((op) => op.action === 'update'),
      'the part was replaced',
    );
    assertOpsFit(sent);
    assert.equal(textOf(log), text);
  });
});

describe('OperationQueue resuming a part', () => {
  it("a diverging resumed append's headers (its part's end) ride on the replacement", async () => {
    const log = new MemoryLog();
    await stored(log, 'abX');
    const queue = attempt(log);
    queue.pause();
    queue.create('t', { name: 'part', id: queue.nextId('t'), data: '' });
    queue.append('t', 'abcd', { state: 'done' }); // the text and its end in one append
    queue.resume(new Map([['t', { text: 'abX', done: false }]]));
    await flushed(queue);
    const part = log.rolledUp().find((m) => m.name === 'part');
    assert.equal(part?.data, 'abcd');
    assert.deepEqual(part?.headers, { state: 'done' }, 'the end marker was lost with the replacement');
  });

  it('sends nothing for the deltas the first attempt stored, then appends the rest', async () => {
    const log = new MemoryLog();
    const sent = await resumeAfter(log, 'abc', ['ab', 'c', 'd']);
    assert.deepEqual(
      sent.map((op) => `${op.action} ${op.data}`),
      ['append d'],
    );
    assert.equal(textOf(log), 'abcd');
  });

  it('sends nothing at all when the first attempt stored every delta written so far', async () => {
    const log = new MemoryLog();
    const sent = await resumeAfter(log, 'abc', ['ab', 'c']);
    assert.deepEqual(sent, []);
    assert.equal(textOf(log), 'abc');
  });

  it('replaces a diverged part once: the deltas after it are appended, not compared again', async () => {
    const log = new MemoryLog();
    const sent = await resumeAfter(log, 'abX', ['ab', 'c', 'd', 'e']);
    assert.deepEqual(
      sent.map((op) => `${op.action} ${op.data}`),
      ['update abc', 'append d', 'append e'],
    );
    assert.equal(textOf(log), 'abcde');
  });

  it('marks a part it knew nothing about done: its end marker is sent after the replacement', async () => {
    const log = new MemoryLog();
    await stored(log, 'ab');
    const queue = attempt(log);
    queue.pause();
    queue.create('t', { name: 'part', id: queue.nextId('t'), data: '' });
    queue.delta('t', 'abc');
    queue.append('t', '', { state: 'done' });
    queue.resume(new Map()); // what the first attempt stored of 't' is unknown
    await flushed(queue);
    const part = log.rolledUp().find((m) => m.name === 'part');
    assert.equal(part?.data, 'abc');
    assert.deepEqual(part?.headers, { state: 'done' });
  });
});

describe('OperationQueue coalescing window', () => {
  const sent = (sink: ControlledSink) => sink.flights.map((f) => f.ops.map((o) => o.data).join('|'));

  it('sends the first delta after a quiet window at once, and holds those right behind it for the window', async () => {
    const sink = new ControlledSink(4);
    const t = timers();
    const queue = windowed(sink, t);
    await createPart(sink, queue);
    await tick();
    queue.delta('t', 'first ');
    await tick();
    assert.deepEqual(sent(sink), ['first '], 'the first token did not wait for a window');
    assert.equal(t.due.length, 0, 'no window timer for it');
    queue.delta('t', 'a');
    await tick();
    queue.delta('t', 'b');
    await tick();
    assert.deepEqual(sent(sink), ['first '], 'the deltas right behind it wait');
    assert.equal(t.due.length, 1, 'one window for both');
    await sink.flights.shift()!.ack();
    await tick();
    assert.deepEqual(sent(sink), [], "the first token's ack does not end their window");
    t.due.shift()!();
    assert.deepEqual(sent(sink), ['ab'], 'merged into one append at the end of the window');
    await settlesAs(sink, queue, 'first ab');
  });

  it('holds a delta right behind a send only until a window has passed since that send: one batch per window', async () => {
    const sink = new ControlledSink(4);
    let clock = 1_000_000;
    const waits: number[] = [];
    const due: Array<() => void> = [];
    const queue = new OperationQueue({
      sink,
      runId: 'r',
      coalesceMs: 40,
      timers: {
        setTimeout: (fn: () => void, ms: number) => {
          waits.push(ms);
          due.push(fn);
          return fn;
        },
        clearTimeout: () => {},
        now: () => clock,
      },
      onCreated: () => {},
      onFailed: (error) => assert.fail(`failed: ${String(error)}`),
    });
    await createPart(sink, queue);
    await tick();
    queue.delta('t', 'a'); // quiet: at once
    await tick();
    assert.deepEqual(sent(sink), ['a']);
    clock += 33; // the next token of a 30 tokens/s model
    queue.delta('t', 'b');
    await tick();
    assert.deepEqual(waits, [7], 'held until 40 ms after the send, not 40 ms after itself');
    clock += 7;
    due.shift()!();
    assert.deepEqual(sent(sink), ['a', 'b']);
    clock += 26; // 26 ms after that send
    queue.delta('t', 'c');
    clock += 10;
    queue.delta('t', 'd'); // within the same window: merged
    await tick();
    assert.deepEqual(waits, [7, 14], 'the window counts from the last send');
    assert.equal(sent(sink).length, 2, 'nothing more before the window ends');
    clock += 4;
    due.shift()!();
    assert.deepEqual(sent(sink), ['a', 'b', 'cd']);
    clock += 40; // a quiet window
    queue.delta('t', 'e');
    await tick();
    assert.deepEqual(sent(sink), ['a', 'b', 'cd', 'e'], 'after a quiet window: at once');
    assert.deepEqual(waits, [7, 14]);
    await ackAll(sink);
    clock -= 3_600_000; // a clock that goes back an hour
    queue.delta('t', 'f');
    await tick();
    assert.deepEqual(waits, [7, 14, 40], 'held a window at most, not until the clock caught up');
  });

  it('deltas held for the window go out on the ack when a structural operation waits behind them', async () => {
    const sink = new ControlledSink(1); // one batch in flight at a time
    const t = timers();
    const queue = windowed(sink, t);
    await createPart(sink, queue);
    await tick();
    queue.delta('t', 'first ');
    await tick();
    queue.delta('t', 'a'); // right behind a send: held for the window
    queue.create('u', { name: 'part', id: queue.nextId('u'), data: 'next' });
    await tick();
    assert.deepEqual(sent(sink), ['first ']);
    await sink.flights.shift()!.ack();
    await tick();
    assert.deepEqual(sent(sink), ['a|next'], 'on the ack, not when the window timer fires');
    await sink.flights.shift()!.ack();
    await flushed(queue);
    assert.deepEqual(
      sink.log.rolledUp().map((m) => m.data),
      ['first a', 'next'],
    );
  });

  it("a first delta that waited for its part's create goes out with the create's ack, not a window later", async () => {
    const sink = new ControlledSink(4);
    const t = timers();
    const queue = windowed(sink, t);
    queue.create('t', { name: 'part', id: queue.nextId('t'), data: '' });
    queue.delta('t', 'x');
    await tick();
    assert.equal(sink.flights.length, 1, 'the create alone: the append needs its serial');
    await sink.flights.shift()!.ack();
    await tick();
    assert.deepEqual(sent(sink), ['x']);
    assert.equal(t.due.length, 0);
    await sink.flights.shift()!.ack();
    await flushed(queue);
    assert.equal(textOf(sink.log), 'x');
  });
});

describe('OperationQueue edges', () => {
  const opsOf = (sent: OperationInput[], action: string) =>
    sent.filter((op) => (op.action ?? 'create') === action).map((op) => op.data);

  it('sends nothing while paused (reading what an earlier attempt stored), and all of it on resume', async () => {
    const sink = new ControlledSink(4);
    const queue = queueOn(sink);
    queue.pause();
    queue.create('t', { name: 'part', id: queue.nextId('t'), data: '' });
    queue.delta('t', 'a');
    await tick();
    await tick();
    assert.equal(sink.flights.length, 0, 'held while paused');
    queue.resume(new Map());
    await tick();
    await settlesAs(sink, queue, 'a');
  });

  it('with coalesceMs 0 every delta stays its own operation, also those queued behind a batch in flight', async () => {
    const sink = new ControlledSink(1);
    const queue = queueOn(sink);
    await createPart(sink, queue);
    queue.delta('t', 'a');
    await tick();
    queue.delta('t', 'b');
    queue.delta('t', 'c');
    await tick();
    assert.equal(sink.flights.length, 1, "'b' and 'c' wait behind 'a'");
    await sink.flights.shift()!.ack();
    await tick();
    assert.deepEqual(
      sink.flights.map((f) => f.ops.map((op) => op.data)),
      [['b', 'c']],
    );
    await settlesAs(sink, queue, 'abc');
  });

  it('merges deltas into one append up to exactly MAX_APPEND_CHARS', async () => {
    const sink = new ControlledSink(4);
    const t = timers();
    const queue = windowed(sink, t);
    await createPart(sink, queue);
    queue.delta('t', 'first');
    await tick();
    queue.delta('t', 'x'.repeat(MAX_APPEND_CHARS - 1));
    queue.delta('t', 'y');
    queue.delta('t', 'z'); // one over: a new append
    await tick();
    t.due.shift()!();
    const sent = await ackAll(sink);
    await flushed(queue);
    assert.deepEqual(
      opsOf(sent, 'append').map((data) => (data as string).length),
      [5, MAX_APPEND_CHARS, 1],
    );
  });

  it("folds the deltas queued behind a part's unsent create into it, up to exactly MAX_APPEND_CHARS", async () => {
    const sink = new ControlledSink(4);
    const queue = windowed(sink);
    await createPart(sink, queue);
    queue.delta('t', 'first'); // in flight: the creates below wait for it (structural)
    await tick();
    queue.create('u', { name: 'u', id: queue.nextId('u'), data: '' });
    queue.delta('u', 'a');
    queue.delta('u', 'b');
    queue.create('v', { name: 'v', id: queue.nextId('v'), data: 'x'.repeat(MAX_APPEND_CHARS - 2) });
    queue.foldIntoCreates(); // the run's create was acknowledged: a new run
    queue.delta('v', 'yz'); // written now: rides in the create too, to exactly the limit
    queue.delta('v', '!'); // one over: its own append
    await tick();
    const sent = await ackAll(sink);
    await flushed(queue);
    const creates = opsOf(sent, 'create') as string[];
    assert.deepEqual(
      creates.map((data) => `${data.slice(0, 2)}…${data.slice(-2)} (${data.length})`),
      ['ab…ab (2)', `xx…yz (${MAX_APPEND_CHARS})`],
    );
    assert.deepEqual(opsOf(sent, 'append'), ['first', '!']);
  });

  it('flush() waits for an update put before everything queued', async () => {
    const sink = new ControlledSink(4);
    const queue = queueOn(sink);
    await createPart(sink, queue);
    queue.update('t', { id: queue.nextId('t'), headers: { state: 'done' } }, true);
    let done = false;
    void queue.flush().then(() => {
      done = true;
    });
    await tick();
    assert.equal(done, false, 'the update is not stored yet');
    await ackAll(sink);
    await tick();
    assert.equal(done, true);
  });

  it("a repair's text includes the data of a structural append", async () => {
    const { sink, t, queue } = await partInFlightWindow();
    await write(queue, ['a']);
    queue.append('t', 'B', { mark: 1 }); // structural: alone, once 'a' is stored
    await ackAll(sink);
    await write(queue, ['c', 'd']);
    assert.equal(sink.flights.length, 2);
    // 'c' stored, its answer lost; 'd' stored behind it
    await sink.flights[0]!.storeThenFail(Object.assign(new Error('suspended'), { retryable: true }));
    await sink.flights[1]!.ack();
    sink.flights.splice(0, 2);
    await tick();
    t.due.shift()!(); // the retry after its backoff: the part replaced by its whole text
    await tick();
    const sent = await ackAll(sink);
    await flushed(queue);
    assert.ok(
      sent.some((op) => op.action === 'update'),
      'the part was replaced',
    );
    assert.equal(textOf(sink.log), 'aBcd');
  });
});

describe('channelSink refusals', () => {
  it('counts a server error or a full offline queue as "nothing stored", a lost answer as unknown', () => {
    const sink = channelSink({} as Channel);
    const refused = (code: ConstructorParameters<typeof MooringError>[0]) =>
      sink.refused?.(new MooringError(code, code));
    for (const code of ['rate_limited', 'store_unavailable', 'token_expired', 'queue_full'] as const)
      assert.equal(refused(code), true, code);
    // the connection's own rejections (the answer never came), and a server error that may follow the store
    for (const code of ['connection_suspended', 'disconnected', 'timeout', 'internal'] as const)
      assert.equal(refused(code), false, code);
    assert.equal(sink.refused?.(new Error('what')), false);
  });
});

describe('splitText', () => {
  it('cuts at most max UTF-16 units per piece, never between the two halves of a surrogate pair', () => {
    assert.deepEqual(splitText('abc', 3), ['abc']);
    assert.deepEqual(splitText('abcde', 2), ['ab', 'cd', 'e']);
    // a pair at the cut moves whole into the next piece, at both ends of the high-surrogate range
    for (const pair of ['\u{1F600}', '\uD800\uDC00', '\uDBFF\uDFFF'])
      assert.deepEqual(splitText(`a${pair}b`, 2), ['a', pair, 'b'], JSON.stringify(pair));
    // a low surrogate or a plain character at the cut is cut as usual
    assert.deepEqual(splitText('a\uDC00b', 2), ['a\uDC00', 'b']);
    // a lone high surrogate at the very end stays in the last piece
    assert.deepEqual(splitText('ab\uD83D', 2), ['ab', '\uD83D']);
  });
});
