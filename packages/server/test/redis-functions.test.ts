/**
 * The write scripts as functions of one library (redis-functions.ts) on a real redis-server: the
 * library asks Redis for its run_id once, is loaded again when Redis forgot it, goes ahead of the
 * first FCALL of a new connection (order kept), and a Redis that refuses functions still serves every
 * publish by EVAL — with a new epoch after a restart either way.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSerial } from '@mooring/protocol';
import { type RedisServer, redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { RedisStore } from '../src/store/redis-store.ts';
import type { AppendOptions, NewOperation } from '../src/store/store.ts';

const OPTS: AppendOptions = { maxMessageSize: 1024 * 1024 };
let counter = 0;

function create(data: string): NewOperation {
  return { action: 'create', publisher: '', id: `f-${++counter}`, data };
}

/**
 * Calls of each command Redis counted since its start or the last CONFIG RESETSTAT (scripts' calls
 * too), read with one INFO (which counts itself once answered).
 */
async function calls(redis: RedisServer): Promise<(command: string) => number> {
  const stats = await redis.command('INFO', 'commandstats');
  return (command) => Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
}

async function runIdOf(redis: RedisServer): Promise<string> {
  return /run_id:([0-9a-f]+)/.exec(await redis.command('INFO', 'server'))?.[1] ?? '';
}

/** Until the store reaches Redis again (after a restart or a dropped connection). */
async function reconnected(store: RedisStore): Promise<void> {
  await waitFor(
    () =>
      store.ping().then(
        () => true,
        () => false,
      ),
    { message: 'the store never reached Redis again' },
  );
}

describe('Redis functions', { skip: redisSkipReason() ?? false }, () => {
  it('runs publishes and Durable Streams commits as functions of mooring_<hash>, asking Redis for its run_id once', async (t) => {
    const redis = await startRedis();
    t.after(() => redis.close());
    const warnings: string[] = [];
    const store = await RedisStore.open({ url: redis.url, onWarning: (m) => warnings.push(m) });
    t.after(() => store.close());
    assert.match(await redis.command('FUNCTION', 'LIST'), /mooring_[0-9a-f]{16}/);
    await redis.command('CONFIG', 'RESETSTAT');
    for (let i = 0; i < 5; i++) await store.append('ch', [create(`${i}`)], OPTS);
    await store.streams.create(
      's',
      { contentType: 'text/plain', closed: false, data: new Uint8Array(0) },
      Date.now(),
    );
    await store.streams.append(
      's',
      { contentType: 'text/plain', data: new Uint8Array([1]), close: false },
      Date.now(),
    );
    const counted = await calls(redis);
    assert.ok(counted('fcall') >= 7, 'publishes and stream steps ran by FCALL');
    assert.equal(counted('evalsha') + counted('eval'), 0);
    assert.equal(counted('info'), 1, 'one INFO server for the process, not one per call');
    assert.match(await redis.command('HGET', 'mooring:{ch}:meta', 'run'), new RegExp(await runIdOf(redis)));
    assert.deepEqual(warnings, []);
  });

  it('loads the library again when Redis forgot it (FUNCTION FLUSH) between two publishes: same Redis, same epoch', async (t) => {
    const redis = await startRedis();
    t.after(() => redis.close());
    const store = await RedisStore.open({ url: redis.url });
    t.after(() => store.close());
    const first = await store.append('ch', [create('a')], OPTS);
    await redis.command('FUNCTION', 'FLUSH');
    const second = await store.append('ch', [create('b')], OPTS);
    assert.equal(second.epoch, first.epoch, 'no new epoch: the same Redis process');
    assert.equal(parseSerial(second.results[0]!.serial)?.seq, 2);
    assert.match(await redis.command('FUNCTION', 'LIST'), /mooring_[0-9a-f]{16}/, 'loaded again');
  });

  it('a replica promoted in a failover holds the library (replicated) and answers its own run_id: the next publish starts a new epoch', async (t) => {
    // (a replica's first sync at once, not after Redis's 5 s wait for more replicas)
    const master = await startRedis({ args: ['--repl-diskless-sync-delay', '0'] });
    t.after(() => master.close());
    const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] });
    t.after(() => replica.close());
    await waitFor(
      async () => (await replica.command('INFO', 'replication')).includes('master_link_status:up'),
      {
        message: 'the replica never synced',
      },
    );
    const before = await RedisStore.open({ url: master.url });
    t.after(() => before.close());
    const first = await before.append('ch', [create('a')], OPTS);
    await waitFor(async () => (await replica.command('EXISTS', 'mooring:{ch}:meta')) === ':1\r\n', {
      message: 'the publish never reached the replica',
    });
    assert.match(await replica.command('FUNCTION', 'LIST'), /mooring_[0-9a-f]{16}/, 'replicated');
    await replica.command('REPLICAOF', 'NO', 'ONE');
    const after = await RedisStore.open({ url: replica.url });
    t.after(() => after.close());
    await replica.command('CONFIG', 'RESETSTAT');
    const next = await after.append('ch', [create('b')], OPTS);
    assert.ok(next.epoch > first.epoch, `a new, later epoch: ${next.epoch} after ${first.epoch}`);
    assert.equal(parseSerial(next.results[0]!.serial)?.seq, 2);
    assert.match(await replica.command('INFO', 'commandstats'), /cmdstat_fcall:calls=1,/);
    assert.match(
      await replica.command('HGET', 'mooring:{ch}:meta', 'run'),
      new RegExp(await runIdOf(replica)),
    );
  });

  it('opens on a Redis that refuses writes for now (out of memory), as before, and loads the library at the first publish it takes', async (t) => {
    const redis = await startRedis();
    t.after(() => redis.close());
    await redis.command('CONFIG', 'SET', 'maxmemory', '1');
    const store = await RedisStore.open({ url: redis.url, onError: () => {}, onCorrupt: () => {} });
    t.after(() => store.close());
    assert.equal(await store.info('ch'), undefined, 'reads are served');
    await assert.rejects(store.append('ch', [create('a')], OPTS), /OOM/);
    await redis.command('CONFIG', 'SET', 'maxmemory', '0');
    await redis.command('CONFIG', 'RESETSTAT');
    const stored = await store.append('ch', [create('b')], OPTS);
    assert.equal(parseSerial(stored.results[0]!.serial)?.seq, 1);
    assert.match(await redis.command('FUNCTION', 'LIST'), /mooring_[0-9a-f]{16}/);
    // the load that failed is sent again ahead of the next FCALL: one FCALL, never a second try
    // sent after what went behind the first
    assert.equal((await calls(redis))('fcall'), 1);
  });

  it('sends the library ahead of the first FCALL on a new connection: a command sent behind a publish runs after it', async (t) => {
    const redis = await startRedis();
    t.after(() => redis.close());
    const store = await RedisStore.open({ url: redis.url, onError: () => {} });
    t.after(() => store.close());
    await store.append('ch', [create('a')], OPTS);
    // Redis forgets the library, and the store's connection is dropped: it reconnects (a new epoch)
    await redis.command('FUNCTION', 'FLUSH');
    const id = String(await store.connection.send(undefined, ['CLIENT', 'ID']));
    await redis.command('CLIENT', 'KILL', 'ID', id);
    await reconnected(store);
    // the publish and a read of its channel's head, sent one behind the other without waiting
    const published = store.append('ch', [create('b')], OPTS);
    const head = store.connection.send('mooring:{ch}:meta', ['HGET', 'mooring:{ch}:meta', 'seq']);
    await published;
    assert.equal(String(await head), '2', 'the read ran after the publish, not before a second try of it');
  });

  for (const [refusal, args] of [
    [
      'an ACL that allows EVAL but not FCALL or FUNCTION',
      ['--user', 'default', 'on', 'nopass', '~*', '&*', '+@all', '-fcall', '-fcall_ro', '-function'],
    ],
    ['FCALL renamed away (found at the first publish)', ['--rename-command', 'FCALL', '']],
  ] as const) {
    it(`serves publishes by EVAL on a Redis that refuses functions (${refusal}), says so once, and a restart still starts a new epoch`, async (t) => {
      const redis = await startRedis({ appendonly: 'always', args: [...args] });
      t.after(() => redis.close());
      const warnings: string[] = [];
      const store = await RedisStore.open({
        url: redis.url,
        onError: () => {},
        onWarning: (m) => warnings.push(m),
      });
      t.after(() => store.close());
      const first = await store.append('ch', [create('a')], OPTS);
      const again = await store.append('ch', [create('b')], OPTS);
      assert.equal(again.epoch, first.epoch);
      await store.streams.create(
        's',
        { contentType: 'text/plain', closed: false, data: new Uint8Array(0) },
        Date.now(),
      );
      assert.equal(warnings.length, 1, `warned once: ${warnings.join(' | ')}`);
      assert.match(warnings[0]!, /refuses functions.*EVAL/);
      const counted = await calls(redis);
      assert.ok(counted('evalsha') + counted('eval') >= 2, 'ran by EVAL');
      assert.equal(counted('fcall'), 0);
      // a script that fails while it runs (a key Mooring did not write) is never sent again in full
      await redis.command('SET', 'mooring:{bad}:meta', 'not a hash');
      await redis.command('CONFIG', 'RESETSTAT');
      await assert.rejects(store.append('bad', [create('x')], OPTS));
      const afterError = await calls(redis);
      assert.equal(afterError('evalsha'), 1);
      assert.equal(afterError('eval'), 0, 'the script ran: not sent again by EVAL');
      await redis.command('DEL', 'mooring:{bad}:meta');
      await redis.stop('SIGKILL');
      await redis.restart();
      await reconnected(store);
      const after = await store.append('ch', [create('c')], OPTS);
      assert.ok(after.epoch > first.epoch, `a new, later epoch: ${after.epoch} after ${first.epoch}`);
      assert.equal(parseSerial(after.results[0]!.serial)?.seq, 3, 'what AOF kept, then the new op');
      assert.equal(warnings.length, 1, 'said once per connection');
    });
  }
});
