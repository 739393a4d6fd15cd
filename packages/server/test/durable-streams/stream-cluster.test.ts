/**
 * Durable Streams on a real 3-master Redis Cluster: every step (a fork's create touching its source,
 * a cascade of removals, the sweep) runs as one script on the `{ds}` slot, and a long-poll reader on
 * one node is woken through the sharded wake channel by an append on another.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type RedisCluster, redisCliPath, redisSkipReason, startRedisCluster } from '@mooring/testkit';
import { type MooringServer, startServer } from '../../src/server.ts';
import { RedisStore } from '../../src/store/redis-store.ts';
import type { StreamStore } from '../../src/store/stream-store.ts';
import { TEST_KEY } from '../support/fixture.ts';

const skip = redisSkipReason() || (redisCliPath() ? false : 'redis-cli is not installed');
let cluster: RedisCluster | undefined;
const nodes: MooringServer[] = [];

before(async () => {
  if (!skip) cluster = await startRedisCluster({ masters: 3 });
});
after(async () => {
  for (const node of nodes) await node.close();
  await cluster?.close();
});

const T0 = 1_000_000;
const bytes = (text: string) => Buffer.from(text);
const textOf = (chunks: { data: Uint8Array }[] | undefined) =>
  Buffer.concat((chunks ?? []).map((c) => c.data)).toString();

test('forks, cascades and sweeps are single steps on a Cluster', { skip }, async () => {
  const store = await RedisStore.open({ url: (cluster as RedisCluster).url, prefix: 'dsc' });
  try {
    const s = store.streams as StreamStore;
    const base = { contentType: 'text/plain', closed: false };
    assert.equal((await s.create('src', { ...base, data: bytes('abc') }, T0)).kind, 'created');
    const fork = await s.create(
      'f',
      { closed: false, data: bytes('D'), fork: { source: 'src', subOffset: 0 } },
      T0,
    );
    assert.equal(fork.kind, 'created');
    assert.equal((await s.get('src', T0))?.refCount, 1);
    assert.equal(textOf((await s.read('f', 0, 1 << 20, T0))?.chunks), 'abcD');
    assert.equal(await s.delete('src', T0), 'deleted');
    assert.equal((await s.get('src', T0))?.softDeleted, true);
    assert.equal(await s.delete('f', T0), 'deleted');
    assert.equal(await s.get('src', T0), undefined, 'the soft-deleted source went with its last fork');
    await s.create('e', { ...base, data: bytes('x'), expiresAt: new Date(T0 + 1_000).toISOString() }, T0);
    assert.equal(await s.sweep(T0 + 1_000), 1);
    assert.deepEqual(await s.stats(), { streams: 0, bytes: 0 });
  } finally {
    await store.close();
  }
});

test(
  'a long-poll reader on one node is woken by an append on another (sharded wake channel)',
  { skip },
  async () => {
    const node = () =>
      startServer({
        host: '127.0.0.1',
        port: 0,
        keys: [TEST_KEY],
        store: { kind: 'redis', url: (cluster as RedisCluster).url },
        durableStreams: { open: '*', longPollTimeout: 60_000 },
      });
    const a = await node();
    nodes.push(a);
    const b = await node();
    nodes.push(b);
    const created = await fetch(`${a.url}/v1/stream/wake`, {
      method: 'PUT',
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(created.status, 201);
    const poll = fetch(`${b.url}/v1/stream/wake?offset=now&live=long-poll`, {
      signal: AbortSignal.timeout(20_000),
    });
    for (;;) {
      const text = await (await fetch(`${b.url}/metrics?key=${TEST_KEY}`)).text();
      if (/^mooring_stream_live_readers\s+1/m.test(text)) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const appended = await fetch(`${a.url}/v1/stream/wake`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'across shards',
    });
    assert.equal(appended.status, 204);
    const res = await poll;
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'across shards');
  },
);
