/**
 * The runtime schemas of `@mooring/protocol/schemas` against PROTOCOL.md: every client frame (§6.1,
 * §6.2), operation (§4, §7, §7.1) and REST body (§11) the spec allows is accepted, and each thing it
 * forbids is refused.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_LIMITS, type JsonValue } from '@mooring/protocol';
import {
  channelSchema,
  clientFrameSchema,
  headersSchema,
  jsonValueSchema,
  operationInputSchema,
  publishBodySchema,
  tokenRequestSchema,
} from '@mooring/protocol/schemas';

const S = 'mi9x2k0a7q3f.0000000000000042';
const long = (n: number) => 'x'.repeat(n);

interface Schema {
  safeParse(value: unknown): { success: boolean };
}

function accepts(schema: Schema, cases: Record<string, unknown>): void {
  for (const [why, value] of Object.entries(cases))
    assert.equal(schema.safeParse(value).success, true, `accepts ${why}`);
}

function refuses(schema: Schema, cases: Record<string, unknown>): void {
  for (const [why, value] of Object.entries(cases))
    assert.equal(schema.safeParse(value).success, false, `refuses ${why}`);
}

describe('channel names (§2)', () => {
  test('1–256 printable ASCII without spaces, * or ?', () => {
    accepts(channelSchema, {
      plain: 'lobby',
      namespaced: 'session:8f3a',
      punctuation: 'a!"#$%&\'()+,-./:;<=>@[]^_`{|}~',
      max: long(256),
    });
    refuses(channelSchema, {
      empty: '',
      space: 'a b',
      star: 'a*',
      question: 'a?',
      long: long(257),
      unicode: 'café',
      tab: 'a\tb',
      number: 1,
    });
  });
});

describe('operations (§4, §7)', () => {
  test('allowed: create by default, append/update/delete with a serial, every optional field', () => {
    accepts(operationInputSchema, {
      'bare create': {},
      'create with everything': {
        action: 'create',
        id: 'a',
        name: 'text',
        data: { x: [1, 'y', null, true] },
        headers: { a: 1, b: 'c', d: false },
        lease: 30_000,
      },
      'base64 data': { data: 'AAEC', encoding: 'base64' },
      append: { action: 'append', serial: S, data: ' world', headers: { status: 'streaming' } },
      'append without data': { action: 'append', serial: S },
      update: {
        action: 'update',
        serial: S,
        data: { any: 'json' },
      },
      'update bytes': { action: 'update', serial: S, data: 'AAEC', encoding: 'base64' },
      delete: { action: 'delete', serial: S, id: 'del-1' },
      'lease release': { action: 'update', serial: S, lease: 0 },
      'lease minimum': { lease: 100 },
      'id of 256': { id: long(256) },
    });
  });

  test('forbidden: a serial on create, none on the others, non-string or encoded appends, bad leases, unknown fields', () => {
    refuses(operationInputSchema, {
      'serial on create': { serial: S },
      'append without serial': { action: 'append', data: 'x' },
      'update without serial': { action: 'update', data: 'x' },
      'delete without serial': { action: 'delete' },
      'bad serial': { action: 'append', serial: 'nope', data: 'x' },
      'JSON append': { action: 'append', serial: S, data: { x: 1 } },
      'encoded append': { action: 'append', serial: S, data: 'AA', encoding: 'base64' },
      'base64 of non-string': { data: 1, encoding: 'base64' },
      'other encoding': { data: 'x', encoding: 'utf8' },
      'unknown action': { action: 'upsert' },
      'lease below 100': { lease: 50 },
      'lease above 24 h': { lease: 86_400_001 },
      'fractional lease': { lease: 100.5 },
      'lease on delete': { action: 'delete', serial: S, lease: 0 },
      'clientId field': { clientId: 'me' },
      'unknown field': { foo: 1 },
      'empty id': { id: '' },
      'id of 257': { id: long(257) },
      'name of 257': { name: long(257) },
      'non-JSON data': { data: () => 1 },
      'undefined in data': { data: { a: undefined } },
    });
  });

  test('headers: string, number or boolean values, at most 64, keys 1–128 chars', () => {
    const many = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`h${i}`, i]));
    accepts(headersSchema, {
      empty: {},
      scalars: { a: 'x', b: 1, c: true },
      max: many(DEFAULT_LIMITS.maxHeaders),
    });
    refuses(headersSchema, {
      'too many': many(DEFAULT_LIMITS.maxHeaders + 1),
      'object value': { a: { b: 1 } },
      'null value': { a: null },
      'empty key': { '': 1 },
      'long key': { [long(129)]: 1 },
    });
  });

  test('headers: a flood of bad ones is refused at the first fault past the count, with one issue', () => {
    // 60,000 headers whose values are objects (a 700 KB frame): one issue, not one per header
    const flood = Object.fromEntries(Array.from({ length: 60_000 }, (_, i) => [`k${i}`, {}]));
    const result = headersSchema.safeParse(flood);
    assert.equal(result.success, false);
    assert.deepEqual(
      result.error?.issues.map((i) => i.message),
      ['header "k0": a header value is a string, a number or a boolean'],
    );
    const many = Object.fromEntries(Array.from({ length: 60_000 }, (_, i) => [`k${i}`, i]));
    assert.deepEqual(
      headersSchema.safeParse(many).error?.issues.map((i) => i.message),
      ['too many headers'],
    );
    refuses(headersSchema, { array: [1], 'class instance': new Map(), null: null, string: 'a' });
  });

  test('JSON values: checked without recursion, however deep or wide', () => {
    let deep: JsonValue = 'x';
    for (let i = 0; i < 200_000; i++) deep = [deep];
    assert.equal(jsonValueSchema.safeParse(deep).success, true, 'a recursive check overflows the stack');
    const wide = Array.from({ length: 300_000 }, () => ({}));
    assert.equal(jsonValueSchema.safeParse(wide).success, true);
    assert.equal(jsonValueSchema.safeParse([...wide, { a: [1, Number.NaN] }]).success, false);
    assert.equal(jsonValueSchema.safeParse({ d: new Date(0) }).success, false, 'not a plain object');
    assert.equal(jsonValueSchema.safeParse(Object.create(null)).success, true);
  });

  test('JSON values: anything JSON, nothing else', () => {
    accepts(jsonValueSchema, {
      string: 's',
      number: 1.5,
      bool: false,
      null: null,
      nested: { a: [{ b: [null] }] },
    });
    refuses(jsonValueSchema, {
      NaN: Number.NaN,
      Infinity: Number.POSITIVE_INFINITY,
      undefined: undefined,
      function: () => 1,
      bigint: 1n,
      symbol: Symbol('x'),
    });
  });
});

describe('client frames (§6.1, §6.2)', () => {
  test('every frame the spec lists, with and without ref', () => {
    accepts(clientFrameSchema, {
      'attach live': { type: 'attach', channel: 'c' },
      'attach from': { type: 'attach', ref: 1, channel: 'c', from: S },
      'attach rewind 1': { type: 'attach', ref: 'r', channel: 'c', rewind: 1 },
      'attach rewind 1000': { type: 'attach', channel: 'c', rewind: 1000 },
      'attach start': { type: 'attach', channel: 'c', start: true },
      detach: { type: 'detach', ref: 2, channel: 'c' },
      publish: { type: 'publish', ref: 3, channel: 'c', ops: [{ name: 'text', data: 'Hel' }] },
      'publish 100 ops': { type: 'publish', channel: 'c', ops: Array.from({ length: 100 }, () => ({})) },
      'presence enter': { type: 'presence', channel: 'c', action: 'enter', data: { status: 'online' } },
      'presence update': { type: 'presence', channel: 'c', action: 'update' },
      'presence leave': { type: 'presence', ref: 4, channel: 'c', action: 'leave' },
      ping: { type: 'ping', ref: 5 },
      auth: { type: 'auth', ref: 6, token: 'eyJ…' },
      close: { type: 'close' },
      'ref of 64 chars': { type: 'ping', ref: long(64) },
    });
  });

  test('forbidden: unknown types and fields, two attach modes, out-of-range values, bad refs', () => {
    refuses(clientFrameSchema, {
      'not an object': 'ping',
      array: [{ type: 'ping' }],
      'no type': { channel: 'c' },
      'unknown type': { type: 'subscribe', channel: 'c' },
      'server frame': { type: 'ack', channel: 'c', results: [] },
      'unknown field': { type: 'ping', extra: 1 },
      'attach without channel': { type: 'attach' },
      'attach bad channel': { type: 'attach', channel: 'a b' },
      'attach from and rewind': { type: 'attach', channel: 'c', from: S, rewind: 5 },
      'attach rewind and start': { type: 'attach', channel: 'c', rewind: 5, start: true },
      'attach bad from': { type: 'attach', channel: 'c', from: '42' },
      'attach rewind 0': { type: 'attach', channel: 'c', rewind: 0 },
      'attach rewind 1001': { type: 'attach', channel: 'c', rewind: 1001 },
      'attach start false': { type: 'attach', channel: 'c', start: false },
      'publish no ops': { type: 'publish', channel: 'c', ops: [] },
      'publish 101 ops': { type: 'publish', channel: 'c', ops: Array.from({ length: 101 }, () => ({})) },
      'publish bad op': { type: 'publish', channel: 'c', ops: [{ serial: S }] },
      'presence sync': { type: 'presence', channel: 'c', action: 'sync' },
      'auth empty token': { type: 'auth', token: '' },
      'auth long token': { type: 'auth', token: long(8193) },
      'ref of 65 chars': { type: 'ping', ref: long(65) },
      'fractional ref': { type: 'ping', ref: 1.5 },
      'close with ref': { type: 'close', ref: 1 },
    });
  });
});

describe('REST bodies (§11)', () => {
  test('publish: one operation, an array of them, or { ops }', () => {
    accepts(publishBodySchema, {
      one: { name: 'text', data: 'hi' },
      array: [{ name: 'a' }, { action: 'append', serial: S, data: 'x' }],
      ops: { ops: [{ name: 'a' }] },
    });
    refuses(publishBodySchema, {
      'bad op': { serial: S },
      'bad op in array': [{}, { action: 'delete' }],
      'ops with extra': { ops: [], extra: 1 },
      string: 'hello',
    });
  });

  test('tokens: clientId, capability and ttl, all optional', () => {
    accepts(tokenRequestSchema, {
      empty: {},
      all: { clientId: 'web-1', capability: { 'session:*': ['subscribe', 'publish'] }, ttl: 60_000 },
    });
    refuses(tokenRequestSchema, {
      'empty clientId': { clientId: '' },
      'long clientId': { clientId: long(257) },
      'capability not a list': { capability: { 'session:*': 'subscribe' } },
      'fractional ttl': { ttl: 1.5 },
      'unknown field': { scope: 'x' },
    });
  });
});
