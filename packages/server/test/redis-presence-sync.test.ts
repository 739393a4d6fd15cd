/**
 * On Redis, a channel's `sync` frame (the whole presence set an attach is sent first) is not read
 * from Redis for every attach: attaches that come while a read is under way share it, and a large
 * set's frame is kept for the next ones until the bus brings the channel's next event, the bus
 * reconnects, or `syncKeptFor` has passed. What an attach is sent must still hold every member it
 * will not be told of by an event: these tests check each way the kept frame is dropped, and that a
 * read an event overtook is not handed to an attach that listened after the event.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import { createClient } from 'redis';
import { RedisPresence, type RedisPresenceOptions } from '../src/redis-presence.ts';
import { connectRedis, type RedisConnection } from '../src/store/redis-connection.ts';

const skip = redisSkipReason();
const CHANNEL = 'room';

type Node = { presence: RedisPresence; connection: RedisConnection };
type After = { after(fn: () => unknown): void };

/** A RedisPresence node on `url`; `wrap` may stand between it and its Redis connection. */
async function node(
  t: After,
  url: string,
  options: Partial<RedisPresenceOptions> = {},
  wrap: (c: RedisConnection) => RedisConnection = (c) => c,
): Promise<Node> {
  const connection = await connectRedis(url, () => {});
  const presence = new RedisPresence({
    connection: wrap(connection),
    prefix: 'sync',
    maxMembers: 1_000,
    maxChannelsPerConnection: 10,
    maxBytesPerConnection: 1_000,
    recoverWithin: 60_000,
    grace: 60_000,
    maxDroppedBytesPerClient: 1_000_000,
    onError: () => {},
    ...options,
  });
  t.after(async () => {
    await presence.close();
    await connection.close();
  });
  return { presence, connection };
}

async function setUp(t: After) {
  const redis = await startRedis();
  t.after(() => redis.close());
  const inspect = createClient({ url: redis.url });
  inspect.on('error', () => {});
  await inspect.connect();
  t.after(() => inspect.destroy());
  /** HGETALLs Redis has run so far (every sync read is one). */
  const reads = async () => {
    const info = await inspect.info('commandstats');
    return Number(/cmdstat_hgetall:calls=(\d+)/.exec(info)?.[1] ?? 0);
  };
  return { redis, inspect, reads };
}

/** Enters `n` members `m0 … m<n-1>` into the channel through `presence`. */
async function fill(presence: RedisPresence, n: number): Promise<void> {
  await Promise.all(
    Array.from({ length: n }, (_, i) => presence.enter(CHANNEL, `m${i}`, `client${i}`, { i })),
  );
}

const ids = (frame: Buffer): string[] =>
  (JSON.parse(frame.toString()) as { members: Array<{ connectionId: string }> }).members
    .map((m) => m.connectionId)
    .sort();

/** A listener on the channel (what an attach subscribes before it asks for the sync); the events it got. */
function listen(presence: RedisPresence): { events: string[]; stop: () => void } {
  const events: string[] = [];
  const stop = presence.subscribe(CHANNEL, (frame) => events.push(frame.toString()));
  return { events, stop };
}

async function until(what: string, ok: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500 && !(await ok()); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(await ok(), what);
}

/**
 * A node whose channel of 40 members has a listener and a kept `sync` frame (`syncKeptFor` as
 * given), checked kept: `before` is the reads Redis had run by then.
 */
async function keptFrame(t: After, syncKeptFor: number) {
  const { redis, inspect, reads } = await setUp(t);
  const a = await node(t, redis.url, { syncKeptFor });
  await fill(a.presence, 40);
  const listener = listen(a.presence);
  t.after(listener.stop);
  await a.presence.syncFrame(CHANNEL);
  const before = await reads();
  await a.presence.syncFrame(CHANNEL);
  assert.equal((await reads()) - before, 0, 'kept');
  return { a, inspect, reads, before };
}

describe('Redis presence: the sync frame an attach is sent', () => {
  it(
    'a large set is read once for the attaches that follow, and read again after the next event',
    { skip },
    async (t) => {
      const { redis, reads } = await setUp(t);
      const a = await node(t, redis.url, { syncKeptFor: 60_000 });
      const b = await node(t, redis.url);
      await fill(b.presence, 40);
      const listener = listen(a.presence);
      t.after(listener.stop);

      const before = await reads();
      const first = await a.presence.syncFrame(CHANNEL);
      assert.equal(ids(first).length, 40);
      for (let i = 0; i < 5; i++) assert.equal(await a.presence.syncFrame(CHANNEL), first, 'the kept frame');
      assert.equal((await reads()) - before, 1, 'one read for six attaches');

      // a member enters on another node: once its event reached this node, the next attach sees it
      await b.presence.enter(CHANNEL, 'late', 'late', null);
      await until('the event reached the listener', () => listener.events.some((e) => e.includes('"late"')));
      assert.ok(
        ids(await a.presence.syncFrame(CHANNEL)).includes('late'),
        'the new member is in the next sync',
      );
      b.presence.leave(CHANNEL, 'm0');
      await until('the leave reached the listener', () => listener.events.some((e) => e.includes('"leave"')));
      assert.ok(!ids(await a.presence.syncFrame(CHANNEL)).includes('m0'), 'the member that left is not');
      assert.equal((await reads()) - before, 3, 'read again once per change');
    },
  );

  it(
    'attaches that come while a read is under way share it, whatever the set’s size',
    { skip },
    async (t) => {
      const { redis, reads } = await setUp(t);
      const a = await node(t, redis.url);
      await fill(a.presence, 3);
      const listener = listen(a.presence);
      t.after(listener.stop);
      await a.presence.syncFrame(CHANNEL); // the bus subscribed
      const before = await reads();
      const frames = await Promise.all(Array.from({ length: 20 }, () => a.presence.syncFrame(CHANNEL)));
      assert.equal((await reads()) - before, 1, 'one read for twenty attaches at once');
      for (const frame of frames) assert.deepEqual(ids(frame), ['m0', 'm1', 'm2']);
      await a.presence.syncFrame(CHANNEL);
      assert.equal((await reads()) - before, 2, 'a small set is not kept: the next attach reads');
    },
  );

  it(
    'a read that an event overtook serves only the attach that started it: one listening after the event reads again',
    { skip },
    async (t) => {
      const { redis } = await setUp(t);
      // the sync reads' replies on node a can be held back: Redis has run the read, its reply waits
      let hold: Promise<void> | undefined;
      const a = await node(t, redis.url, { syncKeptFor: 60_000 }, (c) => {
        const send: RedisConnection['send'] = async (key, args, readonly) => {
          const reply = await c.send(key, args, readonly);
          if (args[0] === 'HGETALL' && hold) await hold;
          return reply;
        };
        return new Proxy(c, { get: (target, name) => (name === 'send' ? send : Reflect.get(target, name)) });
      });
      const b = await node(t, redis.url);
      await fill(b.presence, 40);
      const first = listen(a.presence);
      t.after(first.stop);
      await a.presence.syncFrame(CHANNEL); // the bus subscribed
      await b.presence.enter(CHANNEL, 'warm', 'warm', null); // and the frame kept by it dropped
      await until('the first event reached node a', () => first.events.some((e) => e.includes('"warm"')));

      let release = () => {};
      hold = new Promise((resolve) => {
        release = resolve;
      });
      const firstSync = a.presence.syncFrame(CHANNEL); // read by Redis now, its reply held
      await new Promise((r) => setTimeout(r, 100));
      // a member enters after that read ran; its event reaches node a before the read's reply
      await b.presence.enter(CHANNEL, 'late', 'late', null);
      await until('the event reached node a', () => first.events.some((e) => e.includes('"late"')));
      // a second attach listens only now: it will not be told of 'late', so its sync must hold it
      const second = listen(a.presence);
      t.after(second.stop);
      hold = undefined;
      const secondSync = a.presence.syncFrame(CHANNEL);
      release();
      assert.ok(
        !ids(await firstSync).includes('late'),
        'the first attach got the read it started (its listener has the event)',
      );
      assert.ok(ids(await secondSync).includes('late'), 'the second attach read again');
      assert.ok(!second.events.some((e) => e.includes('"late"')), 'the second listener was not told of it');
      assert.ok(
        ids(await a.presence.syncFrame(CHANNEL)).includes('late'),
        'and the overtaken read was not kept',
      );
    },
  );

  it(
    'a frame kept when the bus reconnects is read again (what was published meanwhile is lost)',
    { skip },
    async (t) => {
      const { a, inspect, reads, before } = await keptFrame(t, 60_000);
      await inspect.sendCommand(['CLIENT', 'KILL', 'TYPE', 'pubsub']);
      await until('read again once the bus is back', async () => {
        await a.presence.syncFrame(CHANNEL);
        return (await reads()) - before > 0;
      });
    },
  );

  it('a kept frame is read again after syncKeptFor without an event', { skip }, async (t) => {
    const { a, reads, before } = await keptFrame(t, 50);
    await new Promise((r) => setTimeout(r, 120));
    await a.presence.syncFrame(CHANNEL);
    assert.equal((await reads()) - before, 1, 'read again');
  });
});

describe('Redis presence: counting the members', () => {
  it(
    'count() is the hash length: no member is read (no HGETALL), and it follows enters and leaves',
    { skip },
    async (t) => {
      const { redis, reads } = await setUp(t);
      const a = await node(t, redis.url);
      const b = await node(t, redis.url);
      assert.equal(await a.presence.count(CHANNEL), 0, 'an empty channel');
      await fill(b.presence, 5);
      const before = await reads();
      assert.equal(await a.presence.count(CHANNEL), 5, 'members entered on another node');
      b.presence.leave(CHANNEL, 'm0');
      await until('the leave was written', async () => (await a.presence.count(CHANNEL)) === 4);
      assert.equal((await reads()) - before, 0, 'counted without reading a member');
    },
  );
});
