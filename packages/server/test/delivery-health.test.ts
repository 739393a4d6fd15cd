/**
 * Delivery health (issue 17): per-channel numbers a support engineer reads when "the answer
 * vanished" — real server, real WebSocket clients killed without a close; and the bounded,
 * windowed bookkeeping behind them (DeliveryHealth on a fake clock).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PresenceMember } from '@mooring/protocol';
import { redisSkipReason, waitFor } from '@mooring/testkit';
import { DeliveryHealth, HEALTH_WINDOW_MS, MAX_SUBSCRIBERS_LISTED } from '../src/delivery-health.ts';
import { type ChannelHealthReport, MAX_LEASES_LISTED } from '../src/health-report.ts';
import { createToken } from '../src/index.ts';
import { Metrics } from '../src/metrics.ts';
import { MetricsHistory, quantileMs } from '../src/metrics-history.ts';
import { PresenceService } from '../src/presence.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import type { AppendOptions, AppendResult, NewOperation } from '../src/store/store.ts';
import { rest, startFixture, TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';
import { StalledClient } from './support/stalled-client.ts';

/** A memory store whose appends wait for `gate` (a publish that is received but not yet stored). */
class SlowStore extends MemoryStore {
  gate: Promise<void> | undefined;
  override async append(channel: string, ops: NewOperation[], options: AppendOptions): Promise<AppendResult> {
    await this.gate;
    return super.append(channel, ops, options);
  }
}

/** Node-local presence that counts the reads of its members (each costs the whole set, data included). */
class CountingPresence extends PresenceService {
  reads = 0;
  override members(channel: string): PresenceMember[] {
    this.reads++;
    return super.members(channel);
  }
  override memberJsons(channel: string): string[] {
    this.reads++;
    return super.memberJsons(channel);
  }
}

async function health(fx: { server: { url: string } }, channel: string, key?: string) {
  const res = await rest(
    fx.server as never,
    `/v1/channels/${encodeURIComponent(channel)}/health`,
    key ? { key } : {},
  );
  return res as { status: number; body: ChannelHealthReport & Record<string, unknown> };
}

describe('delivery health', () => {
  it('counts a subscriber lost, offline, resumed and caught up; and continuity lost', async () => {
    const fx = await startFixture('memory');
    const channel = 'session:health-1';
    try {
      const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      const user = await RawClient.connect(fx.server.url, { clientId: 'user-1' });
      await user.attach(channel);
      const first = await agent.publish(channel, [{ id: 'm1', data: 'hello' }]);
      let h = (await health(fx, channel)).body;
      assert.deepEqual(
        h.subscribers.map((s) => [s.clientId, s.transport]),
        [['user-1', 'websocket']],
      );
      user.kill(); // the network drops: no close frame
      await waitFor(async () => (await health(fx, channel)).body.connectionsLost === 1, {
        message: 'the lost connection was never counted',
      });
      for (let i = 2; i <= 4; i++) await agent.publish(channel, [{ id: `m${i}`, data: 'x'.repeat(100) }]);
      const back = await RawClient.connect(fx.server.url, { clientId: 'user-1' });
      const attached = await back.attach(channel, { from: first.results[0]!.serial });
      assert.equal(attached.resumed, true);
      h = (await health(fx, channel)).body;
      assert.equal(h.reconnects, 1);
      assert.equal(h.resumes, 1);
      assert.equal(h.continuityLost, 0);
      assert.equal(h.connectionsLost, 1);
      assert.equal(h.caughtUpMessages, 3);
      assert.ok(h.caughtUpBytes > 300, `caught-up bytes ${h.caughtUpBytes}`);
      assert.ok(h.offlineMs > 0 && h.maxOfflineMs === h.offlineMs, 'time offline measured once');
      assert.equal(h.subscribers.length, 1);
      assert.ok(h.trouble > 0);

      const other = await RawClient.connect(fx.server.url, { clientId: 'user-2' });
      const lost = await other.attach(channel, { from: `zzzzzzzzzzzz.${'0'.repeat(15)}1` });
      assert.equal(lost.resumed, false);
      h = (await health(fx, channel)).body;
      assert.equal(h.continuityLost, 1);
      assert.equal(h.lastContinuityLost?.reason, 'epoch_changed');
      assert.equal(h.subscribers.length, 2);

      await other.request({ type: 'detach', channel });
      h = (await health(fx, channel)).body;
      assert.equal(h.subscribers.length, 1, 'a detach removes the subscriber');

      const list = await rest(fx.server, '/v1/health?limit=5');
      const channels = (list.body.channels as { channel: string }[]).map((c) => c.channel);
      assert.deepEqual(channels, [channel], 'the channel in trouble is listed');
      for (const c of [agent, back, other]) await c.close();
    } finally {
      await fx.close();
    }
  });

  it('counts a slow consumer dropped from the channel', async () => {
    const fx = await startFixture('memory', { limits: { maxSendBuffer: 64 * 1024 } });
    const channel = 'session:health-slow';
    try {
      const pub = await RawClient.connect(fx.server.url);
      const slow = await StalledClient.connect(fx.server.url, `/v1/connect?key=${TEST_KEY}&clientId=slow`);
      slow.sendText(JSON.stringify({ type: 'attach', channel }));
      await waitFor(async () => (await health(fx, channel)).body.subscribers.length === 1);
      slow.stall();
      const chunk = 'x'.repeat(16 * 1024);
      for (let i = 0; fx.server.connections === 2 && i < 2_000; i++)
        await pub.publish(channel, [{ id: `s${i}`, data: chunk }]);
      const h = await waitFor(async () => {
        const body = (await health(fx, channel)).body;
        return body.slowConsumerDrops === 1 && body;
      });
      assert.equal(h.connectionsLost, 1);
      assert.equal(h.subscribers.length, 0);
      slow.destroy();
      await pub.close();
    } finally {
      await fx.close();
    }
  });

  it('shows the oldest unacknowledged publish while the store has not committed it', async () => {
    const store = new SlowStore();
    let open!: () => void;
    store.gate = new Promise((resolve) => {
      open = resolve;
    });
    const fx = await startFixture('memory', { store });
    const channel = 'session:health-unacked';
    try {
      const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      const pending = agent.publish(channel, [{ id: 'slow', data: 'x' }]);
      const h = await waitFor(
        async () => {
          const body = (await health(fx, channel)).body;
          return body.unackedPublishes === 1 && body;
        },
        { message: 'the publish in flight never showed' },
      );
      assert.ok(h.oldestUnackedMs !== null && h.oldestUnackedMs >= 0);
      open();
      await pending;
      const after = (await health(fx, channel)).body;
      assert.equal(after.unackedPublishes, 0);
      assert.equal(after.oldestUnackedMs, null);
      await agent.close();
    } finally {
      await fx.close();
    }
  });

  it('shows who subscribes to API keys only; a token holder with history and presence sees how many', async () => {
    const fx = await startFixture('memory');
    const channel = 'session:health-watchers';
    try {
      const supervisor = await RawClient.connect(fx.server.url, { clientId: 'supervisor' });
      await supervisor.attach(channel); // watching, never present
      const { token } = await createToken(TEST_KEY, {
        clientId: 'user',
        capability: { 'session:*': ['history', 'presence', 'subscribe'] },
      });
      const user = { key: null, headers: { authorization: `Bearer ${token}` } };
      const byToken = (await rest(fx.server, `/v1/channels/${channel}/health`, user))
        .body as unknown as ChannelHealthReport;
      assert.deepEqual(byToken.subscribers, []);
      assert.equal(byToken.subscriberCount, 1);
      const byKey = (await health(fx, channel)).body;
      assert.deepEqual(
        byKey.subscribers.map((s) => s.clientId),
        ['supervisor'],
      );
      // and in the list of channels in trouble
      supervisor.kill(); // a drop: the channel is in trouble, with its subscriber record
      const watcher = await RawClient.connect(fx.server.url, { clientId: 'supervisor' });
      await watcher.attach(channel);
      const worst = await waitFor(async () => {
        const body = (await rest(fx.server, '/v1/health', user)).body as unknown as {
          channels: ChannelHealthReport[];
        };
        return body.channels.find((c) => c.channel === channel);
      });
      assert.deepEqual(worst.subscribers, []);
      assert.ok(worst.subscriberCount >= 1);
      const listed = (await rest(fx.server, '/v1/health')).body as unknown as {
        channels: ChannelHealthReport[];
      };
      assert.ok((listed.channels.find((c) => c.channel === channel)?.subscribers.length ?? 0) >= 1);
      await watcher.close();
    } finally {
      await fx.close();
    }
  });

  it('lists leases with their deadline once the publisher is gone', async () => {
    const fx = await startFixture('memory');
    const channel = 'session:health-leases';
    try {
      const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      const ack = await agent.publish(channel, [{ id: 'run', data: '', lease: 60_000 }]);
      const serial = ack.results[0]!.serial;
      let h = (await health(fx, channel)).body;
      assert.deepEqual(h.leases, [{ serial, clientId: 'agent', ms: 60_000, held: true }]);
      agent.kill();
      h = await waitFor(async () => {
        const body = (await health(fx, channel)).body;
        return body.leases[0]?.held === false && body;
      });
      const deadline = h.leases[0]!.deadline!;
      assert.ok(deadline > h.serverTime && deadline <= h.serverTime + 60_000, 'deadline within the lease');
    } finally {
      await fx.close();
    }
  });

  for (const kind of ['memory', 'redis'] as const)
    it(
      `lists at most ${MAX_LEASES_LISTED} leases of a channel, the earliest messages first, and counts them all (${kind})`,
      { skip: kind === 'redis' ? redisSkipReason() : false },
      async () => {
        const fx = await startFixture(kind);
        const channel = 'session:health-many-leases';
        try {
          const total = MAX_LEASES_LISTED + 50;
          const serials: string[] = [];
          // REST publishes: their leases are held by activity (a minute: none runs out meanwhile)
          for (let i = 0; i < total; i += 50) {
            const ops = Array.from({ length: 50 }, (_, j) => ({
              id: `run-${i + j}`,
              data: '',
              lease: 60_000,
            }));
            const res = await rest(fx.server, `/v1/channels/${channel}/messages`, { body: ops });
            assert.equal(res.status, 200);
            for (const r of res.body.results as Array<{ serial: string }>) serials.push(r.serial);
          }
          const h = (await health(fx, channel)).body;
          assert.equal(h.leaseCount, total);
          assert.equal(h.leases.length, MAX_LEASES_LISTED);
          assert.deepEqual(
            h.leases.map((l) => l.serial),
            serials.slice(0, MAX_LEASES_LISTED),
            'the earliest messages, in order',
          );
          const few = 'session:health-few-leases';
          await rest(fx.server, `/v1/channels/${few}/messages`, {
            body: { id: 'one', data: '', lease: 60_000 },
          });
          const small = (await health(fx, few)).body;
          assert.deepEqual(
            [small.leases.length, small.leaseCount],
            [1, 1],
            'a small channel lists every lease',
          );
        } finally {
          await fx.close();
        }
      },
    );

  it('counts presence members without reading one, in the same shape as before', async () => {
    let presence!: CountingPresence;
    const fx = await startFixture('memory', {
      presence: (_store, options) => {
        presence = new CountingPresence(options);
        return presence;
      },
    });
    const channel = 'session:health-count';
    try {
      const clients = await Promise.all(
        ['a', 'b', 'c'].map((clientId) => RawClient.connect(fx.server.url, { clientId })),
      );
      for (const [i, client] of clients.entries()) {
        await client.attach(channel);
        await client.request({
          type: 'presence',
          channel,
          action: 'enter',
          data: { big: 'x'.repeat(1_000 * i) },
        });
      }
      const before = presence.reads;
      const h = (await health(fx, channel)).body;
      assert.equal(presence.reads - before, 0, 'no member was read');
      assert.equal(h.presenceMembers, 3);
      assert.deepEqual(Object.keys(h).sort(), [
        'caughtUpBytes',
        'caughtUpMessages',
        'channel',
        'connectionsLost',
        'continuityLost',
        'leaseCount',
        'leases',
        'maxOfflineMs',
        'offlineMs',
        'oldestUnackedMs',
        'presenceMembers',
        'reconnects',
        'resumes',
        'serverTime',
        'slowConsumerDrops',
        'subscriberCount',
        'subscribers',
        'trouble',
        'unackedPublishes',
        'windowMinutes',
      ]);
      assert.deepEqual(
        h.subscribers.map((s) => s.clientId),
        ['a', 'b', 'c'],
        'a small channel lists every subscriber',
      );
      assert.equal(h.subscriberCount, 3);
      await clients[0]!.request({ type: 'presence', channel, action: 'leave' });
      assert.equal((await health(fx, channel)).body.presenceMembers, 2, 'a leave is counted');
      for (const client of clients) await client.close();
    } finally {
      await fx.close();
    }
  });

  it('needs history and presence on the channel (health and conversation)', async () => {
    const fx = await startFixture('memory', {
      keys: [
        'test:secret',
        { name: 'reader', secret: 'r', capability: { 'session:*': ['subscribe', 'history'] } },
        { name: 'inspector', secret: 'i', capability: { 'session:*': ['history', 'presence'] } },
      ],
    });
    try {
      const channel = 'session:health-caps';
      assert.equal((await health(fx, channel, 'reader:r')).status, 403);
      assert.equal((await health(fx, channel, 'inspector:i')).status, 200);
      assert.equal((await health(fx, 'other:x', 'inspector:i')).status, 403);
      assert.equal((await rest(fx.server, `/v1/channels/${channel}/health`, { key: null })).status, 401);
      // the conversation tree: the same rights, a bounded limit
      const tree = (c: string, key: string | null, q = '') =>
        rest(fx.server, `/v1/channels/${encodeURIComponent(c)}/conversation${q}`, { key });
      assert.equal((await tree(channel, 'reader:r')).status, 403);
      assert.equal((await tree('other:x', 'inspector:i')).status, 403);
      assert.equal((await tree(channel, null)).status, 401);
      const none = await tree(channel, 'inspector:i');
      assert.equal(none.status, 200);
      assert.deepEqual(none.body, { channel, ai: false, messages: 0, truncated: false, lines: [] });
      assert.equal((await tree(channel, 'inspector:i', '?limit=1001')).status, 400);
      // the list shows only what the caller may inspect
      const user = await RawClient.connect(fx.server.url, { clientId: 'u' });
      await user.attach('other:x', { from: `zzzzzzzzzzzz.${'0'.repeat(15)}1` });
      const mine = await rest(fx.server, '/v1/health', { key: 'inspector:i' });
      assert.deepEqual(mine.body.channels, []);
      const all = await rest(fx.server, '/v1/health');
      assert.equal((all.body.channels as unknown[]).length, 1);
      assert.equal((await rest(fx.server, '/v1/health?limit=0')).status, 400);
      // both rights on the channel: history alone does not list it
      await user.attach(channel, { from: `zzzzzzzzzzzz.${'0'.repeat(15)}1` });
      const names = async (key: string) =>
        ((await rest(fx.server, '/v1/health', { key })).body.channels as { channel: string }[]).map(
          (c) => c.channel,
        );
      assert.deepEqual(await names('inspector:i'), [channel]);
      assert.deepEqual(await names('reader:r'), [], 'history without presence');
      await user.close();
    } finally {
      await fx.close();
    }
  });

  it('takes a limit of 1 to 100 channels in trouble and of 1 to 1000 conversation messages, whole numbers only', async () => {
    const fx = await startFixture('memory');
    try {
      const user = await RawClient.connect(fx.server.url, { clientId: 'u' });
      for (const c of ['session:limit-a', 'session:limit-b'])
        await user.attach(c, { from: `zzzzzzzzzzzz.${'0'.repeat(15)}1` }); // continuity lost: trouble
      const troubled = (q: string) => rest(fx.server, `/v1/health${q}`);
      assert.equal(((await troubled('')).body.channels as unknown[]).length, 2);
      assert.equal(((await troubled('?limit=1')).body.channels as unknown[]).length, 1, 'the least limit');
      assert.equal(
        ((await troubled('?limit=100')).body.channels as unknown[]).length,
        2,
        'the greatest limit',
      );
      for (const q of ['?limit=0', '?limit=101', '?limit=1.5', '?limit=abc'])
        assert.equal((await troubled(q)).status, 400, q);

      const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      const channel = 'session:limit-tree';
      for (let i = 0; i < 3; i++) await agent.publish(channel, [{ id: `m${i}`, data: 'x' }]);
      const tree = (q: string) =>
        rest(fx.server, `/v1/channels/${encodeURIComponent(channel)}/conversation${q}`);
      const one = await tree('?limit=1');
      assert.equal(one.status, 200);
      assert.deepEqual(
        [one.body.messages, one.body.truncated],
        [1, true],
        'the latest message, older ones not read',
      );
      const all = await tree('?limit=1000');
      assert.deepEqual([all.status, all.body.messages, all.body.truncated], [200, 3, false]);
      for (const q of ['?limit=0', '?limit=1001', '?limit=2.5', '?limit=x']) {
        const res = await tree(q);
        assert.equal(res.status, 400, q);
        assert.match(JSON.stringify(res.body), /limit must be an integer from 1 to 1000/);
      }
      await user.close();
      await agent.close();
    } finally {
      await fx.close();
    }
  });

  it('reads the conversation tree from a page of at most 1 MiB, and says older messages were not read', async () => {
    const fx = await startFixture('memory');
    try {
      const channel = 'session:health-big';
      const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      const size = 60_000;
      // 20 messages of 60 KB: 1.2 MB, under the 500 messages of the default limit
      for (let i = 0; i < 20; i++) await agent.publish(channel, [{ id: `m${i}`, data: 'x'.repeat(size) }]);
      const tree = await rest(fx.server, `/v1/channels/${encodeURIComponent(channel)}/conversation`);
      assert.equal(tree.status, 200);
      const body = tree.body as { messages: number; truncated: boolean };
      assert.ok(body.messages >= 1 && body.messages * size <= 1024 * 1024, `${body.messages} messages read`);
      assert.equal(body.truncated, true, 'older messages not read');
      await agent.close();
    } finally {
      await fx.close();
    }
  });
});

describe('DeliveryHealth bookkeeping', () => {
  it('forgets what is older than 15 minutes, and counts slow-consumer drops', () => {
    let now = 1_000_000_000;
    const h = new DeliveryHealth({ now: () => now });
    const sub = { connectionId: 'c1', clientId: 'u', transport: 'websocket' as const };
    h.attached('ch', sub, false, { resumed: false });
    h.connectionEnded('c1', 'u', 'slow_consumer');
    now += 2_000;
    h.attached('ch', { ...sub, connectionId: 'c2' }, true, { resumed: true });
    let r = h.channel('ch')!;
    assert.equal(r.slowConsumerDrops, 1);
    assert.equal(r.connectionsLost, 1);
    assert.equal(r.offlineMs, 2_000);
    assert.equal(r.resumes, 1);
    now += HEALTH_WINDOW_MS + 60_000;
    r = h.channel('ch')!;
    assert.deepEqual(
      [r.slowConsumerDrops, r.connectionsLost, r.offlineMs, r.resumes, r.trouble],
      [0, 0, 0, 0, 0],
    );
    assert.equal(r.subscribers.length, 1, 'who is attached is not windowed');
  });

  it('sums counts over the minutes of the window and takes the longest time offline of any minute, to its last millisecond', () => {
    const minute = 60_000;
    let now = 1_000 * minute; // the start of a minute
    const start = now;
    const h = new DeliveryHealth({ now: () => now });
    const sub = (connectionId: string) => ({ connectionId, clientId: 'u', transport: 'websocket' as const });
    const dropFor = (ms: number, from: string, to: string) => {
      h.connectionEnded(from, 'u', 'lost');
      now += ms;
      h.attached('ch', sub(to), true, { resumed: true });
    };
    h.attached('ch', sub('c1'), true, { resumed: true });
    dropFor(3_000, 'c1', 'c2'); // offline 3 s, then 1 s, in the first minute
    dropFor(1_000, 'c2', 'c3');
    now = start + 2 * minute;
    dropFor(2_000, 'c3', 'c4'); // offline 2 s, two minutes later
    let r = h.channel('ch')!;
    assert.deepEqual(
      [r.reconnects, r.resumes, r.connectionsLost, r.offlineMs, r.maxOfflineMs],
      [4, 4, 3, 6_000, 3_000],
    );
    // the first minute's counts stay in the window until its 15th minute has ended
    now = start + HEALTH_WINDOW_MS - 1;
    r = h.channel('ch')!;
    assert.deepEqual([r.reconnects, r.maxOfflineMs], [4, 3_000]);
    now = start + HEALTH_WINDOW_MS;
    r = h.channel('ch')!;
    assert.deepEqual([r.reconnects, r.maxOfflineMs], [1, 2_000], 'a minute 15 minutes old still counted');
  });

  it('a lost connection counts as a drop on every channel it was attached to, and on none it detached', () => {
    const h = new DeliveryHealth({ now: () => 0 });
    const sub = (connectionId: string) => ({ connectionId, transport: 'websocket' as const });
    for (const channel of ['a', 'b', 'c']) h.attached(channel, sub('one'), false, { resumed: false });
    h.detached('b', 'one');
    h.attached('a', sub('only-a'), false, { resumed: false });
    h.detached('a', 'only-a');
    h.connectionEnded('one', undefined, 'lost');
    h.connectionEnded('only-a', undefined, 'lost');
    assert.deepEqual(
      ['a', 'b', 'c'].map((channel) => [
        h.channel(channel)?.connectionsLost,
        h.channel(channel)?.subscribers.length,
      ]),
      [
        [1, 0],
        [0, 0],
        [1, 0],
      ],
    );
  });

  it('remembers at most 64 subscribers still offline per channel, the latest ones', () => {
    let now = 0;
    const h = new DeliveryHealth({ now: () => now });
    for (let i = 0; i < 100; i++) {
      h.attached('ch', { connectionId: `c${i}`, clientId: `u${i}`, transport: 'websocket' }, false, {
        resumed: false,
      });
      h.connectionEnded(`c${i}`, `u${i}`, 'lost');
    }
    now = 1_000;
    const r = h.channel('ch')!;
    assert.equal(r.connectionsLost, 100);
    assert.equal(r.offlineMs, 64 * 1_000, 'the drops remembered are not bounded');
    // the earliest were forgotten: u0 comes back without a time offline, u99 with one
    h.attached('ch', { connectionId: 'back0', clientId: 'u0', transport: 'websocket' }, true, {
      resumed: true,
    });
    h.attached('ch', { connectionId: 'back99', clientId: 'u99', transport: 'websocket' }, true, {
      resumed: true,
    });
    assert.equal(h.channel('ch')!.offlineMs, 64 * 1_000);
  });

  it('worst() lists channels in trouble, worst first: an unacknowledged publish older than a second is trouble, a catch-up is not', () => {
    let now = 0;
    const h = new DeliveryHealth({ now: () => now });
    h.caughtUp('quiet', 0, 0); // nothing known of it: ignored
    h.attached('quiet', { connectionId: 'q', transport: 'websocket' }, false, { resumed: false });
    h.caughtUp('quiet', 10, 1_000);
    h.publishing('waiting');
    h.attached('lost', { connectionId: 'l', transport: 'websocket' }, true, {
      resumed: false,
      reason: 'position_trimmed',
    });
    now = 4_000;
    h.publishing('one-second'); // waiting exactly a second at the report: not yet trouble
    now = 5_000;
    assert.deepEqual(
      h.worst(10).map((r) => [r.channel, r.trouble]),
      [
        ['lost', 11], // continuity lost ×10 + a reconnect
        ['waiting', 5], // 5 s unacknowledged
      ],
    );
    assert.deepEqual(
      h.worst(1, (channel) => channel !== 'lost').map((r) => r.channel),
      ['waiting'],
    );
  });

  it('continuity lost shows for 15 minutes, and a subscriber still offline counts for 15 minutes', () => {
    let now = 0;
    const h = new DeliveryHealth({ now: () => now });
    h.attached('ch', { connectionId: 'a', clientId: 'x', transport: 'websocket' }, true, {
      resumed: false,
      reason: 'position_trimmed',
    });
    h.attached('ch', { connectionId: 'b', clientId: 'y', transport: 'websocket' }, false, { resumed: false });
    h.connectionEnded('b', 'y', 'lost');
    now = HEALTH_WINDOW_MS - 1;
    assert.deepEqual(h.channel('ch')?.lastContinuityLost, { reason: 'position_trimmed', at: 0 });
    now = HEALTH_WINDOW_MS;
    const r = h.channel('ch')!;
    assert.equal(r.lastContinuityLost, undefined, 'continuity lost 15 minutes ago still shown');
    assert.equal(r.offlineMs, HEALTH_WINDOW_MS, 'offline for exactly the window: counted');
  });

  it('a client closing on purpose is not a drop; one still offline counts its time so far', () => {
    let now = 0;
    const h = new DeliveryHealth({ now: () => now });
    h.attached('ch', { connectionId: 'a', clientId: 'x', transport: 'sse' }, false, { resumed: false });
    h.attached('ch', { connectionId: 'b', clientId: 'y', transport: 'longpoll' }, false, { resumed: false });
    h.connectionEnded('a', 'x', 'closed');
    h.connectionEnded('b', 'y', 'lost');
    now += 5_000;
    const r = h.channel('ch')!;
    assert.equal(r.connectionsLost, 1);
    assert.equal(r.offlineMs, 5_000);
    assert.equal(r.subscribers.length, 0);
  });

  it(`lists at most ${MAX_SUBSCRIBERS_LISTED} subscribers of a channel, the first attached, and counts them all`, () => {
    const h = new DeliveryHealth({ now: () => 0 });
    const total = MAX_SUBSCRIBERS_LISTED + 50;
    for (let i = 0; i < total; i++)
      h.attached('crowd', { connectionId: `c${i}`, clientId: `u${i}`, transport: 'websocket' }, true, {
        resumed: false,
      });
    const r = h.channel('crowd')!;
    assert.equal(r.subscriberCount, total);
    assert.equal(r.subscribers.length, MAX_SUBSCRIBERS_LISTED);
    assert.deepEqual(
      [r.subscribers[0]?.connectionId, r.subscribers.at(-1)?.connectionId],
      ['c0', `c${MAX_SUBSCRIBERS_LISTED - 1}`],
    );
    const [worst] = h.worst(1);
    assert.deepEqual(
      [worst?.subscribers.length, worst?.subscriberCount],
      [MAX_SUBSCRIBERS_LISTED, total],
      'the list of channels in trouble is bounded the same way',
    );
  });

  it('tracks a bounded number of channels, forgetting idle ones first', () => {
    const h = new DeliveryHealth({ maxChannels: 100 });
    h.attached('busy', { connectionId: 'c', transport: 'websocket' }, false, { resumed: false });
    for (let i = 0; i < 10_000; i++) {
      const id = h.publishing(`ch:${i}`);
      h.published(`ch:${i}`, id);
    }
    assert.equal(h.trackedChannels, 100);
    assert.ok(h.channel('busy'), 'a channel with a subscriber is kept');
  });

  it('forgets a channel that became idle before the oldest busy one, and the oldest when none is idle', () => {
    const h = new DeliveryHealth({ maxChannels: 4 });
    const attach = (channel: string, connectionId: string) =>
      h.attached(channel, { connectionId, transport: 'websocket' }, false, { resumed: false });
    attach('a', 'c1');
    attach('b', 'c2');
    attach('c', 'c3');
    const id = h.publishing('d');
    h.detached('b', 'c2'); // idle: no subscriber
    h.connectionEnded('c3', undefined, 'closed'); // idle: its connection ended
    h.published('d', id); // idle: its publish answered
    attach('b', 'c4'); // busy again
    attach('e', 'c5');
    assert.equal(h.channel('c'), undefined, 'the oldest idle one went first');
    assert.ok(h.channel('a') && h.channel('b'), 'busy ones older than it stayed');
    attach('f', 'c6');
    assert.equal(h.channel('d'), undefined, 'then the next idle one');
    attach('g', 'c7');
    assert.equal(h.channel('a'), undefined, 'none idle: the oldest');
    assert.deepEqual(
      ['b', 'e', 'f', 'g'].map((channel) => h.channel(channel)?.subscribers.length),
      [1, 1, 1, 1],
    );
  });

  it('keeps a channel whose users dropped (a session in trouble) and forgets quiet ones first, idle then busy; a troubled one only after its window', () => {
    let now = 0;
    const h = new DeliveryHealth({ maxChannels: 4, now: () => now });
    const attach = (channel: string, connectionId: string) =>
      h.attached(channel, { connectionId, clientId: connectionId, transport: 'websocket' }, false, {
        resumed: false,
      });
    attach('alice', 'a');
    h.connectionEnded('a', 'a', 'lost'); // idle, and in trouble: its user dropped
    attach('busy', 'b');
    attach('quiet-1', 'q1');
    h.detached('quiet-1', 'q1'); // idle, nothing notable
    attach('quiet-2', 'q2');
    attach('new-1', 'n1');
    assert.equal(h.channel('quiet-1'), undefined, 'the quiet idle one went, not the older troubled one');
    attach('new-2', 'n2');
    assert.equal(h.channel('busy'), undefined, 'then the oldest quiet busy one');
    assert.equal(h.channel('alice')?.connectionsLost, 1, 'the session in trouble is kept');
    now += HEALTH_WINDOW_MS;
    attach('new-3', 'n3');
    assert.equal(h.channel('alice'), undefined, 'once its window passed, it is quiet and goes first');
  });

  it("one holder attaching (and dropping) channels without end recycles its own records, not everyone else's", () => {
    let now = 0;
    const h = new DeliveryHealth({ maxChannels: 100, now: () => now });
    h.attached(
      'session:alice',
      { connectionId: 'a', clientId: 'alice', transport: 'websocket', holder: 'k:alice' },
      false,
      {
        resumed: false,
      },
    );
    h.connectionEnded('a', 'alice', 'lost');
    for (let i = 0; i < 20; i++)
      h.attached(`other:${i}`, { connectionId: `o${i}`, transport: 'sse', holder: `k:user${i}` }, false, {
        resumed: false,
      });
    // Mallory: 5,000 channels, each one dropped at once (troubled, like Alice's)
    for (let i = 0; i < 5_000; i++) {
      now++;
      const connectionId = `m${i}`;
      h.attached(
        `session:mallory:${i}`,
        { connectionId, clientId: 'mallory', transport: 'websocket', holder: 'k:mallory' },
        false,
        {
          resumed: false,
        },
      );
      h.connectionEnded(connectionId, 'mallory', 'lost');
    }
    assert.equal(h.trackedChannels, 100);
    assert.equal(h.channel('session:alice')?.connectionsLost, 1, "Alice's troubled channel is kept");
    assert.equal(
      Array.from({ length: 20 }, (_, i) => h.channel(`other:${i}`)).filter(Boolean).length,
      20,
      "other holders' channels are kept",
    );
    assert.ok(h.channel('session:mallory:4999'), "Mallory's latest channel is tracked");
    assert.equal(h.channel('session:mallory:0'), undefined, 'her oldest made room for it');
    assert.ok(
      h.worst(100).some((r) => r.channel === 'session:alice'),
      'Alice is still listed among the sessions in trouble',
    );
  });

  it('a change that leaves a channel busy (a second subscriber, a publish on a subscribed channel) does not count it idle: the idle one still goes first', () => {
    const h = new DeliveryHealth({ maxChannels: 3 });
    const attach = (channel: string, connectionId: string) =>
      h.attached(channel, { connectionId, transport: 'websocket' }, false, { resumed: false });
    attach('a', 'c1');
    attach('b', 'c2');
    h.detached('b', 'c2'); // idle
    attach('c', 'c3');
    attach('a', 'c4'); // busy before, busy after
    h.published('a', h.publishing('a'));
    attach('d', 'c5');
    assert.equal(h.channel('b'), undefined, 'the idle one went');
    assert.deepEqual(
      ['a', 'c', 'd'].map((channel) => h.channel(channel)?.subscribers.length),
      [2, 1, 1],
    );
  });
});

describe('metrics history', () => {
  it('keeps a bounded ring of samples with rates, gauges and interval percentiles', async () => {
    const metrics = new Metrics();
    const history = new MetricsHistory(metrics, 60_000); // an hour = 60 samples
    assert.equal(history.capacity, 60);
    let t = 1_000_000;
    await history.sample(t);
    metrics.connections.inc({ transport: 'sse' }, 2);
    metrics.operations.inc({ action: 'create' }, 120);
    metrics.connectionsClosed.inc({ transport: 'websocket', reason: 'slow_consumer' }, 3);
    metrics.publishSeconds.observe(0.004);
    metrics.leaseExpiries.inc({ outcome: 'abandoned' }, 2);
    metrics.leaseExpiries.inc({ outcome: 'changed' }, 5);
    t += 60_000;
    await history.sample(t);
    let snap = history.snapshot();
    assert.equal(snap.t.length, 2);
    assert.deepEqual(snap.series.connections?.sse, [0, 2]);
    assert.deepEqual(snap.series.operations?.stored, [0, 2], '120 in 60 s = 2/s');
    assert.deepEqual(snap.series.slow?.['slow-consumer drops'], [0, 3], 'per minute');
    assert.deepEqual(snap.series.abandoned?.['runs abandoned'], [0, 2], 'only the abandoned outcome');
    const p50 = snap.series.latency?.['publish p50']?.[1];
    assert.ok(p50 !== null && p50 !== undefined && p50 > 2.5 && p50 <= 5, `p50 ${p50} ms in its bucket`);
    for (let i = 0; i < 100; i++) {
      t += 60_000;
      await history.sample(t);
    }
    snap = history.snapshot();
    assert.equal(snap.t.length, 60, 'an hour, no more');
    assert.equal(snap.t[59], t / 1000, 'newest last');
    assert.equal(snap.series.latency?.['publish p50']?.[59], null, 'no publish in the interval: no value');
  });

  it('shows a series first seen after the first sample at its rate in that interval, and no rate before a first interval', async () => {
    const metrics = new Metrics();
    metrics.operations.inc({ action: 'create' }, 50); // counted before the history started
    const history = new MetricsHistory(metrics, 60_000);
    let t = 1_000_000;
    await history.sample(t);
    await history.sample(t); // the same instant again: no interval, no rate
    metrics.errors.inc({ code: 'rate_limited' }, 6);
    metrics.connectionsClosed.inc({ transport: 'websocket', reason: 'lost' }, 2);
    t += 60_000;
    await history.sample(t);
    const snap = history.snapshot();
    assert.deepEqual(
      snap.series.operations?.stored,
      [0, 0, 0],
      'a total from before the first sample is no rate',
    );
    assert.deepEqual(
      snap.series.errors?.rate_limited,
      [0, 0, 6],
      'the first 6 errors of a code, in a minute',
    );
    assert.deepEqual(snap.series.closed?.lost, [0, 0, 2], 'the first connections lost');
  });

  it('shows resumes that resumed and continuity lost, and store append and read latency apart', async () => {
    const metrics = new Metrics();
    const history = new MetricsHistory(metrics, 60_000);
    let t = 1_000_000;
    await history.sample(t);
    metrics.attaches.inc({ mode: 'resume', resumed: 'true' }, 3);
    metrics.attaches.inc({ mode: 'resume', resumed: 'false' }, 5);
    metrics.attaches.inc({ mode: 'live', resumed: 'false' }, 7);
    metrics.resumeFailures.inc({ reason: 'epoch_changed' }, 2);
    metrics.storeSeconds.observe({ operation: 'append' }, 0.004);
    metrics.storeSeconds.observe({ operation: 'read' }, 0.4);
    t += 60_000;
    await history.sample(t);
    const { series } = history.snapshot();
    assert.deepEqual(series.resumes?.resumed, [0, 3], 'only resume attaches that resumed, per minute');
    assert.deepEqual(series.resumes?.['continuity lost'], [0, 2]);
    const append = series.latency?.['store append p99']?.[1];
    const read = series.latency?.['store read p99']?.[1];
    assert.ok(append != null && append > 2.5 && append <= 5, `append p99 ${append} ms in its bucket`);
    assert.ok(read != null && read > 250 && read <= 500, `read p99 ${read} ms in its bucket`);
  });

  it('keeps at most 32 series per chart, the first seen', async () => {
    const metrics = new Metrics();
    const history = new MetricsHistory(metrics, 60_000);
    for (let i = 0; i < 40; i++) metrics.errors.inc({ code: `code${i}` });
    await history.sample(1_000_000);
    const names = Object.keys(history.snapshot().series.errors ?? {});
    assert.deepEqual(
      names,
      Array.from({ length: 32 }, (_, i) => `code${i}`),
    );
  });

  it("a quantile that falls on a bucket boundary is that bucket's upper bound, interpolated inside a bucket otherwise", () => {
    // cumulative [upper bound s, count]: one observation up to 5 ms, one in (10, 25] ms
    const buckets: Array<[number, number]> = [
      [0.005, 1],
      [0.01, 1],
      [0.025, 2],
      [Infinity, 2],
    ];
    assert.equal(quantileMs(buckets, 0.5), 5);
    assert.equal(quantileMs(buckets, 0.75), 17.5);
    assert.equal(
      quantileMs(
        [
          [0.005, 0],
          [Infinity, 4],
        ],
        0.5,
      ),
      5,
      'past the last bound: that bound',
    );
    assert.equal(quantileMs([[Infinity, 0]], 0.5), null, 'nothing observed');
  });

  it('is served at /metrics/history to credentials', async () => {
    const fx = await startFixture('memory', { metricsSampleInterval: 50 });
    try {
      const agent = await RawClient.connect(fx.server.url);
      await agent.publish('session:h', [{ data: 'x' }]);
      assert.equal((await rest(fx.server, '/metrics/history', { key: null })).status, 401);
      const body = await waitFor(async () => {
        const res = await rest(fx.server, '/metrics/history');
        const stored = (res.body.series as Record<string, Record<string, number[]>>).operations?.stored ?? [];
        return stored.some((v) => v > 0) && res.body;
      });
      assert.equal(body.interval, 50);
      await agent.close();
    } finally {
      await fx.close();
    }
  });
});
