/**
 * Bad Durable Streams requests get the status the Durable Streams spec names (400, 401, 403, 404,
 * 405, 409, 410, 413), a typed JSON error, and never a 500; the server keeps serving (PROTOCOL.md §16).
 * Also: a key's capability decides which streams it may touch, and the open namespace is only what
 * its glob names. From the mutation sweep of stream-http.ts: a TTL or Expires-At alone is taken,
 * producer headers without an id are 400, a fork sub-offset above 0 is taken with its offset, and a
 * maxAppendBytes above the 64 MiB drain bound takes bodies up to it.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { formatOffset } from '../../src/store/stream-store.ts';
import { type Fixture, startFixture, TEST_KEY } from '../support/fixture.ts';

let fx: Fixture;
const READER = 'reader:secret';

before(async () => {
  fx = await startFixture('sqlite', {
    keys: [
      TEST_KEY,
      { name: 'reader', secret: 'secret', capability: { 'stream:shared/*': ['stream-read'] } },
    ],
    durableStreams: { open: 'public/*', maxAppendBytes: 1024, longPollTimeout: 500 },
  });
});
after(() => fx.close());

interface Req {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array<ArrayBuffer>;
  key?: string | null;
}

async function call(path: string, req: Req = {}): Promise<Response> {
  const headers: Record<string, string> = { ...req.headers };
  if (req.key !== null) headers.authorization = `Bearer ${req.key ?? TEST_KEY}`;
  const res = await fetch(`${fx.server.url}/v1/stream/${path}`, {
    method: req.method ?? 'GET',
    headers,
    ...(req.body === undefined ? {} : { body: req.body }),
  });
  assert.notEqual(res.status, 500, `${req.method ?? 'GET'} ${path} answered 500`);
  return res;
}

async function expectError(path: string, req: Req, status: number, code?: string): Promise<Response> {
  const res = await call(path, req);
  const text = await res.text();
  assert.equal(res.status, status, `${req.method ?? 'GET'} ${path}: ${text}`);
  if (req.method !== 'HEAD') {
    const body = JSON.parse(text) as { error: { code: string; status: number; message: string } };
    assert.equal(body.error.status, status);
    assert.ok(body.error.message.length > 0);
    if (code) assert.equal(body.error.code, code);
  }
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  return res;
}

const json = { 'content-type': 'application/json' };
const text = { 'content-type': 'text/plain' };

test('create: bad headers and bodies are 400, a different config is 409', async () => {
  await expectError('c/ttl', { method: 'PUT', headers: { 'stream-ttl': '1.5' } }, 400, 'bad_request');
  await expectError('c/ttl', { method: 'PUT', headers: { 'stream-ttl': '-1' } }, 400);
  await expectError('c/ttl', { method: 'PUT', headers: { 'stream-ttl': '99999999999999999999' } }, 400);
  await expectError('c/exp', { method: 'PUT', headers: { 'stream-expires-at': 'tomorrow' } }, 400);
  const both = { 'stream-ttl': '60', 'stream-expires-at': '2099-01-01T00:00:00Z' };
  await expectError('c/both', { method: 'PUT', headers: both }, 400);
  await expectError('c/json', { method: 'PUT', headers: json, body: '{"a":' }, 400);
  await expectError(
    'c/json',
    { method: 'PUT', headers: json, body: new Uint8Array([0x22, 0xff, 0x22]) },
    400,
  );
  const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
  await expectError('c/deep', { method: 'PUT', headers: json, body: deep }, 413); // above maxAppendBytes
  assert.equal((await call('c/x', { method: 'PUT', headers: text })).status, 201);
  await expectError('c/x', { method: 'PUT', headers: json }, 409, 'stream_conflict');
  await expectError('c/x', { method: 'PUT', headers: { ...text, 'stream-closed': 'true' } }, 409);
  await expectError('c/big', { method: 'PUT', headers: text, body: 'x'.repeat(1025) }, 413, 'body_too_large');
});

test('append: 400 for malformed requests, 404 for no stream, 409 for conflicts, 403 for a fenced producer', async () => {
  await expectError('a/none', { method: 'POST', headers: text, body: 'x' }, 404, 'not_found');
  assert.equal((await call('a/s', { method: 'PUT', headers: json })).status, 201);
  await expectError('a/s', { method: 'POST', headers: json }, 400);
  await expectError('a/s', { method: 'POST', body: new Uint8Array([0x31]) }, 400); // no Content-Type
  await expectError('a/s', { method: 'POST', headers: json, body: '[]' }, 400);
  await expectError('a/s', { method: 'POST', headers: json, body: 'nope' }, 400);
  await expectError('a/s', { method: 'POST', headers: text, body: 'x' }, 409, 'stream_conflict');
  await expectError('a/s', { method: 'POST', headers: json, body: 'x'.repeat(2000) }, 413);
  const producer = (epoch: string, seq: string) => ({
    ...json,
    'producer-id': 'p',
    'producer-epoch': epoch,
    'producer-seq': seq,
  });
  await expectError('a/s', { method: 'POST', headers: { ...json, 'producer-id': 'p' }, body: '1' }, 400);
  await expectError('a/s', { method: 'POST', headers: producer('x', '0'), body: '1' }, 400);
  await expectError('a/s', { method: 'POST', headers: producer('0', '9007199254740993'), body: '1' }, 400);
  await expectError(
    'a/s',
    { method: 'POST', headers: { ...producer('0', '0'), 'producer-id': '' }, body: '1' },
    400,
  );
  const gap = await expectError(
    'a/s',
    { method: 'POST', headers: producer('0', '3'), body: '1' },
    409,
    'producer_seq_gap',
  );
  assert.equal(gap.headers.get('producer-expected-seq'), '0');
  assert.equal((await call('a/s', { method: 'POST', headers: producer('2', '0'), body: '1' })).status, 200);
  const fenced = await expectError(
    'a/s',
    { method: 'POST', headers: producer('1', '0'), body: '1' },
    403,
    'producer_fenced',
  );
  assert.equal(fenced.headers.get('producer-epoch'), '2');
  await expectError('a/s', { method: 'POST', headers: producer('3', '1'), body: '1' }, 400);
  assert.equal(
    (await call('a/s', { method: 'POST', headers: { ...json, 'stream-seq': 'b' }, body: '1' })).status,
    204,
  );
  await expectError('a/s', { method: 'POST', headers: { ...json, 'stream-seq': 'a' }, body: '1' }, 409);
  assert.equal((await call('a/s', { method: 'POST', headers: { 'stream-closed': 'true' } })).status, 204);
  const closed = await expectError('a/s', { method: 'POST', headers: json, body: '1' }, 409, 'stream_closed');
  assert.equal(closed.headers.get('stream-closed'), 'true');
  assert.ok(closed.headers.get('stream-next-offset'));
});

test("a body under another Content-Type than its stream's is 409, never parsed as JSON; a close may carry the JSON Content-Type", async () => {
  assert.equal((await call('ct/j', { method: 'PUT', headers: json, body: '1' })).status, 201);
  await expectError('ct/j', { method: 'POST', headers: text, body: '{' }, 409, 'stream_conflict');
  await expectError(
    'ct/fork',
    { method: 'PUT', headers: { ...text, 'stream-forked-from': '/v1/stream/ct/j' }, body: '{' },
    409,
    'stream_conflict',
  );
  const closed = await call('ct/j', { method: 'POST', headers: { ...json, 'stream-closed': 'true' } });
  assert.equal(closed.status, 204);
  assert.equal(closed.headers.get('stream-closed'), 'true');
});

test('a Producer-Id and a Stream-Seq take up to 256 characters; 257 is 400', async () => {
  assert.equal((await call('len/s', { method: 'PUT', headers: text })).status, 201);
  const producer = (id: string) => ({
    ...text,
    'producer-id': id,
    'producer-epoch': '0',
    'producer-seq': '0',
  });
  assert.equal(
    (await call('len/s', { method: 'POST', headers: producer('p'.repeat(256)), body: 'a' })).status,
    200,
  );
  await expectError('len/s', { method: 'POST', headers: producer('p'.repeat(257)), body: 'b' }, 400);
  const seq = (value: string) => ({ ...text, 'stream-seq': value });
  assert.equal(
    (await call('len/s', { method: 'POST', headers: seq('1'.repeat(256)), body: 'c' })).status,
    204,
  );
  await expectError('len/s', { method: 'POST', headers: seq('2'.repeat(257)), body: 'd' }, 400);
  assert.equal(await (await call('len/s?offset=-1')).text(), 'ac');
});

test('headers are read strictly: an RFC 3339 Stream-Expires-At that is a real date, a Producer-Epoch ≤ 2^53-1, a fork source under /v1/stream/; a sub-offset 0 needs no offset', async () => {
  for (const expiresAt of ['2099-13-45T00:00:00Z', 'Thu, 01 Jan 2099 00:00:00 GMT'])
    await expectError('h/exp', { method: 'PUT', headers: { 'stream-expires-at': expiresAt } }, 400);
  assert.equal((await call('h/s', { method: 'PUT', headers: text })).status, 201);
  const unsafe = { ...text, 'producer-id': 'p', 'producer-epoch': '9007199254740993', 'producer-seq': '0' };
  await expectError('h/s', { method: 'POST', headers: unsafe, body: 'x' }, 400);
  await expectError('h/f', { method: 'PUT', headers: { 'stream-forked-from': '/v2/stream/h/s' } }, 404);
  const sub0 = { 'stream-forked-from': '/v1/stream/h/s', 'stream-fork-sub-offset': '0' };
  assert.equal((await call('h/f', { method: 'PUT', headers: sub0 })).status, 201);
});

test('reads: 400 for bad offsets and modes, 404 for no stream', async () => {
  assert.equal((await call('r/s', { method: 'PUT', headers: text, body: 'abc' })).status, 201);
  for (const query of [
    'offset=',
    'offset=abc',
    'offset=1',
    'offset=-2',
    'offset=-1&offset=now',
    'live=sse',
    'live=bogus&offset=-1',
    'offset=../../etc',
  ])
    await expectError(`r/s?${query}`, {}, 400);
  await expectError('r/none?offset=-1', {}, 404);
  await expectError('r/none?offset=now&live=long-poll', {}, 404);
  const head = await call('r/none', { method: 'HEAD' });
  assert.equal(head.status, 404);
});

test('forks: 404 for no source, 400 for bad offsets, 409 for mismatches, 410 for a soft-deleted source', async () => {
  assert.equal((await call('f/src', { method: 'PUT', headers: text, body: 'hello' })).status, 201);
  const from = (extra: Record<string, string> = {}) => ({
    'stream-forked-from': '/v1/stream/f/src',
    ...extra,
  });
  await expectError('f/a', { method: 'PUT', headers: { 'stream-forked-from': '/v1/stream/f/none' } }, 404);
  await expectError('f/a', { method: 'PUT', headers: from({ 'stream-fork-offset': 'zzz' }) }, 400);
  await expectError(
    'f/a',
    { method: 'PUT', headers: from({ 'stream-fork-offset': '0000000000000000_0000000000000099' }) },
    400,
  );
  await expectError('f/a', { method: 'PUT', headers: from({ 'stream-fork-sub-offset': '1' }) }, 400);
  await expectError('f/a', { method: 'PUT', headers: { 'stream-fork-sub-offset': '0' } }, 400);
  await expectError('f/a', { method: 'PUT', headers: from({ 'content-type': 'application/json' }) }, 409);
  assert.equal((await call('f/a', { method: 'PUT', headers: from() })).status, 201);
  // a malformed Content-Type counts as none: the fork takes its source's, as one without does
  for (const type of ['garbage', ';charset=utf-8', '/plain']) {
    const fork = await call(`f/typed-${type.length}`, {
      method: 'PUT',
      headers: from({ 'content-type': type }),
    });
    assert.equal(fork.status, 201, type);
    assert.equal(fork.headers.get('content-type'), 'text/plain', type);
  }
  assert.equal((await call('f/src', { method: 'DELETE' })).status, 204);
  for (const method of ['GET', 'HEAD', 'DELETE']) await expectError('f/src', { method }, 410);
  await expectError('f/src', { method: 'POST', headers: text, body: 'x' }, 410, 'stream_gone');
  await expectError('f/src', { method: 'PUT', headers: text }, 409);
  await expectError('f/b', { method: 'PUT', headers: from() }, 409);
  // the fork still reads what it inherited
  assert.equal(await (await call('f/a?offset=-1')).text(), 'hello');
});

test('access: 401 (asking for a Bearer credential) without credentials, 403 outside the capability, the open glob only where it says', async () => {
  const unauthorized = await expectError('shared/x', { method: 'PUT', key: null }, 401, 'unauthorized');
  assert.equal(unauthorized.headers.get('www-authenticate'), 'Bearer');
  await expectError('shared/x', { method: 'PUT', key: 'test:wrong' }, 401);
  assert.equal((await call('shared/x', { method: 'PUT', headers: text, body: 'hi' })).status, 201);
  assert.equal(await (await call('shared/x?offset=-1', { key: READER })).text(), 'hi');
  const forbidden = await expectError(
    'shared/x',
    { method: 'POST', headers: text, body: 'x', key: READER },
    403,
    'forbidden',
  );
  assert.equal(forbidden.headers.get('www-authenticate'), null, 'a 403 asks for no credentials');
  await expectError('shared/x', { method: 'DELETE', key: READER }, 403);
  await expectError('other/x?offset=-1', { key: READER }, 403);
  // a fork is a read of its source: a reader of nothing cannot copy a stream it may not read
  await expectError(
    'public/copy',
    { method: 'PUT', headers: { 'stream-forked-from': '/v1/stream/shared/x' }, key: null },
    401,
  );
  assert.equal((await call('public/p', { method: 'PUT', headers: text, key: null })).status, 201);
  assert.equal((await call('public/p', { method: 'POST', headers: text, body: 'x', key: null })).status, 204);
  await expectError('publicity/p', { method: 'PUT', headers: text, key: null }, 401);
});

test('a stream path is 1 to 1024 characters: an empty or a longer one is 400', async () => {
  const longest = `p/${'x'.repeat(1022)}`;
  assert.equal((await call(longest, { method: 'PUT', headers: text })).status, 201);
  assert.equal((await call(longest, { method: 'HEAD' })).status, 200);
  await expectError(`${longest}x`, { method: 'PUT', headers: text }, 400, 'bad_request');
  await expectError('', { method: 'PUT', headers: text }, 400, 'bad_request');
});

test('JSON bodies take at most maxJsonAppendBytes (a create, an append, a fork of a JSON stream without a Content-Type); other bodies up to maxAppendBytes', async () => {
  const small = await startFixture('memory', {
    durableStreams: { open: '*', maxAppendBytes: 1024, maxJsonAppendBytes: 100 },
  });
  try {
    // bytes, not a string: fetch would add a text/plain Content-Type
    const put = (path: string, headers: Record<string, string>, body: string) =>
      fetch(`${small.server.url}/v1/stream/${path}`, {
        method: 'PUT',
        headers,
        body: new TextEncoder().encode(body),
      });
    const post = (path: string, headers: Record<string, string>, body: string) =>
      fetch(`${small.server.url}/v1/stream/${path}`, { method: 'POST', headers, body });
    /** A JSON string of exactly `bytes` bytes. */
    const value = (bytes: number) => `"${'a'.repeat(bytes - 2)}"`;
    const status = async (res: Promise<Response>) => {
      const answer = await res;
      await answer.arrayBuffer();
      return answer.status;
    };
    assert.equal(await status(put('j', json, value(100))), 201);
    assert.equal(await status(put('j-over', json, value(101))), 413);
    assert.equal(await status(post('j', json, value(100))), 204);
    assert.equal(await status(post('j', json, value(101))), 413);
    const from = { 'stream-forked-from': '/v1/stream/j' };
    assert.equal(await status(put('j-fork', from, value(100))), 201);
    assert.equal(await status(put('j-fork-over', from, value(101))), 413);
    assert.equal(await status(put('t', text, 'x'.repeat(1024))), 201);
    assert.equal(await status(post('t', text, 'x'.repeat(1024))), 204);
  } finally {
    await small.close();
  }
});

test('other methods are 405; the server still answers after all of it', async () => {
  await expectError('m/x', { method: 'PATCH' }, 405, 'method_not_allowed');
  const health = await fetch(`${fx.server.url}/health`);
  assert.equal(health.status, 200);
});

test('Stream-TTL or Stream-Expires-At alone is taken (HEAD names it); producer headers without a Producer-Id are 400', async () => {
  const ttl = await call('e/ttl', { method: 'PUT', headers: { ...text, 'stream-ttl': '60' } });
  assert.equal(ttl.status, 201);
  assert.equal((await call('e/ttl', { method: 'HEAD' })).headers.get('stream-ttl'), '60');
  const at = '2099-01-01T00:00:00Z';
  const expires = await call('e/exp', { method: 'PUT', headers: { ...text, 'stream-expires-at': at } });
  assert.equal(expires.status, 201);
  assert.equal((await call('e/exp', { method: 'HEAD' })).headers.get('stream-expires-at'), at);
  const noId = { ...text, 'producer-epoch': '0', 'producer-seq': '0' };
  await expectError('e/ttl', { method: 'POST', headers: noId, body: 'x' }, 400, 'bad_request');
});

test('a fork with a Stream-Fork-Sub-Offset above 0 at an append start inherits that much of the append', async () => {
  const created = await call('sub/src', { method: 'PUT', headers: text, body: 'abc' });
  const first = created.headers.get('stream-next-offset') ?? '';
  assert.equal((await call('sub/src', { method: 'POST', headers: text, body: 'defgh' })).status, 204);
  const fork = await call('sub/fork', {
    method: 'PUT',
    headers: {
      'stream-forked-from': '/v1/stream/sub/src',
      'stream-fork-offset': first,
      'stream-fork-sub-offset': '2',
    },
  });
  assert.equal(fork.status, 201, await fork.text());
  let offset = '-1';
  let body = '';
  for (let pages = 0; pages < 5; pages++) {
    const page = await call(`sub/fork?offset=${offset}`);
    body += await page.text();
    offset = page.headers.get('stream-next-offset') ?? offset;
    if (page.headers.get('stream-up-to-date') === 'true') break;
  }
  assert.equal(body, 'abcde');
});

// an over-limit body is drained up to 64 MiB before the 413; that bound must not cap a larger
// maxAppendBytes (it did: every body above 64 MiB was a 413 naming a limit it was under)
test('a maxAppendBytes above 64 MiB takes a body of that size, with a Content-Length or streamed', async () => {
  const LIMIT = 64 * 1024 * 1024 + 1;
  const big = await startFixture('memory', { durableStreams: { open: '*', maxAppendBytes: LIMIT } });
  try {
    const at = `${big.server.url}/v1/stream/big`;
    assert.equal((await fetch(at, { method: 'PUT', headers: text })).status, 201);
    const body = Buffer.alloc(LIMIT, 0x61);
    const declared = await fetch(at, { method: 'POST', headers: text, body });
    assert.equal(declared.status, 204, await declared.text());
    // no Content-Length: the size is known only as the body arrives
    const streamed = await fetch(at, {
      method: 'POST',
      headers: text,
      body: new ReadableStream({
        start(controller) {
          for (let at = 0; at < LIMIT; at += 1024 * 1024)
            controller.enqueue(body.subarray(at, at + 1024 * 1024));
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    assert.equal(streamed.status, 204, await streamed.text());
    const head = await fetch(at, { method: 'HEAD' });
    assert.equal(head.headers.get('stream-next-offset'), formatOffset(2 * LIMIT));
  } finally {
    await big.close();
  }
});
