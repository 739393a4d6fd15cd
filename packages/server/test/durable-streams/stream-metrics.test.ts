/**
 * The Durable Streams metrics of `/metrics` (PROTOCOL.md §16, README "Metrics"): requests by method
 * and status, data bytes appended (in) and read (out), and the streams and bytes the store holds.
 * (Live readers waiting: stream-reads.test.ts, budgets.test.ts.)
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { StreamMetrics } from '../../src/durable-streams/stream-metrics.ts';
import { StreamEngine } from '../../src/store/stream-engine.ts';
import { MemoryStreamTables } from '../../src/store/stream-memory-store.ts';
import { SqliteStreamTables } from '../../src/store/stream-sqlite-store.ts';
import type { StreamStore } from '../../src/store/stream-store.ts';
import { metricsText, metricValue, startFixture } from '../support/fixture.ts';

test('/metrics counts requests by method and status, bytes appended and read, and the streams and bytes held', async () => {
  const fx = await startFixture('memory', { durableStreams: { open: '*' } });
  try {
    const url = (path: string) => `${fx.server.url}/v1/stream/${path}`;
    const text = { 'content-type': 'text/plain' };
    const statuses: number[] = [];
    const call = async (path: string, init: RequestInit = {}) => {
      const res = await fetch(url(path), init);
      statuses.push(res.status);
      return res.text();
    };
    await call('m1', { method: 'PUT', headers: text, body: 'hello' });
    await call('m1', { method: 'POST', headers: text, body: 'world!' });
    await call('m2', { method: 'PUT', headers: text });
    assert.equal(await call('m1?offset=-1'), 'helloworld!');
    await call('missing?offset=-1');
    assert.deepEqual(statuses, [201, 204, 201, 200, 404]);

    const metrics = await metricsText(fx.server);
    const value = (series: string) => metricValue(metrics, `${series} `);
    assert.equal(value('mooring_stream_requests_total{method="PUT",status="201"}'), 2);
    assert.equal(value('mooring_stream_requests_total{method="POST",status="204"}'), 1);
    assert.equal(value('mooring_stream_requests_total{method="GET",status="200"}'), 1);
    assert.equal(value('mooring_stream_requests_total{method="GET",status="404"}'), 1);
    assert.equal(value('mooring_stream_bytes_total{direction="in"}'), 11);
    assert.equal(value('mooring_stream_bytes_total{direction="out"}'), 11);
    assert.equal(value('mooring_streams'), 2);
    assert.equal(value('mooring_stream_bytes'), 11);
  } finally {
    await fx.close();
  }
});

/** Bytes of `text`, as a stream's data. */
const bytes = (text: string) => new TextEncoder().encode(text);
const T0 = 1_000_000;

/**
 * A life of streams through `s`: creates with data, appends, a fork, a soft delete (the source of
 * a fork), a cascade (the fork deleted takes its soft-deleted source along), an expiry; `check`
 * after each step with the streams and bytes held then.
 */
async function lifeOfStreams(s: StreamEngine, check: (streams: number, bytes: number) => void) {
  const plain = { contentType: 'text/plain', closed: false };
  await s.create('a', { ...plain, data: bytes('hello') }, T0);
  await s.create('b', { ...plain, data: new Uint8Array(0) }, T0);
  check(2, 5);
  await s.append('a', { contentType: 'text/plain', data: bytes('world!'), close: false }, T0);
  await s.append('b', { contentType: 'text/plain', data: bytes('xyz'), close: false }, T0);
  check(2, 14);
  await s.create('f', { closed: false, data: bytes('DD'), fork: { source: 'a', subOffset: 0 } }, T0);
  check(3, 16); // the fork holds its own 2 bytes, not the 11 it inherits
  assert.equal(await s.delete('a', T0), 'deleted');
  check(3, 16); // soft-deleted: its fork still reads it
  assert.equal(await s.delete('f', T0), 'deleted');
  check(1, 3); // the fork and its source
  await s.create('t', { ...plain, data: bytes('tmp'), ttlSeconds: 1 }, T0);
  check(2, 6);
  assert.equal(await s.sweep(T0 + 5_000), 1);
  check(1, 3);
  assert.equal(await s.delete('b', T0), 'deleted');
  check(0, 0);
}

test('memory streams: the streams and bytes held are counted as they change, and stats() reads no chunk', async () => {
  const tables = new MemoryStreamTables();
  const s = new StreamEngine(tables);
  await lifeOfStreams(s, (streams, bytes) => assert.deepEqual(tables.stats(), { streams, bytes }));
  // a chunk whose size is read only by a walk over the chunks
  await s.create('walked', { contentType: 'text/plain', closed: false, data: new Uint8Array(0) }, T0);
  let sizeReads = 0;
  const data = bytes('12345');
  const watched = new Proxy(data, {
    get(target, key) {
      if (key === 'length') sizeReads++;
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const key = tables.meta('walked')!.key;
  tables.addChunk(key, { start: 0, end: 5, data: watched });
  const before = sizeReads;
  for (let i = 0; i < 10; i++) assert.deepEqual(await s.stats(), { streams: 1, bytes: 5 });
  assert.equal(sizeReads - before, 0, 'a scrape walked the chunks');
});

test('SQLite streams: the streams and bytes held are counted as steps commit, not changed by a rolled-back step, and stats() runs no statement', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mooring-ds-stats-'));
  const db = new DatabaseSync(join(dir, 'ds.db'));
  try {
    // every statement the tables run, counted
    let runs = 0;
    const counted = new Proxy(db, {
      get(target, key) {
        if (key === 'prepare')
          return (sql: string) => {
            const statement = target.prepare(sql);
            return new Proxy(statement, {
              get(st, name) {
                const value = Reflect.get(st, name, st);
                if (typeof value !== 'function') return value;
                return (...args: unknown[]) => {
                  if (name === 'get' || name === 'all' || name === 'run') runs++;
                  return value.apply(st, args);
                };
              },
            });
          };
        const value = Reflect.get(target, key, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const tables = new SqliteStreamTables(counted);
    const s = new StreamEngine(tables);
    await lifeOfStreams(s, (streams, bytes) => {
      assert.deepEqual(tables.stats(), { streams, bytes });
      assert.deepEqual(tables.recount(), { streams, bytes }, 'the rows say the same');
    });
    await s.create('kept', { contentType: 'text/plain', closed: false, data: bytes('abc') }, T0);
    const meta = tables.meta('kept')!;
    assert.throws(() =>
      tables.atomic(() => {
        tables.saveMeta({ ...meta, tail: meta.tail + 1_000 });
        tables.saveMeta({ ...meta, key: tables.nextKey(), path: 'rolled-back' });
        throw new Error('the step fails');
      }),
    );
    assert.deepEqual(tables.stats(), { streams: 1, bytes: 3 }, 'a rolled-back step counts nothing');
    assert.deepEqual(tables.recount(), { streams: 1, bytes: 3 });
    const before = runs;
    for (let i = 0; i < 10; i++) assert.deepEqual(await s.stats(), { streams: 1, bytes: 3 });
    assert.equal(runs - before, 0, 'a scrape ran statements over the streams');
    // opened again: counted from the rows once
    assert.deepEqual(new SqliteStreamTables(db).stats(), { streams: 1, bytes: 3 });
  } finally {
    db.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('a scrape reads the stream figures once for both gauges', async () => {
  let reads = 0;
  const streams = {
    stats: async () => {
      reads++;
      return { streams: 7, bytes: 70 };
    },
  } as unknown as StreamStore;
  const registry = new Registry();
  new StreamMetrics(registry, streams, () => 0);
  const text = await registry.metrics();
  assert.equal(reads, 1);
  assert.equal(metricValue(text, 'mooring_streams '), 7);
  assert.equal(metricValue(text, 'mooring_stream_bytes '), 70);
  await registry.metrics();
  assert.equal(reads, 2, 'the next scrape reads them again');
});
