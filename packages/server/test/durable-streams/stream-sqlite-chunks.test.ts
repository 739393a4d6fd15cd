/**
 * The SQLite stream store's chunk reads seek by position: every statement on the chunks runs on a
 * range of the primary key (stream, start), and a page's range starts at the chunk holding the
 * reader's offset, not at the stream's first chunk (an outside review of the SQLite store measured
 * ~110 ms per read at the tail of 100,000 chunks when it did). SQLite counts no rows visited, so the
 * plans are pinned, and the pages on a large stream checked at each boundary against the rows a
 * plain filter on `end` gives: the same rows, byte for byte.
 */
import assert from 'node:assert/strict';
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import { test } from 'node:test';
import { StreamEngine, type StreamTables } from '../../src/store/stream-engine.ts';
import { MemoryStreamTables } from '../../src/store/stream-memory-store.ts';
import { CHUNKS_SQL, SqliteStreamTables } from '../../src/store/stream-sqlite-store.ts';
import type { StreamMeta } from '../../src/store/stream-store.ts';

type Row = Record<string, SQLInputValue>;
const T0 = 1_000_000;
const bytes = (text: string) => Buffer.from(text);

/** The tables on an in-memory database, with every statement they prepare. */
function open(): { db: DatabaseSync; tables: SqliteStreamTables; prepared: string[] } {
  const db = new DatabaseSync(':memory:');
  const prepared: string[] = [];
  const recorded = new Proxy(db, {
    get(target, key) {
      if (key === 'prepare')
        return (sql: string) => {
          prepared.push(sql);
          return target.prepare(sql);
        };
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { db, tables: new SqliteStreamTables(recorded), prepared };
}

/** The plan's lines: what SQLite walks for `sql`. */
function plan(db: DatabaseSync, sql: string): string[] {
  const params = [...new Set(sql.match(/\$\w+/g) ?? [])];
  const stmt = db.prepare(`EXPLAIN QUERY PLAN ${sql}`);
  const rows = (
    params.length > 0
      ? stmt.all(Object.fromEntries(params.map((p) => [p.slice(1), 1])))
      : stmt.all(...Array.from({ length: (sql.match(/\?/g) ?? []).length }, () => 1))
  ) as Row[];
  return rows.map((r) => String(r.detail));
}

/** What `chunks` returns, by the filter on `end` alone (the statement before the fix): the reference. */
function byEnd(db: DatabaseSync, key: number, after: number, cap: number): [number, number, string][] {
  const rows = db
    .prepare(
      'SELECT start, end, data FROM ds_chunks WHERE stream = ? AND end > ? AND end <= ? ORDER BY start',
    )
    .all(key, after, cap) as Row[];
  return rows.map((r) => [Number(r.start), Number(r.end), Buffer.from(r.data as Uint8Array).toString('hex')]);
}

const shape = (chunks: { start: number; end: number; data: Uint8Array }[]) =>
  chunks.map((c): [number, number, string] => [c.start, c.end, Buffer.from(c.data).toString('hex')]);

test('SQLite streams: a page of chunks is a range of the primary key from the chunk holding the offset to the cap; no statement on the chunks or producers scans', () => {
  const { db, prepared } = open();
  try {
    const chunks = plan(db, CHUNKS_SQL);
    assert.ok(prepared.includes(CHUNKS_SQL), 'the tables read chunks with CHUNKS_SQL');
    // the outer range is bounded on both sides by position, the seek for the chunk holding the
    // offset is one range too (max() walks it from its upper end: one row)
    assert.match(
      chunks[0] ?? '',
      /^SEARCH ds_chunks USING PRIMARY KEY \(stream=\? AND start>\? AND start<\?\)$/,
      chunks.join(' | '),
    );
    assert.ok(
      chunks.some((line) => /^SEARCH ds_chunks USING PRIMARY KEY \(stream=\? AND start<\?\)$/.test(line)),
      chunks.join(' | '),
    );
    // every other statement: a chunk or producer statement seeks its stream's rows; only the walks
    // made at open (count, bytes) or by a sweep (paths) read every stream row
    const walks = new Set([
      'SELECT path FROM ds_streams',
      'SELECT count(*) AS n FROM ds_streams',
      'SELECT coalesce(max(id), 0) AS id FROM ds_streams',
    ]);
    for (const sql of prepared) {
      if (walks.has(sql) || sql.includes("sum(json_extract(meta, '$.tail')")) continue;
      for (const line of plan(db, sql)) assert.doesNotMatch(line, /^SCAN /, `${sql}\n  plans ${line}`);
    }
  } finally {
    db.close();
  }
});

/** A stream of `n` chunks of 1 to 3 bytes, written as appends write them (in one step: quicker). */
async function large(
  tables: StreamTables,
  n: number,
): Promise<{ s: StreamEngine; key: number; tail: number }> {
  const s = new StreamEngine(tables);
  await s.create(
    'big',
    { contentType: 'application/octet-stream', closed: false, data: new Uint8Array(0) },
    T0,
  );
  const meta = tables.meta('big') as StreamMeta;
  let tail = 0;
  tables.atomic(() => {
    for (let i = 0; i < n; i++) {
      const data = Buffer.alloc(1 + (i % 3), i % 251);
      tables.addChunk(meta.key, { start: tail, end: tail + data.length, data });
      tail += data.length;
    }
    tables.saveMeta({ ...meta, tail });
  });
  return { s, key: meta.key, tail };
}

test('SQLite streams: pages of a large stream, at its tail, inside a chunk, at a chunk end and up to a fork offset, are the rows a filter on end gives, and what the memory store reads', async () => {
  const { db, tables } = open();
  try {
    const N = 50_000;
    const { s, key, tail } = await large(tables, N);
    const memory = await large(new MemoryStreamTables(), N);
    assert.equal(memory.tail, tail);
    const last = byEnd(db, key, tail - 1, Number.MAX_SAFE_INTEGER);
    assert.equal(last.length, 1);
    const [lastStart] = last[0] as [number, number, string];
    const before = byEnd(db, key, lastStart - 1, lastStart);
    assert.equal(before.length, 1);
    const [beforeStart] = before[0] as [number, number, string];
    const huge = Number.MAX_SAFE_INTEGER;
    // [after, cap]: at the tail, inside the last chunk, at its start, inside the one before, past
    // the tail, at the first chunk, and capped (a source read up to a fork offset) at a chunk end
    // and inside one
    const cases: [number, number][] = [
      [tail, huge],
      [tail - 1, huge],
      [lastStart, huge],
      [lastStart - 1, huge],
      [tail + 5, huge],
      [0, huge],
      [1, huge],
      [beforeStart, lastStart],
      [beforeStart, tail - 1],
      [lastStart, lastStart],
      [0, 7],
    ];
    for (const [after, cap] of cases) {
      const page = tables.chunks(key, after, cap, 1 << 20);
      const all = byEnd(db, key, after, cap);
      assert.ok(page.length > 0 || all.length === 0, `after ${after} cap ${cap}: an empty page`);
      assert.deepEqual(shape(page), all.slice(0, page.length), `after ${after} cap ${cap}`);
      // a page shorter than the rows ends at the byte bound (chunks of at most 3 bytes)
      if (page.length < all.length)
        assert.ok(page.reduce((n, c) => n + c.data.length, 0) > (1 << 20) - 3, `after ${after} cap ${cap}`);
    }
    assert.deepEqual(shape(tables.chunks(key, tail, huge, 1 << 20)), [], 'nothing past the tail');
    assert.deepEqual(
      shape(tables.chunks(key, tail - 1, huge, 1 << 20)),
      last,
      'an offset inside the last chunk reads that chunk whole',
    );

    // forks at a chunk end and inside a chunk, with appends of their own: every page around the
    // fork point is what the memory store reads
    for (const [path, offset] of [
      ['at-end', lastStart],
      ['inside', lastStart + 1],
    ] as const) {
      for (const engine of [s, memory.s]) {
        const made = await engine.create(
          path,
          { closed: false, data: bytes('own1'), fork: { source: 'big', offset, subOffset: 0 } },
          T0,
        );
        assert.equal(made.kind, 'created');
        await engine.append(
          path,
          { contentType: 'application/octet-stream', data: bytes('own22'), close: false },
          T0,
        );
      }
      for (let after = offset - 8; after <= offset + 12; after++) {
        const page = await s.read(path, after, 1 << 20, T0);
        const expected = await memory.s.read(path, after, 1 << 20, T0);
        assert.deepEqual(shape(page?.chunks ?? []), shape(expected?.chunks ?? []), `${path}: after ${after}`);
        assert.equal(page?.upToDate, expected?.upToDate, `${path}: after ${after}`);
      }
    }
    // a sub-offset fork of the last chunk finds it by its start
    for (const engine of [s, memory.s]) {
      const made = await engine.create(
        'sub',
        { closed: false, data: new Uint8Array(0), fork: { source: 'big', offset: lastStart, subOffset: 1 } },
        T0,
      );
      assert.equal(made.kind, 'created');
    }
    const sub = await s.read('sub', lastStart, 1 << 20, T0);
    assert.deepEqual(shape(sub?.chunks ?? []), [
      [lastStart, lastStart + 1, (last[0] as string[])[2]?.slice(0, 2)],
    ]);
  } finally {
    db.close();
  }
});
