/**
 * The Redis store on a real redis-server (started by the test in a temp dir): the conformance suite,
 * plus what only Redis can get wrong — the epoch after lost data, an evicting Redis, garbage in keys
 * Mooring owns, Redis going away, and AOF restarts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { formatSerial, parseSerial } from '@mooring/protocol';
import { type RedisServer, redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { RedisStore } from '../src/store/redis-store.ts';
import type { AppendOptions, NewOperation } from '../src/store/store.ts';
import { StoreError } from '../src/store/store.ts';
import { storeConformance } from './store-conformance.ts';
import { redisStoreFixture } from './support/redis-fixtures.ts';

const OPTS: AppendOptions = { maxMessageSize: 4 * 1024 * 1024 };
const skip = redisSkipReason();
let counter = 0;

function create(fields: Partial<NewOperation> = {}): NewOperation {
  return { action: 'create', publisher: '', id: `c-${++counter}`, ...fields };
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

if (skip) {
  describe('Redis store', () => {
    it('needs redis-server', (t) => t.skip(skip));
  });
} else {
  let redis: RedisServer;
  let db = 0;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis.close());

  // Each fixture gets its own key prefix on the shared server: fresh and isolated, no FLUSHALL.
  storeConformance('redis', (options) => redisStoreFixture(redis.url, `t${++db}`, options));

  describe('Redis store: what only Redis can get wrong', () => {
    it('starts a new epoch when Redis lost the channel (flushed): never reuses serials', async () => {
      const store = await RedisStore.open({ url: redis.url, prefix: 'flush' });
      const first = await store.append('ch', [create({ data: 'a' }), create()], OPTS);
      await redis.command('FLUSHALL');
      const again = await store.append('ch', [create({ data: 'b' })], OPTS);
      assert.notEqual(again.epoch, first.epoch);
      assert.equal(parseSerial(again.results[0]!.serial)?.seq, 1);
      assert.ok(again.epoch > first.epoch, 'a newer epoch sorts after the older one');
      await store.close();
    });

    it('answers store_unavailable (retryable), not internal, while Redis cannot serve for a moment (BUSY: a script running too long), and blames no channel', async () => {
      const own = await startRedis({ args: ['--busy-reply-threshold', '50'] });
      const blamed: string[] = [];
      const problems: string[] = [];
      const store = await RedisStore.open({
        url: own.url,
        onError: (err) => problems.push(String((err as Error).message)),
        onCorrupt: (channel, detail) => blamed.push(`${channel}: ${detail}`),
      });
      try {
        await store.append('ch', [create({ data: 'a' })], OPTS);
        // another client's script that never ends: past the threshold Redis answers BUSY to the rest
        const busy = own.command('EVAL', 'while true do end', '0').catch(() => '');
        await waitFor(async () => (await own.command('PING').catch(() => '')).startsWith('-BUSY'));
        await rejectsWith(store.append('ch', [create({ data: 'b' })], OPTS), 'store_unavailable');
        await rejectsWith(store.readSince('ch', undefined, 10), 'store_unavailable');
        assert.deepEqual(blamed, [], 'a Redis that is busy is no channel holding foreign data');
        assert.ok(
          problems.some((p) => p.startsWith('BUSY')),
          'reported as a Redis problem (logged like a lost connection)',
        );
        await own.command('SCRIPT', 'KILL');
        await busy;
        const after = await store.append('ch', [create({ data: 'b' })], OPTS);
        assert.equal(parseSerial(after.results[0]!.serial)?.seq, 2, 'served again once the script ended');
      } finally {
        await store.close();
        await own.close();
      }
    });

    it('starts a new log when the channel lost its meta hash alone: op ids left from the old log are no duplicates', async () => {
      const store = await RedisStore.open({ url: redis.url, prefix: 'nometa' });
      const first = await store.append('ch', [create({ id: 'x', data: 'a' })], OPTS);
      await redis.command('DEL', 'nometa:{ch}:meta');
      const again = await store.append('ch', [create({ id: 'x', data: 'b' })], OPTS);
      assert.notEqual(again.epoch, first.epoch);
      assert.deepEqual(again.results, [{ serial: formatSerial(again.epoch, 1) }]);
      await store.close();
    });

    it('starts a new epoch on a Redis brought back from an older snapshot: a serial handed out before is never given to another operation', async () => {
      const own = await startRedis();
      const store = await RedisStore.open({ url: own.url, onError: () => {} });
      try {
        const kept = await store.append('ch', [create({ data: 'a' }), create({ data: 'b' })], OPTS);
        await own.command('SAVE');
        const lost = await store.append('ch', [create({ data: 'c' })], OPTS);
        assert.equal(parseSerial(lost.results[0]!.serial)?.seq, 3);
        // A crash: the snapshot comes back, without `c`.
        await own.stop('SIGKILL');
        await own.restart();
        await waitUntil(() =>
          store.ping().then(
            () => true,
            () => false,
          ),
        );
        const next = await store.append('ch', [create({ data: 'd' })], OPTS);
        const serial = next.results[0]!.serial;
        assert.notEqual(serial, lost.results[0]!.serial, 'the serial of the lost op is not reused');
        assert.ok(next.epoch > kept.epoch, `a new, later epoch: ${next.epoch} after ${kept.epoch}`);
        const page = await store.history('ch', { direction: 'forwards', limit: 10 });
        assert.deepEqual(
          page.messages.map((m) => [m.serial, m.data]),
          [
            [formatSerial(next.epoch, 1), 'a'],
            [formatSerial(next.epoch, 2), 'b'],
            [formatSerial(next.epoch, 3), 'd'],
          ],
          'what the snapshot kept, then the new op, all in the new epoch',
        );
        // A message the snapshot kept is still reached by its old serial (a run written across the
        // restart goes on), and answered with its serial in the new epoch; a lost one is not found.
        const info = await store.info('ch');
        assert.deepEqual(info?.previous, { epoch: kept.epoch, through: 2 });
        const grown = await store.append(
          'ch',
          [{ action: 'append', publisher: '', id: 'late', serial: kept.results[0]!.serial, data: '+' }],
          OPTS,
        );
        assert.equal(grown.epoch, next.epoch);
        assert.equal(grown.messages[0]?.serial, formatSerial(next.epoch, 1));
        assert.equal(
          (await store.history('ch', { direction: 'forwards', limit: 1 })).messages[0]?.data,
          'a+',
        );
        // the last message the snapshot kept (`through`) too
        const last = await store.append(
          'ch',
          [{ action: 'append', publisher: '', id: 'late-b', serial: kept.results[1]!.serial, data: '+' }],
          OPTS,
        );
        assert.equal(last.messages[0]?.serial, formatSerial(next.epoch, 2));
        await rejectsWith(
          store.append(
            'ch',
            [{ action: 'append', publisher: '', id: 'lost', serial: lost.results[0]!.serial, data: '+' }],
            OPTS,
          ),
          'message_not_found',
        );
        // The next publish on the same Redis stays in the epoch.
        const same = await store.append('ch', [create({ data: 'e' })], OPTS);
        assert.equal(same.epoch, next.epoch);
      } finally {
        await store.close();
        await own.close();
      }
    });

    it('after two (and three) new Redis in a row, a kept message is still reached by its serial of the epoch before them', async () => {
      const own = await startRedis({ appendonly: 'always' });
      const store = await RedisStore.open({ url: own.url, onError: () => {} });
      const restart = async () => {
        await own.stop('SIGKILL');
        await own.restart();
        await waitUntil(() =>
          store.ping().then(
            () => true,
            () => false,
          ),
        );
      };
      try {
        const first = await store.append('ch', [create({ data: 'a' }), create({ data: 'b' })], OPTS);
        await restart();
        const second = await store.append('ch', [create({ data: 'c' })], OPTS);
        await restart();
        const third = await store.append('ch', [create({ data: 'd' })], OPTS);
        assert.ok(first.epoch < second.epoch && second.epoch < third.epoch);
        // a run created before both restarts goes on (its writer holds the first epoch's serial)
        const grown = await store.append(
          'ch',
          [{ action: 'append', publisher: '', id: 'late', serial: first.results[0]!.serial, data: '+' }],
          OPTS,
        );
        assert.equal(grown.messages[0]?.serial, formatSerial(third.epoch, 1));
        assert.equal(
          (await store.history('ch', { direction: 'forwards', limit: 1 })).messages[0]?.data,
          'a+',
        );
        // (the first epoch, and how far the later ones kept it, are in the channel's info)
        const info = await store.info('ch');
        assert.deepEqual(info?.previous, { epoch: second.epoch, through: 3 });
        assert.deepEqual(info?.older, [{ epoch: first.epoch, through: 2 }]);
        // history bounds of an earlier epoch name the same messages as far as it was kept; its later
        // serials sort before every message of the epochs after it
        const page = (from?: string, until?: string) =>
          store
            .history('ch', {
              direction: 'forwards',
              limit: 10,
              ...(from === undefined ? {} : { from }),
              ...(until === undefined ? {} : { until }),
            })
            .then((p) => p.messages.map((m) => m.data));
        assert.deepEqual(await page(undefined, first.results[0]!.serial), ['a+']);
        assert.deepEqual(await page(first.results[1]!.serial), ['b', 'c', 'd']);
        assert.deepEqual(await page(formatSerial(first.epoch, 3)), ['c', 'd']);
        assert.deepEqual(await page(undefined, formatSerial(first.epoch, 9)), ['a+', 'b']);
        assert.deepEqual(await page(undefined, second.results[0]!.serial), ['a+', 'b', 'c']);
        // past what that epoch had reached, nothing: seq 3 of the first epoch was never stored
        await rejectsWith(
          store.append(
            'ch',
            [{ action: 'append', publisher: '', id: 'x', serial: formatSerial(first.epoch, 3), data: '+' }],
            OPTS,
          ),
          'message_not_found',
        );
        // a third: the older epochs are carried on to the next one
        await restart();
        const fourth = await store.append('ch', [create({ data: 'e' })], OPTS);
        const again = await store.append(
          'ch',
          [{ action: 'append', publisher: '', id: 'later', serial: first.results[1]!.serial, data: '+' }],
          OPTS,
        );
        assert.equal(again.messages[0]?.serial, formatSerial(fourth.epoch, 2));
        assert.deepEqual((await store.info('ch'))?.older, [
          { epoch: second.epoch, through: 3 },
          { epoch: first.epoch, through: 2 },
        ]);
      } finally {
        await store.close();
        await own.close();
      }
    });

    it('remembers at most 8 epochs before the previous one: the oldest is forgotten as the next new Redis starts an epoch', async () => {
      const store = await RedisStore.open({ url: redis.url, prefix: 'eight' });
      const epochs = [(await store.append('ch', [create({ data: 'a' })], OPTS)).epoch];
      // ten new Redis in a row (each publish finds another Redis recorded), a message in each epoch
      for (let i = 0; i < 10; i++) {
        await redis.command('HSET', 'eight:{ch}:meta', 'run', 'another-redis');
        epochs.push((await store.append('ch', [create({ data: `m${i}` })], OPTS)).epoch);
      }
      const info = await store.info('ch');
      assert.equal(info?.epoch, epochs[10]);
      assert.deepEqual(info?.previous, { epoch: epochs[9], through: 10 });
      assert.deepEqual(
        info?.older?.map((o) => o.epoch),
        epochs.slice(1, 9).reverse(),
        'the 8 epochs before the previous one, newest first; the first epoch dropped',
      );
      // the oldest remembered epoch still names its message; the one dropped no longer does
      const grown = await store.append(
        'ch',
        [{ action: 'append', publisher: '', id: 'old', serial: formatSerial(epochs[1]!, 1), data: '+' }],
        OPTS,
      );
      assert.equal(grown.messages[0]?.serial, formatSerial(epochs[10]!, 1));
      await rejectsWith(
        store.append(
          'ch',
          [{ action: 'append', publisher: '', id: 'older', serial: formatSerial(epochs[0]!, 1), data: '+' }],
          OPTS,
        ),
        'message_not_found',
      );
      await store.close();
    });

    it('gives two Redis brought back from the same snapshot different epochs, even when the old one was made by a clock ahead', async () => {
      // The snapshot's epoch was made by a clock ahead of this node's, so each new epoch is made from
      // it, not from this clock. Two Redis that load that snapshot (a restore, then another; a
      // failover to a replica, then back) go on with different logs: they must not both call theirs
      // by the same name, or a client holding a serial of one would resume in the other.
      const own = await startRedis();
      const store = await RedisStore.open({ url: own.url, prefix: 'fork', onError: () => {} });
      try {
        await store.append('ch', [create({ data: 'a' })], OPTS);
        const time = (Date.now() + 365 * 24 * 3600_000).toString(36).padStart(9, '0');
        await own.command('HSET', 'fork:{ch}:meta', 'epoch', `${time}abc`, 'run', 'another-redis');
        await own.command('SAVE');
        const first = await store.append('ch', [create({ data: 'b1' })], OPTS);
        // killed: the snapshot comes back (without b1), on a Redis with another run_id
        await own.stop('SIGKILL');
        await own.restart();
        await waitUntil(() =>
          store.ping().then(
            () => true,
            () => false,
          ),
        );
        const second = await store.append('ch', [create({ data: 'b2' })], OPTS);
        assert.ok(first.epoch > `${time}abc` && second.epoch > `${time}abc`);
        assert.notEqual(second.epoch, first.epoch, 'two logs, one name');
        assert.equal(first.results[0]!.serial.split('.')[1], second.results[0]!.serial.split('.')[1]);
      } finally {
        await store.close();
        await own.close();
      }
    });

    it('keeps the epoch of a channel written before the Redis was recorded (an older Mooring), and records it', async () => {
      const store = await RedisStore.open({ url: redis.url, prefix: 'legacy' });
      const first = await store.append('ch', [create({ data: 'a' })], OPTS);
      assert.match(
        String(await redis.command('HGET', 'legacy:{ch}:meta', 'run')),
        /^\$40\r\n[0-9a-f]{40}\r\n$/,
      );
      await redis.command('HDEL', 'legacy:{ch}:meta', 'run');
      const next = await store.append('ch', [create({ data: 'b' })], OPTS);
      assert.equal(next.epoch, first.epoch);
      assert.match(
        String(await redis.command('HGET', 'legacy:{ch}:meta', 'run')),
        /^\$40\r\n[0-9a-f]{40}\r\n$/,
      );
      await store.close();
    });

    it('makes the new epoch sort after the old one even when the old one was made by a clock ahead', async () => {
      const store = await RedisStore.open({ url: redis.url, prefix: 'ahead' });
      await store.append('ch', [create({ data: 'a' })], OPTS);
      // The old epoch, made by a clock a year ahead, ends in 'zzz': the next one carries. (Not newEpoch:
      // this process would then make its own later epochs after it.)
      const time = (Date.now() + 365 * 24 * 3600_000).toString(36).padStart(9, '0');
      await redis.command('HSET', 'ahead:{ch}:meta', 'epoch', `${time}zzz`, 'run', 'another-redis');
      const next = await store.append('ch', [create({ data: 'b' })], OPTS);
      const carried = (Number.parseInt(time, 36) + 1).toString(36).padStart(9, '0');
      // the time after the old one's, then digits of this Redis's run_id
      assert.match(next.epoch, new RegExp(`^${carried}[0-9a-f]{3}$`));
      assert.ok(next.epoch > `${time}zzz`);
      await store.close();
    });

    it('refuses a publish as corrupt when a new Redis would start the epoch after a stored epoch that is not one', async () => {
      const logged: string[] = [];
      const store = await RedisStore.open({
        url: redis.url,
        prefix: 'notepoch',
        onCorrupt: (channel, detail) => logged.push(`${channel}: ${detail}`),
      });
      // '.' is no base-36 digit (and a wildcard to a Lua pattern: it must be read as the character),
      // in the time part that the next epoch is counted from; all 'z' has no next epoch of its
      // length. Both sort after any candidate epoch, so the next one would be made from them.
      for (const [channel, epoch] of [
        ['dot', 'zzzzzzzz.zzz'],
        ['full', 'zzzzzzzzzzzz'],
      ] as const) {
        await store.append(channel, [create({ data: 'a' })], OPTS);
        await redis.command('HSET', `notepoch:{${channel}}:meta`, 'epoch', epoch, 'run', 'another-redis');
        await rejectsWith(store.append(channel, [create({ data: 'b' })], OPTS), 'internal');
        assert.ok(
          logged.includes(`${channel}: meta.epoch is not an epoch`),
          `${channel}: ${JSON.stringify(logged)}`,
        );
      }
      await store.close();
    });

    it('starts the epoch after the stored one on a new Redis when the candidate epoch is that same epoch', async (t) => {
      const store = await RedisStore.open({ url: redis.url, prefix: 'same' });
      await store.append('ch', [create({ data: 'a' })], OPTS);
      // The candidate of the next publish, made predictable: its time and a random part of zeros.
      const now = Date.now() + 60_000;
      const candidate = `${now.toString(36).padStart(9, '0')}000`;
      await redis.command('HSET', 'same:{ch}:meta', 'epoch', candidate, 'run', 'another-redis');
      t.mock.method(Math, 'random', () => 0);
      const next = await store.append('ch', [create({ data: 'b' })], { ...OPTS, now });
      t.mock.restoreAll();
      // the time after the stored epoch's, then digits of this Redis's run_id (never one name for
      // the logs of two Redis that loaded the same data)
      const run = /run_id:([0-9a-f]+)/.exec(String(await redis.command('INFO', 'server')))?.[1] ?? '';
      assert.equal(
        next.epoch,
        `${(now + 1).toString(36).padStart(9, '0')}${run.slice(0, 3)}`,
        'not the epoch the lost ops may hold',
      );
      assert.ok(next.epoch > candidate);
      await store.close();
    });

    it('trims every expired message of a channel in one call, a full chunk (500) of them and more', async () => {
      const store = await RedisStore.open({ url: redis.url, prefix: 'chunks', retentionFor: () => 1000 });
      const t0 = 1_700_000_000_000;
      for (const [channel, count] of [
        ['full', 500],
        ['more', 1001],
      ] as const) {
        const ops = Array.from({ length: count }, () => create({ data: 'x' }));
        await store.append(channel, ops, { ...OPTS, now: t0 });
      }
      assert.equal(await store.trim(t0 + 1000), 1501);
      assert.equal((await store.info('full'))?.messageCount, 0);
      assert.equal((await store.info('more'))?.messageCount, 0);
      await store.close();
    });

    it('trims a message of many appends a slice of its op ids per script, never the whole list in one call, and forgets every id', async () => {
      // One holder's message of a million empty appends used to be trimmed by one script that held
      // Redis for 3 s (every node's commands waited). The trim now pops at most its budget of op
      // ids per call: 9,001 ids take at least five scripts.
      const store = await RedisStore.open({ url: redis.url, prefix: 'slices', retentionFor: () => 1000 });
      const t0 = 1_700_000_000_000;
      const created = await store.append('long', [create({ data: 'x' })], { ...OPTS, now: t0 });
      const serial = created.results[0]!.serial;
      for (let batch = 0; batch < 9; batch++) {
        const appends = Array.from({ length: 1000 }, () => ({
          ...create({ data: '' }),
          action: 'append' as const,
          serial,
        }));
        await store.append('long', appends, { ...OPTS, now: t0 });
      }
      await store.append('short', [create({ data: 'y' })], { ...OPTS, now: t0 });
      const calls = async () =>
        Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.command('INFO', 'commandstats'))?.[1] ?? 0);
      const before = await calls();
      assert.equal(await store.trim(t0 + 1000), 2);
      assert.ok((await calls()) - before >= 5, `${(await calls()) - before} trim scripts for 9,001 op ids`);
      assert.equal((await store.info('long'))?.messageCount, 0);
      const idKeys = (await redis.command('KEYS', 'slices:*long*'))
        .split('\r\n')
        .filter((k) => k.includes('long'));
      assert.deepEqual(
        idKeys.filter((k) => /:(ids|o:\d+)$/.test(k)),
        [],
        'op ids left behind',
      );
      await store.close();
    });

    it('keeps the key prefix it is given, an empty one too (no default put in its place)', async () => {
      const store = await RedisStore.open({ url: redis.url, prefix: '' });
      assert.equal(store.prefix, '');
      await store.append('bare', [create({ data: 'a' })], OPTS);
      const reply = await redis.command('KEYS', '*bare*'); // RESP: the keys on lines of their own
      const keys = reply.split('\r\n').filter((line) => line.includes('bare'));
      assert.ok(keys.length > 0 && keys.every((key) => key.startsWith(':')), JSON.stringify(keys));
      await store.close();
    });

    it('refuses every call after close() as closed (store_unavailable), and a second close() does nothing', async () => {
      const store = await RedisStore.open({ url: redis.url, prefix: 'closed' });
      await store.append('ch', [create()], OPTS);
      await store.close();
      await assert.rejects(store.append('ch', [create()], OPTS), (err: unknown) => {
        assert.ok(err instanceof StoreError && err.code === 'store_unavailable', String(err));
        assert.match(err.message, /the Redis store is closed/);
        return true;
      });
      await store.close();
    });

    it('refuses to start on an evicting Redis (maxmemory-policy other than noeviction)', async () => {
      const lru = await startRedis({ maxmemoryPolicy: 'allkeys-lru' });
      try {
        await assert.rejects(
          RedisStore.open({ url: lru.url }),
          /maxmemory-policy is "allkeys-lru".*noeviction/,
        );
      } finally {
        await lru.close();
      }
    });

    it('answers garbage in its keys with a typed error for that channel and a log line, not a crash', async () => {
      const logged: string[] = [];
      const store = await RedisStore.open({
        url: redis.url,
        prefix: 'garbage',
        onCorrupt: (channel, detail) => logged.push(`${channel}: ${detail}`),
      });
      const ok = await store.append('good', [create({ data: 'x' })], OPTS);
      const s = await store.append('bad', [create({ data: 'x' })], OPTS);
      const seq = parseSerial(s.results[0]!.serial)!.seq;
      // a wrong type where the meta hash should be
      await redis.command('DEL', 'garbage:{wrongtype}:meta');
      await redis.command('SET', 'garbage:{wrongtype}:meta', 'junk');
      await rejectsWith(store.append('wrongtype', [create()], OPTS), 'internal');
      await rejectsWith(store.info('wrongtype'), 'internal');
      await rejectsWith(store.readSince('wrongtype', undefined, 10), 'internal');
      // a truncated value: the counter and a message's JSON data
      await redis.command('HSET', 'garbage:{bad}:meta', 'seq', '12x');
      await rejectsWith(store.append('bad', [create()], OPTS), 'internal');
      await rejectsWith(store.info('bad'), 'internal');
      await redis.command('HSET', 'garbage:{bad}:meta', 'seq', String(seq));
      await redis.command('HSET', `garbage:{bad}:m:${seq}`, 'k', 'json');
      await redis.command('SET', `garbage:{bad}:d:${seq}`, '{"trunc');
      await rejectsWith(store.history('bad', { direction: 'forwards', limit: 10 }), 'internal');
      await redis.command('HSET', `garbage:{bad}:m:${seq}`, 'sz', 'oops');
      await rejectsWith(
        store.append(
          'bad',
          [{ action: 'append', publisher: '', id: 'x1', serial: s.results[0]!.serial, data: 'y' }],
          OPTS,
        ),
        'internal',
      );
      assert.ok(logged.includes(`bad: message ${seq} has a bad size`), JSON.stringify(logged));
      assert.ok(logged.some((l) => l.startsWith('wrongtype:')));
      assert.ok(logged.some((l) => l.startsWith('bad:')));
      // other channels are untouched
      const page = await store.history('good', { direction: 'forwards', limit: 10 });
      assert.equal(page.messages[0]?.serial, ok.results[0]!.serial);
      await store.close();
    });

    it('reads a message whose hash lost its id or holds a malformed version or timestamp as corrupt, each fault alone', async () => {
      const logged: string[] = [];
      const store = await RedisStore.open({
        url: redis.url,
        prefix: 'fields',
        onCorrupt: (channel, detail) => logged.push(`${channel}: ${detail}`),
      });
      const faults: Array<[string, string[]]> = [
        ['version', ['HSET', 'v', 'oops']],
        ['timestamp', ['HSET', 'ts', 'oops']],
        ['id', ['HDEL', 'id']],
      ];
      for (const [channel, [command, field, value]] of faults) {
        const s = await store.append(channel, [create({ data: 'x' })], OPTS);
        const seq = parseSerial(s.results[0]!.serial)!.seq;
        const page = await store.history(channel, { direction: 'forwards', limit: 10 });
        assert.equal(page.messages.length, 1, `${channel}: readable before the fault`);
        const args = [`fields:{${channel}}:m:${seq}`, field!, ...(value === undefined ? [] : [value])];
        await redis.command(command!, ...args);
        await rejectsWith(store.history(channel, { direction: 'forwards', limit: 10 }), 'internal');
        assert.ok(
          logged.some((l) => l.startsWith(`${channel}: `)),
          `${channel}: logged as corrupt`,
        );
      }
      await store.close();
    });

    it('refuses calls with store_unavailable while Redis is down, and serves again when it is back', async () => {
      const own = await startRedis({ appendonly: 'always' });
      const store = await RedisStore.open({ url: own.url, onError: () => {} });
      try {
        const s = await store.append('ch', [create({ id: 'kept', data: 'a' })], OPTS);
        await own.stop('SIGKILL');
        await rejectsWith(store.append('ch', [create({ data: 'lost' })], OPTS), 'store_unavailable');
        await rejectsWith(store.ping(), 'store_unavailable');
        await rejectsWith(store.info('ch'), 'store_unavailable');
        await own.restart();
        await waitUntil(() =>
          store.ping().then(
            () => true,
            () => false,
          ),
        );
        // AOF (always): the acknowledged op survived the crash, with its dedup. Read before any
        // publish, the log is as it was; the first publish on the new Redis starts a new epoch, a
        // duplicate too, and the op keeps its sequence in it.
        const info = await store.info('ch');
        assert.equal(info?.head, s.results[0]!.serial);
        const dup = await store.append('ch', [create({ id: 'kept', data: 'a' })], OPTS);
        const before = parseSerial(s.results[0]!.serial)!;
        assert.ok(dup.epoch > before.epoch, `a new, later epoch: ${dup.epoch} after ${before.epoch}`);
        assert.deepEqual(dup.results, [{ serial: formatSerial(dup.epoch, before.seq), duplicate: true }]);
        assert.equal(
          (await store.info('ch'))?.epoch,
          dup.epoch,
          'the new epoch is stored, not only answered',
        );
      } finally {
        await store.close();
        await own.close();
      }
    });
  });
}

async function waitUntil(check: () => Promise<boolean>, timeout = 10_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
