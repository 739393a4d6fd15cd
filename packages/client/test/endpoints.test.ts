// One `url` option → the WebSocket endpoint and the REST base (PROTOCOL.md §5.1, §11).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connectUrl, endpoints } from '../src/endpoints.ts';
import type { MooringError } from '../src/errors.ts';

describe('endpoints', () => {
  it('accepts http(s) and ws(s), with or without /v1/connect, keeping a path prefix', () => {
    assert.deepEqual(endpoints('http://127.0.0.1:8080'), {
      websocket: 'ws://127.0.0.1:8080/v1/connect',
      http: 'http://127.0.0.1:8080/',
    });
    assert.deepEqual(endpoints('wss://example.com/mooring/v1/connect'), {
      websocket: 'wss://example.com/mooring/v1/connect',
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
});
