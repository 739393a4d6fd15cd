// Channels against a scripted server (fake transport): attach modes, the position rule of
// PROTOCOL.md §4.2 (exactly-once delivery across resumes), re-attach on reconnect (§6.2) and
// continuity lost.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { MooringError } from '../src/errors.ts';
import { appended, created, EPOCH, fakeClient, sent, serial } from './helpers/fake-client.ts';
import type { FakeTransport } from './helpers/fake-transport.ts';
import { flush } from './helpers/fake-transport.ts';

/** Answers the first attach channel `c` sent on `t`: attached at `position`. */
function answerAttach(t: FakeTransport, position: string): void {
  const attach = sent(t, 'attach')[0]!;
  t.frame({ type: 'attached', ref: attach.ref, channel: 'c', resumed: false, epoch: EPOCH, position });
}

/** A connected client with channel `c` subscribed (the data it delivers lands in `got`), attached at 3. */
async function subscribedAt3() {
  const fake = fakeClient();
  const t = await fake.connect();
  const channel = fake.client.channels.get('c');
  const got: string[] = [];
  void channel.subscribe((m) => got.push(String(m.data)));
  answerAttach(t, serial(3));
  return { ...fake, t, channel, got };
}

describe('Channel', () => {
  it('attaches on the first subscribe and delivers messages, filtered by name', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const channel = client.channels.get('session:1');
    const all: Message[] = [];
    const named: Message[] = [];
    const attached = channel.subscribe((m) => all.push(m));
    void channel.subscribe('status', (m) => named.push(m));
    const attaches = sent(t, 'attach');
    assert.equal(attaches.length, 1, 'one attach for two subscriptions');
    const attach = attaches[0]!;
    assert.deepEqual({ ...attach, ref: 0 }, { type: 'attach', ref: 0, channel: 'session:1' });
    t.frame({
      type: 'attached',
      ref: attach.ref,
      channel: 'session:1',
      resumed: false,
      epoch: EPOCH,
      position: serial(3),
    });
    assert.deepEqual(await attached, { resumed: false, position: serial(3) });
    assert.equal(channel.state, 'attached');
    t.frame({
      type: 'messages',
      channel: 'session:1',
      messages: [created(4, 'hi'), created(5, 'busy', 'status')],
    });
    assert.deepEqual(
      all.map((m) => m.data),
      ['hi', 'busy'],
    );
    assert.deepEqual(
      named.map((m) => m.data),
      ['busy'],
    );
    assert.equal(channel.position, serial(5));
  });

  it('replayFromStart: the next attach replays the log from its start instead of resuming; refused while wanted', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const channel = client.channels.get('c', { from: serial(5) });
    assert.equal(channel.position, serial(5));
    assert.equal(channel.replayFromStart(), true);
    assert.equal(channel.position, '');
    void channel.attach();
    const [attach] = sent(t, 'attach');
    assert.deepEqual({ ...attach, ref: 0 }, { type: 'attach', ref: 0, channel: 'c', start: true });
    assert.equal(channel.replayFromStart(), false, 'attaching: nothing changes');
    t.frame({
      type: 'attached',
      ref: attach!.ref,
      channel: 'c',
      resumed: false,
      epoch: EPOCH,
      position: serial(7),
    });
    assert.equal(channel.replayFromStart(), false, 'attached: nothing changes');
    assert.equal(channel.position, serial(7));
  });

  it('ignores anything at or below its position (exactly once)', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const channel = client.channels.get('c');
    const got: string[] = [];
    void channel.subscribe((m) => got.push(m.version));
    t.frame({ type: 'messages', channel: 'c', messages: [created(1, 'a'), appended(2, 1, 'b')] });
    t.frame({
      type: 'messages',
      channel: 'c',
      messages: [appended(2, 1, 'b'), created(1, 'a'), appended(3, 1, 'c')],
    });
    assert.deepEqual(got, [serial(1), serial(2), serial(3)]);
  });

  it('re-attaches from its position on every new connection and delivers the catch-up once', async () => {
    const { client, connect, timers } = fakeClient();
    const t1 = await connect();
    const channel = client.channels.get('c');
    const got: string[] = [];
    void channel.subscribe((m) => got.push(String(m.data)));
    const a1 = sent(t1, 'attach')[0]!;
    t1.frame({ type: 'attached', ref: a1.ref, channel: 'c', resumed: false, epoch: EPOCH, position: '' });
    t1.frame({ type: 'messages', channel: 'c', messages: [created(1, 'a'), appended(2, 1, 'b')] });
    t1.end({ code: 1006, reason: '' });
    timers.advance(0);
    const t2 = await connect();
    const a2 = sent(t2, 'attach')[0]!;
    assert.equal(a2.from, serial(2));
    // Catch-up arrives rolled up; the overlap (version ≤ position) is dropped.
    const rolled: Message = { ...created(1, 'abc'), action: 'update', version: serial(3) };
    t2.frame({ type: 'messages', channel: 'c', messages: [rolled] });
    t2.frame({
      type: 'attached',
      ref: a2.ref,
      channel: 'c',
      resumed: true,
      epoch: EPOCH,
      position: serial(3),
    });
    t2.frame({ type: 'messages', channel: 'c', messages: [appended(3, 1, 'c'), appended(4, 1, 'd')] });
    assert.deepEqual(got, ['a', 'b', 'abc', 'd']);
    assert.equal(channel.state, 'attached');
  });

  it('re-attaches with start: true when it was attached before the channel had a log', async () => {
    const { client, connect, timers } = fakeClient();
    const t1 = await connect();
    const channel = client.channels.get('empty');
    void channel.attach();
    const a1 = sent(t1, 'attach')[0]!;
    t1.frame({ type: 'attached', ref: a1.ref, channel: 'empty', resumed: false, epoch: '', position: '' });
    t1.end({ code: 1006, reason: '' });
    timers.advance(0);
    const t2 = await connect();
    assert.equal(sent(t2, 'attach')[0]?.start, true);
  });

  it('raises continuityLost when a resume is refused, and continues from the new position', async () => {
    const { client, connect, timers } = fakeClient();
    const t1 = await connect();
    const channel = client.channels.get('c');
    const lost: unknown[] = [];
    channel.on('continuityLost', (e) => lost.push(e));
    const attached = channel.subscribe(() => {});
    t1.frame({ type: 'messages', channel: 'c', messages: [created(7, 'x')] });
    t1.end({ code: 1006, reason: '' });
    timers.advance(0);
    const t2 = await connect();
    const a2 = sent(t2, 'attach')[0]!;
    const other = 'mz000000000a';
    t2.frame({
      type: 'attached',
      ref: a2.ref,
      channel: 'c',
      resumed: false,
      reason: 'epoch_changed',
      epoch: other,
      position: serial(2, other),
    });
    assert.deepEqual(lost, [
      { reason: 'epoch_changed', previousPosition: serial(7), position: serial(2, other) },
    ]);
    assert.equal(channel.position, serial(2, other));
    assert.deepEqual(await attached, { resumed: false, reason: 'epoch_changed', position: serial(2, other) });
  });

  it('a connection lost during the catch-up of a new epoch (before `attached`): the next attach still resumes from the old position, and continuity lost is raised then', async () => {
    const { client, connect, timers } = fakeClient();
    const t1 = await connect();
    const channel = client.channels.get('c');
    const lost: unknown[] = [];
    channel.on('continuityLost', (e) => lost.push(e));
    const got: string[] = [];
    void channel.subscribe((m) => got.push(String(m.data)));
    answerAttach(t1, serial(7));
    t1.end({ code: 1006, reason: '' });
    timers.advance(0);
    const t2 = await connect();
    assert.equal(sent(t2, 'attach')[0]!.from, serial(7));
    // the log went on in a new epoch (a Redis restart): its catch-up after `kept` arrives…
    const other = 'mz000000000a';
    const copy = { ...created(3, 'changed'), serial: serial(3, other), version: serial(8, other) };
    t2.frame({ type: 'messages', channel: 'c', messages: [copy] });
    assert.deepEqual(got, ['changed'], 'delivered as it came');
    // …and the connection drops before `attached`
    t2.end({ code: 1006, reason: '' });
    timers.advance(1_000);
    const t3 = await connect();
    const a3 = sent(t3, 'attach')[0]!;
    assert.equal(a3.from, serial(7), 'not from the new epoch: a resume there would be answered resumed');
    t3.frame({ type: 'messages', channel: 'c', messages: [copy] });
    t3.frame({
      type: 'attached',
      ref: a3.ref,
      channel: 'c',
      resumed: false,
      reason: 'epoch_changed',
      kept: serial(7, other),
      epoch: other,
      position: serial(8, other),
    });
    assert.deepEqual(lost, [
      {
        reason: 'epoch_changed',
        previousPosition: serial(7),
        position: serial(8, other),
        kept: serial(7, other),
      },
    ]);
    assert.equal(channel.position, serial(8, other));
  });

  it('a channel whose attach was refused is not attached again by a reconnect', async () => {
    const { client, connect, timers } = fakeClient();
    const t1 = await connect();
    const channel = client.channels.get('secret');
    channel.attach().catch(() => {});
    t1.frame({
      type: 'error',
      ref: sent(t1, 'attach')[0]!.ref,
      channel: 'secret',
      error: { code: 'forbidden', status: 403, retryable: false, message: 'no subscribe capability' },
    });
    t1.end({ code: 1006, reason: '' });
    timers.advance(0);
    const t2 = await connect();
    assert.equal(sent(t2, 'attach').length, 0);
    assert.equal(channel.state, 'failed');
  });

  it('a closed connection leaves its channels detached, a failed one failed', async () => {
    const closing = await subscribedAt3();
    closing.client.close();
    closing.t.end({ code: 1000, reason: '' });
    await flush();
    assert.equal(closing.channel.state, 'detached');
    const failing = await subscribedAt3();
    failing.t.frame({ type: 'disconnect', reason: 'forbidden', reconnect: false });
    await flush();
    assert.equal(failing.client.connection.state, 'failed');
    assert.equal(failing.channel.state, 'failed');
  });

  it('a channel the server detached on its own stays detached, also after a reconnect', async () => {
    const { client, connect, timers } = fakeClient();
    const t1 = await connect();
    const channel = client.channels.get('c');
    void channel.subscribe(() => {});
    answerAttach(t1, serial(3));
    t1.frame({ type: 'detached', channel: 'c' }); // no ref: not an answer to a detach of ours
    assert.equal(channel.state, 'detached');
    t1.end({ code: 1006, reason: '' });
    timers.advance(0);
    const t2 = await connect();
    assert.equal(sent(t2, 'attach').length, 0, "not attached again behind the server's back");
  });

  it('repairs a hole in the live stream: drops what follows it, detaches, resumes from its position', async () => {
    const { t, channel, got } = await subscribedAt3();
    t.frame({ type: 'messages', channel: 'c', messages: [created(4, 'four')] });
    // 5 was lost on the way: 6 does not follow 4
    t.frame({ type: 'messages', channel: 'c', messages: [created(6, 'six'), created(7, 'seven')] });
    assert.deepEqual(got, ['four']);
    assert.equal(channel.position, serial(4));
    assert.equal(channel.gapsRepaired, 1);
    const detach = sent(t, 'detach')[0]!;
    const a2 = sent(t, 'attach')[1]!;
    assert.equal(a2.from, serial(4), 'resumes from the last position without a hole');
    // frames of the old attachment still in flight are dropped until the detach is answered
    t.frame({ type: 'messages', channel: 'c', messages: [created(8, 'eight')] });
    t.frame({ type: 'detached', ref: detach.ref, channel: 'c' });
    // the catch-up (rolled up) and the new attachment's live operations
    t.frame({ type: 'messages', channel: 'c', messages: [created(5, 'five'), created(6, 'six')] });
    t.frame({ type: 'messages', channel: 'c', messages: [created(7, 'seven'), created(8, 'eight')] });
    t.frame({
      type: 'attached',
      ref: a2.ref,
      channel: 'c',
      resumed: true,
      epoch: EPOCH,
      position: serial(8),
    });
    t.frame({ type: 'messages', channel: 'c', messages: [created(9, 'nine')] });
    await flush();
    assert.deepEqual(got, ['four', 'five', 'six', 'seven', 'eight', 'nine']);
    assert.equal(channel.state, 'attached');
    assert.equal(channel.gapsRepaired, 1);
  });

  it('a repair cut by a reconnect does not freeze the channel: the new connection resumes it', async () => {
    // The repair's detach went out on a connection that dropped before answering it: its answer
    // never comes, and nothing on the next connection may wait for it (seen in the Redis soak: a
    // user's stream stuck for good after a hole repaired just before a reconnect).
    const { t, channel, got, connect, timers } = await subscribedAt3();
    t.frame({ type: 'messages', channel: 'c', messages: [created(4, 'four')] });
    t.frame({ type: 'messages', channel: 'c', messages: [created(6, 'six')] }); // a hole: repair
    assert.equal(channel.gapsRepaired, 1);
    assert.equal(sent(t, 'detach').length, 1);
    t.end({ code: 1006, reason: '' }); // before the detach is answered
    timers.advance(30_000);
    const t2 = await connect();
    const a2 = sent(t2, 'attach').at(-1)!;
    assert.equal(a2.from, serial(4), 'resumes from the last position without a hole');
    t2.frame({ type: 'messages', channel: 'c', messages: [created(5, 'five'), created(6, 'six')] });
    t2.frame({
      type: 'attached',
      ref: a2.ref,
      channel: 'c',
      resumed: true,
      epoch: EPOCH,
      position: serial(6),
    });
    t2.frame({ type: 'messages', channel: 'c', messages: [created(7, 'seven')] });
    await flush();
    assert.deepEqual(got, ['four', 'five', 'six', 'seven']);
    assert.equal(channel.state, 'attached');
  });

  it('a detach cut by a reconnect resolves: the new connection holds no attachment', async () => {
    const { client, connect, timers } = fakeClient();
    const t = await connect();
    const channel = client.channels.get('c');
    void channel.attach();
    answerAttach(t, serial(3));
    let detached = false;
    void channel.detach().then(() => {
      detached = true;
    });
    t.end({ code: 1006, reason: '' }); // before the detach is answered
    timers.advance(30_000);
    const t2 = await connect();
    await flush();
    assert.equal(detached, true, 'detach() resolved');
    assert.equal(channel.state, 'detached');
    assert.equal(sent(t2, 'attach').length, 0, 'not attached again');
  });

  it('applies a rolled-up frame (a node read back what its bus missed) from its position without a repair', async () => {
    const { t, channel, got } = await subscribedAt3();
    t.frame({ type: 'messages', channel: 'c', messages: [created(4, 'four')] });
    // 5–8 rolled up: 6 and 8 are the latest versions of what changed; the versions skip
    t.frame({
      type: 'messages',
      channel: 'c',
      messages: [created(6, 'six'), created(8, 'eight')],
      after: serial(4),
      rolledUp: true,
    });
    t.frame({ type: 'messages', channel: 'c', messages: [created(9, 'nine')] });
    assert.deepEqual(got, ['four', 'six', 'eight', 'nine']);
    assert.equal(channel.gapsRepaired, 0);
    // rolled up from beyond the position: what lies between is missing — a hole, repaired
    t.frame({
      type: 'messages',
      channel: 'c',
      messages: [created(12, 'twelve')],
      after: serial(11),
      rolledUp: true,
    });
    assert.deepEqual(got, ['four', 'six', 'eight', 'nine']);
    assert.equal(channel.gapsRepaired, 1);
  });

  it('readingBack: from a rolled-up frame marked `more` until the read-back’s last frame, or until the channel leaves attached', async () => {
    const { t, channel, got, connect, timers, client } = await subscribedAt3();
    const fresh = client.channels.get('never-attached');
    const page = (versions: number[], after: number, more: boolean) =>
      t.frame({
        type: 'messages',
        channel: 'c',
        messages: versions.map((v) => created(v, String(v))),
        after: serial(after),
        rolledUp: true,
        ...(more ? { more: true as const } : {}),
      });
    assert.equal(channel.readingBack, false, 'attached, live: no read-back under way');
    assert.equal(fresh.readingBack, false, 'a channel never attached: none either');
    page([5, 6], 3, true);
    assert.equal(channel.readingBack, true, 'the read-back goes on');
    page([8], 6, false);
    assert.equal(channel.readingBack, false, 'its last frame came');
    page([9], 8, true);
    assert.equal(channel.readingBack, true);
    // a page from beyond the position is a hole: repaired by a resume, which ends the read-back
    page([12], 11, false);
    assert.equal(channel.gapsRepaired, 1);
    assert.equal(channel.readingBack, false, 'the channel resumes: a catch-up comes instead');
    assert.deepEqual(got, ['5', '6', '8', '9']);
    // a connection lost between two pages: the read-back goes on until the channel resumes
    const detach = sent(t, 'detach').at(-1)!;
    t.frame({ type: 'detached', ref: detach.ref, channel: 'c' });
    const repair = sent(t, 'attach').at(-1)!;
    t.frame({
      type: 'attached',
      ref: repair.ref,
      channel: 'c',
      resumed: true,
      epoch: EPOCH,
      position: serial(9),
    });
    page([10], 9, true);
    assert.equal(channel.readingBack, true);
    t.end({ code: 1006, reason: '' });
    timers.advance(30_000);
    const t2 = await connect();
    const resume = sent(t2, 'attach').at(-1)!;
    assert.equal(resume.from, serial(10));
    assert.equal(channel.readingBack, false, 'resuming: the catch-up brings the rest');
    t2.frame({
      type: 'attached',
      ref: resume.ref,
      channel: 'c',
      resumed: true,
      epoch: EPOCH,
      position: serial(10),
    });
    assert.equal(channel.state, 'attached');
    assert.equal(channel.readingBack, false);
  });

  it('echo: false moves past own operations the server left out, never back to a rolled-up frame behind it', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const channel = client.channels.get('c', { echo: false });
    const got: string[] = [];
    void channel.subscribe((m) => got.push(String(m.data)));
    answerAttach(t, serial(3));
    // 4 and 5 were this connection's own: left out, the frame says where it stands
    t.frame({ type: 'messages', channel: 'c', messages: [], after: serial(5) });
    t.frame({ type: 'messages', channel: 'c', messages: [created(6, 'six')] });
    assert.equal(channel.gapsRepaired, 0, 'no hole: 4 and 5 were left out on purpose');
    // a node's read-back from before the position: nothing in it is new
    t.frame({
      type: 'messages',
      channel: 'c',
      messages: [created(6, 'six')],
      after: serial(4),
      rolledUp: true,
    });
    t.frame({ type: 'messages', channel: 'c', messages: [created(7, 'seven')] });
    assert.deepEqual(got, ['six', 'seven']);
    assert.equal(channel.position, serial(7));
  });

  it('uses the first-attach mode asked for: rewind, start or from', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    void client.channels.get('r', { rewind: 5 }).attach();
    void client.channels.get('s', { start: true }).attach();
    void client.channels.get('f', { from: serial(9) }).attach();
    const modes = sent(t, 'attach').map(({ ref: _ref, type: _type, ...rest }) => rest);
    assert.deepEqual(modes, [
      { channel: 'r', rewind: 5 },
      { channel: 's', start: true },
      { channel: 'f', from: serial(9) },
    ]);
  });

  it('an error frame goes to the channel whose request it answers, named or not; one answering nothing here is a connection error', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const connectionErrors: string[] = [];
    client.connection.on('error', (e) => connectionErrors.push(e.code));
    const other = client.channels.get('other');
    void other.attach();
    const channel = client.channels.get('secret');
    let refused: MooringError | undefined;
    channel.attach().catch((e: MooringError) => {
      refused = e;
    });
    const a = sent(t, 'attach')[1]!;
    assert.equal(a.channel, 'secret');
    const error = { code: 'forbidden', status: 403, retryable: false, message: 'no' } as const;
    // without its channel: found by its ref
    t.frame({ type: 'error', ref: a.ref, error });
    await flush();
    assert.equal(refused?.code, 'forbidden');
    assert.equal(channel.state, 'failed');
    assert.equal(other.state, 'attaching');
    assert.deepEqual(connectionErrors, []);
    // answering nothing here: a ref no channel sent, a channel no one took, no ref at all
    t.frame({ type: 'error', ref: 9_999, error: { ...error, code: 'bad_request' } });
    t.frame({
      type: 'error',
      ref: 9_998,
      channel: 'never-made',
      error: { ...error, code: 'invalid_channel' },
    });
    t.frame({ type: 'error', error: { ...error, code: 'rate_limited' } });
    assert.deepEqual(connectionErrors, ['bad_request', 'invalid_channel', 'rate_limited']);
    assert.equal(other.state, 'attaching');
  });

  it("a re-attach from position '' refused forbidden (start needs history now) goes on live with continuityLost history_required; refused live too, the channel fails and its error event says so", async () => {
    const forbidden = {
      code: 'forbidden' as const,
      status: 403,
      retryable: false,
      message: 'attaching c with start needs history',
    };
    for (const liveRefused of [false, true]) {
      const { client, connect, timers } = fakeClient();
      const t = await connect();
      const channel = client.channels.get('c');
      const lost: unknown[] = [];
      const errors: string[] = [];
      channel.on('continuityLost', (l) => lost.push(l));
      channel.on('error', (e) => errors.push(e.code));
      void channel.subscribe(() => {});
      const first = sent(t, 'attach')[0]!;
      t.frame({ type: 'attached', ref: first.ref, channel: 'c', resumed: false, epoch: '', position: '' });
      t.end({ code: 1006, reason: '' });
      timers.advance(30_000);
      const t2 = await connect();
      const [start] = sent(t2, 'attach');
      assert.equal(start?.start, true);
      t2.frame({ type: 'error', ref: start!.ref, channel: 'c', error: forbidden });
      const live = sent(t2, 'attach')[1];
      assert.ok(live, 'attached again, live');
      assert.deepEqual(Object.keys(live).sort(), ['channel', 'ref', 'type']);
      assert.equal(channel.state, 'attaching');
      if (liveRefused) {
        t2.frame({ type: 'error', ref: live.ref, channel: 'c', error: forbidden });
        assert.equal(channel.state, 'failed');
        assert.deepEqual(errors, ['forbidden'], 'a refusal no caller waits on reaches the error event');
        assert.deepEqual(lost, []);
        assert.equal(sent(t2, 'attach').length, 2, 'no loop');
        continue;
      }
      t2.frame({
        type: 'attached',
        ref: live.ref,
        channel: 'c',
        resumed: false,
        epoch: EPOCH,
        position: serial(7),
      });
      assert.equal(channel.state, 'attached');
      assert.deepEqual(lost, [{ reason: 'history_required', previousPosition: '', position: serial(7) }]);
      assert.deepEqual(errors, []);
      t2.end({ code: 1006, reason: '' });
      timers.advance(30_000);
      const t3 = await connect();
      assert.equal(sent(t3, 'attach')[0]?.from, serial(7), 'resumes from the head it went on from');
    }
  });

  it('fails an attach refused by the server', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const connectionErrors: MooringError[] = [];
    client.connection.on('error', (e) => connectionErrors.push(e));
    const channel = client.channels.get('secret');
    const attached = channel.attach();
    const a = sent(t, 'attach')[0]!;
    t.frame({
      type: 'error',
      ref: a.ref,
      channel: 'secret',
      error: { code: 'forbidden', status: 403, retryable: false, message: 'no subscribe capability' },
    });
    await assert.rejects(attached, (e: MooringError) => e.code === 'forbidden');
    assert.equal(channel.state, 'failed');
    assert.deepEqual(connectionErrors, [], "the channel's refusal is not a connection error too");
    // asking again asks the server again (the token may have been renewed with the capability)
    const again = channel.attach();
    assert.equal(sent(t, 'attach').length, 2);
    t.frame({
      type: 'attached',
      ref: sent(t, 'attach')[1]!.ref,
      channel: 'secret',
      resumed: false,
      epoch: EPOCH,
      position: '',
    });
    assert.deepEqual(await again, { resumed: false, position: '' });
  });

  it('sends an attach refused for a moment (retryable: the store down) again after a backoff, still attaching', async () => {
    const { client, connect, timers } = fakeClient();
    const t = await connect();
    const connectionErrors: string[] = [];
    client.connection.on('error', (e) => connectionErrors.push(e.code));
    const channel = client.channels.get('c');
    let settled = false;
    const attached = channel.attach().finally(() => {
      settled = true;
    });
    const unavailable = {
      code: 'store_unavailable',
      status: 503,
      retryable: true,
      message: 'the store cannot be reached',
    } as const;
    for (let refusal = 1; refusal <= 3; refusal++) {
      const a = sent(t, 'attach').at(-1)!;
      t.frame({ type: 'error', ref: a.ref, channel: 'c', error: unavailable });
      await flush();
      assert.equal(channel.state, 'attaching', 'not failed: it will be attached again');
      assert.equal(settled, false, 'attach() waits');
      assert.equal(sent(t, 'attach').length, refusal, 'not at once: after a backoff');
      t.activity(); // the connection stays alive meanwhile (heartbeats)
      timers.advance(1_000 * 2 ** (refusal - 1)); // the backoff's ceiling: 1 s, doubling
      assert.equal(sent(t, 'attach').length, refusal + 1, `sent again after refusal ${refusal}`);
    }
    t.frame({
      type: 'attached',
      ref: sent(t, 'attach').at(-1)!.ref,
      channel: 'c',
      resumed: false,
      epoch: EPOCH,
      position: '',
    });
    assert.deepEqual(await attached, { resumed: false, position: '' });
    assert.equal(channel.state, 'attached');
    assert.deepEqual(connectionErrors, [], "the channel's refusals, handled by it, are no connection errors");
    // a detach while a retry waits: nothing is sent again
    const other = client.channels.get('d');
    other.attach().catch(() => {});
    t.frame({ type: 'error', ref: sent(t, 'attach').at(-1)!.ref, channel: 'd', error: unavailable });
    await flush();
    const before = sent(t, 'attach').length;
    void other.detach();
    timers.advance(1_000);
    assert.equal(sent(t, 'attach').length, before);
  });

  it('detaches and stops re-attaching', async () => {
    const { client, connect, timers } = fakeClient();
    const t1 = await connect();
    const channel = client.channels.get('c');
    void channel.attach();
    const a = sent(t1, 'attach')[0]!;
    t1.frame({
      type: 'attached',
      ref: a.ref,
      channel: 'c',
      resumed: false,
      epoch: EPOCH,
      position: serial(1),
    });
    const detached = channel.detach();
    const d = sent(t1, 'detach')[0]!;
    t1.frame({ type: 'detached', ref: d.ref, channel: 'c' });
    await detached;
    assert.equal(channel.state, 'detached');
    t1.end({ code: 1006, reason: '' });
    timers.advance(0);
    const t2 = await connect();
    assert.equal(sent(t2, 'attach').length, 0);
  });

  it('waits for the connection to attach, and rejects the attach when the connection is suspended', async () => {
    const { client, timers, transports } = fakeClient({ connectionStateTtl: 1_000 });
    const channel = client.channels.get('c');
    const attached = channel.attach();
    assert.equal(channel.state, 'attaching');
    await flush();
    transports.last().end({ code: 1006, reason: '' });
    timers.advance(2_000);
    await flush();
    transports.last().end({ code: 1006, reason: '' });
    assert.equal(client.connection.state, 'suspended');
    await assert.rejects(attached, (e: MooringError) => e.code === 'connection_suspended');
    assert.equal(channel.state, 'suspended');
    // Still wanted: it attaches when the connection comes back.
    client.connection.connect();
    await flush();
    transports.last().connected();
    assert.equal(sent(transports.last(), 'attach').length, 1);
  });

  it('release detaches the channel and forgets it: it settles on the answer, and a later get makes a fresh one the answer leaves alone', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const channel = client.channels.get('c');
    const got: string[] = [];
    void channel.subscribe((m) => got.push(String(m.data)));
    answerAttach(t, serial(3));
    assert.equal(client.channels.has('c'), true);
    assert.deepEqual(client.channels.all(), [channel]);
    let released = false;
    const releasing = client.channels.release('c').then(() => {
      released = true;
    });
    assert.equal(client.channels.has('c'), false);
    assert.deepEqual(client.channels.all(), []);
    const detach = sent(t, 'detach')[0]!;
    assert.equal(detach.channel, 'c');
    // taken again before the server answered the detach
    const fresh = client.channels.get('c');
    assert.notEqual(fresh, channel);
    void fresh.subscribe((m) => got.push(`fresh ${String(m.data)}`));
    const attach = sent(t, 'attach')[1]!;
    t.frame({ type: 'detached', ref: detach.ref, channel: 'c' });
    await flush();
    assert.equal(released, true, 'release() settled');
    await releasing;
    assert.equal(channel.state, 'detached');
    assert.equal(fresh.state, 'attaching', "the old detach's answer is not the fresh channel's");
    t.frame({
      type: 'attached',
      ref: attach.ref,
      channel: 'c',
      resumed: false,
      epoch: EPOCH,
      position: serial(3),
    });
    t.frame({ type: 'messages', channel: 'c', messages: [created(4, 'hi')] });
    assert.equal(fresh.state, 'attached');
    assert.deepEqual(got, ['fresh hi'], 'the released channel lost its listeners');
    await client.channels.release('never-made');
  });

  it('a release cut by closing the client settles', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const channel = client.channels.get('c');
    void channel.attach();
    answerAttach(t, serial(3));
    let released = false;
    void client.channels.release('c').then(() => {
      released = true;
    });
    void client.close();
    t.end({ code: 1000, reason: '' });
    await flush();
    assert.equal(released, true, 'release() settled');
    assert.equal(channel.state, 'detached');
  });

  it('a release cut by a reconnect settles: the new connection holds no attachment', async () => {
    const { client, connect, timers } = fakeClient();
    const t = await connect();
    const channel = client.channels.get('c');
    void channel.attach();
    answerAttach(t, serial(3));
    let released = false;
    void client.channels.release('c').then(() => {
      released = true;
    });
    t.end({ code: 1006, reason: '' }); // before the detach is answered
    timers.advance(30_000);
    const t2 = await connect();
    await flush();
    assert.equal(released, true, 'release() settled');
    assert.equal(channel.state, 'detached');
    assert.equal(sent(t2, 'attach').length, 0, 'not attached again');
  });

  it('frames of a released name go to the released channel until its detach is answered (by an error too), release after release; a connection lost meanwhile hands the name to the fresh channel', async () => {
    const { client, t, connect, timers, got } = await subscribedAt3();
    const settled: string[] = [];
    const gets: string[][] = [];
    const take = () => {
      const mine: string[] = [];
      gets.push(mine);
      const channel = client.channels.get('c');
      void channel.subscribe((m) => mine.push(String(m.data)));
      return channel;
    };
    void client.channels.release('c').then(() => settled.push('first'));
    const second = take();
    void client.channels.release('c').then(() => settled.push('second')); // before its attach is answered
    const third = take();
    const [d1, d2] = sent(t, 'detach');
    const attaches = sent(t, 'attach');
    assert.equal(attaches.length, 3);
    // the first attachment's live frames, then its detach answered
    t.frame({ type: 'messages', channel: 'c', messages: [created(4, 'first live')] });
    t.frame({ type: 'detached', ref: d1!.ref, channel: 'c' });
    // the second attachment's catch-up, its attach superseded by the detach, which finds nothing
    t.frame({ type: 'messages', channel: 'c', messages: [created(4, 'second catch-up')] });
    t.frame({
      type: 'error',
      ref: d2!.ref,
      channel: 'c',
      error: { code: 'not_attached', message: 'not attached', status: 409, retryable: false },
    });
    // the third's own
    t.frame({ type: 'messages', channel: 'c', messages: [created(4, 'third catch-up')] });
    t.frame({
      type: 'attached',
      ref: attaches[2]!.ref,
      channel: 'c',
      resumed: false,
      epoch: EPOCH,
      position: serial(4),
    });
    t.frame({ type: 'messages', channel: 'c', messages: [created(5, 'third live')] });
    await flush();
    assert.deepEqual(settled, ['first', 'second']);
    assert.equal(second.state, 'detached');
    assert.equal(third.state, 'attached');
    assert.deepEqual([got, ...gets], [[], [], ['third catch-up', 'third live']]);

    // released, got again, and the connection lost before the detach is answered
    void client.channels.release('c').then(() => settled.push('third'));
    const fourth = take();
    t.frame({ type: 'messages', channel: 'c', messages: [created(6, 'third live, late')] });
    t.end({ code: 1006, reason: '' });
    timers.advance(30_000);
    const t2 = await connect();
    await flush();
    assert.deepEqual(settled, ['first', 'second', 'third']);
    const attach = sent(t2, 'attach');
    assert.equal(attach.length, 1, 'the fresh channel attaches on the new connection');
    t2.frame({ type: 'messages', channel: 'c', messages: [created(6, 'fourth catch-up')] });
    t2.frame({
      type: 'attached',
      ref: attach[0]!.ref,
      channel: 'c',
      resumed: false,
      epoch: EPOCH,
      position: serial(6),
    });
    assert.equal(fourth.state, 'attached');
    assert.deepEqual(gets.at(-1), ['fourth catch-up']);
  });

  it('refuses invalid channel names at once', () => {
    const { client } = fakeClient({ autoConnect: false });
    assert.throws(
      () => client.channels.get('has space'),
      (e: MooringError) => e.code === 'invalid_channel',
    );
  });

  it('rejects a pending attach with channel_detached when detach() comes first', async () => {
    const { client } = fakeClient({ autoConnect: false });
    const channel = client.channels.get('c');
    const attached = channel.attach();
    await channel.detach();
    await assert.rejects(attached, (e: MooringError) => e.code === 'channel_detached' && !e.retryable);
    assert.equal(channel.state, 'detached');
  });

  it('routes channel errors without a ref to the channel error event', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const channel = client.channels.get('c');
    const errors: MooringError[] = [];
    channel.on('error', (e) => errors.push(e));
    t.frame({
      type: 'error',
      channel: 'c',
      error: { code: 'internal', status: 500, retryable: true, message: 'boom' },
    });
    assert.equal(errors[0]?.code, 'internal');
    assert.ok(errors[0] instanceof MooringError);
  });
  it('unsubscribe removes one listener, one name, a name for one listener, or everything', async () => {
    const { t, channel } = await subscribedAt3(); // its first listener takes every message
    const got: string[] = [];
    const all = (m: Message) => got.push(`all:${m.data}`);
    const status = (m: Message) => got.push(`status:${m.data}`);
    void channel.subscribe(all);
    void channel.subscribe('status', status);
    void channel.subscribe('status', all);
    let n = 3;
    const deliver = () => {
      t.frame({
        type: 'messages',
        channel: 'c',
        messages: [created(n + 1, `t${n + 1}`), created(n + 2, `s${n + 2}`, 'status')],
      });
      n += 2;
    };
    deliver();
    assert.deepEqual(got, ['all:t4', 'all:s5', 'status:s5', 'all:s5']);
    got.length = 0;
    channel.unsubscribe('status', all); // that one subscription only
    deliver();
    assert.deepEqual(got, ['all:t6', 'all:s7', 'status:s7']);
    got.length = 0;
    channel.unsubscribe(all); // from everywhere
    deliver();
    assert.deepEqual(got, ['status:s9']);
    got.length = 0;
    void channel.subscribe(all);
    channel.unsubscribe('status'); // every listener of that name
    deliver();
    assert.deepEqual(got, ['all:t10', 'all:s11']);
    got.length = 0;
    channel.unsubscribe();
    deliver();
    assert.deepEqual(got, []);
  });

  it('asks the server once: a second attach while attaching or attached sends nothing more', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const channel = client.channels.get('c');
    const first = channel.attach();
    const second = channel.attach();
    assert.equal(sent(t, 'attach').length, 1, 'one attach in flight for both');
    answerAttach(t, serial(3));
    assert.deepEqual(await Promise.all([first, second]), [
      { resumed: false, position: serial(3) },
      { resumed: false, position: serial(3) },
    ]);
    assert.deepEqual(await channel.attach(), { resumed: false, position: serial(3) });
    assert.equal(sent(t, 'attach').length, 1, 'attached already: answered at once');
  });

  it('a channel only looked up is not attached on connect, and its detach sends nothing', async () => {
    const { client, connect } = fakeClient();
    const channel = client.channels.get('c');
    const t = await connect();
    assert.equal(sent(t, 'attach').length, 0);
    await channel.detach();
    assert.equal(sent(t, 'detach').length, 0);
    assert.equal(channel.state, 'initialized');
  });

  it('rejects a publish the server acknowledged without a result', async () => {
    const { client, connect } = fakeClient();
    const t = await connect();
    const p = client.channels.get('c').publish('x');
    const f = sent(t, 'publish')[0]!;
    t.frame({ type: 'ack', ref: f.ref, channel: 'c', results: [] });
    await assert.rejects(p, (e: MooringError) => e.code === 'protocol_error' && e.retryable);
  });
});
