/**
 * Durable Streams in SQLite (the SQLite store's `streams`): three tables of the same database file,
 * beside the channel tables, written through the same connection.
 *
 *   ds_streams(id, path UNIQUE, content_type, ttl_seconds, expires_at, created_at, touched_at,
 *              tail, closed, closed_by, last_seq)
 *   ds_chunks(stream, start, end, data)            PK (stream, start): one row per append, never rewritten
 *   ds_producers(stream, producer, epoch, last_seq, updated_at)   PK (stream, producer)
 *
 * An append is one `BEGIN IMMEDIATE … COMMIT` holding the chunk, the stream row (tail, closed,
 * Stream-Seq) and the producer row: after a crash either all of it is there (a retry is a duplicate)
 * or none (a retry is stored). The transaction runs synchronously, so it never interleaves with the
 * channel store's group commit on the same connection, nor with another append. The sliding TTL is
 * written on reads only for streams that have one.
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from 'node:sqlite';
import { StoreError } from './store.ts';
import { decideAppend, isExpired, newMeta, type ProducerState, sameCreate } from './stream-rules.ts';
import type {
  AppendOutcome,
  AppendSpec,
  CreateOutcome,
  CreateSpec,
  ProducerClaim,
  ReadPage,
  StreamChunk,
  StreamMeta,
  StreamStore,
} from './stream-store.ts';

export const STREAM_SCHEMA = `
CREATE TABLE IF NOT EXISTS ds_streams (
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL UNIQUE,
  content_type TEXT NOT NULL,
  ttl_seconds INTEGER,
  expires_at TEXT,
  created_at INTEGER NOT NULL,
  touched_at INTEGER NOT NULL,
  tail INTEGER NOT NULL,
  closed INTEGER NOT NULL,
  closed_by TEXT,
  last_seq TEXT
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

type Row = Record<string, SQLInputValue>;

interface Row2Meta {
  id: number;
  meta: StreamMeta;
}

export class SqliteStreamStore implements StreamStore {
  readonly #db: DatabaseSync;
  readonly #s: Record<
    | 'byPath'
    | 'insert'
    | 'update'
    | 'touch'
    | 'chunk'
    | 'chunks'
    | 'producer'
    | 'saveProducer'
    | 'delete'
    | 'deleteChunks'
    | 'deleteProducers'
    | 'all'
    | 'stats',
    StatementSync
  >;

  constructor(db: DatabaseSync) {
    this.#db = db;
    db.exec(STREAM_SCHEMA);
    this.#s = {
      byPath: db.prepare('SELECT * FROM ds_streams WHERE path = ?'),
      insert: db.prepare(
        `INSERT INTO ds_streams (path, content_type, ttl_seconds, expires_at, created_at, touched_at, tail, closed, closed_by, last_seq)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      update: db.prepare(
        'UPDATE ds_streams SET touched_at = ?, tail = ?, closed = ?, closed_by = ?, last_seq = ? WHERE id = ?',
      ),
      touch: db.prepare('UPDATE ds_streams SET touched_at = ? WHERE id = ?'),
      chunk: db.prepare('INSERT INTO ds_chunks (stream, start, end, data) VALUES (?, ?, ?, ?)'),
      chunks: db.prepare(
        'SELECT start, end, data FROM ds_chunks WHERE stream = ? AND end > ? ORDER BY start LIMIT ?',
      ),
      producer: db.prepare(
        'SELECT epoch, last_seq, updated_at FROM ds_producers WHERE stream = ? AND producer = ?',
      ),
      saveProducer: db.prepare(
        `INSERT INTO ds_producers (stream, producer, epoch, last_seq, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (stream, producer) DO UPDATE SET epoch = excluded.epoch, last_seq = excluded.last_seq, updated_at = excluded.updated_at`,
      ),
      delete: db.prepare('DELETE FROM ds_streams WHERE id = ?'),
      deleteChunks: db.prepare('DELETE FROM ds_chunks WHERE stream = ?'),
      deleteProducers: db.prepare('DELETE FROM ds_producers WHERE stream = ?'),
      all: db.prepare('SELECT * FROM ds_streams'),
      stats: db.prepare('SELECT count(*) AS n, coalesce(sum(tail), 0) AS bytes FROM ds_streams'),
    };
  }

  async get(path: string, now: number): Promise<StreamMeta | undefined> {
    return this.#run(() => this.#live(path, now)?.meta);
  }

  async create(path: string, spec: CreateSpec, now: number): Promise<CreateOutcome> {
    return this.#tx(() => {
      const existing = this.#live(path, now);
      if (existing)
        return sameCreate(existing.meta, spec)
          ? { kind: 'exists', meta: existing.meta }
          : { kind: 'conflict', meta: existing.meta };
      const meta = newMeta(path, spec, now);
      meta.tail = spec.data.length;
      const info = this.#s.insert.run(
        path,
        meta.contentType,
        meta.ttlSeconds ?? null,
        meta.expiresAt ?? null,
        now,
        now,
        meta.tail,
        meta.closed ? 1 : 0,
        null,
        null,
      );
      if (spec.data.length > 0) this.#s.chunk.run(info.lastInsertRowid, 0, spec.data.length, spec.data);
      return { kind: 'created', meta };
    });
  }

  async append(path: string, spec: AppendSpec, now: number): Promise<AppendOutcome> {
    return this.#tx(() => {
      const stream = this.#live(path, now);
      if (!stream) return { kind: 'not_found' };
      const row = spec.producer
        ? (this.#s.producer.get(stream.id, spec.producer.id) as Row | undefined)
        : undefined;
      const producer: ProducerState | undefined = row
        ? { epoch: Number(row.epoch), lastSeq: Number(row.last_seq), updatedAt: Number(row.updated_at) }
        : undefined;
      const { outcome, writes } = decideAppend(stream.meta, producer, spec, now);
      if (writes) {
        if (writes.data) this.#s.chunk.run(stream.id, stream.meta.tail, writes.meta.tail, writes.data);
        if (writes.producer) {
          const { id, state } = writes.producer;
          this.#s.saveProducer.run(stream.id, id, state.epoch, state.lastSeq, state.updatedAt);
        }
        const m = writes.meta;
        this.#s.update.run(
          m.touchedAt,
          m.tail,
          m.closed ? 1 : 0,
          m.closedBy ? JSON.stringify(m.closedBy) : null,
          m.lastSeq ?? null,
          stream.id,
        );
      }
      return outcome;
    });
  }

  async read(path: string, after: number, maxBytes: number, now: number): Promise<ReadPage | undefined> {
    return this.#run(() => {
      const stream = this.#live(path, now);
      if (!stream) return undefined;
      if (stream.meta.ttlSeconds !== undefined) this.#s.touch.run(now, stream.id);
      const meta = { ...stream.meta, touchedAt: now };
      const chunks: StreamChunk[] = [];
      let bytes = 0;
      // fetch in slices until the byte budget is spent (always ≥ 1 chunk)
      let from = after;
      for (;;) {
        const rows = this.#s.chunks.all(stream.id, from, 64) as Row[];
        for (const r of rows) {
          const data = r.data as Uint8Array;
          if (chunks.length > 0 && bytes + data.length > maxBytes) return this.#page(meta, chunks, after);
          chunks.push({ start: Number(r.start), end: Number(r.end), data });
          bytes += data.length;
        }
        if (rows.length < 64) return this.#page(meta, chunks, after);
        from = chunks.at(-1)?.end ?? from;
      }
    });
  }

  #page(meta: StreamMeta, chunks: StreamChunk[], after: number): ReadPage {
    return { meta, chunks, upToDate: (chunks.at(-1)?.end ?? after) >= meta.tail };
  }

  async touch(path: string, now: number): Promise<void> {
    this.#run(() => {
      const stream = this.#live(path, now);
      if (stream?.meta.ttlSeconds !== undefined) this.#s.touch.run(now, stream.id);
    });
  }

  async delete(path: string): Promise<boolean> {
    return this.#tx(() => {
      const row = this.#s.byPath.get(path) as Row | undefined;
      if (!row) return false;
      this.#remove(Number(row.id));
      return true;
    });
  }

  async sweep(now: number): Promise<number> {
    return this.#tx(() => {
      let removed = 0;
      for (const row of this.#s.all.all() as Row[]) {
        const { id, meta } = toMeta(row);
        if (isExpired(meta, now)) {
          this.#remove(id);
          removed++;
        }
      }
      return removed;
    });
  }

  async stats(): Promise<{ streams: number; bytes: number }> {
    return this.#run(() => {
      const row = this.#s.stats.get() as Row;
      return { streams: Number(row.n), bytes: Number(row.bytes) };
    });
  }

  /** The stream, removing it first when expired (inside the caller's transaction, if any). */
  #live(path: string, now: number): Row2Meta | undefined {
    const row = this.#s.byPath.get(path) as Row | undefined;
    if (!row) return undefined;
    const stream = toMeta(row);
    if (isExpired(stream.meta, now)) {
      if (this.#db.isTransaction) this.#remove(stream.id);
      return undefined;
    }
    return stream;
  }

  #remove(id: number): void {
    this.#s.deleteChunks.run(id);
    this.#s.deleteProducers.run(id);
    this.#s.delete.run(id);
  }

  #run<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw new StoreError(
        'store_unavailable',
        `stream store: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
  }

  #tx<T>(fn: () => T): T {
    return this.#run(() => {
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        const result = fn();
        this.#db.exec('COMMIT');
        return result;
      } catch (err) {
        if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
        throw err;
      }
    });
  }
}

function toMeta(row: Row): Row2Meta {
  const meta: StreamMeta = {
    path: String(row.path),
    contentType: String(row.content_type),
    createdAt: Number(row.created_at),
    touchedAt: Number(row.touched_at),
    tail: Number(row.tail),
    closed: Number(row.closed) === 1,
  };
  if (row.ttl_seconds !== null) meta.ttlSeconds = Number(row.ttl_seconds);
  if (row.expires_at !== null) meta.expiresAt = String(row.expires_at);
  if (row.closed_by !== null) meta.closedBy = JSON.parse(String(row.closed_by)) as ProducerClaim;
  if (row.last_seq !== null) meta.lastSeq = String(row.last_seq);
  return { id: Number(row.id), meta };
}
