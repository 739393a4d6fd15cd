/**
 * Reads that the conformance suite leaves open (PROTOCOL.md §16.6–16.7): a 304 never hides a close
 * (the ETag names the closed end); a partial page says neither up-to-date nor closed; a long-poll at
 * the tail is woken by an append (not by its timeout); a timed-out long-poll carries the tail and a
 * cursor that moves forward; an SSE read tells proxies not to buffer it. Also (from the mutation
 * sweep of stream-reads.ts): the ETag names its start offset; data answers are cacheable, empty ones
 * at the tail are not, octet-stream ones are attachments; a cursor only on long-poll data that is
 * not the closed end; a long-poll ends when its reader leaves; a live read subscribes to its
 * stream's wakes before its first read; an SSE read ends once its waiters close (shutdown). What an
 * offset the server never sent, inside an append, reads (the spec leaves it undefined).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { waitFor } from '@mooring/testkit';
import { responseCursor } from '../../src/durable-streams/stream-cursor.ts';
import { handleRead } from '../../src/durable-streams/stream-reads.ts';
import { StreamWaiters } from '../../src/durable-streams/stream-waiters.ts';
import { memoryStreamStore } from '../../src/store/stream-memory-store.ts';
import type { StreamStore, StreamWakeBus } from '../../src/store/stream-store.ts';
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

test('the ETag names the start offset: the answer from another offset is not a 304 of the first', async () => {
  const created = await fetch(url('etag-start'), { method: 'PUT', headers: text, body: 'abc' });
  const first = created.headers.get('stream-next-offset') ?? '';
  await fetch(url('etag-start'), { method: 'POST', headers: text, body: 'def' });
  const whole = await fetch(url('etag-start?offset=-1'));
  assert.equal(await whole.text(), 'abcdef');
  const etag = whole.headers.get('etag') ?? '';
  assert.match(etag, /:-1:/);
  const rest = await fetch(url(`etag-start?offset=${first}`), { headers: { 'if-none-match': etag } });
  assert.equal(rest.status, 200);
  assert.equal(await rest.text(), 'def');
  assert.notEqual(rest.headers.get('etag'), etag);
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

// the poll would wait a minute for nobody if its reader's leaving did not end it
test('a long-poll whose reader leaves stops waiting at once', { timeout: 20_000 }, async () => {
  const slow = await startFixture('memory', { durableStreams: { open: '*', longPollTimeout: 60_000 } });
  try {
    const at = (path: string) => `${slow.server.url}/v1/stream/${path}`;
    const created = await fetch(at('left'), { method: 'PUT', headers: text, body: 'x' });
    const tail = created.headers.get('stream-next-offset') ?? '';
    const leave = new AbortController();
    const polling = fetch(at(`left?offset=${tail}&live=long-poll`), { signal: leave.signal }).catch(
      () => 'left',
    );
    await waitFor(async () => (await liveReaders(slow.server)) === 1, {
      message: 'the long-poll never waited',
    });
    leave.abort();
    assert.equal(await polling, 'left');
    await waitFor(async () => (await liveReaders(slow.server)) === 0, {
      timeout: 5_000,
      message: 'the long-poll still waits for a reader that left',
    });
  } finally {
    await slow.close();
  }
});

// a 0 configured must not fall back to the defaults (20 s, 60 s): the test's timeout catches that
test(
  'a long-poll timeout of 0 answers a poll at the tail at once; an SSE duration of 0 ends after one page',
  { timeout: 15_000 },
  async () => {
    const brief = await startFixture('memory', {
      durableStreams: { open: '*', longPollTimeout: 0, sseMaxDuration: 0 },
    });
    try {
      const at = (path: string) => `${brief.server.url}/v1/stream/${path}`;
      const created = await fetch(at('zero'), { method: 'PUT', headers: text, body: 'x' });
      const tail = created.headers.get('stream-next-offset') ?? '';
      const polled = await fetch(at(`zero?offset=${tail}&live=long-poll`));
      assert.equal(polled.status, 204);
      assert.equal(polled.headers.get('stream-up-to-date'), 'true');
      const sse = await fetch(at('zero?offset=-1&live=sse'));
      const events = (await sse.text()).split('\n\n').filter((e) => e !== '');
      assert.equal(events.length, 2, 'one data event, one control event, then the end');
      assert.match(events[0] ?? '', /^event: data\ndata:x$/);
      assert.match(events[1] ?? '', /"upToDate":true/);
    } finally {
      await brief.close();
    }
  },
);

test('a long-poll that times out answers 204 with the tail and a cursor that moves forward', async () => {
  const created = await fetch(url('idle'), { method: 'PUT', headers: text, body: 'x' });
  const tail = created.headers.get('stream-next-offset') ?? '';
  const idle = await fetch(url(`idle?offset=${tail}&live=long-poll&cursor=99999999999`));
  assert.equal(idle.status, 204);
  assert.equal(idle.headers.get('stream-next-offset'), tail);
  assert.equal(idle.headers.get('stream-up-to-date'), 'true');
  assert.ok(Number(idle.headers.get('stream-cursor')) > 99999999999, 'a cursor never goes back or repeats');
});

test('a Stream-Cursor is the current 20 s interval, and never at or below the cursor the client echoed', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const current = Number(responseCursor(null, now));
  assert.equal(current, Math.floor((now - Date.parse('2024-10-09T00:00:00Z')) / 20_000));
  assert.equal(responseCursor(undefined, now), String(current));
  for (const malformed of ['', 'abc', '-5', '1'.repeat(16)])
    assert.equal(responseCursor(malformed, now), String(current), malformed);
  assert.equal(responseCursor(String(current - 1), now), String(current), 'an old cursor: the current one');
  for (const echoed of [current, current + 1000]) {
    const next = Number(responseCursor(String(echoed), now));
    assert.ok(next > echoed && next <= echoed + 180, `${echoed} → ${next}: a jump of 1 to 180 intervals`);
  }
});

test("a long-poll's data answer carries a Stream-Cursor; a catch-up answer and the closed end do not", async () => {
  await fetch(url('cursor'), { method: 'PUT', headers: text, body: 'x' });
  const catchUp = await fetch(url('cursor?offset=-1'));
  assert.equal(await catchUp.text(), 'x');
  assert.equal(catchUp.headers.get('stream-cursor'), null);
  const polled = await fetch(url('cursor?offset=-1&live=long-poll'));
  assert.equal(await polled.text(), 'x');
  assert.ok(Number(polled.headers.get('stream-cursor')) > 0);
  await fetch(url('cursor'), { method: 'POST', headers: { 'stream-closed': 'true' } });
  const end = await fetch(url('cursor?offset=-1&live=long-poll'));
  assert.equal(await end.text(), 'x');
  assert.equal(end.headers.get('stream-closed'), 'true');
  assert.equal(end.headers.get('stream-cursor'), null);
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

test('a catch-up answer with data is cacheable, an empty one at the tail is not; octet-stream reads are attachments', async () => {
  await fetch(url('cached'), { method: 'PUT', headers: text, body: 'x' });
  const data = await fetch(url('cached?offset=-1'));
  assert.equal(await data.text(), 'x');
  assert.equal(data.headers.get('cache-control'), 'public, max-age=60, stale-while-revalidate=300');
  assert.equal(data.headers.get('content-disposition'), null, 'text is not an attachment');
  const tail = data.headers.get('stream-next-offset') ?? '';
  const empty = await fetch(url(`cached?offset=${tail}`));
  assert.equal(await empty.text(), '');
  assert.equal(empty.headers.get('cache-control'), 'no-store', 'it would hide the appends to come');
  const binary = { 'content-type': 'application/octet-stream' };
  await fetch(url('binary'), { method: 'PUT', headers: binary, body: 'y' });
  const bytes = await fetch(url('binary?offset=-1'));
  assert.equal(await bytes.text(), 'y');
  assert.equal(bytes.headers.get('content-disposition'), 'attachment');
});

// the Durable Streams spec leaves an offset the server never sent undefined (PROTOCOL.md §8: clients
// MUST NOT construct offsets; a fork at one MAY read corrupted data or be refused with 400): this pins
// what Mooring answers for one that falls inside an append
test("an offset never sent that falls inside an append is read from that append's start; a fork there inherits none of it", async () => {
  const created = await fetch(url('made-up'), { method: 'PUT', headers: text, body: 'abc' });
  const first = created.headers.get('stream-next-offset') ?? '';
  const appended = await fetch(url('made-up'), { method: 'POST', headers: text, body: 'defgh' });
  const tail = appended.headers.get('stream-next-offset') ?? '';
  const inside = first.replace(/3$/, '5');
  assert.notEqual(inside, first);
  const read = await fetch(url(`made-up?offset=${inside}`));
  assert.equal(read.status, 200);
  assert.equal(await read.text(), 'defgh');
  assert.equal(read.headers.get('stream-next-offset'), tail);
  const fork = (path: string, extra: Record<string, string> = {}) =>
    fetch(url(path), {
      method: 'PUT',
      headers: { 'stream-forked-from': '/v1/stream/made-up', 'stream-fork-offset': inside, ...extra },
    });
  const forked = await fork('made-up-fork');
  assert.equal(forked.status, 201);
  assert.equal(forked.headers.get('stream-next-offset'), inside);
  await fetch(url('made-up-fork'), { method: 'POST', headers: text, body: 'XY' });
  let offset = '-1';
  let body = '';
  for (let pages = 0; pages < 5; pages++) {
    const page = await fetch(url(`made-up-fork?offset=${offset}`));
    body += await page.text();
    offset = page.headers.get('stream-next-offset') ?? offset;
    if (page.headers.get('stream-up-to-date') === 'true') break;
  }
  assert.equal(body, 'abcXY', 'the fork reads the appends before the cut one, then its own');
  const sub = await fork('made-up-sub', { 'stream-fork-sub-offset': '1' });
  assert.equal(sub.status, 400, 'a sub-offset needs an append that starts at the fork offset');
  await sub.arrayBuffer();
});

// with a wake bus (Redis), a change made between a live read's first read and its subscription
// would be missed or heard late: the read subscribes first; a plain read waits for nothing
test('a live read subscribes to its stream before its first read; a plain read subscribes to nothing', async () => {
  const events: string[] = [];
  const bus: StreamWakeBus = {
    publish: () => {},
    watch: async (path) => {
      events.push(`watch ${path}`);
    },
    unwatch: () => {},
    onReconnect: () => {},
  };
  const streams = memoryStreamStore();
  const reads = Object.assign(Object.create(streams) as typeof streams, {
    read: (...args: Parameters<typeof streams.read>) => {
      events.push(`read ${args[0]}`);
      return streams.read(...args);
    },
  });
  const waiters = new StreamWaiters(bus, 0);
  const options = {
    streams: reads,
    waiters,
    longPollTimeout: 200,
    sseMaxDuration: 200,
    pageBytes: 1 << 20,
    cacheScope: 'public' as const,
    onRead: () => {},
    stallTimeout: 5_000,
    pageSlot: async () => () => {},
  };
  const { base, close } = await serveReads(options, streams);
  try {
    for (const path of ['plain', 'poll', 'sse'])
      await streams.create(
        path,
        { contentType: 'text/plain', closed: false, data: Buffer.from('x') },
        Date.now(),
      );
    await (await fetch(`${base}/plain?offset=-1`)).text();
    assert.deepEqual(events, ['read plain']);
    events.length = 0;
    const polled = await fetch(`${base}/poll?offset=0000000000000000_0000000000000001&live=long-poll`);
    assert.equal(polled.status, 204);
    assert.deepEqual(events.slice(0, 2), ['watch poll', 'read poll']);
    events.length = 0;
    await (await fetch(`${base}/sse?offset=-1&live=sse`)).text();
    assert.deepEqual(events.slice(0, 2), ['watch sse', 'read sse']);
  } finally {
    waiters.close();
    await close();
  }
});

/** A server answering `GET /<path>?…` with `handleRead` alone, on port 0. */
async function serveReads(options: Parameters<typeof handleRead>[0], streams: StreamStore) {
  const server = createServer(async (req, res) => {
    const at = new URL(req.url ?? '/', 'http://localhost');
    const path = at.pathname.slice(1);
    const meta = await streams.get(path, Date.now());
    if (meta) await handleRead(options, path, meta, req, res, at);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

// at shutdown the waiters close (server.ts): an SSE read at the tail must end there, not loop on
// waits that now return at once, writing a control event each time until its socket is cut
test('an SSE read ends cleanly once its waiters close (shutdown), with no further event', async () => {
  const streams = memoryStreamStore();
  const waiters = new StreamWaiters();
  const options = {
    streams,
    waiters,
    longPollTimeout: 60_000,
    sseMaxDuration: 60_000,
    pageBytes: 1 << 20,
    cacheScope: 'public' as const,
    onRead: () => {},
    stallTimeout: 5_000,
    pageSlot: async () => () => {},
  };
  const { base, close } = await serveReads(options, streams);
  try {
    await streams.create(
      's',
      { contentType: 'text/plain', closed: false, data: Buffer.from('x') },
      Date.now(),
    );
    const res = await fetch(`${base}/s?offset=-1&live=sse`);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let seen = '';
    while (!seen.includes('"upToDate":true')) {
      const { value, done } = await reader.read();
      assert.ok(!done, 'the read ended before it was up to date');
      seen += Buffer.from(value).toString();
    }
    await waitFor(() => waiters.size === 1, { message: 'the SSE read never waited at the tail' });
    waiters.close();
    let after = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      after += Buffer.from(value).toString();
      if (after.includes('event:')) break;
    }
    await reader.cancel();
    assert.equal(after, '', 'the response ends with nothing more written');
  } finally {
    await close();
  }
});
