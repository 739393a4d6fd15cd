/**
 * Reads that the conformance suite leaves open (PROTOCOL.md §16.6–16.7): a 304 never hides a close
 * (the ETag names the closed end); a partial page says neither up-to-date nor closed; a long-poll at
 * the tail is woken by an append (not by its timeout); a timed-out long-poll carries the tail and a
 * cursor that moves forward; an SSE read tells proxies not to buffer it.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { waitFor } from '@mooring/testkit';
import { type Fixture, startFixture, TEST_KEY } from '../support/fixture.ts';

let fx: Fixture;
const text = { 'content-type': 'text/plain' };

before(async () => {
  fx = await startFixture('memory', {
    durableStreams: { open: '*', readPageBytes: 100, longPollTimeout: 1_500 },
  });
});
after(() => fx.close());

const url = (path: string) => `${fx.server.url}/v1/stream/${path}`;

test('a 304 never hides a close: the ETag of the closed end differs', async () => {
  await fetch(url('etag'), { method: 'PUT', headers: text, body: 'data' });
  const first = await fetch(url('etag?offset=-1'));
  await first.arrayBuffer();
  const etag = first.headers.get('etag') ?? '';
  const again = await fetch(url('etag?offset=-1'), { headers: { 'if-none-match': etag } });
  assert.equal(again.status, 304);
  await fetch(url('etag'), { method: 'POST', headers: { 'stream-closed': 'true' } });
  const closed = await fetch(url('etag?offset=-1'), { headers: { 'if-none-match': etag } });
  assert.equal(closed.status, 200);
  assert.equal(closed.headers.get('stream-closed'), 'true');
  assert.equal(await closed.text(), 'data');
});

test('pages of a closed stream: up-to-date and closed only on the last one', async () => {
  await fetch(url('pages'), { method: 'PUT', headers: text });
  for (const c of 'abc') await fetch(url('pages'), { method: 'POST', headers: text, body: c.repeat(80) });
  await fetch(url('pages'), { method: 'POST', headers: { 'stream-closed': 'true' } });
  let offset = '-1';
  const pages: { body: string; upToDate: boolean; closed: boolean }[] = [];
  for (let i = 0; i < 10; i++) {
    const res = await fetch(url(`pages?offset=${offset}`));
    pages.push({
      body: await res.text(),
      upToDate: res.headers.get('stream-up-to-date') === 'true',
      closed: res.headers.get('stream-closed') === 'true',
    });
    offset = res.headers.get('stream-next-offset') ?? offset;
    if (res.headers.get('stream-up-to-date') === 'true') break;
  }
  assert.deepEqual(pages, [
    { body: 'a'.repeat(80), upToDate: false, closed: false },
    { body: 'b'.repeat(80), upToDate: false, closed: false },
    { body: 'c'.repeat(80), upToDate: true, closed: true },
  ]);
});

async function liveReaders(server: Fixture['server']): Promise<number> {
  const res = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${TEST_KEY}` } });
  const line = (await res.text()).split('\n').find((l) => l.startsWith('mooring_stream_live_readers '));
  return Number(line?.split(' ')[1] ?? Number.NaN);
}

// the poll would wait a minute if the append did not wake it: the test's timeout catches that
test('a long-poll at the tail is woken by an append', { timeout: 20_000 }, async () => {
  const slow = await startFixture('memory', { durableStreams: { open: '*', longPollTimeout: 60_000 } });
  try {
    const at = (path: string) => `${slow.server.url}/v1/stream/${path}`;
    const created = await fetch(at('live'), { method: 'PUT', headers: text, body: 'x' });
    const tail = created.headers.get('stream-next-offset') ?? '';
    const polling = fetch(at(`live?offset=${tail}&live=long-poll`));
    await waitFor(async () => (await liveReaders(slow.server)) === 1, {
      message: 'the long-poll never waited',
    });
    await fetch(at('live'), { method: 'POST', headers: text, body: 'y' });
    const woken = await polling;
    assert.equal(woken.status, 200);
    assert.equal(await woken.text(), 'y');
  } finally {
    await slow.close();
  }
});

test('a long-poll that times out answers 204 with the tail and a cursor that moves forward', async () => {
  const created = await fetch(url('idle'), { method: 'PUT', headers: text, body: 'x' });
  const tail = created.headers.get('stream-next-offset') ?? '';
  const idle = await fetch(url(`idle?offset=${tail}&live=long-poll&cursor=99999999999`));
  assert.equal(idle.status, 204);
  assert.equal(idle.headers.get('stream-next-offset'), tail);
  assert.equal(idle.headers.get('stream-up-to-date'), 'true');
  assert.ok(Number(idle.headers.get('stream-cursor')) > 99999999999, 'a cursor never goes back or repeats');
});

test('an SSE read asks proxies not to buffer it (nginx: X-Accel-Buffering)', async () => {
  await fetch(url('sse-headers'), { method: 'PUT', headers: text, body: 'x' });
  const abort = new AbortController();
  const res = await fetch(url('sse-headers?offset=-1&live=sse'), { signal: abort.signal });
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  assert.equal(res.headers.get('x-accel-buffering'), 'no');
  assert.equal(res.headers.get('cache-control'), 'no-cache');
  abort.abort();
});
