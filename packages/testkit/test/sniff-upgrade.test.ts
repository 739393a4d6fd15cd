import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_HEAD, sniffUpgrade } from '../src/sniff-upgrade.ts';

const upgrade =
  'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n\r\n';

test('sniffUpgrade: recognises a WebSocket upgrade, case-insensitively', () => {
  assert.equal(sniffUpgrade(Buffer.from(upgrade)), 'upgrade');
});

test('sniffUpgrade: waits for the whole head', () => {
  assert.equal(sniffUpgrade(Buffer.from(upgrade.slice(0, 40))), 'incomplete');
});

test('sniffUpgrade: other requests, other upgrades and non-HTTP bytes are not upgrades', () => {
  assert.equal(sniffUpgrade(Buffer.from('GET /sse HTTP/1.1\r\nHost: a\r\n\r\n')), 'other');
  assert.equal(sniffUpgrade(Buffer.from('GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n')), 'other');
  assert.equal(sniffUpgrade(Buffer.from('POST /x HTTP/1.1\r\nX-Upgrade: websocket\r\n\r\n')), 'other');
  assert.equal(sniffUpgrade(Buffer.from('\x16\x03\x01 not http\r\n\r\n')), 'other');
  assert.equal(sniffUpgrade(Buffer.alloc(MAX_HEAD + 1, 'a')), 'other');
});
