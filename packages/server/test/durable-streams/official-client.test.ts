/**
 * The official Durable Streams client (@durable-streams/client) against Mooring (SQLite, with an API
 * key: no open namespace), through a FaultProxy: create, append with an idempotent producer, read,
 * resume from a saved offset after the connection is reset, and follow live without losing,
 * repeating or reordering a message: long-poll across connection resets, SSE across the server
 * ending its responses (the client's SSE reader gives up on a reset mid-body, a client limitation).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DurableStream, IdempotentProducer, stream } from '@durable-streams/client';
import { FaultProxy, waitFor } from '@mooring/testkit';
import { type Fixture, startFixture, TEST_KEY } from '../support/fixture.ts';

let fx: Fixture;
let proxy: FaultProxy;
const headers = { Authorization: `Bearer ${TEST_KEY}` };

before(async () => {
  // SSE responses end every 400 ms, so SSE followers reconnect (from their offset) many times
  fx = await startFixture('sqlite', { durableStreams: { longPollTimeout: 2_000, sseMaxDuration: 400 } });
  proxy = await FaultProxy.start({ port: fx.server.port });
});
after(async () => {
  await proxy.close();
  await fx.close();
});

async function append(producer: IdempotentProducer, from: number, to: number): Promise<void> {
  for (let n = from; n < to; n++) producer.append(JSON.stringify({ n }));
  await producer.flush();
}

const ns = (items: unknown[]) => items.map((item) => (item as { n: number }).n);
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

for (const live of ['long-poll', 'sse'] as const) {
  test(`official client: create, append, read, resume after a reset, follow live (${live})`, async () => {
    const url = proxy.url(`/v1/stream/chat/room-${live}`);
    const handle = await DurableStream.create({ url, headers, contentType: 'application/json' });
    const errors: Error[] = [];
    const producer = new IdempotentProducer(handle, 'agent-1', { headers, onError: (e) => errors.push(e) });

    await append(producer, 0, 10);
    const first = await stream({ url, headers, live: false });
    assert.deepEqual(ns(await first.json()), range(0, 10));
    const saved = first.offset;

    // the connection drops; a reader resuming from the saved offset gets exactly what came after
    await append(producer, 10, 15);
    await proxy.reset();
    const resumed = await stream({ url, headers, offset: saved, live: false });
    assert.deepEqual(ns(await resumed.json()), range(10, 15));

    // follow live from the saved offset, with a reset while the reader waits at the tail
    const received: unknown[] = [];
    const controller = new AbortController();
    const follower = await stream({
      url,
      headers,
      offset: saved,
      live,
      signal: controller.signal,
      onError: () => ({}),
    });
    follower.subscribeJson(async (batch) => {
      received.push(...batch.items);
    });
    const drop = async () => {
      if (live === 'long-poll') await proxy.reset();
      else await new Promise((resolve) => setTimeout(resolve, 500)); // outlive one SSE response
    };
    await waitFor(() => received.length >= 5, { message: `caught up ${JSON.stringify(received)}` });
    await drop();
    await append(producer, 15, 20);
    await waitFor(() => received.length >= 10, { message: `followed ${JSON.stringify(ns(received))}` });
    await drop();
    await append(producer, 20, 25);
    await waitFor(() => received.length >= 15, { message: `followed ${JSON.stringify(ns(received))}` });
    assert.deepEqual(ns(received), range(10, 25), 'nothing lost, repeated or reordered');
    controller.abort();
    await producer.close();
    assert.deepEqual(errors, []);

    // the producer's writes were each stored once, whatever was retried across the resets
    const all = await stream({ url, headers, live: false });
    assert.deepEqual(ns(await all.json()), range(0, 25));
  });
}

test('official client: closing a stream is seen as EOF by a follower', async () => {
  const url = proxy.url('/v1/stream/job/output');
  const handle = await DurableStream.create({ url, headers, contentType: 'text/plain' });
  await handle.append('partial ');
  const follower = await stream({ url, headers, live: 'long-poll', onError: () => ({}) });
  let text = '';
  follower.subscribeText(async (chunk) => {
    text += chunk.text;
  });
  await waitFor(() => text === 'partial ');
  await handle.append('result');
  await handle.close();
  await waitFor(() => follower.streamClosed, { message: `no EOF; got ${JSON.stringify(text)}` });
  assert.equal(text, 'partial result');
  const head = await handle.head();
  assert.ok(head.exists && head.streamClosed);
});

test('official client without credentials is refused (401), with a token-less key refused too', async () => {
  const url = proxy.url('/v1/stream/private/a');
  await assert.rejects(
    DurableStream.create({ url, contentType: 'text/plain' }),
    (err: Error & { status?: number }) => {
      assert.equal(err.status, 401);
      return true;
    },
  );
  await assert.rejects(
    DurableStream.create({ url, contentType: 'text/plain', headers: { Authorization: 'Bearer test:wrong' } }),
    (err: Error & { status?: number }) => err.status === 401,
  );
});
