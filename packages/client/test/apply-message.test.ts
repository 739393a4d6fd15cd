// applyMessage: the client rule of PROTOCOL.md §4.2 for folding operations into a held message.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { applyMessage } from '../src/apply-message.ts';
import { appended, created, EPOCH, fakeClient, sent, serial } from './helpers/fake-client.ts';
import { flush } from './helpers/fake-transport.ts';

// Message 1 as in PROTOCOL.md §4.1: created by `agent` (id m1, at 1) and grown by its appends.
/** A live append to message 1 as the server sends it (no name; the operation's id, time and publisher). */
function liveAppend(n: number, delta: string): Message {
  return {
    serial: serial(1),
    version: serial(n),
    action: 'append',
    id: `m1:${n}`,
    data: delta,
    clientId: 'agent',
    timestamp: 100 + n,
  };
}

/** Message 1 rolled up at version n: its whole state, with the creator's id, clientId and time. */
function rolledUp(n: number, data: string, headers?: Message['headers']): Message {
  return {
    serial: serial(1),
    version: serial(n),
    action: 'update',
    id: 'm1',
    name: 'text',
    data,
    ...(headers === undefined ? {} : { headers }),
    clientId: 'agent',
    timestamp: 1,
  };
}

/** A live update of message 1 that sets only headers (the operation's own id and time). */
function liveHeadersUpdate(n: number, headers: NonNullable<Message['headers']>): Message {
  return {
    serial: serial(1),
    version: serial(n),
    action: 'update',
    id: `u${n}`,
    headers,
    clientId: 'operator',
    timestamp: 100 + n,
  };
}

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

  it('a rolled-up update replaces a copy begun from a live append, identity included (§4.2)', () => {
    // a client that joined mid-message holds it from an append: the append's id, time, no name
    const partial = applyMessage(applyMessage(undefined, liveAppend(2, 'Hel')), liveAppend(3, 'lo'));
    assert.equal(partial.id, 'm1:2');
    const whole = rolledUp(5, 'Hello world', { status: 'done' });
    assert.deepEqual(applyMessage(partial, whole, true), whole);
  });

  it('a live update over a copy begun from an append still changes only what it carries', () => {
    const partial = applyMessage(undefined, liveAppend(2, 'Hel'));
    const next = applyMessage(partial, liveHeadersUpdate(3, { status: 'done' }), false);
    assert.equal(next.data, 'Hel', 'the data it did not carry stays');
    assert.deepEqual(next.headers, { status: 'done' });
    assert.equal(next.id, 'm1:2', 'the identity stays the held copy’s (the only one known)');
    assert.equal(next.timestamp, 102);
  });

  it('a rolled-up tombstone replaces a copy begun from a live append, identity included', () => {
    const partial = applyMessage(undefined, { ...liveAppend(2, 'Hel'), clientId: 'helper' });
    const tombstone: Message = {
      serial: serial(1),
      version: serial(6),
      action: 'delete',
      id: 'm1',
      clientId: 'agent',
      timestamp: 1,
    };
    assert.deepEqual(applyMessage(partial, tombstone, true), tombstone);
    // a live delete keeps the held identity (the delete operation's is not the message's)
    const held = { ...created(1, 'x'), clientId: 'agent' };
    const live = { ...tombstone, id: 'd6', clientId: 'operator', timestamp: 106 };
    assert.deepEqual(applyMessage(held, live, false), {
      serial: serial(1),
      version: serial(6),
      action: 'delete',
      id: 'm1',
      name: 'text',
      clientId: 'agent',
      timestamp: 1,
    });
  });

  it('knows a catch-up from a live stream by itself: what a channel delivered is folded by §4.2 with two arguments', async () => {
    // what @mooring/react's useChannel and @mooring/ai's ConversationTree do with each message
    const { client, connect, timers } = fakeClient();
    const t1 = await connect();
    const channel = client.channels.get('c');
    let held: Message | undefined;
    void channel.subscribe((m) => {
      held = applyMessage(held, m);
    });
    const a1 = sent(t1, 'attach')[0]!;
    // attached live after message 1 was created: its create is never seen, only its appends
    t1.frame({
      type: 'attached',
      ref: a1.ref,
      channel: 'c',
      resumed: false,
      epoch: EPOCH,
      position: serial(1),
    });
    t1.frame({ type: 'messages', channel: 'c', messages: [liveAppend(2, 'Hel')] });
    assert.equal(held?.id, 'm1:2');
    t1.end({ code: 1006, reason: '' });
    timers.advance(0);
    const t2 = await connect();
    const a2 = sent(t2, 'attach')[0]!;
    assert.equal(a2.from, serial(2));
    // the resume's catch-up: message 1 rolled up, whole
    t2.frame({ type: 'messages', channel: 'c', messages: [rolledUp(4, 'Hello')] });
    assert.deepEqual(held, rolledUp(4, 'Hello'), 'the catch-up replaced the partial copy');
    t2.frame({
      type: 'attached',
      ref: a2.ref,
      channel: 'c',
      resumed: true,
      epoch: EPOCH,
      position: serial(4),
    });
    // live again: an update that carries only headers changes only them
    t2.frame({ type: 'messages', channel: 'c', messages: [liveHeadersUpdate(5, { status: 'done' })] });
    assert.deepEqual(held, rolledUp(5, 'Hello', { status: 'done' }));
    // a `rolledUp` frame (a node's read-back) is whole too: here, of a message created anonymously
    const { clientId: _creator, ...anonymous } = rolledUp(7, 'Hello world', { status: 'done' });
    t2.frame({ type: 'messages', channel: 'c', messages: [anonymous], after: serial(5), rolledUp: true });
    assert.equal(held?.clientId, undefined, 'taken whole: no field of the held copy stays');
    assert.equal(held?.data, 'Hello world');
  });

  it('knows history as rolled up: a page folded over a copy begun from an append replaces it', async () => {
    const page = { channel: 'c', epoch: EPOCH, position: serial(5), items: [rolledUp(5, 'Hello')] };
    const { client } = fakeClient({
      autoConnect: false,
      fetch: async () =>
        new Response(JSON.stringify(page), { status: 200, headers: { 'content-type': 'application/json' } }),
    });
    let held = applyMessage(undefined, liveAppend(2, 'Hel'));
    for (const m of (await client.channels.get('c').history()).items) held = applyMessage(held, m);
    assert.deepEqual(held, rolledUp(5, 'Hello'));
    await flush();
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
