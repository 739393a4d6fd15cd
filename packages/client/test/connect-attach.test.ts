// Attaching with the connection request (PROTOCOL.md §5.1 `attach`): a channel that wants to be
// attached when a transport opens is asked for in its URL, and the server's answers to that request
// are the channel's, without an attach frame; against a server that does not confirm it (no
// `attaching`), the channel attaches with a frame as before.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AttachFrame, errorInfo, MAX_CONNECT_ATTACH_CHARS } from '@mooring/protocol';
import type { MooringError } from '../src/errors.ts';
import { created, EPOCH, fakeClient, sent, serial } from './helpers/fake-client.ts';
import type { FakeTransport } from './helpers/fake-transport.ts';
import { flush } from './helpers/fake-transport.ts';

/** The attaches a transport's connection request carried. */
function urlAttaches(t: FakeTransport): AttachFrame[] {
  const raw = t.query.get('attach');
  return raw === null
    ? []
    : (JSON.parse(raw) as Omit<AttachFrame, 'type'>[]).map((e) => ({ type: 'attach', ...e }));
}

describe('attaching with the connection request', () => {
  it('asks for a wanted channel in the URL and takes the answer as its attach, sending no frame', async () => {
    const { client, transports } = fakeClient();
    const channel = client.channels.get('session:1', { start: true });
    const got: string[] = [];
    const attached = channel.subscribe((m) => got.push(String(m.data)));
    await flush();
    const t = transports.last();
    const [request, ...others] = urlAttaches(t);
    assert.equal(others.length, 0);
    assert.deepEqual({ ...request, ref: 0 }, { type: 'attach', ref: 0, channel: 'session:1', start: true });
    t.connected({ attaching: 1 });
    assert.equal(sent(t, 'attach').length, 0, 'no attach frame: the request carried it');
    assert.equal(channel.state, 'attaching');
    t.frame({ type: 'messages', channel: 'session:1', messages: [created(1, 'hello')] });
    t.frame({
      type: 'attached',
      ref: request!.ref!,
      channel: 'session:1',
      resumed: false,
      epoch: EPOCH,
      position: serial(1),
    });
    assert.deepEqual(await attached, { resumed: false, position: serial(1) });
    assert.deepEqual(got, ['hello']);
  });

  it('resumes from its position in the URL after a reconnect, and a failed resume still raises continuityLost', async () => {
    const { client, transports, connect, timers } = fakeClient();
    const t1 = await connect();
    const channel = client.channels.get('c');
    const lost: string[] = [];
    channel.on('continuityLost', (e) => lost.push(e.reason));
    void channel.subscribe(() => {});
    const a1 = sent(t1, 'attach')[0]!;
    t1.frame({
      type: 'attached',
      ref: a1.ref,
      channel: 'c',
      resumed: false,
      epoch: EPOCH,
      position: serial(4),
    });
    t1.end({ code: 1006, reason: '' });
    timers.advance(0);
    await flush();
    const t2 = transports.last();
    const [request] = urlAttaches(t2);
    assert.equal(request?.from, serial(4));
    t2.connected({ attaching: 1 });
    assert.equal(sent(t2, 'attach').length, 0);
    t2.frame({
      type: 'attached',
      ref: request!.ref!,
      channel: 'c',
      resumed: false,
      reason: 'position_trimmed',
      epoch: EPOCH,
      position: serial(9),
    });
    assert.equal(channel.state, 'attached');
    assert.deepEqual(lost, ['position_trimmed']);
  });

  it('attaches with a frame when the server does not confirm the request’s attaches (an older server)', async () => {
    const { client, transports } = fakeClient();
    const channel = client.channels.get('session:old');
    const attached = channel.attach();
    await flush();
    const t = transports.last();
    assert.equal(urlAttaches(t).length, 1);
    t.connected(); // no `attaching`
    const [frame] = sent(t, 'attach');
    assert.ok(frame, 'an attach frame');
    t.frame({
      type: 'attached',
      ref: frame.ref,
      channel: 'session:old',
      resumed: false,
      epoch: EPOCH,
      position: '',
    });
    assert.equal((await attached).resumed, false);
  });

  it('a channel detached before connected undoes the request’s attach, and its answers reach no one', async () => {
    const { client, transports } = fakeClient();
    const channel = client.channels.get('session:gone');
    const got: string[] = [];
    const errors: MooringError[] = [];
    channel.on('error', (e) => errors.push(e));
    client.connection.on('error', (e) => errors.push(e));
    const attached = channel.subscribe((m) => got.push(String(m.data)));
    attached.catch(() => {});
    await flush();
    const t = transports.last();
    const [request] = urlAttaches(t);
    await channel.detach();
    t.connected({ attaching: 1 });
    const [detach] = sent(t, 'detach');
    assert.equal(detach?.channel, 'session:gone', 'the server-side attachment is undone');
    t.frame({ type: 'messages', channel: 'session:gone', messages: [created(1, 'late')] });
    t.frame({
      type: 'error',
      ref: request!.ref!,
      channel: 'session:gone',
      error: errorInfo('attach_superseded', 'superseded'),
    });
    t.frame({ type: 'detached', ref: detach!.ref, channel: 'session:gone' });
    assert.deepEqual(got, []);
    assert.deepEqual(errors, []);
    assert.equal(channel.state, 'detached');
  });

  it('a channel whose mode changed before connected undoes the request’s attach and attaches with its mode', async () => {
    const { client, transports } = fakeClient();
    const channel = client.channels.get('session:m');
    const got: string[] = [];
    const errors: MooringError[] = [];
    client.connection.on('error', (e) => errors.push(e));
    const attached = channel.subscribe((m) => got.push(String(m.data)));
    await flush();
    const t = transports.last();
    const [request] = urlAttaches(t);
    assert.equal(request?.rewind, undefined);
    client.channels.get('session:m', { rewind: 1 });
    t.connected({ attaching: 1 });
    const [detach] = sent(t, 'detach');
    const [frame] = sent(t, 'attach');
    assert.equal(frame?.rewind, 1);
    assert.ok(detach && t.sent.indexOf(detach) < t.sent.indexOf(frame), 'undone before the new attach');
    // what the request's attach still sends is dropped until the detach is answered
    t.frame({ type: 'messages', channel: 'session:m', messages: [created(1, 'a'), created(2, 'b')] });
    t.frame({
      type: 'attached',
      ref: request!.ref!,
      channel: 'session:m',
      resumed: false,
      epoch: EPOCH,
      position: serial(2),
    });
    t.frame({ type: 'detached', ref: detach.ref, channel: 'session:m' });
    assert.equal(channel.state, 'attaching');
    t.frame({ type: 'messages', channel: 'session:m', messages: [created(2, 'b')] });
    t.frame({
      type: 'attached',
      ref: frame.ref,
      channel: 'session:m',
      resumed: false,
      epoch: EPOCH,
      position: serial(2),
    });
    assert.equal((await attached).resumed, false);
    assert.deepEqual(got, ['b'], 'the last message only, as rewind: 1 asked');
    assert.deepEqual(errors, []);
  });

  it('with attachWithConnection: false, the URL carries no attach and the channel attaches with a frame', async () => {
    const { client, transports } = fakeClient({ attachWithConnection: false });
    const attached = client.channels.get('session:quiet').attach();
    await flush();
    const t = transports.last();
    assert.equal(t.query.get('attach'), null);
    t.connected();
    const [frame] = sent(t, 'attach');
    assert.equal(frame?.channel, 'session:quiet');
    t.frame({
      type: 'attached',
      ref: frame.ref,
      channel: 'session:quiet',
      resumed: false,
      epoch: EPOCH,
      position: '',
    });
    assert.equal((await attached).resumed, false);
  });

  it('puts in the URL only as many attaches as fit; the others go as frames', async () => {
    const { client, transports } = fakeClient();
    const names = Array.from({ length: 60 }, (_, i) => `session:${'x'.repeat(60)}-${i}`);
    const all = names.map((name) => client.channels.get(name).attach());
    await flush();
    const t = transports.last();
    const inUrl = urlAttaches(t);
    assert.ok((t.query.get('attach') ?? '').length <= MAX_CONNECT_ATTACH_CHARS);
    assert.ok(inUrl.length > 10 && inUrl.length < names.length, `${inUrl.length} in the URL`);
    t.connected({ attaching: inUrl.length });
    const frames = sent(t, 'attach');
    assert.deepEqual(
      [...inUrl.map((a) => a.channel), ...frames.map((a) => a.channel)].sort(),
      [...names].sort(),
      'every channel asked for once',
    );
    for (const a of [...inUrl, ...frames])
      t.frame({
        type: 'attached',
        ref: a.ref!,
        channel: a.channel,
        resumed: false,
        epoch: EPOCH,
        position: '',
      });
    await Promise.all(all);
  });
});
