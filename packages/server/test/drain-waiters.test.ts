/**
 * Attaches waiting for room in a connection's send queue (review-ws #3): they sleep until the
 * transport drains, the connection ends, or their attachment closes; none of them polls. A
 * `Connection` on a transport whose queue the test fills and empties, counting how often the queue
 * is looked at and which drains are asked for.
 */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { DEFAULT_LIMITS, type ServerFrame } from '@mooring/protocol';
import { waitFor } from '@mooring/testkit';
import pino from 'pino';
import { Capability } from '../src/capabilities.ts';
import { ChannelService } from '../src/channel-service.ts';
import { Connection, type TransportSink } from '../src/connection.ts';
import { DrainWaiters } from '../src/drain-waiters.ts';
import type { Reply } from '../src/http-reply.ts';
import { LongPollSink } from '../src/http-transports.ts';
import { LocalHub } from '../src/hub.ts';
import type { RateBudgets } from '../src/identity-budgets.ts';
import { PresenceService } from '../src/presence.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { whenStreamDrained } from '../src/stream-drained.ts';

/** More than any catch-up leaves queued (`catchUpQueueOf`), less than `maxSendBuffer`. */
const STALLED = DEFAULT_LIMITS.maxSendBuffer / 2 + 1;

/** A transport whose queue holds `queued` bytes until the test drains it. */
class StalledTransport implements TransportSink {
  readonly kind = 'websocket';
  readonly answersHeartbeats = true;
  queued = STALLED;
  /** How often the connection looked at the queue. */
  looks = 0;
  /** Drains asked for and not yet given. */
  asked: (() => void)[] = [];
  frames: ServerFrame[] = [];
  send(frame: Buffer): void {
    this.frames.push(JSON.parse(frame.toString()) as ServerFrame);
  }
  bufferedAmount(): number {
    this.looks++;
    return this.queued;
  }
  whenDrained(drained: () => void): void {
    this.asked.push(drained);
  }
  /** The reader took everything: the drains asked for come. */
  drain(): void {
    this.queued = 0;
    const asked = this.asked;
    this.asked = [];
    for (const drained of asked) drained();
  }
  close(): void {}
  terminate(): void {}
  attached(): string[] {
    return this.frames.flatMap((f) => (f.type === 'attached' ? [f.channel] : []));
  }
  errors(): string[] {
    return this.frames.flatMap((f) => (f.type === 'error' ? [f.error.code] : []));
  }
}

/**
 * A connection on `transport`, and the codes of the errors it answered, counted as its metrics do:
 * also those of a connection that has ended, which writes nothing any more.
 */
function connectionOn(transport: TransportSink): { connection: Connection; refusals: string[] } {
  const channels = new ChannelService(new MemoryStore(), new LocalHub(), DEFAULT_LIMITS);
  const refusals: string[] = [];
  channels.metrics.errors.inc = ((labels: { code: string }) => {
    refusals.push(labels.code);
  }) as typeof channels.metrics.errors.inc;
  const presence = new PresenceService({
    grace: 0,
    maxMembers: 100,
    maxChannelsPerConnection: 100,
    maxBytesPerConnection: 10_000,
    recoverWithin: 60_000,
    maxDroppedBytesPerClient: 100_000,
  });
  const connection = new Connection({
    id: 'c1',
    key: 'k1',
    identity: { keyName: 'app', clientId: 'reader', access: Capability.all(), viaToken: false },
    transport,
    channels,
    presence,
    limits: { ...DEFAULT_LIMITS, maxFrameBurst: 1000 },
    budgets: {} as RateBudgets,
    logger: pino({ level: 'silent' }),
    verifyToken: () => Promise.reject(new Error('no tokens here')),
  });
  return { connection, refusals };
}

/** A few turns of the event loop, with timers: long enough for any poll to have run many times. */
async function someTurns(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setTimeout(resolve, 5));
}

const ATTACHES = 200;

function attachAll(connection: Connection): void {
  for (let i = 0; i < ATTACHES; i++)
    connection.receive(JSON.stringify({ type: 'attach', channel: `c${i}`, ref: i }));
}

describe('attaches waiting for room in the send queue', () => {
  it('sleep until the transport drains: one drain asked for, the queue looked at about once per attach', async () => {
    const transport = new StalledTransport();
    const { connection } = connectionOn(transport);
    attachAll(connection);
    await someTurns();
    // each waiter looked once before it slept (a 5 ms poll each: thousands of looks by now)
    assert.ok(transport.looks >= ATTACHES, 'every attach waits');
    assert.ok(transport.looks <= 2 * ATTACHES, `the queue was looked at ${transport.looks} times`);
    assert.equal(transport.asked.length, 1, 'one drain asked for, for all the waiters');
    assert.deepEqual(transport.attached(), [], 'no attach is answered while the queue is full');

    transport.drain();
    await waitFor(() => transport.attached().length === ATTACHES);
    assert.deepEqual(transport.errors(), []);
    connection.dispose();
  });

  it('are released when the connection ends, or their attach is superseded, with no drain', async () => {
    const transport = new StalledTransport();
    const { connection, refusals } = connectionOn(transport);
    attachAll(connection);
    await waitFor(() => transport.asked.length > 0);
    // a detach ends the attach of its channel at once
    connection.receive(JSON.stringify({ type: 'detach', channel: 'c0', ref: 'd' }));
    await waitFor(() => transport.errors().includes('attach_superseded'));
    assert.deepEqual(refusals, ['attach_superseded']);

    connection.dispose();
    // every other waiter wakes, finds its attachment closed and ends: nothing is left waiting
    await waitFor(() => refusals.length === ATTACHES);
    assert.deepEqual(new Set(refusals), new Set(['attach_superseded']));
    assert.deepEqual(transport.attached(), []);
    assert.equal(transport.asked.length, 1, 'the one drain asked for never came');
  });
});

describe('DrainWaiters', () => {
  it('asks the transport once per round, wakes all at the drain, one by its key, and all at wakeAll', async () => {
    const waiters = new DrainWaiters();
    const asked: (() => void)[] = [];
    const arm = (drained: () => void) => asked.push(drained);
    const keys = [{}, {}, {}];
    const woken: number[] = [];
    keys.forEach((key, i) => void waiters.wait(key, arm).then(() => woken.push(i)));
    assert.equal(asked.length, 1);
    assert.equal(waiters.size, 3);

    waiters.wake(keys[1]!);
    await Promise.resolve();
    assert.deepEqual(woken, [1]);

    asked[0]!();
    await Promise.resolve();
    assert.deepEqual(woken, [1, 0, 2]);
    assert.equal(waiters.size, 0);

    // the drain came: the next waiter asks again
    void waiters.wait(keys[0]!, arm).then(() => woken.push(9));
    assert.equal(asked.length, 2);
    waiters.wakeAll();
    await Promise.resolve();
    assert.deepEqual(woken, [1, 0, 2, 9]);
  });
});

describe('each transport tells when its queue drained', () => {
  it('a stream (WebSocket socket, SSE response): at its drain; below its high-water mark, soon anyway', async () => {
    const stream = new PassThrough({ highWaterMark: 1024 });
    let drained = 0;
    stream.write(Buffer.alloc(4096)); // past the mark: nobody reads, a drain will come
    whenStreamDrained(stream, () => drained++);
    await someTurns();
    assert.equal(drained, 0, 'not before the queue is written out');
    stream.resume();
    await waitFor(() => drained === 1);
    // under the mark no drain is sure to come: called after a short while, the waiter looks again
    stream.pause();
    stream.write(Buffer.alloc(100));
    whenStreamDrained(stream, () => drained++);
    await waitFor(() => drained === 2);
  });

  it('long-polling: when a poll takes the queue, or the connection ends', async () => {
    const sink = new LongPollSink(25_000, 25_000);
    const answers: string[] = [];
    const reply = (): Reply => ({
      json: (_status, body) => void answers.push(body.toString()),
      destroy: () => {},
      onClose: () => {},
      writableLength: 0,
      gone: false,
    });
    sink.send(Buffer.from('{"type":"pong"}'));
    let drained = 0;
    sink.whenDrained(() => drained++);
    await someTurns();
    assert.equal(drained, 0, 'frames wait for a poll');
    sink.poll(reply());
    assert.equal(drained, 1);
    assert.deepEqual(answers, ['[{"type":"pong"}]']);
    sink.send(Buffer.from('{"type":"pong"}'));
    sink.whenDrained(() => drained++);
    sink.terminate();
    assert.equal(drained, 2, 'the end wakes a waiter too');
  });
});
