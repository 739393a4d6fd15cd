/**
 * One token holder cannot fill the server's memory or hold its event loop through Durable Streams
 * (PROTOCOL.md §16.6, §16.9): pipelined catch-up reads on a socket nobody reads, an SSE reader that
 * never reads, and large or deeply nested JSON-mode bodies. The bytes a response holds unsent are
 * measured through a small hook on `ServerResponse` (the server runs in this process).
 */
import assert from 'node:assert/strict';
import { ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, type TestContext, test } from 'node:test';
import { waitFor } from '@mooring/testkit';
import { sseEvent, WRITE_BYTES } from '../../src/durable-streams/stream-reads.ts';
import { createToken } from '../../src/index.ts';
import { type Fixture, startFixture, TEST_KEY } from '../support/fixture.ts';

const MiB = 1024 * 1024;
const STALL = 1_500;
let fx: Fixture;

// every response the server answers (all of them call writeHead): their unsent bytes can be summed
const responses = new Set<ServerResponse>();
const writeHead = ServerResponse.prototype.writeHead;
ServerResponse.prototype.writeHead = function (this: ServerResponse, ...args: unknown[]) {
  responses.add(this);
  return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
} as typeof writeHead;

/** Bytes the server's responses hold unsent: their own buffers and their sockets' (not the kernel's). */
function unsent(): number {
  let total = 0;
  for (const res of responses) {
    if (res.destroyed || res.writableFinished) responses.delete(res);
    // a queued answer's buffer, plus its socket's once it has one
    else total += res.writableLength;
  }
  return total;
}

/** The most unsent bytes seen, sampled every 20 ms for `ms`. */
async function peakUnsent(ms: number): Promise<number> {
  let peak = unsent();
  const until = Date.now() + ms;
  while (Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    peak = Math.max(peak, unsent());
  }
  return peak;
}

before(async () => {
  fx = await startFixture('memory', {
    limits: { maxConnectionsPerClient: 2 },
    durableStreams: { sseMaxDuration: 300, stallTimeout: STALL },
  });
});
after(async () => {
  ServerResponse.prototype.writeHead = writeHead;
  await fx.close();
});

function tokenFor(clientId: string, path: string, ops: string[]): Promise<string> {
  return createToken(TEST_KEY, { clientId, capability: { [`stream:${path}`]: ops } }).then((t) => t.token);
}

async function put(path: string, contentType: string, body: BodyInit): Promise<Response> {
  return fetch(`${fx.server.url}/v1/stream/${path}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': contentType },
    body,
  });
}

/** A raw connection that sends `requests` and does not read until told; closed after the test. */
function rawSocket(t: TestContext, requests: string): Promise<Socket> {
  const socket = connect(fx.server.port, '127.0.0.1');
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  socket.pause();
  return new Promise((resolve, reject) => {
    socket.once('connect', () => {
      socket.write(requests);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Reads what is left on `socket` and resolves once it is closed (the server cut it); false after 10 s. */
function cut(socket: Socket): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), 10_000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    socket.resume();
  });
}

test('pipelined catch-up reads on a socket that is never read: the server holds about one piece unsent, not a page per request; the answers stay whole and in order', async (t) => {
  const PAGE = 4 * MiB;
  assert.equal((await put('pipe', 'application/octet-stream', Buffer.alloc(PAGE, 'p'))).status, 201);
  const token = await tokenFor('pipe', 'pipe', ['stream-read']);
  const N = 16;
  let requests = '';
  for (let i = 0; i < N; i++)
    requests += `GET /v1/stream/pipe?offset=-1&n=${i} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\n\r\n`;

  // never read: before, every request buffered its whole page (16 × 4 MiB)
  const stalled = await rawSocket(t, requests);
  const peak = await peakUnsent(1_000);
  assert.ok(peak < MiB, `the server holds ${peak} bytes unsent for one socket`);
  // a reader that takes nothing for stallTimeout is cut, and the rest of its pipeline with it
  await waitFor(() => unsent() === 0, { message: `still unsent: ${unsent()}` });
  assert.ok(await cut(stalled), 'the server closed the stalled connection');

  // the same pipeline, read: every answer whole, in order
  const reader = await rawSocket(t, requests);
  const received: Buffer[] = [];
  let size = 0;
  reader.on('data', (chunk: Buffer) => {
    received.push(chunk);
    size += chunk.length;
  });
  reader.resume();
  await waitFor(() => size >= N * PAGE, { timeout: 20_000, message: `received ${size} bytes` });
  await new Promise((resolve) => setTimeout(resolve, 50));
  reader.destroy();
  // each answer: 200, its whole page, then the next
  const text = Buffer.concat(received).toString('latin1');
  let at = 0;
  for (let i = 0; i < N; i++) {
    const headEnd = text.indexOf('\r\n\r\n', at);
    const head = text.slice(at, headEnd);
    assert.match(head, /^HTTP\/1\.1 200 OK/);
    assert.match(head, new RegExp(`content-length: ${PAGE}\r\n`, 'i'));
    const body = text.slice(headEnd + 4, headEnd + 4 + PAGE);
    assert.equal(body, 'p'.repeat(PAGE));
    at = headEnd + 4 + PAGE;
  }
  assert.equal(at, text.length);
});

test('a never-read SSE reader: bounded unsent bytes, and its budget place is held until its socket took everything or was cut', async (t) => {
  // 32 MiB in 4 MiB appends
  assert.equal((await put('sse', 'application/octet-stream', Buffer.alloc(0))).status, 201);
  for (let i = 0; i < 8; i++) {
    const res = await fetch(`${fx.server.url}/v1/stream/sse`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/octet-stream' },
      body: Buffer.alloc(4 * MiB, 's'),
    });
    assert.equal(res.status, 204);
  }
  const token = await tokenFor('sse', 'sse', ['stream-read']);
  const sse = `GET /v1/stream/sse?offset=-1&live=sse&token=${token} HTTP/1.1\r\nhost: x\r\n\r\n`;
  const readers = [await rawSocket(t, sse), await rawSocket(t, sse)];
  // before, each wrote the whole stream (~43 MiB of base64) into its socket at once
  const peak = await peakUnsent(1_000);
  assert.ok(peak < 2 * MiB, `two SSE readers hold ${peak} bytes unsent`);
  // sseMaxDuration (300 ms) has passed, but their bytes are not taken: the places are still held
  const third = await fetch(`${fx.server.url}/v1/stream/sse?offset=now&live=sse&token=${token}`);
  assert.equal(third.status, 429);
  await third.body?.cancel();
  // cut after stallTimeout: the places are free again, nothing is left buffered
  await waitFor(() => unsent() === 0, { message: `still unsent: ${unsent()}` });
  for (const reader of readers) assert.ok(await cut(reader), 'the server closed the stalled reader');
  const abort = new AbortController();
  const fourth = await fetch(`${fx.server.url}/v1/stream/sse?offset=now&live=sse&token=${token}`, {
    signal: abort.signal,
  });
  assert.equal(fourth.status, 200);
  abort.abort();
});

test('JSON-mode bodies: above maxJsonAppendBytes refused (413) without parsing; within it, deep nesting refused before parsing, and the largest accepted', async () => {
  const token = await tokenFor('json', 'j*', ['stream-create', 'stream-append']);
  const call = (path: string, body: string) =>
    fetch(`${fx.server.url}/v1/stream/${path}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body,
    });
  const elements = (bytes: number) => `[${new Array(Math.floor(bytes / 3)).fill('{}').join(',')}]`;
  const big = elements(8 * MiB - 16);
  const small = elements(MiB - 16);
  const deep = `${'['.repeat(600)}${']'.repeat(600)}`;
  // before: 201 after about a second of one turn
  const refused = await call('j-big', big);
  assert.equal(refused.status, 413);
  assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'body_too_large');
  assert.equal((await call('j-deep', deep)).status, 400);
  // the largest accepted body: many small messages, re-serialised in slices (that it yields between
  // them is checked without a clock in json-mode.test.ts)
  const accepted = await call('j-small', small);
  assert.equal(accepted.status, 201);
  const read = await fetch(`${fx.server.url}/v1/stream/j-small?offset=-1`, {
    headers: { authorization: `Bearer ${TEST_KEY}` },
  });
  assert.equal(((await read.json()) as unknown[]).length, Math.floor((MiB - 16) / 3));
});

/** The SSE encoding as it was, in one string: the reference for the pieces. */
function sseReference(event: string, payload: string): string {
  return `event: ${event}\n${payload
    .split(/\r\n|\r|\n/)
    .map((line) => (line.startsWith(' ') ? `data: ${line}` : `data:${line}`))
    .join('\n')}\n\n`;
}

test('SSE events written in pieces join into the same event: long lines, CRLF, leading spaces, surrogate pairs at piece boundaries', async () => {
  const long = 'x'.repeat(WRITE_BYTES * 2 + 7);
  const pairs = `${'a'.repeat(WRITE_BYTES - 8)}${'😀'.repeat(WRITE_BYTES)}`;
  // the first and the last high surrogate (U+10000, U+10FFFF) at piece boundaries too
  const first = `${'a'.repeat(WRITE_BYTES - 8)}${'\u{10000}'.repeat(WRITE_BYTES)}`;
  const last = `${'a'.repeat(WRITE_BYTES - 8)}${'\u{10FFFF}'.repeat(WRITE_BYTES)}`;
  const payloads = [
    '',
    '\n',
    ' lead\r\n  two\rthree\n',
    long,
    `${long}\r\n ${long}\r`,
    pairs,
    first,
    last,
    '\n'.repeat(WRITE_BYTES * 3),
    `a\r${'\r\n'.repeat(WRITE_BYTES)}`,
  ];
  for (const payload of payloads) {
    const pieces = [...sseEvent('data', payload)];
    assert.equal(pieces.join(''), sseReference('data', payload));
    for (const piece of pieces) {
      assert.ok(piece.length <= WRITE_BYTES + 8, `a piece of ${piece.length} characters`);
      // no piece ends inside a surrogate pair (each is written as UTF-8 on its own)
      const last = piece.charCodeAt(piece.length - 1);
      assert.ok(!(last >= 0xd800 && last <= 0xdbff), 'a piece ends with a high surrogate');
    }
  }

  // over a real server: a byte stream (base64 in 3-byte-aligned slices) and a text stream, each one
  // page of several pieces, read back exactly
  const bytes = Buffer.from(Array.from({ length: 300_001 }, (_, i) => (i * 131 + 7) & 255));
  const text = `${' one\n'.repeat(20_000)}${'é😀'.repeat(40_000)}`;
  assert.equal((await put('sse-bin', 'application/octet-stream', bytes)).status, 201);
  assert.equal((await put('sse-text', 'text/plain', text)).status, 201);
  const events = async (path: string): Promise<string[]> => {
    const res = await fetch(`${fx.server.url}/v1/stream/${path}?offset=-1&live=sse`, {
      headers: { authorization: `Bearer ${TEST_KEY}` },
    });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let raw = '';
    while (!raw.includes('"upToDate":true')) {
      const { value, done } = await reader.read();
      if (done) break;
      raw += decoder.decode(value, { stream: true });
    }
    await reader.cancel();
    return raw
      .split('\n\n')
      .filter((block) => block.startsWith('event: data'))
      .map((block) =>
        block
          .split('\n')
          .slice(1)
          .map((line) => line.replace(/^data: ?/, ''))
          .join('\n'),
      );
  };
  assert.deepEqual(Buffer.from((await events('sse-bin')).join(''), 'base64'), bytes);
  assert.equal((await events('sse-text')).join(''), text);
});
