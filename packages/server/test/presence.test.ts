/** Presence (ARCHITECTURE.md §8, PROTOCOL.md §6.4) over real WebSockets, node-local and on Redis. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PresenceFrame, ServerFrame } from '@mooring/protocol';
import { redisSkipReason } from '@mooring/testkit';
import { type Presence, PresenceService } from '../src/presence.ts';
import { rest, startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const presenceEvents = (c: RawClient, channel: string) =>
  c.frames.filter((f): f is PresenceFrame => f.type === 'presence' && f.channel === channel);
const isAction = (action: string) => (f: ServerFrame) => f.type === 'presence' && f.action === action;

/** A watcher attached to `channel` and a phone that entered it (the watcher has seen the enter). */
async function watchedPhone(url: string, channel: string, data?: unknown) {
  const watcher = await RawClient.connect(url, { clientId: 'watcher' });
  await watcher.attach(channel);
  const phone = await RawClient.connect(url, { clientId: 'phone' });
  await phone.request({
    type: 'presence',
    channel,
    action: 'enter',
    ...(data === undefined ? {} : { data }),
  });
  await watcher.next(isAction('enter'));
  return { watcher, phone };
}

const kinds = redisSkipReason() ? (['memory'] as const) : (['memory', 'redis'] as const);
for (const kind of kinds)
  describe(`presence (${kind})`, () => {
    it('sends a snapshot on attach, then enter/update events, and serves the set over REST', async () => {
      const fx = await startFixture(kind);
      try {
        const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
        const entered = await agent.request({
          type: 'presence',
          channel: 'session:p',
          action: 'enter',
          data: { typing: false },
        });
        assert.equal(entered.type, 'ack');
        const watcher = await RawClient.connect(fx.server.url, { clientId: 'user' });
        await watcher.attach('session:p');
        const sync = await watcher.next(isAction('sync'));
        assert.ok(sync.type === 'presence' && sync.action === 'sync');
        assert.deepEqual(
          sync.members.map((m) => [m.clientId, m.data]),
          [['agent', { typing: false }]],
        );
        await agent.request({
          type: 'presence',
          channel: 'session:p',
          action: 'update',
          data: { typing: true },
        });
        const update = await watcher.next(isAction('update'));
        assert.ok(
          update.type === 'presence' && update.action === 'update' && update.member.clientId === 'agent',
        );
        const snapshot = await rest(fx.server, '/v1/channels/session:p/presence');
        assert.equal((snapshot.body.members as unknown[]).length, 1);

        const anonymous = await RawClient.connect(fx.server.url);
        const refused = await anonymous.request({ type: 'presence', channel: 'session:p', action: 'enter' });
        assert.ok(refused.type === 'error' && refused.error.code === 'bad_request');
        await Promise.all([agent.close(), watcher.close(), anonymous.close()]);
      } finally {
        await fx.close();
      }
    });

    it('does not flap on a quick reconnect, and an abrupt loss leaves after the grace period', async () => {
      const fx = await startFixture(kind, { presenceGrace: 400 });
      try {
        const channel = 'session:flap';
        const { watcher, phone } = await watchedPhone(fx.server.url, channel);

        // network blip: the socket dies, the client comes back with its connection key at once
        phone.kill();
        const back = await RawClient.connect(fx.server.url, {
          clientId: 'phone',
          recover: phone.connected.connectionKey,
        });
        assert.equal(back.connected.resumed, true);
        // after a grace period's worth of time, the watcher has still seen no leave: a presence update
        // from the phone, awaited, comes after any leave the server would have sent
        await new Promise((r) => setTimeout(r, 600));
        await back.request({ type: 'presence', channel, action: 'update', data: 'still here' });
        await watcher.next(isAction('update'));
        assert.deepEqual(
          presenceEvents(watcher, channel).map((f) => f.action),
          ['sync', 'enter', 'update'],
        );
        // now the phone vanishes for good
        back.kill();
        const leave = await watcher.next(isAction('leave'));
        assert.ok(leave.type === 'presence' && leave.action === 'leave' && leave.member.clientId === 'phone');
        assert.deepEqual((await rest(fx.server, `/v1/channels/${channel}/presence`)).body.members, []);
        await watcher.close();
      } finally {
        await fx.close();
      }
    });

    it('a leave from a connection that is not a member announces nothing; a member leaving leaves the others', async () => {
      const fx = await startFixture(kind);
      try {
        const channel = 'session:stranger';
        const { watcher, phone } = await watchedPhone(fx.server.url, channel);
        const stranger = await RawClient.connect(fx.server.url, { clientId: 'stranger' });
        await stranger.request({ type: 'presence', channel, action: 'leave' });
        await stranger.request({ type: 'presence', channel, action: 'enter' });
        await phone.request({ type: 'presence', channel, action: 'leave' });
        const leave = await watcher.next(isAction('leave'));
        assert.ok(
          leave.type === 'presence' && leave.action === 'leave' && leave.member.clientId === 'phone',
          JSON.stringify(leave),
        );
        assert.equal(presenceEvents(watcher, channel).filter((f) => f.action === 'leave').length, 1);
        // one member leaving leaves the others in the set
        const members = (await rest(fx.server, `/v1/channels/${channel}/presence`)).body.members as Array<{
          clientId: string;
        }>;
        assert.deepEqual(
          members.map((m) => m.clientId),
          ['stranger'],
        );
        await Promise.all([watcher.close(), phone.close(), stranger.close()]);
      } finally {
        await fx.close();
      }
    });

    it('a clean close leaves at once, whatever the grace period', async () => {
      const fx = await startFixture(kind, { presenceGrace: 60_000 });
      try {
        const channel = 'session:bye';
        const watcher = await RawClient.connect(fx.server.url, { clientId: 'watcher' });
        await watcher.attach(channel);
        const tab = await RawClient.connect(fx.server.url, { clientId: 'tab' });
        await tab.request({ type: 'presence', channel, action: 'enter' });
        await watcher.next(isAction('enter'));
        await tab.close();
        await watcher.next(isAction('leave'));
        await watcher.close();
      } finally {
        await fx.close();
      }
    });

    it('with a grace of 0, an abrupt loss leaves at once (0 is a grace, not "the default")', async () => {
      const fx = await startFixture(kind, { presenceGrace: 0 });
      try {
        const channel = 'session:nograce';
        const { watcher, phone } = await watchedPhone(fx.server.url, channel);
        phone.kill();
        // the default grace is 15 s: a leave within 5 s is the 0 given
        const leave = await watcher.next(isAction('leave'), 5_000);
        assert.ok(leave.type === 'presence' && leave.action === 'leave' && leave.member.clientId === 'phone');
        await watcher.close();
      } finally {
        await fx.close();
      }
    });

    for (const data of [{ device: 'phone' }, undefined])
      it(`a connection recovered after the grace (within its state TTL) enters again (${data ? 'with' : 'without'} data)`, async () => {
        const fx = await startFixture(kind, { presenceGrace: 200 });
        try {
          const channel = 'session:late';
          const { watcher, phone } = await watchedPhone(fx.server.url, channel, data);
          phone.kill();
          await watcher.next(isAction('leave'));
          const back = await RawClient.connect(fx.server.url, {
            clientId: 'phone',
            recover: phone.connected.connectionKey,
          });
          assert.equal(back.connected.resumed, true);
          await watcher.next(
            () => presenceEvents(watcher, channel).filter((f) => f.action === 'enter').length === 2,
          );
          const last = presenceEvents(watcher, channel).at(-1)!;
          assert.ok(last.action === 'enter' && last.member.clientId === 'phone');
          assert.deepEqual(last.member.data, data);
          await Promise.all([watcher.close(), back.close()]);
        } finally {
          await fx.close();
        }
      });
  });

describe('presence data size', () => {
  it('takes data of exactly maxOperationSize bytes (as JSON) and refuses one byte more', async () => {
    const fx = await startFixture('memory', { limits: { maxOperationSize: 1000 } });
    try {
      const phone = await RawClient.connect(fx.server.url, { clientId: 'phone' });
      const enter = (data: string) =>
        phone.request({ type: 'presence', channel: 'room', action: 'enter', data });
      assert.equal((await enter('x'.repeat(998))).type, 'ack', '998 characters and two quotes: 1000 bytes');
      const over = await enter('x'.repeat(999));
      assert.equal(over.type === 'error' && over.error.code, 'operation_too_large');
      await phone.close();
    } finally {
      await fx.close();
    }
  });
});

describe('presence: a change while a new subscriber reads the set', () => {
  it('reaches that subscriber after its sync, not nowhere', async () => {
    // The set is read at once and handed over only when the test says: what enters in between is
    // not in the snapshot, so it must come as an event (on Redis the read is a round trip).
    let readStarted: () => void = () => {};
    const reading = new Promise<void>((resolve) => {
      readStarted = resolve;
    });
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const slowRead = (inner: Presence): Presence => ({
      members: async (channel) => {
        const snapshot = await inner.members(channel);
        readStarted();
        await released;
        return snapshot;
      },
      count: (channel) => inner.count(channel),
      channelsOf: (connectionId) => inner.channelsOf(connectionId),
      enter: (channel, connectionId, clientId, data, size) =>
        inner.enter(channel, connectionId, clientId, data, size),
      leave: (channel, connectionId) => inner.leave(channel, connectionId),
      connectionClosed: (connectionId) => inner.connectionClosed(connectionId),
      connectionLost: (connectionId) => inner.connectionLost(connectionId),
      connectionResumed: (connectionId) => inner.connectionResumed(connectionId),
      subscribe: (channel, listener) => inner.subscribe(channel, listener),
      close: () => inner.close(),
    });
    const fx = await startFixture('memory', {
      presence: (_store, options) => slowRead(new PresenceService(options)),
    });
    try {
      const channel = 'session:read';
      const watcher = await RawClient.connect(fx.server.url, { clientId: 'watcher' });
      await watcher.attach(channel);
      await reading;
      const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      await agent.request({ type: 'presence', channel, action: 'enter', data: { n: 1 } });
      release();
      const sync = await watcher.next(isAction('sync'));
      assert.ok(sync.type === 'presence' && sync.action === 'sync');
      assert.deepEqual(sync.members, [], 'the set as read, before the enter');
      await agent.request({ type: 'presence', channel, action: 'update', data: { n: 2 } });
      await watcher.next(isAction('update'));
      assert.deepEqual(
        presenceEvents(watcher, channel).map((f) => f.action),
        ['sync', 'enter', 'update'],
        'the enter made during the read came after the sync',
      );
      await Promise.all([watcher.close(), agent.close()]);
    } finally {
      await fx.close();
    }
  });
});
