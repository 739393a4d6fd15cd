/**
 * The SQLite store: the embedded default (ARCHITECTURE.md §10), on Node's built-in `node:sqlite`.
 *
 * Durability: WAL journal. `synchronous=NORMAL` (the default) keeps every acknowledged operation
 * through a crash or `kill -9` of the process; `synchronous: 'full'` also through power loss. An
 * `append` resolves only after the COMMIT that holds it ("ack means stored").
 *
 * Group commit: `append` calls are queued and flushed together in one transaction on the next turn
 * of the event loop (setImmediate). Each batch is validated by `planBatch` before any of its rows is
 * written, so a bad batch is rejected alone and the others of the transaction commit. If a write
 * fails below validation (disk full, I/O error) the transaction is rolled back and each batch is
 * retried in a transaction of its own, so one cannot fail another. A batch that still fails is
 * refused with `store_unavailable` (retryable), with nothing of it stored; the in-memory view of the
 * journal is rebuilt from the rolled-back table, so a retry of its ids is stored, not taken for a
 * duplicate. If BEGIN itself fails (the file is locked: SQLITE_BUSY), every queued batch is refused
 * at once rather than each waiting out the lock again.
 *
 *   append() ─┐
 *   append() ─┼─ queue ── setImmediate ── BEGIN ─ plan+write batch 1 ─ … ─ batch n ─ COMMIT ─ resolve all
 *   append() ─┘
 *
 * Appends are O(size of the delta): a message's row in `messages` holds its data as of its create or
 * latest update (`base_seq`); each append is one new row in `ops` and rows after `base_seq` are
 * concatenated when the message is read. The row is rewritten only by update and delete. Validating
 * an append needs the message's kind, size, creator and deleted flag: an LRU cache keeps them, kept
 * coherent because this store is the only writer of its file: a second opener, in this process or
 * another, is refused before it reads anything (sqlite-lock.ts).
 *
 * Checkpoints: SQLite's automatic checkpoint is off on the store's connection (it would run inside a
 * COMMIT, on the event loop); a worker thread copies the WAL back instead (sqlite-checkpointer.ts)
 * and the store only finishes the job inline (the few frames not copied yet) to rewind the WAL.
 *
 * Dedup: a new op id is checked against the journal's ids in memory (`JournalView`), then against a
 * per-channel Bloom filter of the ids in the tables (sqlite-id-filter.ts: never "absent" for a held
 * id), and only when the filter says "maybe" against the `ops` index.
 *
 * The journal (a write buffer): `ops` is indexed three ways by channel, so a commit of n operations
 * on n channels would dirty ~3n scattered pages, and writing those pages, not SQLite's CPU, limits
 * the commit rate. New operations are therefore inserted into `journal`, an append-only table keyed
 * by insertion order (a commit dirties a few pages), and moved into `ops` in key order: in bounded
 * slices carried by the group commits once the journal is large (sqlite-journal.ts: a channel's rows
 * are moved together, each commit's pause stays short), a channel's rows before anything reads that
 * channel in `ops` (history, catch-up, update, delete, trim), and the whole journal on open (after a
 * crash) and close. Dedup and size checks see the journal through its in-memory view
 * (`JournalView`), rebuilt from the table on open or after a rollback. `channels.seq` is likewise
 * brought up to date when a channel's rows are merged, not at each commit: a channel's counter is the
 * greater of it and the channel's last journal row.
 *
 * A power loss: with `synchronous=NORMAL` an OS crash or power loss can undo the last commits, and
 * the channels would then give their serials again to new operations (a client that saw the lost
 * ones would resume past different ones: a silent gap). So the store writes the machine's boot id
 * and "open" on open, and "closed" on close (each commit fsynced). Opened on another boot after it
 * was left open, every channel goes on in a new epoch (clients re-read it: `epoch_changed`); its
 * old epoch and last sequence are kept in `channel_epochs`, so an update or append naming a kept
 * message by its old serial still reaches it (a run written across it goes on; its lease can still
 * end it). A process crash (`kill -9`) loses nothing and keeps the boot id: no new epoch. Neither
 * when the run that left it open had `synchronous: 'full'` ("open" is then 'full'; what the next
 * run asks for does not count), nor where the boot id is unknown (not Linux). A restored backup is
 * not detected: `newEpochs` (`mooring serve --new-epochs`) asks for new epochs at open, once.
 *
 * Schema (version 2; a version 1 file is migrated on open, see sqlite-schema.ts):
 *   channels(id, name UNIQUE, epoch, seq, trimmed_through)
 *   channel_epochs(chan, epoch, through)         the epoch before the last new one (a power loss)
 *   store_state(name, value)                     boot (the boot id), open ('1' while open, 'full' under FULL)
 *   journal(n, <the columns of ops>)                                     operations not yet merged
 *   ops(chan, seq, msg_seq, action, id, data, headers, client_id, ts, publisher)
 *                                                 PK (chan, seq), UNIQUE (chan, publisher, id)
 *   messages(chan, seq, id, name, data, kind, headers, client_id, ts, base_seq, deleted, expires_at)
 * `ops.data`/`ops.headers` are kept only for appends after the message's `base_seq`; every op keeps its
 * publisher and id (idempotency) and `msg_seq` (catch-up by position) until retention removes its message.
 */
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { Headers, Message } from '@mooring/protocol';
import { formatSerial, newEpoch } from '@mooring/protocol';
import { makeDirectory } from '../make-directory.ts';
import { Lru } from './lru.ts';
import type { BatchPlan, DataKind, MessageMeta, PlanContext } from './operation-rules.ts';
import {
  afterSeq,
  dedupKey,
  emptyPage,
  headSerial,
  isAppendable,
  planBatch,
  rolledUp,
  seqBound,
} from './operation-rules.ts';
import { PageBudget } from './page-bytes.ts';
import { SqliteCheckpointer } from './sqlite-checkpointer.ts';
import { closedError, decodeData, encodeData, messageOf, toStoreError } from './sqlite-codec.ts';
import { IdFilter } from './sqlite-id-filter.ts';
import { type JournalRow, JournalView, type Slice } from './sqlite-journal.ts';
import { StoreLock, StoreLockedError } from './sqlite-lock.ts';
import {
  addLeaseOwners,
  MIGRATE_FROM_1,
  NEW_EPOCHS,
  prepare,
  SCHEMA,
  SCHEMA_VERSION,
} from './sqlite-schema.ts';
import type {
  AppendOptions,
  AppendResult,
  ChannelInfo,
  HistoryQuery,
  LeaseRecord,
  LeaseRecords,
  NewOperation,
  RetentionFor,
  RolledUpPage,
  Store,
} from './store.ts';
import { StoreError } from './store.ts';
import { sqliteStreamStore } from './stream-sqlite-store.ts';
import type { StreamStore } from './stream-store.ts';

export interface SqliteStoreOptions {
  /** Database file; its directory is created if missing. `:memory:` works for throwaway use. */
  path: string;
  /** Retention per channel in ms, evaluated when a message is created. Default: 24 h for every channel. */
  retentionFor?: RetentionFor;
  /** `normal` (default): survives a process crash. `full`: fsync per commit, survives power loss. */
  synchronous?: 'normal' | 'full';
  /**
   * Every channel goes on in a new epoch at open, as after a power loss (see "A power loss"): for a
   * file restored from a backup, whose channels would otherwise give again the serials handed out
   * after the backup. Once: not for every start.
   */
  newEpochs?: boolean;
  /** Messages whose validation state is cached (LRU). Default 4096. */
  cacheSize?: number;
  /** How long a write waits for another connection's lock before failing (ms). Default 5000. */
  busyTimeoutMs?: number;
  /**
   * Called once with the open database, after the store's own PRAGMAs and before any write: for extra
   * settings such as `PRAGMA max_page_count` (a cap on the file's size: writes past it fail as a full
   * disk does). The store must stay the only writer of the file.
   */
  onOpen?: (db: DatabaseSync) => void;
  /**
   * Where WAL checkpoints run: `worker` (default for a file) on a worker thread with its own
   * connection, off the event loop; `inline`: SQLite's automatic checkpoint inside the COMMIT that
   * crosses 1,000 pages (the event loop waits for it).
   */
  checkpoint?: 'worker' | 'inline';
}

const DAY = 24 * 60 * 60 * 1000;
const TRIM_CHUNK = 500;
/**
 * Operations one trim transaction removes at most (it runs on the event loop: about 2.5 µs each),
 * beyond its first message: 500 expired answers of 1,000 appends each must not stop the node for a
 * second. A message is removed whole, so one message costs at most `maxMessageOps`.
 */
const TRIM_OPS = 20_000;
/**
 * Appends a read page joins at most, beyond the message that crosses it (about 0.7 µs each): a
 * page of messages of many empty appends is bounded by the work of rolling them up, not only by
 * their few bytes (1,000 messages of 100,000 appends would be one page of a minute).
 */
const PAGE_APPENDS = 100_000;
/** Channels whose id filter is kept (LRU), and the most ops a channel may have to get one. */
const FILTERED_CHANNELS = 2048;
export const MAX_FILTERED_IDS = 200_000;

interface ChannelState {
  /** Row id; -1 until the channel's first batch is written. */
  id: number;
  epoch: string;
  seq: number;
  trimmedThrough: number;
  /** The epoch before a power loss made a new one, and the last sequence it reached. */
  previous?: { epoch: string; through: number };
}

interface Pending {
  channel: string;
  ops: NewOperation[];
  options: AppendOptions;
  resolve: (result: AppendResult) => void;
  reject: (error: unknown) => void;
}

interface MessageRow {
  seq: number;
  id: string;
  name: string | null;
  data: string | null;
  kind: DataKind;
  headers: string | null;
  client_id: string | null;
  ts: number;
  base_seq: number;
  deleted: number;
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  readonly #db: DatabaseSync;
  /** Durable Streams, in the `ds_*` tables of the same file (stream-sqlite-store.ts). */
  readonly streams: StreamStore;
  readonly #retentionFor: RetentionFor;
  readonly #s: ReturnType<typeof prepare>;
  readonly #channels = new Lru<string, ChannelState>(10_000);
  readonly #metas: Lru<string, MessageMeta>;
  /** The journal's rows, by channel (sqlite-journal.ts). */
  readonly #journal = new JournalView();
  /** Bloom filters of the op ids each channel holds (see sqlite-id-filter.ts), by channel id. */
  readonly #filters = new Lru<number, IdFilter>(FILTERED_CHANNELS);
  #queue: Pending[] = [];
  #scheduled = false;
  #closed = false;
  readonly #checkpointer: SqliteCheckpointer | undefined;
  readonly #busyTimeoutMs: number;
  /** A file, not `:memory:`: its opens and closes are recorded (see "A power loss"). */
  readonly #file: boolean;
  /** The hold on the file, taken before anything of it is read (sqlite-lock.ts); none for `:memory:`. */
  readonly #lock: StoreLock | undefined;

  /** Opens (creating if needed) the database synchronously; throws StoreError('store_unavailable') if it cannot. */
  constructor(options: SqliteStoreOptions) {
    this.#retentionFor = options.retentionFor ?? (() => DAY);
    this.#busyTimeoutMs = Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000));
    this.#metas = new Lru(options.cacheSize ?? 4096);
    this.#file = options.path !== ':memory:';
    let db: DatabaseSync | undefined;
    let lock: StoreLock | undefined;
    try {
      if (options.path !== ':memory:') {
        makeDirectory(dirname(options.path));
        // first of all: a second opener must not read, merge or mark the file of a running store
        lock = new StoreLock(options.path);
      }
      db = new DatabaseSync(options.path);
      // Node 22.13–22.15 load node:sqlite without `isTransaction`, which decides whether a failed
      // batch is rolled back: refuse them with the version to install, not a half-working store.
      if (typeof db.isTransaction !== 'boolean')
        throw new Error(
          `node:sqlite of Node.js ${process.version} is too old: the SQLite store needs Node.js 22.16 or newer`,
        );
      this.#db = db;
      this.#db.exec(`PRAGMA busy_timeout = ${this.#busyTimeoutMs}`);
      const mode = this.#db.prepare('PRAGMA journal_mode = WAL').get()?.journal_mode;
      if (mode !== 'wal' && options.path !== ':memory:') throw new Error(`journal_mode is ${String(mode)}`);
      this.#db.exec(`PRAGMA synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
      this.#db.exec('PRAGMA cache_size = -32768');
      // The WAL is reused after each checkpoint; this only stops it staying large after a burst.
      this.#db.exec('PRAGMA journal_size_limit = 67108864');
      const version = Number(this.#db.prepare('PRAGMA user_version').get()?.user_version ?? 0);
      if (version > SCHEMA_VERSION) {
        throw new Error(`database schema ${version} is newer than this server's (${SCHEMA_VERSION})`);
      }
      if (version === 1) this.#migrateFrom1();
      this.#db.exec(SCHEMA);
      addLeaseOwners(this.#db);
      this.#db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
      if (this.#file) this.#opened(options.synchronous === 'full', options.newEpochs === true);
      options.onOpen?.(this.#db);
      this.#s = prepare(this.#db);
      this.streams = sqliteStreamStore(this.#db);
      this.#reloadJournal();
      this.#settleAll();
      this.#checkpointer =
        options.checkpoint === 'inline' || options.path === ':memory:'
          ? undefined
          : this.#startCheckpointer(options.path);
      this.#lock = lock;
    } catch (err) {
      if (db?.isOpen) db.close();
      lock?.release();
      if (err instanceof StoreLockedError) throw err;
      throw new StoreError(
        'store_unavailable',
        `cannot open SQLite store at ${options.path}: ${messageOf(err)}`,
      );
    }
  }

  /**
   * Records this open (boot id, open: '1', or 'full' under `synchronous: 'full'`), fsynced; first,
   * if the file was left open on another boot by a run with `synchronous=NORMAL` (whatever this one
   * asks for), moves every channel to a new epoch (see "A power loss" above).
   */
  #opened(full: boolean, asked: boolean): void {
    const state = new Map(
      this.#db
        .prepare('SELECT name, value FROM store_state')
        .all()
        .map((row) => [String(row.name), String(row.value)]),
    );
    const boot = bootId();
    // `open` is '1' while a run under NORMAL has the file open ('full' under FULL: nothing it
    // acknowledged can be undone): what the run that left it open asked for counts, not this one's
    const lost = asked || (boot !== '' && state.get('open') === '1' && (state.get('boot') ?? boot) !== boot);
    this.#synced(() => {
      if (lost) {
        const newest = this.#db.prepare('SELECT max(epoch) AS e FROM channels').get()?.e;
        if (typeof newest === 'string') {
          this.#db.exec(NEW_EPOCHS);
          // after every epoch the file holds, whatever this clock says (an epoch begins with its time)
          const after = Number.parseInt(newest.slice(0, 9), 36) + 1;
          this.#db.prepare('UPDATE channels SET epoch = ?').run(newEpoch(Math.max(Date.now(), after)));
        }
      }
      this.#setState('boot', boot);
      this.#setState('open', full ? 'full' : '1');
    });
  }

  #setState(name: string, value: string): void {
    this.#db.prepare('INSERT OR REPLACE INTO store_state (name, value) VALUES (?, ?)').run(name, value);
  }

  /** Runs `write` in a transaction committed with the WAL fsynced, whatever `synchronous` says. */
  #synced(write: () => void): void {
    const mode = Number(this.#db.prepare('PRAGMA synchronous').get()?.synchronous ?? 1);
    this.#db.exec('PRAGMA synchronous = FULL');
    try {
      this.#plainTransaction(write);
    } finally {
      this.#db.exec(`PRAGMA synchronous = ${mode}`);
    }
  }

  /**
   * `fn` in one transaction, all of it or none, with plain statements: for the work of open and
   * close, which runs before the prepared ones exist or has no cache to undo (`#transaction`).
   */
  #plainTransaction(fn: () => void): void {
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      fn();
      this.#db.exec('COMMIT');
    } catch (err) {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      throw err;
    }
  }

  /** Turns SQLite's automatic checkpoint off and starts the worker; back to automatic if it fails. */
  #startCheckpointer(path: string): SqliteCheckpointer | undefined {
    const automatic = (): void => {
      if (this.#db.isOpen) this.#db.exec('PRAGMA wal_autocheckpoint = 1000');
    };
    try {
      const checkpointer = new SqliteCheckpointer(path, {
        onFailure: automatic,
        onRewind: () => this.#rewind(),
      });
      this.#db.exec('PRAGMA wal_autocheckpoint = 0');
      return checkpointer;
    } catch {
      automatic();
      return undefined;
    }
  }

  /**
   * The rest of a checkpoint, inline: what the worker has not copied yet, then the WAL is rewound.
   * Never waits: if the worker is checkpointing right now (busy), it is tried again on its next report.
   */
  #rewind(): void {
    if (!this.#db.isOpen || this.#db.isTransaction) return;
    try {
      this.#db.exec('PRAGMA busy_timeout = 0');
      this.#db.prepare('PRAGMA wal_checkpoint(RESTART)').get();
    } catch {
      // an I/O error: the next report asks again
    } finally {
      this.#db.exec(`PRAGMA busy_timeout = ${this.#busyTimeoutMs}`);
    }
  }

  /** Same as the constructor, for callers that prefer to await. */
  static async open(options: SqliteStoreOptions): Promise<SqliteStore> {
    return new SqliteStore(options);
  }

  append(channel: string, ops: NewOperation[], options: AppendOptions): Promise<AppendResult> {
    if (this.#closed) return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      this.#queue.push({ channel, ops, options, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const pending = this.#queue;
    this.#queue = [];
    if (pending.length === 0) return;
    try {
      this.#commit(pending);
    } catch (err) {
      // Failed before any batch was written (BEGIN: the file is locked or unusable): retrying each
      // batch alone would only wait for the same lock once per batch, blocking the event loop.
      if (pending.length === 1 || err instanceof BeginError) {
        const error = failure(err);
        for (const p of pending) p.reject(error);
        return;
      }
      for (const p of pending) {
        try {
          this.#commit([p]);
        } catch (e) {
          p.reject(failure(e));
        }
      }
    }
  }

  /** Writes the batches in one transaction; settles their promises only after COMMIT. Throws (rolled back) on a write failure. */
  #commit(pending: Pending[]): void {
    const outcomes: (AppendResult | StoreError)[] = [];
    try {
      this.#s.begin.run();
    } catch (err) {
      throw new BeginError(err);
    }
    try {
      for (const p of pending) outcomes.push(this.#writeBatch(p));
      const slice = this.#journal.commitSlice();
      if (slice !== undefined) this.#merge(slice);
      this.#s.commit.run();
    } catch (err) {
      this.#rollback();
      throw err;
    }
    pending.forEach((p, i) => {
      const outcome = outcomes[i]!;
      if (outcome instanceof StoreError) p.reject(outcome);
      else p.resolve(outcome);
    });
  }

  /** Validates one batch (returning its StoreError if invalid, having written nothing) and writes it. */
  #writeBatch(p: Pending): AppendResult | StoreError {
    const now = p.options.now ?? Date.now();
    const known = this.#channel(p.channel);
    if (p.ops.length === 0) return { epoch: known?.epoch ?? '', results: [], messages: [] };
    const ch: ChannelState = known
      ? { ...known }
      : { id: -1, epoch: newEpoch(now), seq: 0, trimmedThrough: 0 };
    const ctx: PlanContext = {
      epoch: ch.epoch,
      seq: ch.seq,
      ...(ch.previous === undefined ? {} : { previous: ch.previous }),
      storedId: (publisher, id) => {
        if (ch.id < 0) return undefined;
        const key = dedupKey(publisher, id);
        const hot = this.#journal.idSeq(ch.id, key);
        if (hot !== undefined) return hot;
        if (this.#filterOf(ch)?.mayHave(key) === false) return undefined;
        return this.#s.findId.get(ch.id, publisher, id)?.seq as number | undefined;
      },
      message: (seq) => (ch.id < 0 ? undefined : this.#meta(ch.id, seq)),
      version: (seq) => (ch.id < 0 ? undefined : this.#version(ch.id, seq)),
    };
    let plan: BatchPlan;
    try {
      plan = planBatch(ctx, p.ops, { ...p.options, now });
    } catch (err) {
      if (err instanceof StoreError) return err;
      throw err;
    }
    if (plan.ops.length > 0) {
      if (ch.id < 0) {
        ch.id = this.#s.insertChannel.get(p.channel, ch.epoch, 0)!.id as number;
        this.#filters.set(ch.id, new IdFilter(0)); // a new channel holds no ids yet
      }
      this.#writeOps(p.channel, ch.id, plan);
      ch.seq = plan.seq;
      this.#channels.set(p.channel, ch);
      for (const [seq, meta] of plan.touched) this.#metas.set(metaKey(ch.id, seq), meta);
    }
    return { epoch: ch.epoch, results: plan.results, messages: plan.messages };
  }

  #writeOps(channel: string, chan: number, plan: BatchPlan): void {
    const s = this.#s;
    for (const { op, seq, msgSeq, kind, timestamp } of plan.ops) {
      const clientId = op.clientId ?? null;
      const publisher = op.publisher ?? ''; // '' for untyped (JS) callers
      // Update and delete read and rewrite the message from `ops`: merge the channel's journal first.
      if (op.action === 'update' || op.action === 'delete') this.#mergeChannel(chan);
      const key = dedupKey(publisher, op.id);
      this.#filters.get(chan)?.add(key);
      const row: JournalRow = { n: 0, seq, msgSeq, key, bytes: 0, append: op.action === 'append' };
      switch (op.action) {
        case 'create': {
          row.n = journalRow(
            s.journalOp.run(chan, seq, seq, 'create', op.id, null, null, clientId, timestamp, publisher),
          );
          const retention = this.#retentionFor(channel);
          s.insertMessage.run(
            chan,
            seq,
            op.id,
            op.name ?? null,
            encodeData(op.data, kind),
            kind,
            op.headers ? JSON.stringify(op.headers) : null,
            clientId,
            timestamp,
            seq,
            Number.isFinite(retention) ? timestamp + retention : null,
          );
          break;
        }
        case 'append': {
          const delta = typeof op.data === 'string' ? op.data : '';
          const headers = op.headers ? JSON.stringify(op.headers) : null;
          row.n = journalRow(
            s.journalOp.run(
              chan,
              seq,
              msgSeq,
              'append',
              op.id,
              delta,
              headers,
              clientId,
              timestamp,
              publisher,
            ),
          );
          row.bytes = Buffer.byteLength(delta);
          break;
        }
        case 'update': {
          const message = s.getMessage.get(chan, msgSeq) as unknown as MessageRow;
          const current = this.#current(chan, message);
          row.n = journalRow(
            s.journalOp.run(chan, seq, msgSeq, 'update', op.id, null, null, clientId, timestamp, publisher),
          );
          const data = op.data !== undefined ? encodeData(op.data, kind) : current.data;
          const dataKind = op.data !== undefined ? kind : current.kind;
          const headers = op.headers ? JSON.stringify(op.headers) : current.headers;
          s.rewriteMessage.run(data, dataKind, headers, seq, 0, chan, msgSeq);
          s.dropAppends.run(chan, msgSeq, message.base_seq, seq);
          break;
        }
        case 'delete': {
          row.n = journalRow(
            s.journalOp.run(chan, seq, msgSeq, 'delete', op.id, null, null, clientId, timestamp, publisher),
          );
          const message = s.getMessage.get(chan, msgSeq) as unknown as MessageRow;
          s.rewriteMessage.run(null, 'none', null, seq, 1, chan, msgSeq);
          s.dropAppends.run(chan, msgSeq, message.base_seq, seq);
          break;
        }
      }
      this.#journal.add(chan, row);
    }
  }

  /**
   * The channel's id filter, built from its rows (`ops` and the journal's view) when missing or full; none
   * for a channel with more ops than MAX_FILTERED_IDS (its ids are probed in the index). `ch.seq`
   * counts every op the channel ever had, so it bounds what the filter must hold.
   */
  #filterOf(ch: ChannelState): IdFilter | undefined {
    const held = this.#filters.get(ch.id);
    if (held !== undefined && !held.full) return held;
    if (ch.seq > MAX_FILTERED_IDS) {
      this.#filters.delete(ch.id);
      return undefined;
    }
    const filter = new IdFilter(2 * ch.seq);
    for (const r of this.#s.channelIds.iterate(ch.id))
      filter.add(dedupKey(r.publisher as string, r.id as string));
    for (const key of this.#journal.keys(ch.id)) filter.add(key);
    this.#filters.set(ch.id, filter);
    return filter;
  }

  /** Moves a slice of the journal into `ops`, in key order. Runs inside a transaction. */
  #merge(slice: Slice): void {
    const ns = JSON.stringify(slice.ns);
    if (slice.ns.length > 0) this.#s.mergeRows.run(ns);
    if (slice.remove) this.#s.deleteRows.run(ns);
    const { last, dropThrough } = this.#journal.merged(slice);
    for (const [chan, seq] of last) this.#s.setChannelSeq.run(seq, chan);
    if (dropThrough !== undefined) this.#s.dropJournal.run(dropThrough);
  }

  /** Moves a channel's journal rows into `ops`. Runs inside a transaction. */
  #mergeChannel(chan: number): void {
    const slice = this.#journal.channel(chan);
    if (slice !== undefined) this.#merge(slice);
  }

  /** Moves the whole journal into `ops`. Runs inside a transaction. */
  #mergeAll(): void {
    if (this.#journal.rows === 0) return;
    this.#s.mergeRows.run(JSON.stringify([...this.#journal.allRows()]));
    this.#s.clearJournal.run(); // merged rows of a generation too
    for (const [chan, seq] of this.#journal.lastSeqs()) this.#s.setChannelSeq.run(seq, chan);
    this.#journal.clear();
  }

  /** Merges a channel's journal rows in a transaction of its own, so that `ops` is complete for a read of it. */
  #settle(chan: number): void {
    if (this.#journal.lastSeq(chan) === undefined) return;
    this.#transaction(() => this.#mergeChannel(chan));
  }

  /** Merges the whole journal in a transaction of its own (open, close). */
  #settleAll(): void {
    if (this.#journal.rows === 0) return;
    this.#transaction(() => this.#mergeAll());
  }

  #transaction(fn: () => void): void {
    this.#s.begin.run();
    try {
      fn();
      this.#s.commit.run();
    } catch (err) {
      this.#rollback();
      throw err;
    }
  }

  /** Undoes the transaction, and whatever the caches took from it (they are read again from the file). */
  #rollback(): void {
    if (this.#db.isTransaction) this.#s.rollback.run();
    this.#channels.clear();
    this.#metas.clear();
    this.#reloadJournal();
  }

  /** Schema 1 → 2 (publisher-scoped op ids), in one transaction: all of it or none. */
  #migrateFrom1(): void {
    this.#plainTransaction(() => {
      this.#db.exec(MIGRATE_FROM_1);
      this.#db.exec(SCHEMA);
      this.#db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    });
  }

  /** Rebuilds the in-memory view of the journal from the table. */
  #reloadJournal(): void {
    this.#journal.clear();
    let merged: number | undefined;
    for (const r of this.#s.journalRows.iterate()) {
      if (r.merged === 1) {
        merged = r.n as number; // merged by a generation not finished: in `ops` already
        continue;
      }
      this.#journal.add(r.chan as number, {
        n: r.n as number,
        seq: r.seq as number,
        msgSeq: r.msg_seq as number,
        key: dedupKey(r.publisher as string, r.id as string),
        bytes: (r.size as number | null) ?? 0,
        append: r.action === 'append',
      });
    }
    this.#journal.commitSlice(); // counts nothing of the reloaded rows as added by the next commit
    if (merged !== undefined) this.#journal.resumeGeneration(merged);
  }

  /** A message's current data (as stored text), kind, headers (JSON text) and version. */
  #current(chan: number, row: MessageRow) {
    let data = row.data;
    let kind = row.kind;
    let headers = row.headers;
    let version = row.base_seq;
    let appends = 0;
    if (!row.deleted && isAppendable(kind)) {
      const appended = this.#s.appended.get(chan, row.seq, row.base_seq)!;
      appends = appended.n as number;
      if (appended.version !== null) {
        data = (data ?? '') + (appended.data as string);
        kind = 'string';
        version = appended.version as number;
        const last = this.#s.lastHeaders.get(chan, row.seq, row.base_seq);
        if (last) headers = last.headers as string;
      }
    }
    return { data, kind, headers, version, appends };
  }

  #channel(name: string): ChannelState | undefined {
    const cached = this.#channels.get(name);
    if (cached) return cached;
    const row = this.#s.getChannel.get(name);
    if (!row) return undefined;
    const id = row.id as number;
    const ch: ChannelState = {
      id,
      epoch: row.epoch as string,
      seq: Math.max(row.seq as number, this.#journal.lastSeq(id) ?? 0),
      trimmedThrough: row.trimmed_through as number,
    };
    if (typeof row.prev_epoch === 'string')
      ch.previous = { epoch: row.prev_epoch, through: Number(row.prev_through) };
    this.#channels.set(name, ch);
    return ch;
  }

  /** Validation state of a committed message, from the cache or the database. */
  #meta(chan: number, seq: number): MessageMeta | undefined {
    const key = metaKey(chan, seq);
    const cached = this.#metas.get(key);
    if (cached) return cached;
    const row = this.#s.getMeta.get(chan, seq);
    if (!row) return undefined;
    let kind = row.kind as DataKind;
    let size = (row.size as number | null) ?? 0;
    if (!row.deleted && isAppendable(kind)) {
      const appended = this.#s.appendedSize.get(chan, seq, row.base_seq as number)!;
      const hot = this.#journal.appendedBytes(chan, seq);
      if ((appended.n as number) > 0 || hot !== undefined) {
        kind = 'string';
        size += (appended.size as number) + (hot ?? 0);
      }
    }
    // counted once per cache miss, bounded by maxMessageOps; then kept in step by each publish
    const ops = (this.#s.opCount.get(chan, seq)!.n as number) + this.#journal.rowsOf(chan, seq);
    const meta: MessageMeta = { kind, size, deleted: row.deleted === 1, ops };
    if (row.client_id !== null) meta.clientId = row.client_id as string;
    this.#metas.set(key, meta);
    return meta;
  }

  /** A committed message's version: its last op, in the journal or else in `ops` (not a hot path). */
  #version(chan: number, seq: number): number | undefined {
    const hot = this.#journal.lastOf(chan, seq);
    const merged = this.#s.lastOpOf.get(chan, seq)?.version as number | null | undefined;
    if (merged === null || merged === undefined) return hot;
    return hot === undefined ? merged : Math.max(hot, merged);
  }

  /** The message of `row` rolled up; the appends it joined are spent from `page` (`PAGE_APPENDS`). */
  #rollUp(epoch: string, chan: number, row: MessageRow, page?: PageBudget): Message {
    const cur = this.#current(chan, row);
    page?.spend(cur.appends);
    return rolledUp({
      serial: formatSerial(epoch, row.seq),
      version: formatSerial(epoch, cur.version),
      changed: cur.version !== row.seq,
      deleted: row.deleted === 1,
      id: row.id,
      name: row.name ?? undefined,
      data: decodeData(cur.data, cur.kind),
      encoding: cur.kind === 'base64' ? 'base64' : undefined,
      headers: cur.headers === null ? undefined : (JSON.parse(cur.headers) as Headers),
      clientId: row.client_id ?? undefined,
      timestamp: row.ts,
    });
  }

  async info(channel: string): Promise<ChannelInfo | undefined> {
    this.#check();
    return this.#read(() => {
      const ch = this.#channel(channel);
      if (!ch) return undefined;
      const info: ChannelInfo = {
        channel,
        epoch: ch.epoch,
        head: headSerial(ch.epoch, ch.seq),
        trimmedThrough: ch.trimmedThrough,
        messageCount: this.#s.countMessages.get(ch.id)!.n as number,
      };
      if (ch.previous) info.previous = ch.previous;
      return info;
    });
  }

  async readSince(
    channel: string,
    after: string | undefined,
    limit: number,
    maxBytes?: number,
  ): Promise<RolledUpPage> {
    this.#check();
    return this.#read(() => {
      const ch = this.#channel(channel);
      if (!ch) return emptyPage();
      this.#settle(ch.id);
      const take = Math.max(0, limit);
      const from = afterSeq(after, ch.epoch);
      // Near the head, the ops since the position (sorted to group them); further back than a
      // quarter of what the channel holds, one walk of all of them in message order is cheaper
      // (grouping in a temporary tree costs about four times a walk's row).
      const far = (ch.seq - from) * 4 > ch.seq - ch.trimmedThrough;
      const rows = (far ? this.#s.changedSinceFar : this.#s.changedSince).all(ch.id, from, take + 1);
      // roll up (join appends) only what the page takes, stopping at the byte bound
      const budget = new PageBudget(take, maxBytes, PAGE_APPENDS);
      const messages: Message[] = [];
      for (const r of rows) {
        if (budget.full) break;
        const row = this.#s.getMessage.get(ch.id, r.msg_seq as number) as unknown as MessageRow;
        const message = this.#rollUp(ch.epoch, ch.id, row, budget);
        if (!budget.take(message)) break;
        messages.push(message);
      }
      return {
        epoch: ch.epoch,
        head: headSerial(ch.epoch, ch.seq),
        messages,
        more: rows.length > messages.length,
      };
    });
  }

  async history(channel: string, query: HistoryQuery): Promise<RolledUpPage> {
    this.#check();
    return this.#read(() => {
      const ch = this.#channel(channel);
      if (!ch) return emptyPage();
      this.#settle(ch.id);
      const take = Math.max(0, query.limit);
      const lo = query.from === undefined ? 0 : seqBound(query.from, ch.epoch, 'from', ch.previous);
      const hi = query.until === undefined ? ch.seq : seqBound(query.until, ch.epoch, 'until', ch.previous);
      const stmt = query.direction === 'forwards' ? this.#s.historyForwards : this.#s.historyBackwards;
      // row by row: a page of big messages stops at its byte bound without reading the rest
      const rows = stmt.iterate(ch.id, Math.max(lo, 0), Math.min(hi, ch.seq), take + 1);
      const budget = new PageBudget(take, query.maxBytes, PAGE_APPENDS);
      const messages: Message[] = [];
      let more = false;
      for (const row of rows) {
        const message = budget.full
          ? undefined
          : this.#rollUp(ch.epoch, ch.id, row as unknown as MessageRow, budget);
        if (!message || !budget.take(message)) {
          more = true;
          break;
        }
        messages.push(message);
      }
      return { epoch: ch.epoch, head: headSerial(ch.epoch, ch.seq), messages, more };
    });
  }

  async trim(now: number = Date.now()): Promise<number> {
    this.#check();
    let removed = 0;
    for (;;) {
      if (this.#closed) break;
      const { count, more } = this.#read(() => this.#trimChunk(now));
      removed += count;
      if (!more) break;
      await new Promise((resolve) => setImmediate(resolve));
    }
    return removed;
  }

  /** Removes up to TRIM_CHUNK expired messages, and at most TRIM_OPS ops past the first, in one transaction. */
  #trimChunk(now: number): { count: number; more: boolean } {
    const s = this.#s;
    const due = s.expired.all(now, TRIM_CHUNK);
    if (due.length === 0) return { count: 0, more: false };
    let expired = due;
    const through = new Map<number, number>();
    s.begin.run();
    try {
      // The ops of an expired message are removed from `ops`: its channel's journal rows first, and
      // the rest of a generation (its merged rows, still in the journal, would look unmerged).
      const rest = this.#journal.generationRest();
      if (rest !== undefined) this.#merge(rest);
      for (const chan of new Set(due.map((e) => e.chan as number))) this.#mergeChannel(chan);
      // then as many messages as TRIM_OPS allows (counted once merged), the first whatever it holds
      let ops = 0;
      for (let take = 0; take < due.length; take++) {
        const e = due[take]!;
        ops += s.opCount.get(e.chan as number, e.seq as number)!.n as number;
        if (take > 0 && ops > TRIM_OPS) {
          expired = due.slice(0, take);
          break;
        }
      }
      for (const e of expired) {
        const chan = e.chan as number;
        const seq = e.seq as number;
        const last = (s.lastOp.get(chan, seq)?.seq as number | null) ?? seq;
        through.set(chan, Math.max(through.get(chan) ?? 0, last));
        s.deleteOps.run(chan, seq);
        s.deleteMessage.run(chan, seq);
      }
      for (const [chan, seq] of through) s.raiseTrimmed.run(seq, chan, seq);
      s.commit.run();
    } catch (err) {
      this.#rollback();
      throw err;
    }
    for (const e of expired) this.#metas.delete(metaKey(e.chan as number, e.seq as number));
    // Channel rows changed (trimmed_through): reread them when next needed.
    this.#channels.clear();
    return { count: expired.length, more: expired.length < due.length || due.length === TRIM_CHUNK };
  }

  async ping(): Promise<void> {
    this.#check();
    this.#read(() => this.#s.ping.get());
  }

  /** Lease records (a small table written only when a lease is taken or released). */
  readonly leases: LeaseRecords = {
    save: (r) => {
      if (this.#closed) return;
      this.#s.saveLease.run(r.channel, r.serial, r.ms, r.clientId ?? null, r.owner ?? null);
    },
    remove: (channel, serial) => {
      if (this.#closed) return;
      this.#s.removeLease.run(channel, serial);
    },
    all: () =>
      this.#s.allLeases.all().map((row) => {
        const record: LeaseRecord = {
          channel: String(row.channel),
          serial: String(row.serial),
          ms: Number(row.ms),
        };
        if (row.client_id !== null) record.clientId = String(row.client_id);
        if (row.owner !== null && row.owner !== undefined) record.owner = String(row.owner);
        return record;
      }),
  };

  /** Commits every queued append, then closes the database. Later calls reject with store_unavailable. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    // The worker's connection first: the last connection to close checkpoints and removes the WAL.
    await this.#checkpointer?.close();
    try {
      this.#settleAll();
      if (this.#file) this.#synced(() => this.#setState('open', '0'));
    } catch (err) {
      throw toStoreError(err);
    } finally {
      this.#db.close();
      // only once the file is closed: the next opener must find it as this one left it
      this.#lock?.release();
    }
  }

  /**
   * Lets go of the file as a `kill -9` would: queued appends are refused, nothing is merged and
   * `open` stays set. For tests of recovery within one process, where a second store is refused
   * while this one holds the file; a real crash needs none of it (the kernel drops the hold).
   */
  async closeAsCrashed(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const pending of this.#queue.splice(0)) pending.reject(closedError());
    await this.#checkpointer?.close();
    this.#db.close();
    this.#lock?.release();
  }

  #check(): void {
    if (this.#closed) throw closedError();
  }

  #read<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw toStoreError(err);
    }
  }
}

/** BEGIN failed: nothing of the flush was written, and no batch is to blame. */
class BeginError extends Error {
  constructor(cause: unknown) {
    super(messageOf(cause), { cause });
  }
}

/** The StoreError for a failed commit, classified by SQLite's own error (under a BeginError too). */
function failure(err: unknown): StoreError {
  return toStoreError(err instanceof BeginError ? err.cause : err);
}

/** The journal row id of an insert. */
function journalRow(result: { lastInsertRowid: number | bigint }): number {
  return Number(result.lastInsertRowid);
}

function metaKey(chan: number, seq: number): string {
  return `${chan}:${seq}`;
}

/** This boot of the machine (Linux), '' where it cannot be read. */
function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}
