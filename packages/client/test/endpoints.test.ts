// One `url` option → the realtime endpoints and the REST base (PROTOCOL.md §5.1, §11, §12).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connectionUrl, connectUrl, endpoints } from '../src/endpoints.ts';
import type { MooringError } from '../src/errors.ts';

describe('endpoints', () => {
  it('accepts http(s) and ws(s), with or without /v1/connect, keeping a path prefix', () => {
    assert.deepEqual(endpoints('http://127.0.0.1:8080'), {
      websocket: 'ws://127.0.0.1:8080/v1/connect',
      sse: 'http://127.0.0.1:8080/v1/connect/sse',
      longpoll: 'http://127.0.0.1:8080/v1/connect/poll',
      http: 'http://127.0.0.1:8080/',
    });
    assert.deepEqual(endpoints('wss://example.com/mooring/v1/connect'), {
      websocket: 'wss://example.com/mooring/v1/connect',
      sse: 'https://example.com/mooring/v1/connect/sse',
      longpoll: 'https://example.com/mooring/v1/connect/poll',
      http: 'https://example.com/mooring/',
    });
    assert.equal(endpoints('https://example.com/').websocket, 'wss://example.com/v1/connect');
  });

  it('refuses what is not a URL', () => {
    assert.throws(
      () => endpoints('example.com'),
      (e: MooringError) => e.code === 'bad_request',
    );
    assert.throws(
      () => endpoints('ftp://example.com'),
      (e: MooringError) => e.code === 'bad_request',
    );
  });

  it('builds the connect URL with the version, params and recover key', () => {
    const url = new URL(connectUrl('ws://h/v1/connect', { key: 'a:b', clientId: 'x y' }, 'c_1.sig'));
    assert.equal(url.pathname, '/v1/connect');
    assert.deepEqual(Object.fromEntries(url.searchParams), {
      v: '1',
      key: 'a:b',
      clientId: 'x y',
      recover: 'c_1.sig',
    });
  });

  it('derives the per-connection HTTP paths from an HTTP transport URL, keeping the prefix', () => {
    assert.equal(
      connectionUrl('https://example.com/mooring/v1/connect/sse?v=1&key=a:b', 'c_1', 'frames'),
      'https://example.com/mooring/v1/connections/c_1/frames',
    );
    assert.equal(
      connectionUrl('http://127.0.0.1:9/v1/connect/poll?v=1', 'c_2', 'poll'),
      'http://127.0.0.1:9/v1/connections/c_2/poll',
    );
  });
});
