/**
 * The response framer decides when `buffer()` may release bytes, so a boundary reported inside a
 * response would leak a partial stream. These tests feed real response bytes whole and byte by byte.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpResponseFramer } from '../src/http-response-framer.ts';

function boundaries(text: string, bytewise: boolean): number[] {
  const framer = new HttpResponseFramer();
  const bytes = Buffer.from(text, 'latin1');
  const seen: number[] = [];
  const pieces = bytewise ? [...bytes].map((b) => Buffer.from([b])) : [bytes];
  for (const piece of pieces) {
    framer.push(piece);
    if (seen.at(-1) !== framer.boundary && framer.boundary > 0) seen.push(framer.boundary);
  }
  return seen;
}

const fixed = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello';
const chunked =
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n9;ext=1\r\ndata: 2\n\n\r\n0\r\nX-T: 1\r\n\r\n';
const noContent = 'HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n';

for (const bytewise of [false, true]) {
  const how = bytewise ? 'byte by byte' : 'in one chunk';

  test(`framer (${how}): Content-Length, chunked with extensions and trailers, 204`, () => {
    assert.deepEqual(boundaries(fixed, bytewise), [fixed.length]);
    assert.deepEqual(boundaries(chunked, bytewise), [chunked.length]);
    assert.deepEqual(boundaries(noContent, bytewise), [noContent.length]);
  });

  test(`framer (${how}): several responses on one keep-alive stream`, () => {
    const stream = fixed + chunked + noContent;
    const expected = bytewise
      ? [fixed.length, fixed.length + chunked.length, stream.length]
      : [stream.length];
    assert.deepEqual(boundaries(stream, bytewise), expected);
  });
}

test('framer: no boundary inside an unfinished chunked stream (an open SSE response)', () => {
  const framer = new HttpResponseFramer();
  framer.push(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n'));
  assert.equal(framer.boundary, 0);
  assert.equal(framer.done, false);
});

test('framer: 100 Continue completes on its own, then the real response follows', () => {
  const interim = 'HTTP/1.1 100 Continue\r\n\r\n';
  assert.deepEqual(boundaries(interim + fixed, true), [interim.length, interim.length + fixed.length]);
});

test('framer: goes opaque after 101 and for non-HTTP streams; read-until-close never completes', () => {
  const upgrade = new HttpResponseFramer();
  const head = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n';
  upgrade.push(Buffer.from(`${head}HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n`));
  assert.equal(upgrade.boundary, head.length, 'bytes after 101 must not be framed as HTTP');
  assert.equal(upgrade.done, true);

  const raw = new HttpResponseFramer();
  raw.push(Buffer.from('SSH-2.0-OpenSSH\r\n'));
  assert.equal(raw.boundary, 0);
  assert.equal(raw.done, true);

  const untilClose = new HttpResponseFramer();
  untilClose.push(Buffer.from('HTTP/1.0 200 OK\r\n\r\nbody'));
  assert.equal(untilClose.boundary, 0);
  assert.equal(untilClose.done, true);
});
