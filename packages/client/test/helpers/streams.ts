/**
 * Streams of numbered messages for resilience tests: publish them with a bounded window, record what
 * a subscriber gets, and check "received == published, in order, once each" (ARCHITECTURE.md §4).
 */
import assert from 'node:assert/strict';
import type { Message, TransportKind } from '@mooring/protocol';
import { waitFor } from '@mooring/testkit';
import type { Channel } from '../../src/channel.ts';
import type { Mooring } from '../../src/mooring.ts';

/** Everything a channel's listener got, in arrival order. */
export function record(channel: Channel): Message[] {
  const got: Message[] = [];
  void channel.subscribe((m) => got.push(m));
  return got;
}

export interface StreamOptions {
  /** Publishes in flight at once. Default 20. */
  window?: number;
  /** Called before each publish with its index (e.g. to inject a fault half-way). */
  before?: (i: number) => void | Promise<void>;
}

/**
 * Publishes `${prefix}:${i}` for i in [0, count) on `channel`, keeping at most `window` publishes
 * unacknowledged; resolves with the serials in publish order once every one is acknowledged.
 */
export async function publishStream(
  channel: Channel,
  prefix: string,
  count: number,
  options: StreamOptions = {},
): Promise<string[]> {
  const window = options.window ?? 20;
  const serials: string[] = new Array(count);
  const inFlight = new Set<Promise<void>>();
  for (let i = 0; i < count; i++) {
    await options.before?.(i);
    const p: Promise<void> = channel.publish(prefix, `${prefix}:${i}`).then((serial) => {
      serials[i] = serial;
      inFlight.delete(p);
    });
    inFlight.add(p);
    if (inFlight.size >= window) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  return serials;
}

/**
 * Asserts that `got` is exactly the published messages: same serials, each once, in serial order
 * (the channel's one total order), and each publisher's messages in the order it published them.
 */
export function assertExactlyOnce(got: Message[], published: string[], label = 'subscriber'): void {
  const versions = got.map((m) => m.version);
  assert.equal(new Set(versions).size, versions.length, `${label}: a message was delivered twice`);
  for (let i = 1; i < versions.length; i++) {
    assert.ok(
      (versions[i - 1] ?? '') < (versions[i] ?? ''),
      `${label}: out of order at ${i}: ${versions[i - 1]} then ${versions[i]}`,
    );
  }
  assert.deepEqual(
    [...versions].sort(),
    [...published].sort(),
    `${label}: received ${versions.length}, published ${published.length}`,
  );
  const next = new Map<string, number>();
  for (const m of got) {
    const [prefix, n] = String(m.data).split(':');
    const expected = next.get(prefix ?? '') ?? 0;
    assert.equal(Number(n), expected, `${label}: ${prefix}'s messages out of order`);
    next.set(prefix ?? '', expected + 1);
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A reader and a writer on `channel`, both already connecting: the writer publishes 60 messages and
 * the reader one; each client receives every one exactly once, in order, the reader stays on
 * `transport`, and neither client had to reconnect (no request of theirs was refused).
 */
export async function exchangeExactlyOnce(
  reader: Mooring,
  writer: Mooring,
  channel: string,
  transport: TransportKind,
): Promise<void> {
  const states: string[] = [];
  for (const c of [reader, writer]) c.connection.on('statechange', (change) => states.push(change.current));
  const got = record(reader.channels.get(channel));
  const own = record(writer.channels.get(channel));
  await waitFor(() => reader.channels.get(channel).state === 'attached');
  await waitFor(() => writer.channels.get(channel).state === 'attached');
  const serials = await publishStream(writer.channels.get(channel), 'w', 60, { window: 5 });
  const back = await reader.channels.get(channel).publish('r', 'r:0');
  const all = [...serials, back].sort();
  await waitFor(() => got.length >= all.length && own.length >= all.length, {
    message: `reader has ${got.length}, writer ${own.length} of ${all.length}`,
  });
  assertExactlyOnce(got, all, 'reader');
  assertExactlyOnce(own, all, 'writer');
  assert.equal(reader.connection.transport, transport);
  assert.deepEqual(
    states.filter((state) => state !== 'connecting' && state !== 'connected'),
    [],
    'no request was refused: neither client had to reconnect',
  );
}
