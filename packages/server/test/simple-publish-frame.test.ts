/**
 * The hand-written fast path for simple `publish` frames (simple-publish-frame.ts) accepts only what
 * the full schema accepts, with the same result, so every frame gets the answer it got before; and
 * it does take the shapes the client sends for messages and streamed tokens.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clientFrameSchema } from '@mooring/protocol/schemas';
import { simplePublishFrame } from '../src/simple-publish-frame.ts';

const SERIAL = '0mx60ll73xn4.0000000000000001';

const create = { type: 'publish', ref: 7, channel: 'chat:1', ops: [{ name: 't', data: 'hello' }] };
const append = {
  type: 'publish',
  ref: 'r-1',
  channel: 'session:a',
  ops: [{ action: 'append', serial: SERIAL, data: ' tok', id: 'c1:9' }],
};

/** Values tried in place of each field: valid, invalid, and of every JSON type. */
const ODD: unknown[] = [
  undefined,
  null,
  0,
  -1,
  1.5,
  2 ** 53,
  true,
  '',
  'x',
  'x'.repeat(64),
  'x'.repeat(65),
  'x'.repeat(256),
  'x'.repeat(257),
  'has space',
  'a*b',
  SERIAL,
  'not-a-serial',
  'create',
  'append',
  'update',
  'delete',
  'publish',
  'base64',
  [],
  [{}],
  {},
  { a: 1 },
  100,
];

function variants(base: Record<string, unknown>): unknown[] {
  const out: unknown[] = [base];
  const op = (base.ops as Record<string, unknown>[])[0]!;
  for (const value of ODD) {
    for (const key of ['type', 'ref', 'channel', 'ops', 'after', 'extra', '__proto__']) {
      const frame: Record<string, unknown> = JSON.parse(JSON.stringify(base));
      if (value === undefined) delete frame[key];
      else if (key === '__proto__') Object.defineProperty(frame, key, { value, enumerable: true });
      else frame[key] = value;
      out.push(frame);
    }
    for (const key of [
      'action',
      'id',
      'serial',
      'name',
      'data',
      'encoding',
      'headers',
      'lease',
      'clientId',
    ]) {
      const changed: Record<string, unknown> = { ...op };
      if (value === undefined) delete changed[key];
      else changed[key] = value;
      out.push({ ...base, ops: [changed] }, { ...base, ops: [op, changed] });
    }
  }
  out.push({ ...base, ops: Array.from({ length: 100 }, () => op) });
  out.push({ ...base, ops: Array.from({ length: 101 }, () => op) });
  out.push(JSON.parse('{"type":"publish","channel":"c","ops":[{"data":"x","__proto__":{"a":1}}]}'));
  out.push(JSON.parse('{"type":"publish","channel":"c","__proto__":{},"ops":[{"data":"x"}]}'));
  out.push(Object.assign(Object.create({ inherited: true }), base));
  out.push(null, 'publish', [create], 42);
  return out;
}

describe('simplePublishFrame', () => {
  it('accepts only frames the full schema accepts, and yields what the schema yields', () => {
    let taken = 0;
    let total = 0;
    for (const frame of [...variants(create), ...variants(append)]) {
      total++;
      const fast = simplePublishFrame(frame);
      if (fast === undefined) continue;
      taken++;
      const full = clientFrameSchema.safeParse(frame);
      assert.ok(full.success, `fast path took a frame the schema refuses: ${JSON.stringify(frame)}`);
      assert.deepEqual(fast, full.data);
    }
    assert.ok(taken > 20 && taken < total / 2, `took ${taken} of ${total}`);
  });

  it('takes the shapes the client sends: messages and streamed tokens', () => {
    for (const frame of [
      create,
      append,
      { type: 'publish', channel: 'a', ops: [{ id: 'c1:1' }] },
      { type: 'publish', channel: 'a', ops: [{ action: 'create', id: 'c1:2', name: 'm', data: '' }] },
      { ...append, after: 'c1:8' }, // a token pipelined behind the one before it (PROTOCOL.md §7)
    ])
      assert.equal(simplePublishFrame(frame), frame, JSON.stringify(frame));
  });

  it('leaves everything unusual to the schema', () => {
    for (const frame of [
      { ...create, extra: 1 },
      { ...create, ops: [{ data: { text: 'structured' } }] },
      { ...create, ops: [{ data: 'x', headers: { a: 'b' } }] },
      { ...create, ops: [{ data: 'x', serial: SERIAL }] },
      { ...append, ops: [{ action: 'append', data: 'x' }] },
      { ...append, ops: [{ action: 'update', serial: SERIAL, data: 'x' }] },
      { ...create, ref: 1.5 },
      { ...create, channel: 'bad channel' },
      { ...create, ops: [] },
    ])
      assert.equal(simplePublishFrame(frame), undefined, JSON.stringify(frame));
  });
});
