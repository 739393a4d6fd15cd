/**
 * A Durable Stream followed by many live readers (long-poll and SSE): the readers one append wakes
 * read the store once between them per offset (StreamWaiters.shared), and every one still gets
 * every append, in order.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '@mooring/testkit';
import { startServer } from '../../src/index.ts';
import { MemoryStore } from '../../src/store/memory-store.ts';
import { metricsText, metricValue, TEST_KEY } from '../support/fixture.ts';

const auth = { authorization: `Bearer ${TEST_KEY}` };

test('many long-poll and SSE followers of one stream: every append to each, in order, and about one store read per offset and wake', async (t) => {
  const store = new MemoryStore();
  const streams = store.streams!;
  let reads = 0;
  const read = streams.read.bind(streams);
  streams.read = (...args) => {
    reads++;
    return read(...args);
  };
  const server = await startServer({ host: '127.0.0.1', port: 0, keys: [TEST_KEY], store });
  t.after(() => server.close());
  const url = `${server.url}/v1/stream/watched`;
  const created = await fetch(url, { method: 'PUT', headers: { ...auth, 'content-type': 'text/plain' } });
  assert.equal(created.status, 201);

  const pollers = 40;
  const appends = 5;
  const got: string[][] = Array.from({ length: pollers + 1 }, () => []);
  const abort = new AbortController();
  t.after(() => abort.abort());
  const followers = Array.from({ length: pollers }, async (_, i) => {
    let offset = 'now';
    while (got[i]!.length < appends) {
      const res = await fetch(`${url}?offset=${encodeURIComponent(offset)}&live=long-poll`, {
        headers: auth,
        signal: abort.signal,
      });
      const text = await res.text();
      if (res.status === 200) got[i]!.push(...text.split('\n').filter((line) => line !== ''));
      offset = res.headers.get('stream-next-offset') ?? offset;
    }
  });
  // one SSE follower beside them
  const sse = (async () => {
    const res = await fetch(`${url}?offset=now&live=sse`, { headers: auth, signal: abort.signal });
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true });
      for (const data of buffered.matchAll(/event: data\ndata:(.*)\n/g))
        got[pollers]!.push(...data[1]!.split('\\n').filter((line) => line !== ''));
      buffered = buffered.slice(buffered.lastIndexOf('\n\n') + 2);
      if (got[pollers]!.length >= appends) return;
    }
  })();

  const waiting = async () =>
    metricValue(await metricsText(server), 'mooring_stream_live_readers') === pollers + 1;
  for (let n = 1; n <= appends; n++) {
    await waitFor(waiting, { message: `all ${pollers + 1} followers waiting before append ${n}` });
    const before = reads;
    const res = await fetch(url, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'text/plain' },
      body: `${n}\n`,
    });
    assert.equal(res.status, 204);
    await waitFor(() => got.every((lines) => lines.length >= n), {
      message: `every follower to get append ${n}`,
    });
    // each long-poll re-polls (its own first read); the wake's reads are shared: about 40 + a few,
    // not 3 × 40 as when each woken reader read twice more
    const after = reads - before;
    assert.ok(after <= pollers + 10, `append ${n}: ${after} store reads for ${pollers + 1} followers`);
  }
  await Promise.all(followers);
  await sse;
  for (const [i, lines] of got.entries())
    assert.deepEqual(lines.slice(0, appends), ['1', '2', '3', '4', '5'], `follower ${i}`);
});
