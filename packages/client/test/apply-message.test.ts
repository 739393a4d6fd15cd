// applyMessage: the client rule of PROTOCOL.md §4.2 for folding operations into a held message.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { applyMessage } from '../src/apply-message.ts';
import { appended, created, serial } from './helpers/fake-client.ts';

describe('applyMessage', () => {
  it('grows a message by appends and replaces headers when given', () => {
    let held = applyMessage(undefined, created(1, 'Hel'));
    held = applyMessage(held, appended(2, 1, 'lo'));
    held = applyMessage(held, { ...appended(3, 1, '!'), headers: { status: 'done' } });
    assert.deepEqual(held, {
      serial: serial(1),
      version: serial(3),
      action: 'update',
      id: 'm1',
      name: 'text',
      data: 'Hello!',
      headers: { status: 'done' },
      timestamp: 1,
    });
  });

  it('takes the name a rolled-up update carries when the held copy began from an append', () => {
    // a client that joined mid-message holds it from its first append, without the create's name
    const { name: _name, ...live } = appended(2, 1, 'lo'); // a live append carries no name
    const held = applyMessage(undefined, live);
    assert.equal(held.name, undefined);
    const rolled: Message = { ...created(1, 'Hello'), action: 'update', version: serial(3) };
    assert.equal(applyMessage(held, rolled).name, 'text');
  });

  it('ignores what it already applied (version ≤ held version)', () => {
    const held = applyMessage(applyMessage(undefined, created(1, 'a')), appended(2, 1, 'b'));
    assert.equal(applyMessage(held, appended(2, 1, 'b')), held);
    assert.equal(applyMessage(held, created(1, 'a')), held);
  });

  it('replaces a partial copy with a rolled-up update', () => {
    const partial = applyMessage(undefined, created(1, 'He'));
    const rolled: Message = { ...created(1, 'Hello world'), action: 'update', version: serial(9) };
    assert.deepEqual(applyMessage(partial, rolled), rolled);
  });

  it('update replaces only the fields present', () => {
    const held: Message = { ...created(1, 'x'), headers: { a: 1 } };
    const next = applyMessage(held, {
      serial: serial(1),
      version: serial(2),
      action: 'update',
      id: 'u',
      headers: { b: 2 },
      timestamp: 5,
    });
    assert.equal(next.data, 'x');
    assert.deepEqual(next.headers, { b: 2 });
    assert.equal(next.id, 'm1', 'keeps the creating id');
    assert.equal(next.timestamp, 1);
  });

  it('delete leaves a tombstone without data or headers', () => {
    const held: Message = { ...created(1, 'x'), headers: { a: 1 }, clientId: 'agent' };
    const next = applyMessage(held, {
      serial: serial(1),
      version: serial(2),
      action: 'delete',
      id: 'd',
      timestamp: 3,
    });
    assert.deepEqual(next, {
      serial: serial(1),
      version: serial(2),
      action: 'delete',
      id: 'm1',
      name: 'text',
      clientId: 'agent',
      timestamp: 1,
    });
  });
});
