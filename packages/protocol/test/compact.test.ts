/**
 * Compact `messages` frames (PROTOCOL.md §6.5): every message a plain frame can carry comes out of
 * a compact frame equal, field for field, and the compact frame is the smaller one.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  encodeCompactMessages,
  encodeMessages,
  formatSerial,
  type Message,
  type MessagesFrameExtras,
  parseServerFrame,
  toServerFrame,
} from '@mooring/protocol';

const E = '0mx9e3yyw09v';
const OTHER = '0mx9e3yyw0zz';
const s = (seq: number, epoch = E) => formatSerial(epoch, seq);

/** Messages covering every field, every action, and the serials that must stay strings. */
const MESSAGES: Message[] = [
  // a live create: version = serial, every optional field
  {
    serial: s(1),
    version: s(1),
    action: 'create',
    id: 'run_1:p0:0',
    name: 'ai.part',
    data: ' The',
    headers: { run: 'run_1', n: 3, done: false },
    clientId: 'agent-0',
    timestamp: 1_796_413_322_745,
  },
  // a token
  {
    serial: s(1),
    version: s(2),
    action: 'append',
    id: 'run_1:p0:1',
    data: ' so',
    clientId: 'a',
    timestamp: 1,
  },
  // an append that only replaces headers: data '' is data
  {
    serial: s(1),
    version: s(3),
    action: 'append',
    id: 'x:2',
    data: '',
    headers: { state: 'done' },
    timestamp: 2,
  },
  // JSON data, null data (present, not absent), bytes
  { serial: s(4), version: s(5), action: 'update', id: 'u', data: { a: [1, 'two', null] }, timestamp: 3 },
  { serial: s(6), version: s(6), action: 'create', id: 'n', data: null, timestamp: 4 },
  { serial: s(7), version: s(7), action: 'create', id: 'b', data: 'AAEC', encoding: 'base64', timestamp: 5 },
  // a tombstone: no data, no headers, no clientId
  { serial: s(8), version: s(9), action: 'delete', id: 'd', timestamp: 6 },
  // text that needs escaping, in every string field
  {
    serial: s(10),
    version: s(10),
    action: 'create',
    id: 'q"\\\n\u2028',
    name: 'n"',
    data: '"}]\u0000😀',
    clientId: 'c"\\',
    timestamp: 7,
  },
  // a serial of another epoch and one past 2^53: both stay strings
  { serial: s(3, OTHER), version: s(11), action: 'append', id: 'o', data: 'x', timestamp: 8 },
  {
    serial: `${E}.9999999999999999`,
    version: `${E}.9999999999999999`,
    action: 'create',
    id: 'big',
    timestamp: 9,
  },
];

/** The frame a client gets from the compact text, and from the plain one. */
function both(channel: string, messages: Message[], extras?: MessagesFrameExtras) {
  const compact = encodeCompactMessages(channel, messages, extras);
  const plain = encodeMessages(channel, messages, extras);
  return { compact, plain, fromCompact: parseServerFrame(compact), fromPlain: parseServerFrame(plain) };
}

describe('compact messages frames', () => {
  test('each message comes out of a compact frame as it comes out of a plain one', () => {
    for (const message of MESSAGES) {
      const { compact, fromCompact, fromPlain } = both('ai:0', [message]);
      assert.equal(JSON.parse(compact).type, 'm');
      assert.deepEqual(fromCompact, fromPlain, compact);
      assert.deepEqual(fromCompact, { type: 'messages', channel: 'ai:0', messages: [message] });
    }
  });

  test('many messages in one frame, and the frame fields after, rolledUp and more', () => {
    for (const extras of [
      undefined,
      { after: s(0) },
      { after: s(3), rolledUp: true },
      { after: s(3), rolledUp: true, more: true },
      { rolledUp: false },
    ]) {
      const { fromCompact, fromPlain } = both('chat:room-"1"', MESSAGES, extras);
      assert.deepEqual(fromCompact, fromPlain);
    }
    const rolled = both('c', MESSAGES.slice(0, 2), { after: s(0), rolledUp: true }).fromCompact;
    assert.ok(typeof rolled === 'object' && rolled.type === 'messages');
    assert.equal(rolled.after, s(0));
    assert.equal(rolled.rolledUp, true);
    assert.equal(rolled.more, undefined);
    const page = both('c', MESSAGES.slice(0, 2), { after: s(0), rolledUp: true, more: true }).fromCompact;
    assert.ok(typeof page === 'object' && page.type === 'messages');
    assert.equal(page.more, true, 'a read-back page that is not its last says so');
  });

  test('serials of the epoch travel as numbers, a version equal to its serial not at all', () => {
    const token = JSON.parse(encodeCompactMessages('ai:0', [MESSAGES[1]!]));
    assert.deepEqual(token, {
      type: 'm',
      channel: 'ai:0',
      epoch: E,
      m: [{ a: 'a', s: 1, v: 2, i: 'run_1:p0:1', t: 1, c: 'a', d: ' so' }],
    });
    const created = JSON.parse(encodeCompactMessages('ai:0', [MESSAGES[4]!])).m[0];
    assert.equal('v' in created, false);
    assert.equal(created.d, null);
    const foreign = JSON.parse(encodeCompactMessages('ai:0', [MESSAGES[8]!])).m[0];
    assert.equal(foreign.s, s(3, OTHER));
    assert.equal(foreign.v, 11);
  });

  test('a numeric serial is its sequence in the frame epoch, 0 included', () => {
    const frame = toServerFrame({
      type: 'm',
      channel: 'c',
      epoch: E,
      m: [{ a: 'c', s: 0, v: 7, i: 'i', t: 1 }],
    });
    assert.ok(typeof frame === 'object' && frame.type === 'messages');
    assert.equal(frame.messages[0]?.serial, `${E}.0000000000000000`);
    assert.equal(frame.messages[0]?.version, `${E}.0000000000000007`);
  });

  test('an empty frame carries no epoch and expands to no messages', () => {
    const frame = JSON.parse(encodeCompactMessages('c', []));
    assert.equal('epoch' in frame, false);
    assert.deepEqual(toServerFrame(frame), { type: 'messages', channel: 'c', messages: [] });
  });

  test('a streamed token takes under two thirds of the plain bytes', () => {
    const token: Message = {
      serial: s(3),
      version: s(11),
      action: 'append',
      id: 'run_220dec6f-b6dc-415f-94ff-d4e49c27719c:p0:8',
      data: ' so',
      clientId: 'agent-0',
      timestamp: 1_796_413_322_956,
    };
    const compact = Buffer.byteLength(encodeCompactMessages('ai:0', [token]));
    const plain = Buffer.byteLength(encodeMessages('ai:0', [token]));
    assert.ok(compact < (plain * 2) / 3, `${compact} of ${plain} bytes`);
  });

  test('a malformed compact frame is explained, not expanded', () => {
    const bad: [unknown, RegExp][] = [
      [{ type: 'm', m: [] }, /without a channel/],
      [{ type: 'm', channel: 'c' }, /without an m array/],
      [{ type: 'm', channel: 'c', epoch: 5, m: [] }, /non-string epoch/],
      [{ type: 'm', channel: 'c', epoch: E, m: [7] }, /message 0 is not an object/],
      [{ type: 'm', channel: 'c', epoch: E, m: [null] }, /message 0 is not an object/],
      [{ type: 'm', channel: 'c', epoch: E, m: [['c', 1, 'i', 1]] }, /message 0 is not an object/],
      [{ type: 'm', channel: 'c', epoch: E, m: [{ a: 'x', s: 1, i: 'i', t: 1 }] }, /unknown action "x"/],
      [{ type: 'm', channel: 'c', m: [{ a: 'c', s: 1, i: 'i', t: 1 }] }, /no valid serial/],
      [{ type: 'm', channel: 'c', epoch: 'short', m: [{ a: 'c', s: 1, i: 'i', t: 1 }] }, /no valid serial/],
      [{ type: 'm', channel: 'c', epoch: E, m: [{ a: 'c', s: -1, i: 'i', t: 1 }] }, /no valid serial/],
      [{ type: 'm', channel: 'c', epoch: E, m: [{ a: 'c', s: 1.5, i: 'i', t: 1 }] }, /no valid serial/],
      [
        { type: 'm', channel: 'c', epoch: E, m: [{ a: 'a', s: 1, v: true, i: 'i', t: 1 }] },
        /no valid version/,
      ],
    ];
    for (const [value, why] of bad) {
      const result = toServerFrame(value);
      assert.equal(typeof result, 'string', JSON.stringify(value));
      assert.match(result as string, why);
    }
  });
});
