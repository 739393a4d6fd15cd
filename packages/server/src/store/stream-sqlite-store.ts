/**
 * Durable Streams in SQLite (the SQLite store's `streams`): the rows of `StreamEngine` in three tables
 * of the same database file, beside the channel tables, written through the same connection.
 *
 *   ds_streams(id, path UNIQUE, meta)              meta: the stream's metadata as JSON
 *   ds_chunks(stream, start, end, data)            PK (stream, start): one row per append, never rewritten
 *   ds_producers(stream, producer, epoch, last_seq, updated_at)   PK (stream, producer)
 *                                                  producer: `producerKey` (scope, line feed, Producer-Id)
 *
 * `atomic` is one `BEGIN IMMEDIATE … COMMIT` (SAVEPOINT-free: the engine never nests): an append's
 * chunk, stream row and producer row commit together, so after a crash a retry is either a duplicate
 * or stored, never both. The transaction runs synchronously, so it never interleaves with the
 * channel store's group commit on the same connection, nor with another stream request.
 *
 * The streams and bytes held (`stats()`, read by every `/metrics` scrape) are counted once when the
 * tables open and then kept as each step writes: a scrape used to run `count(*)` and a
 * `json_extract` sum over every stream row, synchronously (~200 ms for 100,000 streams). A step's
 * changes to them count only once it commits, so a rolled-back step changes nothing.
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { StoreError } from './store.ts';
import { StreamEngine, type StreamTables } from './stream-engine.ts';
import type { ProducerState } from './stream-rules.ts';
import type { StreamChunk, StreamMeta } from './stream-store.ts';

export const STREAM_SCHEMA = `
CREATE TABLE IF NOT EXISTS ds_streams (
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL UNIQUE,
  meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ds_chunks (
  stream INTEGER NOT NULL,
  start INTEGER NOT NULL,
  end INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (stream, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ds_producers (
  stream INTEGER NOT NULL,
  producer TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  last_seq INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (stream, producer)
) WITHOUT ROWID;
`;

/**
 * A page of a stream's own chunks: those with `end > $after` and `end <= $cap`, by position. The
 * range on the primary key (stream, start) begins at the chunk holding `$after` (the greatest start
 * at or before it, one seek down the index) and ends before `$cap` (a chunk ending at or before the
 * cap starts before it), so a read at the tail, or of a source up to a fork's offset, visits the
 * chunks it returns and not those of the rest of the stream. Filtering on `end` alone (no index on
 * it) made SQLite walk the stream from its first chunk: ~110 ms per read at the tail of 100,000.
 * Same rows as that filter, as a stream's chunks never overlap: one starting before the chunk
 * holding `$after` ends at or before `$after`. No chunk starts at or before it (a fork's own chunks
 * start at its offset): the range begins at `$after`.
 */
export const CHUNKS_SQL = `SELECT start, end, data FROM ds_chunks
  WHERE stream = $stream
    AND start >= coalesce((SELECT max(start) FROM ds_chunks WHERE stream = $stream AND start <= $after), $after)
    AND start < $cap AND end > $after AND end <= $cap
  ORDER BY start LIMIT $limit`;

type Row = Record<string, SQLInputValue>;
type Statement =
  | 'meta'
  | 'maxKey'
  | 'upsert'
  | 'remove'
  | 'removeChunks'
  | 'removeProducers'
  | 'chunks'
  | 'addChunk'
  | 'producer'
  | 'saveProducer'
  | 'removeProducer'
  | 'paths'
  | 'count'
  | 'bytes'
  | 'ownBytes';

export class SqliteStreamTables implements StreamTables {
  readonly #db: DatabaseSync;
  readonly #s: Record<Statement, StatementSync>;
  #key: number;
  /** Streams and bytes held by the committed rows (`stats()`). */
  #held: { streams: number; bytes: number };
  /** The changes of the step under way, counted into `#held` when it commits. */
  #step: { streams: number; bytes: number } | undefined;

  constructor(db: DatabaseSync) {
    this.#db = db;
    db.exec(STREAM_SCHEMA);
    this.#s = {
      meta: db.prepare('SELECT meta FROM ds_streams WHERE path = ?'),
      maxKey: db.prepare('SELECT coalesce(max(id), 0) AS id FROM ds_streams'),
      upsert: db.prepare(
        'INSERT INTO ds_streams (id, path, meta) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET meta = excluded.meta',
      ),
      remove: db.prepare('DELETE FROM ds_streams WHERE id = ?'),
      removeChunks: db.prepare('DELETE FROM ds_chunks WHERE stream = ?'),
      removeProducers: db.prepare('DELETE FROM ds_producers WHERE stream = ?'),
      chunks: db.prepare(CHUNKS_SQL),
      addChunk: db.prepare('INSERT INTO ds_chunks (stream, start, end, data) VALUES (?, ?, ?, ?)'),
      producer: db.prepare(
        'SELECT epoch, last_seq, updated_at FROM ds_producers WHERE stream = ? AND producer = ?',
      ),
      saveProducer: db.prepare(
        `INSERT INTO ds_producers (stream, producer, epoch, last_seq, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (stream, producer) DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq, updated_at = excluded.updated_at`,
      ),
      removeProducer: db.prepare('DELETE FROM ds_producers WHERE stream = ? AND producer = ?'),
      paths: db.prepare('SELECT path FROM ds_streams'),
      count: db.prepare('SELECT count(*) AS n FROM ds_streams'),
      // own bytes of each stream (tail minus what a fork inherits), from the stream rows alone
      bytes: db.prepare(
        "SELECT coalesce(sum(json_extract(meta, '$.tail') - coalesce(json_extract(meta, '$.forkOffset'), 0)), 0) AS n FROM ds_streams",
      ),
      // one stream's own bytes as stored (what `bytes` sums), by its primary key
      ownBytes: db.prepare(
        "SELECT json_extract(meta, '$.tail') - coalesce(json_extract(meta, '$.forkOffset'), 0) AS n FROM ds_streams WHERE id = ?",
      ),
    };
    this.#key = Number((this.#s.maxKey.get() as Row).id);
    this.#held = this.#count();
  }

  /** Streams and bytes held, from the rows (once, at open). */
  #count(): { streams: number; bytes: number } {
    return {
      streams: Number((this.#s.count.get() as Row).n),
      bytes: Number((this.#s.bytes.get() as Row).n),
    };
  }

  /** A stream's own bytes as stored now, or undefined when it has no row. */
  #storedBytes(key: number): number | undefined {
    const row = this.#s.ownBytes.get(key) as Row | undefined;
    return row ? Number(row.n) : undefined;
  }

  /** Counts a change of the rows: into the step's changes, or at once outside a step. */
  #changed(streams: number, bytes: number): void {
    const into = this.#step ?? this.#held;
    into.streams += streams;
    into.bytes += bytes;
  }

  atomic<T>(fn: () => T): T {
    try {
      this.#db.exec('BEGIN IMMEDIATE');
    } catch (err) {
      throw unavailable(err);
    }
    const step = { streams: 0, bytes: 0 };
    this.#step = step;
    try {
      const result = fn();
      this.#db.exec('COMMIT');
      this.#held.streams += step.streams;
      this.#held.bytes += step.bytes;
      return result;
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      // a key handed out inside the rolled-back step may be reused
      this.#key = Number((this.#s.maxKey.get() as Row).id);
      throw unavailable(err);
    } finally {
      this.#step = undefined;
    }
  }

  meta(path: string): StreamMeta | undefined {
    const row = this.#s.meta.get(path) as Row | undefined;
    return row ? (JSON.parse(String(row.meta)) as StreamMeta) : undefined;
  }

  nextKey(): number {
    return ++this.#key;
  }

  saveMeta(meta: StreamMeta): void {
    const before = this.#storedBytes(meta.key);
    this.#s.upsert.run(meta.key, meta.path, JSON.stringify(meta));
    this.#changed(before === undefined ? 1 : 0, ownBytes(meta) - (before ?? 0));
  }

  remove(meta: StreamMeta): void {
    const before = this.#storedBytes(meta.key);
    this.#s.removeChunks.run(meta.key);
    this.#s.removeProducers.run(meta.key);
    this.#s.remove.run(meta.key);
    if (before !== undefined) this.#changed(-1, -before);
  }

  chunks(key: number, after: number, cap: number, maxBytes: number): StreamChunk[] {
    const out: StreamChunk[] = [];
    let bytes = 0;
    let from = after;
    const limit = Number.isFinite(cap) ? cap : Number.MAX_SAFE_INTEGER;
    // slices of 64 rows until the byte budget is spent (always ≥ 1 chunk)
    for (;;) {
      const rows = this.#s.chunks.all({ stream: key, after: from, cap: limit, limit: 64 }) as Row[];
      for (const r of rows) {
        const data = r.data as Uint8Array;
        if (out.length > 0 && bytes + data.length > maxBytes) return out;
        out.push({ start: Number(r.start), end: Number(r.end), data });
        bytes += data.length;
        from = Number(r.end);
      }
      if (rows.length < 64) return out;
    }
  }

  addChunk(key: number, chunk: StreamChunk): void {
    this.#s.addChunk.run(key, chunk.start, chunk.end, chunk.data);
  }

  producer(key: number, id: string): ProducerState | undefined {
    const row = this.#s.producer.get(key, id) as Row | undefined;
    return row
      ? { epoch: Number(row.epoch), lastSeq: Number(row.last_seq), updatedAt: Number(row.updated_at) }
      : undefined;
  }

  saveProducer(key: number, id: string, state: ProducerState): void {
    this.#s.saveProducer.run(key, id, state.epoch, state.lastSeq, state.updatedAt);
  }

  removeProducer(key: number, id: string): void {
    this.#s.removeProducer.run(key, id);
  }

  paths(): string[] {
    return (this.#s.paths.all() as Row[]).map((r) => String(r.path));
  }

  stats(): { streams: number; bytes: number } {
    return { ...this.#held };
  }

  /** The figures counted again from the rows (tests: they must equal `stats()`). */
  recount(): { streams: number; bytes: number } {
    return this.#count();
  }
}

/** A stream's own bytes: its tail minus what a fork inherits (as the `bytes` statement sums). */
function ownBytes(meta: StreamMeta): number {
  return meta.tail - (meta.forkOffset ?? 0);
}

function unavailable(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  return new StoreError(
    'store_unavailable',
    `stream store: ${err instanceof Error ? err.message : String(err)}`,
  );
}

export function sqliteStreamStore(db: DatabaseSync): StreamEngine {
  return new StreamEngine(new SqliteStreamTables(db));
}
