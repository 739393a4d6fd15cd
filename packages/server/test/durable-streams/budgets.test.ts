/**
 * Durable Streams requests take from the budgets of their credential's identity (PROTOCOL.md §10,
 * §16): a write (PUT, POST, DELETE) one operation of its publish rate; a live read (long-poll, SSE)
 * a place in its connection budgets while it waits. One token holder cannot flood a node with
 * appends or hold it with waiting readers; others are not touched.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createToken } from '../../src/index.ts';
import { type Fixture, metricsText, metricValue, startFixture, TEST_KEY } from '../support/fixture.ts';
import { RawClient } from '../support/raw-client.ts';

let fx: Fixture;

before(async () => {
  fx = await startFixture('memory', {
    limits: { maxPublishRate: 5, maxConnectionsPerClient: 2 },
    durableStreams: { longPollTimeout: 60_000 },
  });
});
after(() => fx.close());

const ALL = { 'stream:*': ['stream-read', 'stream-append', 'stream-create', 'stream-delete'] };

function tokenFor(clientId: string): Promise<string> {
  return createToken(TEST_KEY, { clientId, capability: ALL }).then((t) => t.token);
}

function call(path: string, token: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${fx.server.url}/v1/stream/${path}`, {
    ...init,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain', ...init.headers },
  });
}

async function errorCode(res: Response): Promise<string> {
  return ((await res.json()) as { error: { code: string } }).error.code;
}

test('writes take from the publish rate of their identity: past it 429 rate_limited, nothing stored; others write on', async () => {
  const flood = await tokenFor('flood');
  const other = await tokenFor('other');
  assert.equal((await call('rate/a', flood, { method: 'PUT' })).status, 201);
  // Ten appends at once: a burst of 5 (the PUT and four appends) and a refill of 5 per second, so
  // at most four appends plus what refilled while they came in; the rest refused, nothing of them
  // stored. The allowance is counted from the time they took, so a slow machine is no failure.
  const started = performance.now();
  const answers = await Promise.all(
    Array.from({ length: 10 }, (_, i) => call('rate/a', flood, { method: 'POST', body: String(i) })),
  );
  const refilled = Math.ceil(((performance.now() - started) / 1000) * 5);
  const statuses = answers.map((a) => a.status);
  const taken = statuses.flatMap((s, i) => (s === 204 ? [String(i)] : []));
  assert.ok(taken.length <= 4 + refilled, `appends taken: ${statuses} (refilled: ${refilled})`);
  const refused = answers.filter((a) => a.status === 429);
  assert.equal(refused.length, 10 - taken.length, `every other answer a 429: ${statuses}`);
  if (refilled < 6) assert.ok(refused.length > 0, `none refused: ${statuses}`);
  for (const r of refused) assert.equal(await errorCode(r), 'rate_limited');
  // Appends that came in at once are stored in the order they arrived: compare them as a set.
  const stored = await (await call('rate/a?offset=-1', flood)).text();
  assert.deepEqual([...stored].sort(), taken.sort());
  assert.equal(
    (await call('rate/b', other, { method: 'PUT', body: 'mine' })).status,
    201,
    'another identity',
  );
});

test('writes take the bytes of their body from the bytes rate of their identity; one body over the burst passes when it is full', async () => {
  // the default maxPublishBytesRate: 1 MiB per second, a burst of as many
  const big = await tokenFor('big');
  assert.equal((await call('bytes/a', big, { method: 'PUT' })).status, 201);
  // 1,000,000 bytes leave 48,576 of the burst: the second body would need about 0.9 s of refill,
  // not a moment a loaded machine can take between two requests
  const body = 'b'.repeat(1_000_000);
  assert.equal((await call('bytes/a', big, { method: 'POST', body })).status, 204);
  const refused = await call('bytes/a', big, { method: 'POST', body });
  assert.equal(refused.status, 429);
  assert.equal(await errorCode(refused), 'rate_limited');
  assert.equal(
    (await (await call('bytes/a?offset=-1', big)).text()).length,
    1_000_000,
    'the refused body is not stored',
  );
  const huge = await tokenFor('huge');
  assert.equal((await call('bytes/b', huge, { method: 'PUT' })).status, 201);
  assert.equal((await call('bytes/b', huge, { method: 'POST', body: 'h'.repeat(3_000_000) })).status, 204);
  assert.equal((await call('bytes/b', huge, { method: 'POST', body: 'h' })).status, 429);
});

test('a sub-offset fork takes what it copies from the bytes rate (a byte stream: its bytes; JSON: the append it splits): past it 429, nothing created', async () => {
  // sources written with the API key (not counted): 1,000,000 bytes, and a JSON append of as many
  const key = TEST_KEY;
  assert.equal((await call('copy/bin', key, { method: 'PUT', body: 'c'.repeat(1_000_000) })).status, 201);
  const messages = `[${new Array(500_000).fill('0').join(',')}]`;
  const json = { 'content-type': 'application/json' };
  assert.equal((await call('copy/json', key, { method: 'PUT', headers: json, body: messages })).status, 201);
  const forkOf = (source: string, subOffset: number) => ({
    method: 'PUT',
    headers: {
      'stream-forked-from': `/v1/stream/${source}`,
      'stream-fork-offset': '0000000000000000_0000000000000000',
      'stream-fork-sub-offset': String(subOffset),
      ...(source === 'copy/json' ? json : {}),
    },
  });
  // as in the bytes test above: 1,000,000 leave 48,576 of the 1 MiB burst, the next would need ~0.9 s
  const bin = await tokenFor('copier-bin');
  assert.equal((await call('copy/b1', bin, forkOf('copy/bin', 1_000_000))).status, 201);
  const refused = await call('copy/b2', bin, forkOf('copy/bin', 1_000_000));
  assert.equal(refused.status, 429);
  assert.equal(await errorCode(refused), 'rate_limited');
  assert.equal((await call('copy/b2', bin, { method: 'HEAD' })).status, 404, 'the refused fork was not made');
  // one message of the 999,999-byte JSON append costs the append: the second fork is refused too
  const js = await tokenFor('copier-json');
  const first = await call('copy/j1', js, forkOf('copy/json', 1));
  assert.equal(first.status, 201);
  assert.equal(await (await call('copy/j1?offset=-1', js)).text(), '[0]');
  const second = await call('copy/j2', js, forkOf('copy/json', 1));
  assert.equal(second.status, 429);
  assert.equal(await errorCode(second), 'rate_limited');
  assert.equal((await call('copy/j2', js, { method: 'HEAD' })).status, 404, 'the refused fork was not made');
});

test('live reads count in the connection budget of their identity while they wait', async () => {
  const reader = await tokenFor('reader');
  assert.equal((await call('live/a', reader, { method: 'PUT' })).status, 201);
  const waiting = [new AbortController(), new AbortController()];
  const polls = waiting.map((abort) =>
    call('live/a?offset=now&live=long-poll', reader, { signal: abort.signal }).catch(() => undefined),
  );
  // both wait at the tail (60 s): a third live read, or a WebSocket of the same client, is refused
  await waitForReaders(2);
  const third = await call('live/a?offset=now&live=sse', reader);
  assert.equal(third.status, 429);
  assert.equal(await errorCode(third), 'too_many_connections');
  await assert.rejects(RawClient.connect(fx.server.url, { token: reader }), /HTTP 429/);
  // a plain read is not live: it holds nothing
  assert.equal((await call('live/a?offset=-1', reader)).status, 200);
  // a reader that leaves gives its place back
  waiting[0]!.abort();
  await polls[0];
  await waitForReaders(1);
  const ws = await RawClient.connect(fx.server.url, { token: reader });
  await ws.close();
  waiting[1]!.abort();
  await polls[1];
});

async function waitForReaders(count: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const readers = metricValue(await metricsText(fx.server), 'mooring_stream_live_readers ');
    if (readers === count) return;
    if (Date.now() > deadline) throw new Error(`live readers never reached ${count} (${readers})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
