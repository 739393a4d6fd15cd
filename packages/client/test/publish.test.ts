// Publishing against a scripted server: acks, ids, resend with the same ids after a reconnect
// (ARCHITECTURE.md §4.1), the bounded offline queue and failing fast when suspended, failed or closed (§5).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ClientFrame, DEFAULT_LIMITS, type JsonValue } from '@mooring/protocol';
import { within } from '@mooring/testkit';
import type { MooringError } from '../src/errors.ts';
import { fakeClient, sent, serial } from './helpers/fake-client.ts';
import { connectedFrame, flush } from './helpers/fake-transport.ts';

/** `p`, failing the test when it has not settled within 2 s (a publish nobody answers never does). */
function settled<T>(p: Promise<T>): Promise<T> {
  return within(p, { timeout: 2_000, message: 'the publish never settled' });
}

describe('publishing', () => {
  it('with a clientId, ids are <base>:<n> (its own dedup scope)', async () => {
    const { client, connect } = fakeClient({ clientId: 'agent-1' });
    const t = await connect();
    void client.channels.get('c').publish('text', 'a');
    void client.channels.get('c').publish('text', 'b');
    const ids = sent(t, 'publish').map((f) => f.ops[0]?.id);
    assert.match(ids[0] ?? '', /^[0-9a-z]{12}:1$/);
    assert.equal(ids[1], `${ids[0]?.split(':')[0]}:2`);
  });

  it('sends operations with generated ids and resolves with the serial on ack', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const channel = client.channels.get('c');
    const created = channel.publish('text', 'Hello', { headers: { status: 'streaming' } });
    const appended = channel.append(serial(1), ' world');
    const updated = channel.update(serial(1), { headers: { status: 'done' } }, { id: 'my-id' });
    const deleted = channel.delete(serial(1));
    const frames = sent(t, 'publish');
    const ops = frames.map((f) => f.ops[0] ?? {});
    const ids = ops.map((op) => op?.id);
    // no clientId: the publisher may share its dedup scope, so each id ends in a secret part
    assert.match(ids[0] ?? '', /^[0-9a-z]{12}:1:[0-9a-v]{16}$/);
    assert.match(ids[1] ?? '', /^[0-9a-z]{12}:2:[0-9a-v]{16}$/);
    assert.notEqual(ids[0]?.split(':')[2], ids[1]?.split(':')[2]);
    assert.equal(new Set(ids).size, 4, 'every operation has its own id');
    assert.equal(ids[2], 'my-id');
    assert.deepEqual(
      ops.map(({ id: _id, ...op }) => op),
      [
        { action: 'create', name: 'text', data: 'Hello', headers: { status: 'streaming' } },
        { action: 'append', serial: serial(1), data: ' world' },
        { action: 'update', serial: serial(1), headers: { status: 'done' } },
        { action: 'delete', serial: serial(1) },
      ],
    );
    frames.forEach((f, i) => {
      t.frame({ type: 'ack', ref: f.ref, channel: 'c', results: [{ serial: serial(i + 1) }] });
    });
    assert.deepEqual(
      await Promise.all([created, appended, updated, deleted]),
      [1, 2, 3, 4].map((n) => serial(n)),
    );
  });

  it('rejects with the server error, reported to the publisher only', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const errors: MooringError[] = [];
    client.connection.on('error', (e) => errors.push(e));
    const p = client.channels.get('c').append(serial(1), 'x');
    const f = sent(t, 'publish')[0]!;
    t.frame({
      type: 'error',
      ref: f.ref,
      channel: 'c',
      error: { code: 'not_appendable', status: 409, retryable: false, message: 'op 0: JSON data' },
    });
    await assert.rejects(
      p,
      (e: MooringError) => e.code === 'not_appendable' && e.status === 409 && !e.retryable,
    );
    assert.deepEqual(errors, [], 'an answered publish is not a connection error too');
  });

  it('resends unacknowledged publishes in order with the same ids after a reconnect', async () => {
    const { client, connect, timers } = fakeClient();
    const t1 = await connect();
    const channel = client.channels.get('c');
    const a = channel.publish('a', 1);
    const b = channel.publish('b', 2);
    const first = sent(t1, 'publish');
    t1.frame({ type: 'ack', ref: first[0]!.ref, channel: 'c', results: [{ serial: serial(1) }] });
    t1.end({ code: 1006, reason: '' }); // b's ack is lost
    const c = channel.publish('c', 3); // queued while disconnected
    timers.advance(0);
    const t2 = await connect();
    const resent = sent(t2, 'publish');
    assert.deepEqual(
      resent.map((f) => f.ops[0]?.id),
      [first[1]!.ops[0]?.id, resent[1]!.ops[0]?.id],
    );
    assert.deepEqual(
      resent.map((f) => f.ops[0]?.name),
      ['b', 'c'],
    );
    t2.frame({
      type: 'ack',
      ref: resent[0]!.ref,
      channel: 'c',
      results: [{ serial: serial(2), duplicate: true }],
    });
    t2.frame({ type: 'ack', ref: resent[1]!.ref, channel: 'c', results: [{ serial: serial(3) }] });
    assert.deepEqual(await Promise.all([a, b, c]), [serial(1), serial(2), serial(3)]);
  });

  it("sends a publish's precondition only to a server that announces it, and resends it with it", async () => {
    const { client, transports, timers } = fakeClient();
    await flush();
    const t1 = transports.last();
    t1.connected(); // a server from before the precondition: it would refuse the field
    const channel = client.channels.get('c');
    const append = { action: 'append' as const, id: 'b', serial: serial(1), data: 'x' };
    const published = channel.publishResults([append], { after: 'a' });
    const [plain] = sent(t1, 'publish');
    assert.equal(plain?.after, undefined);
    assert.deepEqual(JSON.parse(t1.texts.at(-1)!), plain);
    t1.end({ code: 1006, reason: '' }); // the answer is lost
    timers.advance(0);
    await flush();
    const t2 = transports.last();
    t2.connected({ publishAfter: true });
    const [resent] = sent(t2, 'publish');
    assert.equal(resent?.after, 'a');
    assert.deepEqual(resent?.ops, [append]);
    assert.equal(t2.texts.at(-1), JSON.stringify(resent), 'the frame as sent, `ops` written once');
    t2.frame({ type: 'ack', ref: resent!.ref, channel: 'c', results: [{ serial: serial(2) }] });
    assert.deepEqual(await published, [{ serial: serial(2) }]);
  });

  it('sends a publish as the JSON its operations were written to once, byte for byte the frame, also when resent', async () => {
    const { client, connect, timers } = fakeClient();
    const t1 = await connect();
    const channel = client.channels.get('session:"quoted"\\x');
    void channel.publish('a', { text: 'naïve ✓ \u2028', list: [1, null, { deep: true }] });
    const texts = (t: typeof t1) =>
      t.sent.flatMap((frame, i) => (frame.type === 'publish' ? [{ frame, json: t.texts[i] }] : []));
    const [first] = texts(t1);
    assert.equal(first?.json, JSON.stringify(first?.frame), 'the text is the frame');
    t1.end({ code: 1006, reason: '' });
    timers.advance(0);
    const t2 = await connect();
    const [resent] = texts(t2);
    assert.notEqual(
      resent?.frame.type === 'publish' && resent.frame.ref,
      first?.frame.type === 'publish' && first.frame.ref,
    );
    assert.equal(resent?.json, JSON.stringify(resent?.frame), 'with its new ref');
  });

  it('keeps a publish the server refused while shutting down, for the next connection', async () => {
    const { client, connect, timers } = fakeClient();
    const t1 = await connect();
    const errors: MooringError[] = [];
    client.connection.on('error', (e) => errors.push(e));
    const p = client.channels.get('c').publish('x');
    const f = sent(t1, 'publish')[0]!;
    t1.frame({
      type: 'error',
      ref: f.ref,
      channel: 'c',
      error: { code: 'shutting_down', status: 503, retryable: true, message: 'bye' },
    });
    t1.frame({ type: 'disconnect', reason: 'shutting_down', reconnect: true });
    // the first retry after a shutdown waits a random part of initialRetryDelay
    timers.advance(client.connection.retryIn ?? 0);
    const t2 = await connect();
    const again = sent(t2, 'publish')[0]!;
    assert.equal(again.ops[0]?.id, f.ops[0]?.id);
    t2.frame({ type: 'ack', ref: again.ref, channel: 'c', results: [{ serial: serial(1) }] });
    assert.equal(await p, serial(1));
    assert.deepEqual(errors, [], 'a publish kept for the next connection is not a connection error');
  });

  it('publishes a batch atomically in one frame, and refuses an oversized batch', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const channel = client.channels.get('c');
    const batch = channel.publishBatch([{ name: 'a' }, { name: 'b', id: 'given' }]);
    const f = sent(t, 'publish')[0]!;
    assert.equal(f.ops.length, 2);
    assert.equal(f.ops[1]?.id, 'given');
    assert.ok(f.ops[0]?.id);
    t.frame({
      type: 'ack',
      ref: f.ref,
      channel: 'c',
      results: [{ serial: serial(1) }, { serial: serial(2) }],
    });
    assert.deepEqual(await batch, [serial(1), serial(2)]);
    const tooMany = Array.from({ length: 101 }, () => ({ name: 'x' }));
    await assert.rejects(channel.publishBatch(tooMany), (e: MooringError) => e.code === 'bad_request');
  });

  it('bounds the offline queue and rejects beyond it with queue_full', async () => {
    /** How a publish ended by the time the fake transport settled: refused at once, or not. */
    const outcome = async (p: Promise<unknown>) => {
      let end = 'waiting';
      p.then(
        () => {
          end = 'stored';
        },
        (e: MooringError) => {
          end = e.code;
        },
      );
      await flush();
      return end;
    };
    const { client } = fakeClient({ maxQueuedOps: 3, autoConnect: false });
    const channel = client.channels.get('c');
    const queued = [channel.publish('1'), channel.publish('2'), channel.publish('3')].map(outcome);
    await assert.rejects(channel.publish('4'), (e: MooringError) => e.code === 'queue_full' && e.retryable);
    assert.deepEqual(
      await Promise.all(queued),
      ['waiting', 'waiting', 'waiting'],
      'a queue holding exactly maxQueuedOps keeps every one of them',
    );
    const four = Array.from({ length: 4 }, (_, i) => ({ name: String(i) }));
    // the very first publish is bounded too, before any connection was ever made
    const first = fakeClient({ maxQueuedOps: 3, autoConnect: false }).client.channels.get('c');
    assert.equal(await outcome(first.publishBatch(four)), 'queue_full');
    // and the first one after a connection was lost
    const again = fakeClient({ maxQueuedOps: 3 });
    const t = await again.connect();
    t.end({ code: 1006, reason: '' });
    await flush();
    assert.equal(await outcome(again.client.channels.get('c').publishBatch(four)), 'queue_full');
    assert.equal(
      client.connection.state,
      'connecting',
      'publishing connects a client that was never started',
    );
  });

  it('refuses a publish whose frame is above the announced maxFrameSize (UTF-8 bytes, to the byte), never sending it', async () => {
    const { client, transports } = fakeClient();
    await flush();
    const t = transports.last();
    t.connected({ limits: { ...connectedFrame().limits, maxFrameSize: 1_000 } });
    const bytesOf = (frame: ClientFrame) => Buffer.byteLength(JSON.stringify(frame));
    const channel = client.channels.get('c');
    const first = channel.publishResults([{ id: 'a', data: 'x' }]);
    const a = sent(t, 'publish')[0]!;
    t.frame({ type: 'ack', ref: a.ref, channel: 'c', results: [{ serial: serial(1) }] });
    await first;
    // a frame of exactly maxFrameSize goes out; its data is 2-byte characters, so bytes ≠ length
    const frameOf = (data: string) => ({
      type: 'publish' as const,
      ref: (a.ref as number) + 1,
      channel: 'c',
      ops: [{ id: 'b', data }],
    });
    const room = 1_000 - bytesOf(frameOf(''));
    const full = 'é'.repeat(Math.floor(room / 2)) + (room % 2 === 1 ? 'x' : '');
    const fits = channel.publishResults([{ id: 'b', data: full }]);
    assert.equal(sent(t, 'publish').length, 2);
    assert.equal(bytesOf(sent(t, 'publish')[1]!), 1_000, 'the frame is exactly maxFrameSize');
    t.frame({ type: 'ack', ref: sent(t, 'publish')[1]!.ref, channel: 'c', results: [{ serial: serial(2) }] });
    await fits;
    // one byte more is refused, though its length in UTF-16 units is about half the limit
    const over = `${full}x`;
    assert.ok(over.length < 600);
    await assert.rejects(
      settled(channel.publishResults([{ id: 'c', data: over }])),
      (e: MooringError) =>
        e.code === 'frame_too_large' &&
        e.status === 413 &&
        !e.retryable &&
        /1001 bytes, above the 1000 bytes .*maxFrameSize/.test(e.message),
    );
    assert.equal(sent(t, 'publish').length, 2, 'the oversized publish was never sent');
    assert.equal(client.connection.state, 'connected');
    void channel.publish('after', 'small');
    assert.equal(sent(t, 'publish').length, 3, 'the publishes after it go out');
  });

  it('refuses a queued publish above the maxFrameSize the connection announces, and sends the others', async () => {
    const { client, transports, timers } = fakeClient();
    const channel = client.channels.get('c');
    const outcomes: string[] = [];
    const track = (name: string, p: Promise<unknown>) =>
      p.then(
        () => outcomes.push(`${name}: stored`),
        (e: MooringError) => outcomes.push(`${name}: ${e.code}`),
      );
    // made while connecting: below the default maxFrameSize, so queued
    const small1 = track('small1', channel.publish('small1', 'x'));
    const big = track('big', channel.publish('big', 'y'.repeat(3_000)));
    const small2 = track('small2', channel.publish('small2', 'z'));
    await flush();
    const t1 = transports.last();
    t1.connected({ limits: { ...connectedFrame().limits, maxFrameSize: 2_000 } });
    await settled(big);
    assert.deepEqual(outcomes, ['big: frame_too_large']);
    assert.deepEqual(
      sent(t1, 'publish').map((f) => f.ops[0]?.name),
      ['small1', 'small2'],
      'the oversized publish is not sent; the others are, in order',
    );
    // a new connection resends what is unacknowledged: never the refused one
    t1.end({ code: 1006, reason: '' });
    timers.advance(0);
    await flush();
    const t2 = transports.last();
    t2.connected({ limits: { ...connectedFrame().limits, maxFrameSize: 2_000 } });
    const resent = sent(t2, 'publish');
    assert.deepEqual(
      resent.map((f) => f.ops[0]?.name),
      ['small1', 'small2'],
    );
    resent.forEach((f, i) => {
      t2.frame({ type: 'ack', ref: f.ref, channel: 'c', results: [{ serial: serial(i + 1) }] });
    });
    await Promise.all([small1, small2]);
    assert.deepEqual(outcomes, ['big: frame_too_large', 'small1: stored', 'small2: stored']);
  });

  it('refuses a publish that cannot be sent as JSON with bad_request, keeping the connection', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    await assert.rejects(
      settled(client.channels.get('c').publish('x', cycle as unknown as JsonValue)),
      (e: MooringError) => e.code === 'bad_request' && !e.retryable && /JSON/.test(e.message),
    );
    assert.equal(client.connection.state, 'connected', 'not taken for a failed send');
    assert.deepEqual(sent(t, 'publish'), []);
  });

  it('refuses a publish above the default maxFrameSize at once, before the first connection', async () => {
    const { client, transports } = fakeClient({ autoConnect: false });
    // rejected without any `connected` (none is ever answered here)
    await assert.rejects(
      settled(client.channels.get('c').publish('huge', 'x'.repeat(DEFAULT_LIMITS.maxFrameSize))),
      (e: MooringError) =>
        e.code === 'frame_too_large' &&
        !e.retryable &&
        // the lower of maxFrameSize and maxHttpBody less its array's brackets (equal by default)
        e.message.includes(String(Math.min(DEFAULT_LIMITS.maxFrameSize, DEFAULT_LIMITS.maxHttpBody - 2))),
    );
    await flush();
    transports.last().connected();
    assert.deepEqual(sent(transports.last(), 'publish'), [], 'and never sent once connected');
  });

  it('fails pending and new publishes fast once suspended; a pending one says its ids, to be republished at most once', async () => {
    const { client, timers, transports, connect } = fakeClient({ connectionStateTtl: 1_000 });
    await connect();
    const pending = client.channels.get('c').publish('queued');
    await flush();
    const [frame] = sent(transports.last(), 'publish');
    const id = frame?.ops[0]?.id;
    assert.ok(id, 'sent, unanswered: it may be stored');
    transports.last().end({ code: 1006, reason: '' });
    timers.advance(2_000);
    await flush();
    transports.last().end({ code: 1006, reason: '' });
    assert.equal(client.connection.state, 'suspended');
    await assert.rejects(pending, (e: MooringError) => {
      assert.equal(e.code, 'connection_suspended');
      assert.ok(e.retryable);
      assert.deepEqual(e.ids, [id]);
      return true;
    });
    await assert.rejects(
      client.channels.get('c').publish('now'),
      (e: MooringError) => e.code === 'connection_suspended' && /connect\(\)/.test(e.message),
    );
  });

  it('fails with connection_failed after a permanent error and connection_closed after close()', async () => {
    const failed = fakeClient();
    const t = await failed.connect();
    const pending = failed.client.channels.get('c').publish('x');
    t.end({ code: 4003, reason: 'forbidden' });
    await assert.rejects(
      pending,
      (e: MooringError) => e.code === 'connection_failed' && e.cause !== undefined && !e.retryable,
    );
    await assert.rejects(
      failed.client.channels.get('c').publish('y'),
      (e: MooringError) => e.code === 'connection_failed',
    );

    const closed = fakeClient();
    await closed.connect();
    closed.client.close();
    await assert.rejects(
      closed.client.channels.get('c').publish('z'),
      (e: MooringError) => e.code === 'connection_closed' && !e.retryable,
    );
  });
});
