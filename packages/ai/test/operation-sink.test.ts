// The sinks' own promises (operation-sink.ts): a channel sink marks a serial at or below the
// position the channel had reached when the publish went out as a duplicate (an id the server held
// before), across a new epoch by the server's flag and the sequence; `storedNothing` answers for any rejection value, `null` included; `ownMessages` leaves
// duplicates out.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Channel, Rest } from '@mooring/client';
import type { OperationInput } from '@mooring/protocol';
import { channelSink, ownMessages, restSink, storedNothing } from '../src/operation-sink.ts';

const EPOCH = 'mi9x2k0a7q3f';
const serial = (n: number, epoch = EPOCH) => `${epoch}.${String(n).padStart(16, '0')}`;

/** A channel at `position` whose publishResults answers `serials` (`d`: the server's duplicate flag). */
function channelAt(position: string, serials: string[], duplicates: boolean[] = [], sent: unknown[] = []) {
  return {
    position,
    clientId: 'agent',
    publishResults: async (_ops: OperationInput[], options: unknown) => {
      sent.push(options);
      return serials.map((serial, i) => (duplicates[i] ? { serial, duplicate: true } : { serial }));
    },
  } as unknown as Channel;
}

const ops = (n: number): OperationInput[] =>
  Array.from({ length: n }, (_, i) => ({ id: `op${i}`, name: 't', data: `${i}` }));

describe('channelSink duplicates', () => {
  it('marks a serial at or below the position before the publish a duplicate, one above it new', async () => {
    const sink = channelSink(channelAt(serial(10), [serial(9), serial(10), serial(11)]));
    assert.deepEqual(await sink.publish(ops(3)), [
      { serial: serial(9), duplicate: true },
      { serial: serial(10), duplicate: true },
      { serial: serial(11) },
    ]);
  });

  it("across a new epoch (a Redis restart), the server's duplicate at or below the position's sequence is another attempt's: one above it, or not the server's duplicate, is not", async () => {
    const NEW = 'mi9x2k0a7q3g';
    const sink = channelSink(
      channelAt(
        serial(10),
        [serial(9, NEW), serial(10, NEW), serial(11, NEW), serial(8, NEW)],
        [true, true, true, false],
      ),
    );
    assert.deepEqual(await sink.publish(ops(4)), [
      { serial: serial(9, NEW), duplicate: true }, // the crashed attempt's, kept in the new epoch
      { serial: serial(10, NEW), duplicate: true }, // at the position's sequence: kept too
      { serial: serial(11, NEW) }, // this publish's own resend, stored after the position
      { serial: serial(8, NEW) }, // stored now in a log made again from 1: new
    ]);
  });

  it('sends the precondition `after` with the publish when given, and none when not', async () => {
    const sent: unknown[] = [];
    const sink = channelSink(channelAt(serial(10), [serial(11)], [], sent));
    await sink.publish(ops(1), 'op0');
    await sink.publish(ops(1));
    assert.deepEqual(sent, [{ after: 'op0' }, {}]);
  });

  it('folds only the new operations as its own (echo off), not the duplicates', async () => {
    const stored: string[] = [];
    const sink = channelSink(channelAt(serial(10), [serial(10), serial(11)]), 100, (own) =>
      stored.push(...own.map((m) => `${m.id} ${m.serial}`)),
    );
    await sink.publish(ops(2));
    assert.deepEqual(stored, [`op1 ${serial(11)}`]);
  });
});

describe('storedNothing', () => {
  it('answers false, without throwing, for null and other values that are no error object', () => {
    for (const value of [null, undefined, 'queue_full', 42])
      assert.equal(storedNothing(value), false, String(value));
    assert.equal(storedNothing({ code: 'queue_full' }), true);
  });
});

describe('ownMessages', () => {
  it('leaves out the duplicates and what has no result', () => {
    const got = ownMessages('agent', ops(3), [{ serial: serial(5), duplicate: true }, { serial: serial(6) }]);
    assert.deepEqual(
      got.map((m) => [m.id, m.serial, m.clientId]),
      [['op1', serial(6), 'agent']],
    );
  });

  it('carries what the operation carried: name, data, encoding, headers, and the clientId', () => {
    const [message] = ownMessages(
      'agent',
      [{ id: 'b', name: 'file', data: 'aGk=', encoding: 'base64', headers: { kind: 'x' } }],
      [{ serial: serial(7) }],
    );
    const { timestamp: _t, ...rest } = message!;
    assert.deepEqual(rest, {
      serial: serial(7),
      version: serial(7),
      action: 'create',
      id: 'b',
      name: 'file',
      data: 'aGk=',
      encoding: 'base64',
      headers: { kind: 'x' },
      clientId: 'agent',
    });
  });
});

describe('restSink', () => {
  it('passes the server’s duplicate flag on', async () => {
    const rest = {
      publish: async () => [
        { serial: serial(3), duplicate: true },
        { serial: serial(4), duplicate: false },
      ],
    } as unknown as Rest;
    assert.deepEqual(await restSink(rest, 'c').publish(ops(2)), [
      { serial: serial(3), duplicate: true },
      { serial: serial(4) },
    ]);
  });
});
