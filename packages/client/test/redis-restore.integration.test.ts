// A Redis that comes back with less than it acknowledged (PROTOCOL.md §15, "A new Redis, a new
// epoch"): a real server on a real redis-server that is SAVEd, written to, killed (SIGKILL) and
// restarted from its snapshot. A client subscribed through it saw an operation the snapshot does not
// hold; it must be told its continuity was lost (and which of its messages are kept), be given what
// was stored after those, never be handed the new log as if it went on from the old one, nor a later
// operation under the serial it holds for the lost one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import type { ContinuityLost } from '../src/channel.ts';
import { client, connected, realServer, waitFor } from './helpers/real-server.ts';

const skip = redisSkipReason();

describe('a Redis restored from an older snapshot', () => {
  it('a subscriber that saw a lost operation is told continuityLost (epoch_changed) and reads the stored log', async (t) => {
    if (skip) return t.skip(skip);
    const redis = await startRedis();
    t.after(() => redis.close());
    const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
    const agent = client(t, server.url, { clientId: 'agent' });
    const reader = client(t, server.url);
    await Promise.all([connected(agent), connected(reader)]);

    const channel = reader.channels.get('session:restored');
    const seen: Message[] = [];
    const lost: ContinuityLost[] = [];
    channel.on('continuityLost', (e) => lost.push(e));
    await channel.subscribe((m) => seen.push(m));
    const out = agent.channels.get('session:restored');

    await out.publish('msg', 'a');
    await out.publish('msg', 'b');
    await redis.command('SAVE');
    const gone = await out.publish('msg', 'c');
    await waitFor(() => seen.some((m) => m.serial === gone), { message: 'the reader saw c' });

    await redis.stop('SIGKILL');
    await redis.restart();
    await waitFor(async () => (await fetch(`${server.url}/ready`)).status === 200, {
      message: 'the server is ready on the restarted Redis',
    });
    const next = await out.publish('msg', 'd');
    assert.notEqual(next, gone, 'the lost operation’s serial is not given to another');

    await waitFor(() => lost.length > 0, { message: 'the reader was told its continuity was lost' });
    const epoch = next.split('.')[0]!;
    // `c` is lost; `a` and `b` are kept, as `<epoch>.1` and `<epoch>.2`: the reader is told so, and
    // is given what changed after them — `d`, the first operation on the new Redis — so a subscriber
    // that reads no history misses nothing stored. Nothing of the new log was applied as if it
    // followed `c`.
    assert.deepEqual(lost, [
      { reason: 'epoch_changed', previousPosition: gone, position: next, kept: `${epoch}.0000000000000002` },
    ]);
    assert.deepEqual(
      seen.map((m) => [m.serial.split('.')[0] === epoch, m.data]),
      [
        [false, 'a'],
        [false, 'b'],
        [false, 'c'],
        [true, 'd'],
      ],
    );
    const page = await channel.history({ direction: 'forwards' });
    assert.equal(page.epoch, epoch);
    assert.deepEqual(
      page.items.map((m) => [m.serial, m.data]),
      [
        [`${epoch}.0000000000000001`, 'a'],
        [`${epoch}.0000000000000002`, 'b'],
        [next, 'd'],
      ],
    );
    // …and goes on from there: the next operation arrives live, once.
    const later = await out.publish('msg', 'e');
    await waitFor(() => seen.some((m) => m.serial === later), { message: 'the reader got e live' });
    assert.deepEqual(
      seen.slice(4).map((m) => m.data),
      ['e'],
    );
  });

  it('a resume checked against the old epoch whose catch-up reads the new one is told continuityLost, and is given no message twice', async (t) => {
    if (skip) return t.skip(skip);
    const redis = await startRedis({ appendonly: 'always' });
    t.after(() => redis.close());
    const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
    const agent = client(t, server.url, { clientId: 'agent' });
    await connected(agent);
    const out = agent.channels.get('session:raced');
    await out.publish('msg', 'a');
    const b = await out.publish('msg', 'b');

    await redis.stop('SIGKILL');
    await redis.restart();
    await waitFor(async () => (await fetch(`${server.url}/ready`)).status === 200, {
      message: 'the server is ready on the restarted Redis',
    });
    // The first publish on the new Redis (which starts the new epoch) lands between the resume's
    // check (still the old epoch: nothing was written on this Redis yet) and its catch-up read.
    const store = server.store;
    const readSince = store.readSince.bind(store);
    let raced: Promise<string> | undefined;
    store.readSince = async (channel, after, limit, maxBytes) => {
      // the attach's catch-up (a read with a byte budget), not the hub's read-back
      if (raced === undefined && channel === 'session:raced' && after === b && maxBytes !== undefined) {
        raced = out.publish('msg', 'd');
        await raced;
      }
      return readSince(channel, after, limit, maxBytes);
    };

    const reader = client(t, server.url);
    const channel = reader.channels.get('session:raced', { from: b });
    const seen: Message[] = [];
    const lost: ContinuityLost[] = [];
    channel.on('continuityLost', (e) => lost.push(e));
    await channel.subscribe((m) => seen.push(m));
    assert.ok(raced, 'the catch-up read was raced');
    const d = await raced;
    await waitFor(() => seen.some((m) => m.serial === d), { message: 'the reader got d' });
    const epoch = d.split('.')[0]!;
    // a and b are the reader's own (kept, as <epoch>.1 and .2): only d is new to it, and it is told
    // that its serials changed
    assert.deepEqual(
      seen.map((m) => [m.serial, m.data]),
      [[d, 'd']],
    );
    assert.deepEqual(lost, [
      { reason: 'epoch_changed', previousPosition: b, position: d, kept: `${epoch}.0000000000000002` },
    ]);
  });

  it('a resume from before two Redis restarts in a row keeps its messages, and is given what came after them', async (t) => {
    if (skip) return t.skip(skip);
    const redis = await startRedis({ appendonly: 'always' });
    t.after(() => redis.close());
    const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
    const agent = client(t, server.url, { clientId: 'agent' });
    await connected(agent);
    const out = agent.channels.get('session:twice');
    await out.publish('msg', 'a');
    const b = await out.publish('msg', 'b');
    const restart = async () => {
      await redis.stop('SIGKILL');
      await redis.restart();
      await waitFor(async () => (await fetch(`${server.url}/ready`)).status === 200, {
        message: 'the server is ready on the restarted Redis',
      });
    };
    await restart();
    await out.publish('msg', 'c');
    await restart();
    const d = await out.publish('msg', 'd');
    const epoch = d.split('.')[0]!;

    const reader = client(t, server.url);
    const channel = reader.channels.get('session:twice', { from: b });
    const seen: Message[] = [];
    const lost: ContinuityLost[] = [];
    channel.on('continuityLost', (e) => lost.push(e));
    await channel.subscribe((m) => seen.push(m));
    await waitFor(() => lost.length > 0, { message: 'the reader was told its continuity was lost' });
    assert.deepEqual(lost, [
      { reason: 'epoch_changed', previousPosition: b, position: d, kept: `${epoch}.0000000000000002` },
    ]);
    assert.deepEqual(
      seen.map((m) => [m.serial, m.data]),
      [
        [`${epoch}.0000000000000003`, 'c'],
        [d, 'd'],
      ],
    );
  });
});
