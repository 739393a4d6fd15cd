/**
 * Durable Streams in Redis (the Redis store's `streams`): the same `StreamEngine` as memory and
 * SQLite — stream-rules.ts stays the one place where appends, creates, forks and expiry are decided —
 * over rows kept in Redis, made atomic by optimistic concurrency instead of a lock:
 *
 * - `atomic(fn)` runs the engine's synchronous step on a snapshot of the rows it reads. A row not in
 *   the snapshot yet stops the run (`Miss`), is loaded (ds-load.lua, one consistent read of several
 *   rows) and the step runs again. Each operation prefetches what it will read (an append: the
 *   stream's meta and its producer's row; a read: the meta and the first page), so the usual step is
 *   one load and, if it writes, one commit.
 * - A step that writes ends with ds-commit.lua: a compare-and-set on the version of every stream the
 *   step read (versions come from one counter, so a stream deleted and re-created never matches its
 *   old version), then every write — chunk, meta (tail, closed, Stream-Seq), producer row — in the
 *   same script. A changed stream writes nothing and the step reruns on fresh rows. So an append is
 *   one atomic step and validation never interleaves with another request, on any number of nodes.
 * - A node runs the writing steps of one stream (create, append, touch, delete) one after the other
 *   (`RedisStreamStore`'s `#writes`): its concurrent writers would otherwise each load, and all but
 *   one commit in vain, every round — work that grows with the writers, and a writer that kept losing
 *   gave up (`MAX_ATTEMPTS`, 16 appenders on one stream: ~1 % of appends refused). Only writers on
 *   other nodes still race, a few at most. A write that waited past `QUEUE_WAIT` for the ones before
 *   it (a Redis that stopped answering holds each of them for its command deadline) is refused at
 *   once, retryable, instead of waiting its turn for their deadlines one after another.
 * - Chunks are immutable members `start:end:base64` of a sorted set scored by `end`: a read is one
 *   ZRANGEBYSCORE walk from the reader's offset, bounded by bytes (O(page)), capped at the tail of
 *   the snapshot's meta (never a chunk the snapshot's tail does not cover).
 * - Every key carries the one hash tag `{ds}` (all Durable Streams on one slot): a fork's create or a
 *   cascade of removals touches several streams and stays one script on a Redis Cluster too. The
 *   price: on a Cluster, Durable Streams live on one shard (channels still spread by their own tag).
 *
 * Keys (base = `<prefix>:ds:{ds}:`): `m` hash path → meta JSON; `v` hash path → version; `ver`
 * version counter; `bytes` own bytes of every stream (stats without a scan); `exp` zset path by
 * expiry deadline (the sweep visits only due streams); `mark` the run_id and generation of this
 * Redis's streams (`DS_MARK_LUA`: made again after a restart, a restore, a failover or a FLUSHALL);
 * `key` stream key counter (reserved by blocks, each used only under the mark it was reserved under:
 * a Redis back from a snapshot, or flushed, gives the same block again); `c:<key>` zset of chunks;
 * `p:<key>` hash producer key (`producerKey`: scope, line feed, Producer-Id) → state JSON.
 * A meta records the `run_id` of the Redis that last wrote it; read from another Redis (a restart,
 * a restored snapshot, a failover: it may hold less than was acknowledged), the stream's positions
 * past its tail start a new generation of offsets (`#onThisRedis`), and a commit checks that the
 * Redis it writes to is the one the step read, with the mark it read (a Redis that came back, or
 * was flushed, may give a version again). A new stream starts in the mark's generation: one lost with
 * a Redis (a FLUSHALL, a snapshot from before it) and created again at its path never names the
 * lost one's offsets (they are answered 410).
 * Wake messages for live readers on other nodes: stream-redis-wakes.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ErrorReply } from 'redis';
import { isPassingRedisError } from './redis-connection.ts';
import { RUN_ID_LUA } from './redis-run-id.ts';
import { ChannelOrder } from './redis-subscriber.ts';
import { StoreError } from './store.ts';
import { StreamEngine, type StreamTables } from './stream-engine.ts';
import { type ProducerState, producerKey as storedProducerKey } from './stream-rules.ts';
import {
  type AppendOutcome,
  type AppendSpec,
  type CreateOutcome,
  type CreateSpec,
  type DeleteOutcome,
  nextGeneration,
  type ReadPage,
  type StreamChunk,
  type StreamMeta,
  type StreamStore,
  type StreamWakeBus,
} from './stream-store.ts';

/** A script of STREAM_SCRIPTS: its name there, and its text as EVAL runs it (RUN_ID_LUA first). */
interface Script {
  name: StreamScript;
  text: string;
  sha: string;
}

function script(name: StreamScript): Script {
  const text = RUN_ID_LUA + STREAM_SCRIPTS[name];
  return { name, text, sha: createHash('sha1').update(text).digest('hex') };
}

function file(name: string): string {
  return readFileSync(new URL(`./redis/${name}.lua`, import.meta.url), 'utf8');
}

/**
 * Lua (after RUN_ID_LUA): `dsMark(key, now, seen, nonce)`, the mark of this Redis's Durable Streams,
 * `'<run_id> <generation> <nonce>'`, made again when missing (a new Redis, or one emptied by a
 * FLUSHALL: the same run_id) or of another run_id (restarted, restored from a snapshot, failed over).
 * Stream keys are reserved under it and a commit writes only under the mark its step read, so a
 * Redis that lost streams never gives their versions or keys again (the nonce, the caller's, tells
 * two marks apart). New streams start their offsets in its generation: 0 on a Redis nobody knew
 * before (no mark, and `seen`, the generation of the last mark the calling node saw, is ''), so the
 * first offset is the Durable Streams' usual zero one (the official conformance suite makes fork
 * offsets up in it: starting a new Redis from the clock, which would also cover a Redis emptied
 * while no node ran, fails 18 of its fork tests); from the clock (`now`, ms) and after every
 * generation known (the mark replaced, `seen`) when the Redis had a life before — so a stream it
 * lost and that is created again at its path names none of the lost one's offsets.
 */
const DS_MARK_LUA = `local function dsMark(key, now, seen, nonce)
  local run = runId()
  local mark = redis.call('GET', key)
  local last = tonumber(seen)
  if mark then
    local r, g = string.match(mark, '^(%S*) (%d+) ')
    if g and r == run then return mark end
    last = math.max(last or 0, tonumber(g) or 0)
  end
  local generation = last and math.max(tonumber(now), last + 1) or 0
  mark = run .. ' ' .. string.format('%d', generation) .. ' ' .. nonce
  redis.call('SET', key, mark)
  return mark
end
`;

/**
 * The scripts of Durable Streams, each a Lua body that calls `runId()` (put before it: RUN_ID_LUA by
 * EVAL, or the library's kept one when the Redis store runs them as functions, redis-functions.ts).
 */
export const STREAM_SCRIPTS = {
  ds_load: DS_MARK_LUA + file('ds-load'),
  ds_commit: file('ds-commit'),
  /** KEYS: the stream key counter, the mark. ARGV: block size, then `dsMark`'s. → {the block's last key, the mark}. */
  ds_reserve: `${DS_MARK_LUA}
local last = redis.call('INCRBY', KEYS[1], ARGV[1])
return {last, dsMark(KEYS[2], ARGV[2], ARGV[3], ARGV[4])}
`,
} as const;
export type StreamScript = keyof typeof STREAM_SCRIPTS;

const LOAD = script('ds_load');
const COMMIT = script('ds_commit');
const RESERVE_KEYS = script('ds_reserve');
/** A step rerun this many times because other writers kept changing its streams fails (retryable). */
export const MAX_ATTEMPTS = 64;
/**
 * A stream's write that waited this long behind its node's earlier writes of the stream (ms) is
 * refused (retryable) without running: one Redis command deadline, by default.
 */
export const QUEUE_WAIT = 5_000;
/** Stream keys reserved per INCRBY (unique across nodes; unused ones are skipped, never reused). */
const KEY_BLOCK = 1000;
/** Due streams one sweep expires at most (the rest at the next). */
const SWEEP_PAGE = 1000;

/** How the stream store reaches Redis: the Redis store's connection (deadline, in-flight tracking). */
export interface RedisStreamLink {
  prefix: string;
  send(key: string, args: string[]): Promise<unknown>;
  /**
   * Runs one of STREAM_SCRIPTS (the Redis store: as a function of its library). Absent: by
   * EVALSHA, or EVAL when Redis does not know the script, over `send`.
   */
  run?(name: StreamScript, keys: string[], args: string[]): Promise<unknown>;
  closed(): boolean;
}

type Item =
  | { op: 'm'; path: string }
  | { op: 'p'; key: number; id: string }
  | { op: 'P'; path: string; id: string }
  | { op: 'c'; key: number; after: number; cap: number; maxBytes: number }
  | { op: 'C'; path: string; after: number; maxBytes: number };

/** Thrown inside a step when it reads a row the snapshot does not hold yet (none: a stream key). */
class Miss {
  readonly item: Item | undefined;
  constructor(item?: Item) {
    this.item = item;
  }
}

/** What one step has loaded (kept across its reruns after a miss) and written (reset per run). */
class Snapshot {
  /**
   * path → meta JSON and version ('0' and no JSON: absent); `view`: the meta as this step sees it, on
   * this Redis (made once per step: see `meta`).
   */
  readonly metas = new Map<string, { json: string | undefined; version: string; view?: string }>();
  /** The run_id of the Redis the rows were read from ('' when it does not say). */
  run: string | undefined;
  /** The mark of that Redis's streams as read (`DS_MARK_LUA`): `<run_id> <generation> <nonce>`. */
  mark: string | undefined;
  readonly producers = new Map<string, ProducerState | undefined>();
  readonly chunks = new Map<string, StreamChunk[]>();
  /** key → the tail of its stream as read (chunk reads are capped at it). */
  readonly tails = new Map<number, number>();
  /** This run's view: metas saved or removed by the run itself. */
  overlay = new Map<string, StreamMeta | undefined>();
  writes: string[] = [];
}

function chunkKey(key: number, after: number, cap: number, maxBytes: number): string {
  return `${key}|${after}|${cap}|${maxBytes}`;
}

function producerKey(key: number, id: string): string {
  return `${key}|${id}`;
}

class RedisStreamTables implements StreamTables {
  readonly #link: RedisStreamLink;
  readonly #base: string;
  /** The running step's snapshot (steps run synchronously, one at a time). */
  #tx: Snapshot | undefined;
  /** What the next step prefetches (set right before the engine call that starts it). */
  #hints: Item[] = [];
  #nextKey = 0;
  #lastKey = 0;
  /**
   * The mark the key block was reserved under: another one (a Redis restarted, restored, failed over
   * or flushed) may give the same block to another node, so the block is dropped and one reserved
   * there.
   */
  #keysMark: string | undefined;
  /** The generation of the last mark this node read ('': none yet), `dsMark`'s `seen`. */
  #seen = '';
  /** Steps rerun because another writer changed one of their streams first. */
  conflicts = 0;

  constructor(link: RedisStreamLink) {
    this.#link = link;
    this.#base = `${link.prefix}:ds:{ds}:`;
  }

  get base(): string {
    return this.#base;
  }

  hint(items: Item[]): void {
    this.#hints = items;
  }

  async atomic<T>(fn: () => T): Promise<T> {
    const hints = this.#hints;
    this.#hints = [];
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const snap = new Snapshot();
      if (hints.length > 0) await this.#load(snap, hints);
      for (;;) {
        if (this.#nextKey >= this.#lastKey || (snap.mark !== undefined && snap.mark !== this.#keysMark)) {
          await this.#reserveKeys();
          // reserved under another mark than the rows were read with (a restart between): read again
          if (snap.mark !== undefined && snap.mark !== this.#keysMark) break;
        }
        snap.overlay = new Map();
        snap.writes = [];
        let result: T;
        this.#tx = snap;
        try {
          result = fn();
        } catch (err) {
          if (!(err instanceof Miss)) throw unavailable(err);
          this.#tx = undefined;
          // no item: the key block ran out; the loop reserves a new one
          if (err.item) await this.#load(snap, [err.item]);
          continue;
        } finally {
          this.#tx = undefined;
        }
        if (snap.writes.length === 0) return result;
        if (await this.#commit(snap)) return result;
        this.conflicts++;
        break;
      }
    }
    throw new StoreError(
      'store_unavailable',
      'stream store: the stream kept changing under this request (too many concurrent writers); retry',
    );
  }

  meta(path: string): StreamMeta | undefined {
    const tx = this.#snap();
    if (tx.overlay.has(path)) {
      const meta = tx.overlay.get(path);
      return meta && { ...meta };
    }
    const row = tx.metas.get(path);
    if (!row) throw new Miss({ op: 'm', path });
    if (row.json === undefined) return undefined;
    row.view ??= this.#onThisRedis(row.json, tx.run);
    return JSON.parse(row.view) as StreamMeta;
  }

  /**
   * A stream last written by another Redis (this one restarted, was restored from a snapshot, or
   * took over in a failover) may have lost appends whose offsets readers hold: its positions past
   * the tail it has now start a new generation, so no offset handed out before is given to other
   * data, and one of lost data is told apart (stream-store.ts `offsetPosition`). Saved with the
   * step's first write; a step that writes nothing starts nothing (its offsets up to the tail are
   * the old ones). A stream written before Mooring recorded the Redis (no `run`) is adopted as it is.
   */
  #onThisRedis(json: string, run: string | undefined): string {
    if (!run) return json;
    const meta = JSON.parse(json) as StreamMeta;
    if (meta.run === run) return json;
    if (meta.run !== undefined) meta.generations = nextGeneration(meta.generations, meta.tail, Date.now());
    meta.run = run;
    return JSON.stringify(meta);
  }

  /** New streams start in the generation of the mark the step read (0: none read). */
  newGeneration(): number {
    const mark = this.#snap().mark;
    return mark === undefined ? 0 : generationOf(mark);
  }

  /** `dsMark`'s arguments after the key: the clock, the generation seen last, a nonce. */
  #markArgs(): string[] {
    return [String(Date.now()), this.#seen, randomBytes(6).toString('hex')];
  }

  #saw(mark: string): void {
    if (mark !== '') this.#seen = String(generationOf(mark));
  }

  nextKey(): number {
    if (this.#nextKey >= this.#lastKey) throw new Miss();
    return ++this.#nextKey;
  }

  saveMeta(meta: StreamMeta): void {
    const tx = this.#snap();
    const saved = tx.run ? { ...meta, run: tx.run } : { ...meta };
    tx.overlay.set(meta.path, saved);
    tx.writes.push('M', meta.path, JSON.stringify(saved), deadline(meta));
  }

  remove(meta: StreamMeta): void {
    const tx = this.#snap();
    tx.overlay.set(meta.path, undefined);
    tx.writes.push('R', meta.path, String(meta.key), String(meta.tail - (meta.forkOffset ?? 0)));
  }

  chunks(key: number, after: number, cap: number, maxBytes: number): StreamChunk[] {
    const tx = this.#snap();
    const tail = tx.tails.get(key);
    const capped = tail === undefined ? cap : Math.min(cap, tail);
    const found = tx.chunks.get(chunkKey(key, after, capped, maxBytes));
    if (!found) throw new Miss({ op: 'c', key, after, cap: capped, maxBytes });
    return found;
  }

  addChunk(key: number, chunk: StreamChunk): void {
    const data = Buffer.from(chunk.data.buffer, chunk.data.byteOffset, chunk.data.byteLength);
    this.#snap().writes.push(
      'C',
      String(key),
      String(chunk.end),
      `${chunk.start}:${chunk.end}:${data.toString('base64')}`,
      String(chunk.data.length),
    );
  }

  producer(key: number, id: string): ProducerState | undefined {
    const tx = this.#snap();
    const k = producerKey(key, id);
    if (!tx.producers.has(k)) throw new Miss({ op: 'p', key, id });
    return tx.producers.get(k);
  }

  saveProducer(key: number, id: string, state: ProducerState): void {
    this.#snap().writes.push('P', String(key), id, JSON.stringify(state));
  }

  removeProducer(key: number, id: string): void {
    this.#snap().writes.push('D', String(key), id);
  }

  paths(): string[] {
    // The Redis store sweeps page by page (RedisStreamStore.sweep), never through the engine's loop.
    throw new StoreError('internal', 'stream store: paths() is not used on Redis');
  }

  stats(): { streams: number; bytes: number } {
    throw new StoreError('internal', 'stream store: stats() is read outside a step on Redis');
  }

  #snap(): Snapshot {
    if (!this.#tx) throw new StoreError('internal', 'stream store: a row was read outside a step');
    return this.#tx;
  }

  async #reserveKeys(): Promise<void> {
    const key = `${this.#base}key`;
    const [reply, mark] = asArray(
      await this.run(RESERVE_KEYS, [key, `${this.#base}mark`], [String(KEY_BLOCK), ...this.#markArgs()]),
    );
    const last = Number(reply);
    if (!Number.isSafeInteger(last)) throw new StoreError('internal', 'stream store: bad key counter');
    this.#keysMark = String(mark ?? '');
    this.#saw(this.#keysMark);
    this.#nextKey = last - KEY_BLOCK;
    this.#lastKey = last;
  }

  async #load(snap: Snapshot, items: Item[]): Promise<void> {
    const args: string[] = [];
    for (const item of items) {
      switch (item.op) {
        case 'm':
          args.push('m', item.path);
          break;
        case 'p':
          args.push('p', String(item.key), item.id);
          break;
        case 'P':
          args.push('P', item.path, item.id);
          break;
        case 'c':
          args.push('c', String(item.key), String(item.after), capArg(item.cap), String(item.maxBytes));
          break;
        case 'C':
          args.push('C', item.path, String(item.after), String(item.maxBytes));
          break;
      }
    }
    const b = this.#base;
    const reply = asArray(
      await this.run(LOAD, [`${b}m`, `${b}v`, `${b}mark`], [b, ...this.#markArgs(), ...args]),
    );
    const run = String(reply[0] ?? '');
    const mark = String(reply[1] ?? '');
    this.#saw(mark);
    // rows of two Redis in one step (a restart or a FLUSHALL between its loads): read again (retryable)
    if (snap.mark !== undefined && snap.mark !== mark)
      throw new StoreError(
        'store_unavailable',
        'Redis restarted (or was flushed) while a Durable Streams step read it; retry',
      );
    snap.run = run;
    snap.mark = mark;
    try {
      this.#keep(snap, items, reply.slice(2));
    } catch (err) {
      throw unavailable(err);
    }
  }

  #keep(snap: Snapshot, items: Item[], reply: unknown[]): void {
    let at = 0;
    for (const item of items) {
      const r = reply[at++];
      switch (item.op) {
        case 'm':
          this.#keepMeta(snap, item.path, asArray(r));
          break;
        case 'p':
          snap.producers.set(producerKey(item.key, item.id), parseProducer(r));
          break;
        case 'P': {
          const row = asArray(r);
          if (row.length > 0) snap.producers.set(producerKey(Number(row[0]), item.id), parseProducer(row[1]));
          break;
        }
        case 'c':
          snap.chunks.set(chunkKey(item.key, item.after, item.cap, item.maxBytes), parseChunks(r));
          break;
        case 'C': {
          const row = asArray(r);
          const meta = this.#keepMeta(snap, item.path, row);
          if (meta) {
            const cap = meta.tail;
            snap.chunks.set(chunkKey(meta.key, item.after, cap, item.maxBytes), parseChunks(row[2]));
          }
          break;
        }
      }
    }
  }

  /** Records a meta row of a load (the first read of a path wins: its version is the one checked). */
  #keepMeta(snap: Snapshot, path: string, row: unknown[]): StreamMeta | undefined {
    const known = snap.metas.get(path);
    const json = known ? known.json : row.length > 0 ? String(row[0]) : undefined;
    if (!known) snap.metas.set(path, { json, version: row.length > 0 ? String(row[1]) : '0' });
    if (json === undefined) return undefined;
    const meta = JSON.parse(json) as StreamMeta;
    snap.tails.set(meta.key, meta.tail);
    return meta;
  }

  async #commit(snap: Snapshot): Promise<boolean> {
    const checks: string[] = [];
    for (const [path, row] of snap.metas) checks.push(path, row.version);
    const b = this.#base;
    const reply = await this.run(
      COMMIT,
      [`${b}m`, `${b}v`, `${b}ver`, `${b}bytes`, `${b}exp`, `${b}mark`],
      [b, snap.mark ?? '', String(checks.length / 2), ...checks, ...snap.writes],
    );
    return Number(reply) === 1;
  }

  /**
   * Runs a script: as the link runs it (the Redis store's functions), else by SHA, and in full once
   * when Redis does not know it (a restart emptied its script cache).
   */
  async run(s: Script, keys: string[], args: string[]): Promise<unknown> {
    const run = this.#link.run;
    if (run) {
      if (this.#link.closed()) throw new StoreError('store_unavailable', 'the Redis store is closed');
      try {
        return await run.call(this.#link, s.name, keys, args);
      } catch (err) {
        throw unavailable(err);
      }
    }
    const tail = [String(keys.length), ...keys, ...args];
    return this.send(keys[0]!, ['EVALSHA', s.sha, ...tail], ['EVAL', s.text, ...tail]);
  }

  async send(key: string, args: string[], noScript?: string[]): Promise<unknown> {
    if (this.#link.closed()) throw new StoreError('store_unavailable', 'the Redis store is closed');
    try {
      try {
        return await this.#link.send(key, args);
      } catch (err) {
        if (noScript && err instanceof ErrorReply && err.message.startsWith('NOSCRIPT'))
          return await this.#link.send(key, noScript);
        throw err;
      }
    } catch (err) {
      throw unavailable(err);
    }
  }
}

/** When the stream expires (ms), for the expiry index; '' when never (or already soft-deleted). */
function deadline(meta: StreamMeta): string {
  if (meta.softDeleted) return '';
  let at = Number.POSITIVE_INFINITY;
  if (meta.expiresAt !== undefined) {
    const parsed = Date.parse(meta.expiresAt);
    at = Number.isFinite(parsed) ? parsed : 0;
  }
  if (meta.ttlSeconds !== undefined) at = Math.min(at, meta.touchedAt + meta.ttlSeconds * 1000);
  return Number.isFinite(at) ? String(at) : '';
}

/** The generation a mark (`DS_MARK_LUA`) names. */
function generationOf(mark: string): number {
  return Number(mark.split(' ')[1] ?? 0) || 0;
}

function capArg(cap: number): string {
  return Number.isFinite(cap) ? String(cap) : '+inf';
}

function parseProducer(value: unknown): ProducerState | undefined {
  if (typeof value !== 'string') return undefined;
  return JSON.parse(value) as ProducerState;
}

function parseChunks(value: unknown): StreamChunk[] {
  return asArray(value).map((member) => {
    const text = String(member);
    const first = text.indexOf(':');
    const second = text.indexOf(':', first + 1);
    const data = Buffer.from(text.slice(second + 1), 'base64');
    return {
      start: Number(text.slice(0, first)),
      end: Number(text.slice(first + 1, second)),
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    };
  });
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function unavailable(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  if (err instanceof ErrorReply && isPassingRedisError(err.message))
    return new StoreError('store_unavailable', `Redis cannot serve now: ${err.message}`);
  if (err instanceof ErrorReply)
    return new StoreError('internal', `Redis refused a Durable Streams operation: ${err.message}`);
  if (err instanceof SyntaxError)
    return new StoreError('internal', `Durable Streams rows in Redis are not Mooring's: ${err.message}`);
  return new StoreError(
    'store_unavailable',
    `Redis is unavailable: ${err instanceof Error ? err.message : String(err)}`,
  );
}

/** The Redis store's `streams`: the engine, with each operation's rows prefetched in one load. */
export class RedisStreamStore implements StreamStore {
  readonly wakes: StreamWakeBus | undefined;
  readonly #t: RedisStreamTables;
  readonly #engine: StreamEngine;
  /** The writing steps of each stream on this node, one at a time. */
  readonly #writes = new ChannelOrder();
  #stats = { streams: 0, bytes: 0 };

  readonly #queueWait: number;

  /** `queueWait`: how long a write may wait for this node's earlier ones of its stream, ms (`QUEUE_WAIT`). */
  constructor(link: RedisStreamLink, wakes?: StreamWakeBus, options: { queueWait?: number } = {}) {
    this.#t = new RedisStreamTables(link);
    this.#engine = new StreamEngine(this.#t);
    this.wakes = wakes;
    this.#queueWait = options.queueWait ?? QUEUE_WAIT;
  }

  /** Steps that reran because another writer changed their stream first. */
  get conflicts(): number {
    return this.#t.conflicts;
  }

  get(path: string, now: number): Promise<StreamMeta | undefined> {
    this.#t.hint([{ op: 'm', path }]);
    return this.#engine.get(path, now);
  }

  create(path: string, spec: CreateSpec, now: number): Promise<CreateOutcome> {
    return this.#write(path, () => {
      this.#t.hint(
        spec.fork
          ? [
              { op: 'm', path: spec.fork.source },
              { op: 'm', path },
            ]
          : [{ op: 'm', path }],
      );
      return this.#engine.create(path, spec, now);
    });
  }

  append(path: string, spec: AppendSpec, now: number): Promise<AppendOutcome> {
    return this.#write(path, () => {
      const producer = spec.producer;
      this.#t.hint(
        producer
          ? [
              { op: 'm', path },
              { op: 'P', path, id: storedProducerKey(producer) },
              // the state an older version kept under the bare Producer-Id (stream-engine.ts `#producer`)
              ...(producer.scope === undefined ? [] : [{ op: 'P' as const, path, id: producer.id }]),
            ]
          : [{ op: 'm', path }],
      );
      return this.#engine.append(path, spec, now);
    });
  }

  /** Runs a writing step of `path` after this node's earlier ones of it (see the file's header). */
  #write<T>(path: string, step: () => Promise<T>): Promise<T> {
    const queued = performance.now();
    return this.#writes.run(path, () => {
      if (performance.now() - queued > this.#queueWait)
        return Promise.reject(
          new StoreError(
            'store_unavailable',
            `stream store: this stream's writes on this node waited over ${this.#queueWait} ms for Redis; retry`,
          ),
        );
      return step();
    });
  }

  read(path: string, after: number, maxBytes: number, now: number): Promise<ReadPage | undefined> {
    this.#t.hint([{ op: 'C', path, after, maxBytes }]);
    return this.#engine.read(path, after, maxBytes, now);
  }

  touch(path: string, now: number): Promise<void> {
    return this.#write(path, () => {
      this.#t.hint([{ op: 'm', path }]);
      return this.#engine.touch(path, now);
    });
  }

  delete(path: string, now: number): Promise<DeleteOutcome> {
    return this.#write(path, () => {
      this.#t.hint([{ op: 'm', path }]);
      return this.#engine.delete(path, now);
    });
  }

  /**
   * Expired streams from the expiry index (`exp`, kept by every commit): only the due ones are
   * visited, at most `SWEEP_PAGE` per call (the rest at the next), each removed through the engine's
   * own expiry (`get` expires what is due, atomically, on fresh rows).
   */
  async sweep(now: number): Promise<number> {
    const key = `${this.#t.base}exp`;
    const due = asArray(
      await this.#t.send(key, ['ZRANGEBYSCORE', key, '-inf', String(now), 'LIMIT', '0', String(SWEEP_PAGE)]),
    );
    let removed = 0;
    for (const path of due) {
      const after = await this.get(String(path), now);
      if (!after || after.softDeleted) removed++;
    }
    return removed;
  }

  /**
   * Two counters, no scan. While Redis is unreachable, the last values read: `/metrics` keeps
   * answering (its other gauges matter most then).
   */
  async stats(): Promise<{ streams: number; bytes: number }> {
    const b = this.#t.base;
    try {
      const [streams, bytes] = await Promise.all([
        this.#t.send(`${b}m`, ['HLEN', `${b}m`]),
        this.#t.send(`${b}bytes`, ['GET', `${b}bytes`]),
      ]);
      this.#stats = { streams: Number(streams ?? 0), bytes: Number(bytes ?? 0) };
    } catch {
      // keep the last values
    }
    return { ...this.#stats };
  }
}
