// The pipelined queue over a real client through a connection that misbehaves at random: frames of a
// dead transport stored late (their answers lost), refusals whose answers die with the transport,
// suspension (every pending publish rejected), reconnects; two parts, coalescing 0 or 40 ms. Whatever
// happens, once the network heals each part's stored text is exactly what was written, in order,
// ended, and the run never failed. Seeded: a failure names its seed; MOORING_CHAOS_SEED=<n> replays
// that scenario alone and prints its trace, MOORING_CHAOS_COUNT=<n> runs more (2,000 by default),
// MOORING_CHAOS_REFUSE=<p> sets how often the server refuses a publish (0.15).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientFrame, ErrorInfo } from '@mooring/protocol';
import { errorInfo } from '@mooring/protocol';
import { fakeClient } from '../../client/test/helpers/fake-client.ts';
import type { FakeTransport } from '../../client/test/helpers/fake-transport.ts';
import { flush } from '../../client/test/helpers/fake-transport.ts';
import { OperationQueue } from '../src/operation-queue.ts';
import { channelSink } from '../src/operation-sink.ts';
import { MemoryLog } from './helpers/memory-log.ts';

/** A small deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Publish = Extract<ClientFrame, { type: 'publish' }>;

/** Plays the server: stores what it processes in a MemoryLog, answers on the transport it came by. */
class ChaosServer {
  readonly log = new MemoryLog();
  /** What happened, step by step (printed when one seed is replayed). */
  readonly trace: string[] = [];
  /** Frames processed so far, per transport. */
  readonly #cursor = new Map<FakeTransport, number>();
  readonly #ended = new Set<FakeTransport>();

  ended(t: FakeTransport): void {
    this.#ended.add(t);
  }

  #publishes(t: FakeTransport): Publish[] {
    return t.sent.filter((f): f is Publish => f.type === 'publish');
  }

  /** Transports with frames not processed yet. */
  waiting(all: FakeTransport[]): FakeTransport[] {
    return all.filter((t) => (this.#cursor.get(t) ?? 0) < this.#publishes(t).length);
  }

  readonly #all: FakeTransport[] = [];

  #index(t: FakeTransport): number {
    const at = this.#all.indexOf(t);
    return at >= 0 ? at : this.#all.push(t) - 1;
  }

  /** Processes the next publish of `t`: stored and answered, or refused (nothing stored). */
  async next(t: FakeTransport, refuse: boolean): Promise<void> {
    const at = this.#cursor.get(t) ?? 0;
    const frame = this.#publishes(t)[at];
    if (!frame) return;
    this.#cursor.set(t, at + 1);
    const open = !this.#ended.has(t);
    const ids = frame.ops.map((op) => `${op.action}:${op.id}:${JSON.stringify(op.data)}`).join(' ');
    this.trace.push(`${refuse ? 'refuse' : 'store'} ${open ? 'open' : 'late'} t${this.#index(t)} ${ids}`);
    if (refuse) {
      const error: ErrorInfo = errorInfo('rate_limited', 'slow down');
      if (open) t.frame({ type: 'error', ref: frame.ref!, channel: frame.channel, error });
      return;
    }
    const stored = await this.log.publish(frame.ops);
    const results = stored.map((r) =>
      r.duplicate ? { serial: r.serial, duplicate: true as const } : { serial: r.serial },
    );
    if (open) t.frame({ type: 'ack', ref: frame.ref!, channel: frame.channel, results });
  }
}

async function scenario(seed: number): Promise<void> {
  const random = prng(seed);
  const { client, timers, transports } = fakeClient();
  const server = new ChaosServer();
  const failures: unknown[] = [];
  const channel = client.channels.get('c');
  const queue = new OperationQueue({
    sink: channelSink(channel),
    runId: 'r',
    coalesceMs: random() < 0.5 ? 0 : 40,
    timers,
    onCreated: () => {},
    onFailed: (error) => failures.push(error),
  });
  let current: FakeTransport | undefined;
  /** Answers `connected` on a transport the client opened and nobody answered yet. */
  const answerOpen = async () => {
    await flush();
    const t = transports.made.at(-1);
    if (t && t !== current && t.url !== undefined) {
      current = t;
      t.connected({ resumed: true });
      await flush();
    }
  };
  const drop = async () => {
    if (!current) return;
    server.trace.push('drop');
    server.ended(current);
    current.end({ code: 1006, reason: '' });
    current = undefined;
    await flush();
  };
  await answerOpen();
  const keys = ['t', 'u'];
  for (const key of keys) queue.create(key, { name: key, id: queue.nextId(key), data: '' });
  await flush();
  while (current && server.waiting([current]).length > 0) await server.next(current, false);
  await flush();

  const written = new Map(keys.map((key) => [key, '']));
  const steps = 60 + Math.floor(random() * 120);
  for (let step = 0; step < steps; step++) {
    const roll = random();
    if (roll < 0.35) {
      const key = keys[Math.floor(random() * keys.length)]!;
      const token = `${step} `;
      server.trace.push(`write ${key} ${token}`);
      written.set(key, written.get(key) + token);
      queue.delta(key, token);
    } else if (roll < 0.7) {
      const waiting = server.waiting(transports.made);
      const t = waiting[Math.floor(random() * waiting.length)];
      if (t) await server.next(t, random() < Number(process.env.MOORING_CHAOS_REFUSE ?? 0.15));
    } else if (roll < 0.78) {
      await drop();
    } else if (roll < 0.81) {
      await drop();
      server.trace.push('suspend');
      timers.advance(130_000); // beyond connectionStateTtl: suspended, pending publishes rejected
    } else if (roll < 0.93) {
      timers.advance(Math.floor(random() * 3_000));
    } else {
      await answerOpen();
    }
    await flush();
  }

  for (const key of keys) queue.append(key, '', { state: 'done' }); // each part ends
  // the network heals: every frame still on its way arrives (late ones first), nothing is refused
  for (let round = 0; round < 400; round++) {
    if (client.connection.state === 'suspended') client.connection.connect();
    await answerOpen();
    for (const t of server.waiting(transports.made))
      while (server.waiting([t]).length > 0) await server.next(t, false);
    await flush();
    if (server.waiting(transports.made).length === 0 && (await settled(queue))) break;
    timers.advance(1_000);
  }
  assert.deepEqual(failures, [], `seed ${seed}: the run failed`);
  assert.ok(await settled(queue), `seed ${seed}: the queue never emptied`);
  for (const key of keys) {
    const part = server.log.rolledUp().find((m) => m.name === key);
    if (process.env.MOORING_CHAOS_SEED !== undefined && part?.data !== written.get(key))
      console.log(server.trace.join('\n'));
    assert.equal(part?.data, written.get(key), `seed ${seed}: part ${key} is not what was written`);
    assert.deepEqual(part?.headers, { state: 'done' }, `seed ${seed}: part ${key} did not end`);
  }
  client.close();
}

/** Whether everything queued so far is stored (flush resolves on the next turn). */
async function settled(queue: OperationQueue): Promise<boolean> {
  let done = false;
  void queue.flush().then(() => {
    done = true;
  });
  await flush();
  return done;
}

describe('OperationQueue over a misbehaving connection', () => {
  it('stores every part whole and in order, whatever the connection did', async () => {
    const only = process.env.MOORING_CHAOS_SEED;
    const seeds =
      only === undefined
        ? Array.from({ length: Number(process.env.MOORING_CHAOS_COUNT ?? 2000) }, (_, i) => i + 1)
        : [Number(only)];
    for (const seed of seeds) await scenario(seed);
  });
});
