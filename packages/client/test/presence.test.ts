// Presence on the client (ARCHITECTURE.md §8, PROTOCOL.md §6.4) against a scripted server: requests answered by
// `ack`, the set from `sync` + events, and what happens to the membership on each kind of reconnect
// (§5.4: a recovered connection keeps it; a new identity enters again).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_LIMITS, type JsonValue, type PresenceMember } from '@mooring/protocol';
import type { MooringError } from '../src/errors.ts';
import type { PresenceEvent } from '../src/presence-members.ts';
import { EPOCH, fakeClient, sent } from './helpers/fake-client.ts';
import type { FakeTransport } from './helpers/fake-transport.ts';
import { flush } from './helpers/fake-transport.ts';

const member = (connectionId: string, clientId: string, data?: JsonValue, timestamp = 1): PresenceMember =>
  data === undefined ? { clientId, connectionId, timestamp } : { clientId, connectionId, timestamp, data };

const ack = (t: FakeTransport, ref: string | number, channel = 'room') =>
  t.frame({ type: 'ack', ref, channel, results: [] });

/** Answers the channel's latest attach and sends the snapshot. */
function attachWithSync(t: FakeTransport, members: PresenceMember[], channel = 'room'): void {
  const attach = sent(t, 'attach').at(-1);
  assert.ok(attach, 'the channel sent no attach');
  t.frame({ type: 'attached', ref: attach.ref, channel, resumed: false, epoch: EPOCH, position: '' });
  t.frame({ type: 'presence', channel, action: 'sync', members });
}

/** Ends `t` and every reconnect after it until the connection is suspended (its `connectionStateTtl` passed). */
async function suspend(
  t: FakeTransport,
  client: { connection: { state: string } },
  timers: { advance(ms: number): void },
  transports: { last(): FakeTransport },
) {
  t.end({ code: 1006, reason: '' });
  for (let i = 0; i < 20 && client.connection.state !== 'suspended'; i++) {
    timers.advance(500);
    await flush();
    transports.last().end({ code: 1006, reason: '' });
  }
  assert.equal(client.connection.state, 'suspended');
}

/** A client `me` attached to 'room' (an empty snapshot) whose enter with 'here' was acknowledged. */
async function presentInRoom() {
  const fake = fakeClient({ clientId: 'me' });
  const t = await fake.connect();
  const channel = fake.client.channels.get('room');
  void channel.attach();
  attachWithSync(t, []);
  const entered = channel.presence.enter('here');
  ack(t, sent(t, 'presence')[0]!.ref);
  await entered;
  return { ...fake, channel, t };
}

/**
 * A client that entered the set with 'here' and whose connection then dropped: the next one is open
 * with a new identity (`resumed: false`), its automatic re-enter sent and not answered.
 */
async function reconnectedAfterEnter(options: Parameters<typeof fakeClient>[0] = {}) {
  const fake = fakeClient({ clientId: 'me', ...options });
  const t1 = await fake.connect();
  const channel = fake.client.channels.get('room');
  /** Errors of the channel and of the connection, from the start. */
  const errors: MooringError[] = [];
  channel.on('error', (e) => errors.push(e));
  fake.client.connection.on('error', (e) => errors.push(e));
  const entered = channel.presence.enter('here');
  ack(t1, sent(t1, 'presence')[0]!.ref);
  await entered;
  await drop(t1, fake.timers);
  const t2 = fake.transports.last();
  t2.connected({ resumed: false });
  return { ...fake, channel, t2, errors };
}

/** Drops the transport and lets the client open the next one (not yet answered). */
async function drop(t: FakeTransport, timers: { advance(ms: number): void }) {
  t.end({ code: 1006, reason: '' });
  timers.advance(0);
  await flush();
}

describe('presence requests', () => {
  it('enter, update and leave go out as presence frames and resolve on their ack', async () => {
    const { client, connect } = fakeClient({ clientId: 'me' });
    const t = await connect();
    const presence = client.channels.get('room').presence;
    let entered = false;
    const entering = presence.enter({ status: 'online' }).then(() => {
      entered = true;
    });
    const [enter] = sent(t, 'presence');
    assert.deepEqual(
      { action: enter?.action, channel: enter?.channel, data: enter?.data },
      { action: 'enter', channel: 'room', data: { status: 'online' } },
    );
    await flush();
    assert.equal(entered, false, 'resolved before the ack');
    ack(t, enter!.ref);
    await entering;

    const updating = presence.update({ status: 'away' });
    ack(t, sent(t, 'presence')[1]!.ref);
    await updating;
    const leaving = presence.leave();
    const leave = sent(t, 'presence')[2]!;
    assert.equal(leave.action, 'leave');
    assert.equal('data' in leave, false);
    ack(t, leave.ref);
    await leaving;
  });

  it('rejects with the server error answering the request', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const errors: MooringError[] = [];
    client.connection.on('error', (e) => errors.push(e));
    const entering = client.channels.get('room').presence.enter();
    const [enter] = sent(t, 'presence');
    t.frame({
      type: 'error',
      ref: enter!.ref,
      channel: 'room',
      error: { code: 'bad_request', status: 400, retryable: false, message: 'presence needs a clientId' },
    });
    await assert.rejects(entering, (e: MooringError) => e.code === 'bad_request');
    assert.deepEqual(errors, [], "the request's own error, not also the connection's");
  });

  it('sends a request whose frame is exactly maxFrameSize; one byte more is frame_too_large, never sent', async () => {
    const { client, transports } = fakeClient({ autoConnect: false });
    const presence = client.channels.get('room').presence;
    client.connect();
    await flush();
    const t = transports.last();
    const empty = JSON.stringify({ type: 'presence', ref: 1, channel: 'room', action: 'enter', data: '' });
    t.connected({ limits: { ...DEFAULT_LIMITS, maxFrameSize: empty.length + 100 } });
    void presence.enter('x'.repeat(100));
    const [enter] = sent(t, 'presence');
    assert.equal(enter?.ref, 1, 'the ref the size was reckoned with');
    assert.equal(JSON.stringify(enter).length, empty.length + 100, 'exactly maxFrameSize: sent');
    await assert.rejects(presence.enter('x'.repeat(101)), (e: MooringError) => e.code === 'frame_too_large');
    assert.equal(sent(t, 'presence').length, 1);
  });

  it('queues requests until connected, and fails fast while suspended', async () => {
    const { client, timers, transports } = fakeClient({ autoConnect: false, connectionStateTtl: 1_000 });
    const presence = client.channels.get('room').presence;
    const entering = presence.enter('hi'); // starts the connection
    await flush();
    const t = transports.last();
    assert.equal(sent(t, 'presence').length, 0);
    t.connected();
    const [enter] = sent(t, 'presence');
    assert.equal(enter?.data, 'hi');
    ack(t, enter!.ref);
    await entering;

    await suspend(t, client, timers, transports);
    await assert.rejects(presence.update('x'), (e: MooringError) => e.code === 'connection_suspended');
  });
});

describe('presence across reconnects', () => {
  it('after a recovered connection resends only what was not acknowledged, and never re-enters', async () => {
    const { client, connect, timers, transports } = fakeClient({ clientId: 'me' });
    const t1 = await connect();
    const presence = client.channels.get('room').presence;
    const entered = presence.enter('a');
    ack(t1, sent(t1, 'presence')[0]!.ref);
    await entered;
    const updating = presence.update('b'); // sent, never answered: the connection drops
    await drop(t1, timers);
    const t2 = transports.last();
    t2.connected({ resumed: true, connectionId: client.connection.id ?? '' });
    const resent = sent(t2, 'presence');
    assert.deepEqual(
      resent.map((f) => [f.action, f.data]),
      [['update', 'b']],
    );
    ack(t2, resent[0]!.ref);
    await updating;

    await drop(t2, timers);
    const t3 = transports.last();
    t3.connected({ resumed: true, connectionId: client.connection.id ?? '' });
    assert.equal(sent(t3, 'presence').length, 0, 'the server kept the membership: nothing to send');
  });

  it('after a new identity (resumed: false) enters again with the last acknowledged data', async () => {
    const { client, connect, timers, transports } = fakeClient({ clientId: 'me' });
    const t1 = await connect();
    const presence = client.channels.get('room').presence;
    const entered = presence.update({ typing: true }); // update of a non-member enters
    ack(t1, sent(t1, 'presence')[0]!.ref);
    await entered;
    await drop(t1, timers);
    const t2 = transports.last();
    t2.connected({ resumed: false });
    const [reenter] = sent(t2, 'presence');
    assert.deepEqual([reenter?.action, reenter?.data], ['enter', { typing: true }]);

    // Once left, a new identity does not enter again.
    ack(t2, reenter!.ref);
    const leaving = presence.leave();
    ack(t2, sent(t2, 'presence')[1]!.ref);
    await leaving;
    await drop(t2, timers);
    const t3 = transports.last();
    t3.connected({ resumed: false });
    assert.equal(sent(t3, 'presence').length, 0);
  });

  it('an automatic re-enter lost with its connection is made again on the next one, without an error anywhere', async () => {
    const { client, timers, transports, t2, errors } = await reconnectedAfterEnter({
      connectionStateTtl: 1_000,
    });
    assert.equal(sent(t2, 'presence')[0]?.action, 'enter', 'the re-enter goes out, unanswered');
    // the connection is lost for long enough to be suspended, the re-enter still pending
    await suspend(t2, client, timers, transports);
    assert.deepEqual(errors, [], 'nobody asked for it: nobody is told it failed');
    client.connect();
    await flush();
    const t3 = transports.last();
    t3.connected({ resumed: false });
    assert.deepEqual(
      sent(t3, 'presence').map((f) => [f.action, f.data]),
      [['enter', 'here']],
    );
  });

  it('an automatic re-enter refused for a moment (retryable: the presence store down) is made again after a backoff, unreported', async () => {
    const { timers, transports, t2, errors } = await reconnectedAfterEnter();
    const unavailable = {
      code: 'store_unavailable',
      status: 503,
      retryable: true,
      message: 'the presence store cannot be reached',
    } as const;
    for (let refusal = 1; refusal <= 2; refusal++) {
      const reenter = sent(t2, 'presence').at(-1)!;
      assert.deepEqual([reenter.action, reenter.data], ['enter', 'here']);
      t2.frame({ type: 'error', ref: reenter.ref, channel: 'room', error: unavailable });
      assert.equal(sent(t2, 'presence').length, refusal, 'not at once: after a backoff');
      t2.activity();
      timers.advance(1_000 * 2 ** (refusal - 1));
      assert.equal(sent(t2, 'presence').length, refusal + 1, `made again after refusal ${refusal}`);
    }
    ack(t2, sent(t2, 'presence').at(-1)!.ref);
    assert.deepEqual(errors, [], 'a refusal for a moment is nobody’s error');
    // a permanent refusal is still reported
    await drop(t2, timers);
    const t3 = transports.last();
    t3.connected({ resumed: false });
    t3.frame({
      type: 'error',
      ref: sent(t3, 'presence').at(-1)!.ref,
      channel: 'room',
      error: { code: 'forbidden', status: 403, retryable: false, message: 'no presence capability' },
    });
    assert.deepEqual(
      (errors as MooringError[]).map((e) => e.code),
      ['forbidden'],
    );
  });

  it("the app's requests made while disconnected all go out on the next connection, in order, each answered", async () => {
    const { client, connect, timers, transports } = fakeClient({ clientId: 'me' });
    const t1 = await connect();
    const channel = client.channels.get('room');
    await drop(t1, timers); // the next connection is being opened: nothing goes out meanwhile
    const done: string[] = [];
    const entered = channel.presence.enter('a').then(() => done.push('enter'));
    const updated = channel.presence.update('b').then(() => done.push('update'));
    const t2 = transports.last();
    t2.connected({ resumed: true });
    const frames = sent(t2, 'presence');
    assert.deepEqual(
      frames.map((f) => [f.action, f.data]),
      [
        ['enter', 'a'],
        ['update', 'b'],
      ],
    );
    for (const frame of frames) ack(t2, frame.ref);
    await Promise.all([entered, updated]);
    assert.deepEqual(done, ['enter', 'update']);
  });

  it('a re-enter refused for a moment is not made again once the app left the set meanwhile', async () => {
    const { channel, timers, t2 } = await reconnectedAfterEnter();
    const reenter = sent(t2, 'presence').at(-1)!;
    t2.frame({
      type: 'error',
      ref: reenter.ref,
      channel: 'room',
      error: { code: 'store_unavailable', status: 503, retryable: true, message: 'down a moment' },
    });
    const left = channel.presence.leave().catch(() => {});
    for (const frame of sent(t2, 'presence').slice(1)) ack(t2, frame.ref);
    await left;
    t2.activity();
    timers.advance(2_000); // past the backoff
    assert.deepEqual(
      sent(t2, 'presence')
        .slice(1)
        .map((f) => f.action),
      sent(t2, 'presence')
        .slice(1)
        .map(() => 'leave'),
      'after the leave, nothing enters the set again',
    );
  });

  it('enters again when its own membership leaves without its asking (the server lost it), not after its own leave()', async () => {
    const { client, channel, t } = await presentInRoom();
    const mine = member(client.connection.id!, 'me', 'here');
    t.frame({ type: 'presence', channel: 'room', action: 'enter', member: mine });
    // someone else leaving changes nothing
    t.frame({ type: 'presence', channel: 'room', action: 'leave', member: member('c_other', 'you') });
    assert.equal(sent(t, 'presence').length, 1);
    // its own member let go by the server: entered again, with its data
    t.frame({ type: 'presence', channel: 'room', action: 'leave', member: mine });
    const again = sent(t, 'presence')[1];
    assert.deepEqual([again?.action, again?.data], ['enter', 'here']);
    ack(t, again!.ref);
    // its own leave() is not undone
    const leaving = channel.presence.leave();
    t.frame({ type: 'presence', channel: 'room', action: 'leave', member: mine });
    ack(t, sent(t, 'presence')[2]!.ref);
    await leaving;
    t.frame({ type: 'presence', channel: 'room', action: 'leave', member: mine });
    assert.equal(sent(t, 'presence').length, 3);
  });

  it('a pending request replaces the automatic re-enter (no enter-then-leave)', async () => {
    const { client, connect, timers, transports } = fakeClient({ clientId: 'me' });
    const t1 = await connect();
    const presence = client.channels.get('room').presence;
    const entered = presence.enter('a');
    ack(t1, sent(t1, 'presence')[0]!.ref);
    await entered;
    const leaving = presence.leave();
    await drop(t1, timers);
    const t2 = transports.last();
    t2.connected({ resumed: false });
    assert.deepEqual(
      sent(t2, 'presence').map((f) => f.action),
      ['leave'],
    );
    ack(t2, sent(t2, 'presence')[0]!.ref);
    await leaving;
  });

  it('enters again when the snapshot after a recovered connection lacks it (the grace ran out)', async () => {
    const { client, t: t1, timers, transports } = await presentInRoom();
    const me = client.connection.id ?? '';
    await drop(t1, timers);
    const t2 = transports.last();
    t2.connected({ resumed: true, connectionId: me });
    assert.equal(sent(t2, 'presence').length, 0);
    attachWithSync(t2, [member('c_other', 'other')]);
    const [reenter] = sent(t2, 'presence');
    assert.deepEqual([reenter?.action, reenter?.data], ['enter', 'here']);

    // With itself in the snapshot, nothing is sent.
    ack(t2, reenter!.ref);
    await drop(t2, timers);
    const t3 = transports.last();
    t3.connected({ resumed: true, connectionId: me });
    attachWithSync(t3, [member(me, 'me', 'here'), member('c_other', 'other')]);
    assert.equal(sent(t3, 'presence').length, 0);
  });

  it('close() rejects pending requests and forgets the membership', async () => {
    const { client, connect, transports } = fakeClient({ clientId: 'me' });
    const t1 = await connect();
    const presence = client.channels.get('room').presence;
    const entered = presence.enter('a');
    ack(t1, sent(t1, 'presence')[0]!.ref);
    await entered;
    const updating = presence.update('b');
    client.close();
    t1.end({ code: 1000, reason: '' });
    await assert.rejects(updating, (e: MooringError) => e.code === 'connection_closed');
    client.connect();
    await flush();
    transports.last().connected({ resumed: false });
    assert.equal(sent(transports.last(), 'presence').length, 0);
  });
});

describe('presence set', () => {
  it('get() attaches, waits for the snapshot, then follows the events', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const presence = client.channels.get('room').presence;
    const members = presence.get();
    assert.equal(sent(t, 'attach').length, 1, 'get() attaches the channel');
    attachWithSync(t, [member('c_a', 'agent', { typing: false })]);
    assert.deepEqual(
      (await members).map((m) => [m.clientId, m.data]),
      [['agent', { typing: false }]],
    );
    t.frame({ type: 'presence', channel: 'room', action: 'enter', member: member('c_b', 'user') });
    t.frame({
      type: 'presence',
      channel: 'room',
      action: 'update',
      member: member('c_a', 'agent', { typing: true }, 2),
    });
    t.frame({ type: 'presence', channel: 'room', action: 'leave', member: member('c_b', 'user') });
    assert.deepEqual(
      (await presence.get()).map((m) => [m.connectionId, m.data]),
      [['c_a', { typing: true }]],
    );
  });

  it('subscribers hear enter/update/leave, filtered by action, and members found by the first snapshot as enter', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const presence = client.channels.get('room').presence;
    const all: string[] = [];
    const leaves: string[] = [];
    const record = (e: PresenceEvent) => all.push(`${e.action}:${e.member.clientId}`);
    void presence.subscribe(record);
    void presence.subscribe('leave', (e) => leaves.push(e.member.clientId));
    attachWithSync(t, [member('c_a', 'agent')]);
    t.frame({ type: 'presence', channel: 'room', action: 'enter', member: member('c_b', 'user') });
    t.frame({ type: 'presence', channel: 'room', action: 'enter', member: member('c_b', 'user', 'x', 2) });
    t.frame({ type: 'presence', channel: 'room', action: 'leave', member: member('c_a', 'agent') });
    t.frame({ type: 'presence', channel: 'room', action: 'leave', member: member('c_a', 'agent') });
    assert.deepEqual(all, ['enter:agent', 'enter:user', 'update:user', 'leave:agent']);
    assert.deepEqual(leaves, ['agent']);
    presence.unsubscribe(record);
    t.frame({ type: 'presence', channel: 'room', action: 'leave', member: member('c_b', 'user') });
    assert.equal(all.length, 4);
    assert.deepEqual(leaves, ['agent', 'user']);
  });

  it('a change already in the snapshot, sent again right after it, is no event', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const presence = client.channels.get('room').presence;
    const events: string[] = [];
    void presence.subscribe((e) => events.push(`${e.action}:${e.member.clientId}`));
    // the server read the set while the agent entered: the sync holds it, and its enter follows
    attachWithSync(t, [member('c_a', 'agent', 'x', 5)]);
    t.frame({ type: 'presence', channel: 'room', action: 'enter', member: member('c_a', 'agent', 'x', 5) });
    // a real update (a new timestamp), even with the same data, is one
    t.frame({ type: 'presence', channel: 'room', action: 'update', member: member('c_a', 'agent', 'x', 6) });
    assert.deepEqual(events, ['enter:agent', 'update:agent']);
  });

  it('after a re-attach, subscribers hear only what changed while the client was away', async () => {
    const { client, connect, timers, transports } = fakeClient();
    const t1 = await connect();
    const presence = client.channels.get('room').presence;
    const events: string[] = [];
    void presence.subscribe((e) => events.push(`${e.action}:${e.member.connectionId}`));
    attachWithSync(t1, [member('c_a', 'a'), member('c_b', 'b'), member('c_c', 'c', 'old')]);
    events.length = 0;
    await drop(t1, timers);
    const t2 = transports.last();
    t2.connected();
    attachWithSync(t2, [member('c_a', 'a'), member('c_c', 'c', 'new', 2), member('c_d', 'd')]);
    assert.deepEqual(events, ['leave:c_b', 'update:c_c', 'enter:c_d']);
  });

  it('get() on a new connection waits for its snapshot, not the set from before', async () => {
    const { client, connect, timers, transports } = fakeClient();
    const t1 = await connect();
    const presence = client.channels.get('room').presence;
    const first = presence.get();
    attachWithSync(t1, [member('c_a', 'a')]);
    await first;
    await drop(t1, timers);
    const t2 = transports.last();
    t2.connected(); // connected, the channel's attach sent, its snapshot not yet here
    let settled = false;
    const during = presence.get().then((m) => {
      settled = true;
      return m;
    });
    await flush();
    assert.equal(settled, false, 'the set from before the drop is not served');
    attachWithSync(t2, [member('c_b', 'b')]);
    assert.deepEqual(
      (await during).map((m) => m.connectionId),
      ['c_b'],
    );
  });

  it('get() after a detach attaches again and waits for the snapshot, not an empty set', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const channel = client.channels.get('room');
    const first = channel.presence.get();
    attachWithSync(t, [member('c_a', 'a')]);
    await first;
    const detaching = channel.detach();
    const detach = sent(t, 'detach').at(-1);
    t.frame({ type: 'detached', ref: detach!.ref, channel: 'room' });
    await detaching;
    const again = channel.presence.get();
    assert.equal(sent(t, 'attach').length, 2, 'attached again');
    attachWithSync(t, [member('c_a', 'a'), member('c_b', 'b')]);
    assert.deepEqual(
      (await again).map((m) => m.connectionId),
      ['c_a', 'c_b'],
    );
  });

  it('get() on a client that was closed rejects at once (it does not wait for a snapshot that cannot come)', async () => {
    const { client, connect } = fakeClient();
    await connect();
    const presence = client.channels.get('room').presence;
    client.close();
    await flush();
    const outcome = await Promise.race([
      presence.get().then(
        () => 'resolved',
        (e: MooringError) => e.code,
      ),
      new Promise((r) => setTimeout(() => r('still waiting'), 1_000)),
    ]);
    assert.notEqual(outcome, 'still waiting');
    assert.notEqual(outcome, 'resolved');
  });

  it('unsubscribe removes one action of every listener, one listener of every action, or both', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const presence = client.channels.get('room').presence;
    const heard: string[] = [];
    const all = (e: PresenceEvent) => heard.push(`all:${e.action}`);
    const enters = (e: PresenceEvent) => heard.push(`enters:${e.action}`);
    const leaves = (e: PresenceEvent) => heard.push(`leaves:${e.action}`);
    void presence.subscribe(all);
    void presence.subscribe('enter', enters);
    void presence.subscribe('leave', leaves);
    void presence.subscribe('leave', all);
    attachWithSync(t, []);
    const change = (action: 'enter' | 'leave', id: string) =>
      t.frame({ type: 'presence', channel: 'room', action, member: member(id, id) });
    presence.unsubscribe('enter'); // `enters` only: `all` was subscribed to every action, not to 'enter'
    change('enter', 'c_a');
    change('leave', 'c_a');
    assert.deepEqual(heard, ['all:enter', 'all:leave', 'leaves:leave', 'all:leave']);
    heard.length = 0;
    presence.unsubscribe('leave', all); // `all` for 'leave' only
    change('enter', 'c_b');
    change('leave', 'c_b');
    assert.deepEqual(heard, ['all:enter', 'all:leave', 'leaves:leave']);
    heard.length = 0;
    presence.unsubscribe(leaves); // everywhere
    change('enter', 'c_c');
    change('leave', 'c_c');
    assert.deepEqual(heard, ['all:enter', 'all:leave']);
  });

  it('get() waits while the connection is down, and rejects when the channel is detached', async () => {
    const { client, connect, timers, transports } = fakeClient();
    const t1 = await connect();
    const channel = client.channels.get('room');
    const first = channel.presence.get();
    attachWithSync(t1, [member('c_a', 'a')]);
    await first;
    await drop(t1, timers);
    let settled = false;
    const during = channel.presence.get().then((m) => {
      settled = true;
      return m;
    });
    await flush();
    assert.equal(settled, false, 'a stale set is not served while disconnected');
    const t2 = transports.last();
    t2.connected();
    attachWithSync(t2, [member('c_b', 'b')]);
    assert.deepEqual(
      (await during).map((m) => m.connectionId),
      ['c_b'],
    );

    const pending = (async () => {
      await drop(t2, timers);
      return channel.presence.get();
    })();
    await flush();
    void channel.detach();
    await assert.rejects(pending, (e: MooringError) => e.code === 'channel_detached');
  });
});
