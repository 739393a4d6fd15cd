/**
 * The Redis store: the distributed engine's log (ARCHITECTURE.md §10). Several Mooring nodes share one Redis;
 * every guarantee of store.ts holds across them because each write is one server-side Lua script:
 *
 * - `append` runs publish.lua once per batch: it checks every op (dedup on (channel, publisher, id),
 *   target in this epoch, not deleted, owner, appendable, maxMessageSize) before the first write, then
 *   writes serials, ops, rolled-up state and op ids, and puts the batch on the bus (SPUBLISH) — so two
 *   nodes can never interleave a batch or reuse a serial, and the bus carries batches in serial order.
 * - The epoch lives in the channel's meta hash and is created by the script when missing: Redis data
 *   that was lost (flushed, a new empty instance) starts a new epoch, so clients get
 *   `resumed: false, epoch_changed`, never reused serials.
 * - A new Redis, a new epoch: the meta hash records the `run_id` of the Redis that last wrote it, and
 *   the first publish on another one (a restart, a restored backup, a failover) starts a new epoch.
 *   That Redis may hold less than its predecessor acknowledged (an RDB snapshot, a lost second of
 *   AOF `everysec`, a replica behind), and continuing the epoch would give new operations serials
 *   that clients hold for lost ones (a silent gap). Mooring cannot tell a lossless restart from a
 *   lossy one, so every restart costs each channel one re-read by its clients. The old epoch and the
 *   sequence it reached are kept (meta `prev`, `through`, `ChannelInfo.previous`): an update or
 *   append naming a kept message by its old serial is taken, and sent on with its serial in the new
 *   epoch (`inEpoch`), so a run written across the restart goes on and its lease can still end it.
 *   publish.lua runs as a function of one library (redis-functions.ts), which asks Redis for its
 *   `run_id` once per Redis process (by EVAL, where Redis refuses functions: once per publish).
 * - Appends are O(size of the delta): a message's data is one Redis string grown with APPEND; its
 *   validation state (kind, size, creator, deleted) is a few fields of its hash.
 * - Reads (info, readSince, history) are one read-only script each: one consistent snapshot.
 * - "Ack means stored" = the script has run on the Redis primary. How durable that is depends on
 *   Redis persistence (AOF `appendfsync always` / `everysec`); see PROTOCOL.md §10.
 * - Refuses to start unless `maxmemory-policy` is `noeviction` (evicting keys would lose ops silently).
 * - Garbage in keys Mooring owns (wrong type, unparsable value) fails that channel's call with a
 *   StoreError `internal` and a log line; Redis unreachable fails calls with `store_unavailable`
 *   (retryable, never acknowledged). Commands are not queued while disconnected.
 *
 * Keys of channel C (one hash slot, `{C}` tag; key = prefix:{C}:suffix, suffixes never contain '}'):
 *   meta  hash  epoch, seq (last op), trimmed (trimmedThrough), run (run_id of the Redis that wrote it),
 *               prev, through (the epoch before the last new Redis, and its last seq),
 *               older ('epoch:through,…': the epochs before prev, newest first, at most 8)
 *   ids   hash  dedup field (publisher + id) → op seq
 *   ver   zset  message seq scored by its version (catch-up: "changed since")
 *   msgs  zset  message seq scored by itself (history by serial)
 *   exp   zset  message seq scored by its expiry time (retention)
 *   m:<s> hash  id, nm, k (kind), sz, hd (headers JSON), cid, en, ts, v, ch (changed), del
 *   d:<s> string the message's data (string, JSON text or base64)
 *   o:<s> list  dedup fields of every op applied to the message (forgotten with it by retention)
 * Global: prefix:trim (zset: channel → when its oldest message expires, ms; channels with finite
 * retention). (prefix:channels, the set that older versions scanned whole on every trim, is moved
 * into prefix:trim a page per trim.) Message leases are not the store's: a Redis node keeps them
 * under prefix:{leases}:* (redis-leases.ts), so this store has no `leases` (older versions wrote
 * prefix:leases, which nothing reads any more).
 *
 * Retention trim is incremental: a trim visits only the channels whose oldest message is due
 * (`ZRANGEBYSCORE prefix:trim -inf now`), at most `TRIM_CHANNELS` per call, and then files each
 * under the expiry of its new oldest message (or now + retention when it is empty: nothing stored
 * later can expire sooner). Idle channels cost nothing per tick, whatever their number. One trim
 * script does at most `TRIM_BUDGET` units of work (a message, an op id): a message's op ids go a
 * slice per call, oldest first, and the message with its last slice, so no call holds Redis long.
 */
import { readFileSync } from 'node:fs';
import type { Headers, JsonValue, Message } from '@mooring/protocol';
import { formatSerial, newEpoch, parseSerial } from '@mooring/protocol';
import { ErrorReply } from 'redis';
import type { DataKind } from './operation-rules.ts';
import {
  dedupKey,
  emptyPage,
  headSerial,
  inEpoch,
  kindOf,
  liveMessage,
  outOfOrder,
  rolledUp,
  tooManyOps,
} from './operation-rules.ts';
import { connectRedis, isPassingRedisError, type RedisConnection } from './redis-connection.ts';
import { RedisFunctions, RedisLibrary } from './redis-functions.ts';
import { redactRedisUrl } from './redis-url.ts';
import type {
  AppendOptions,
  AppendResult,
  ChannelInfo,
  HistoryQuery,
  NewOperation,
  RetentionFor,
  RolledUpPage,
  Store,
} from './store.ts';
import { StoreError } from './store.ts';
import { RedisStreamStore, STREAM_SCRIPTS } from './stream-redis-store.ts';
import { RedisStreamWakes } from './stream-redis-wakes.ts';

export interface RedisStoreOptions {
  /**
   * `redis://host:port` (or `rediss://`, with user/password) for one Redis;
   * `redis+cluster://host:port,host:port` for a Redis Cluster.
   */
  url: string;
  retentionFor?: RetentionFor;
  /** Prefix of every key Mooring writes. Default `mooring`. */
  prefix?: string;
  /**
   * Called once when Redis refuses functions (FCALL, FUNCTION LOAD) to this connection: the scripts
   * run by EVAL, each asking Redis which process it is (one `INFO server` more per publish).
   */
  onWarning?: (message: string, err: unknown) => void;
  /** Called with a description and the error when a channel's keys hold something Mooring did not write. */
  onCorrupt?: (channel: string, detail: string) => void;
  /** Connection problems (logged; calls fail with store_unavailable meanwhile). */
  onError?: (err: unknown) => void;
  /**
   * Deadline of one Redis command, ms (default 5,000): past it the call fails with
   * `store_unavailable` (retryable) and the command connection is replaced.
   */
  commandTimeout?: number;
}

const DAY = 24 * 60 * 60 * 1000;
/**
 * Work one trim script does at most: a message counts one, each of its op ids one more (about 3 µs
 * of Redis each), so no call holds Redis for more than a few ms, however many appends one message
 * took. The trim goes on with the next call until the channel's due messages are gone.
 */
const TRIM_BUDGET = 2_000;
/** Channels one trim visits at most (the rest are due at the next). */
const TRIM_CHANNELS = 1_000;
/** Channels of the old trim set moved into the trim queue per trim. */
const MIGRATE_CHUNK = 200;

function script(name: string): string {
  return readFileSync(new URL(`./redis/${name}.lua`, import.meta.url), 'utf8');
}

const SCRIPTS = {
  read: script('read'),
  info: script('info'),
  trim: script('trim'),
} as const;
type ScriptName = keyof typeof SCRIPTS;

/**
 * The scripts that ask which Redis runs them (`runId()`): one function library, which reads that
 * once per Redis process instead of once per call (redis-functions.ts).
 */
const LIBRARY = new RedisLibrary({ publish: script('publish'), ...STREAM_SCRIPTS });

/** The bus (pub/sub) channel carrying a channel's stored batches: same hash tag as its keys. */
export function busChannel(prefix: string, channel: string): string {
  return `${prefix}:bus:{${channel}}`;
}

/** A stored batch as it travels on the bus: the epoch, each op's seq ('d' prefix: duplicate), the ops. */
export interface BusBatch {
  epoch: string;
  messages: Message[];
}

/**
 * The epoch and the highest seq a bus payload stores (0 when it holds only duplicates), read
 * without parsing its operations: a node drops the echo of its own publishes (delivered already)
 * by this alone. Undefined when the payload is not one of publish.lua's.
 */
export function busBatchHead(payload: string): { epoch: string; last: number } | undefined {
  const first = payload.indexOf('\n');
  const second = payload.indexOf('\n', first + 1);
  if (first < 0 || second < 0) return undefined;
  let last = 0;
  let at = first + 1;
  while (at < second) {
    let end = payload.indexOf(',', at);
    if (end < 0 || end > second) end = second;
    if (payload.charCodeAt(at) !== 100 /* 'd': a duplicate */) {
      const seq = Number(payload.slice(at, end));
      if (!Number.isInteger(seq)) return undefined;
      if (seq > last) last = seq;
    }
    at = end + 1;
  }
  return { epoch: payload.slice(0, first), last };
}

/** Decodes a bus payload written by publish.lua; undefined when it is not one. */
export function decodeBusBatch(payload: string): BusBatch | undefined {
  const first = payload.indexOf('\n');
  const second = payload.indexOf('\n', first + 1);
  if (first < 0 || second < 0) return undefined;
  const epoch = payload.slice(0, first);
  const results = payload.slice(first + 1, second).split(',');
  let template: unknown;
  try {
    template = JSON.parse(payload.slice(second + 1));
  } catch {
    return undefined;
  }
  if (!Array.isArray(template) || template.length !== results.length) return undefined;
  const messages: Message[] = [];
  results.forEach((r, i) => {
    if (r.startsWith('d')) return;
    const m = template[i] as Message;
    const version = formatSerial(epoch, Number(r));
    messages.push({ ...m, serial: m.action === 'create' ? version : inEpoch(m.serial, epoch), version });
  });
  return { epoch, messages };
}

export class RedisStore implements Store {
  readonly kind = 'redis';
  readonly connection: RedisConnection;
  readonly prefix: string;
  readonly #retentionFor: RetentionFor;
  readonly #options: RedisStoreOptions;
  readonly #shas = new Map<ScriptName, string>();
  /** Runs LIBRARY's scripts on this connection (by FCALL, or by EVAL where Redis refuses functions). */
  readonly #functions: RedisFunctions<keyof typeof STREAM_SCRIPTS | 'publish'>;
  /** Channels this node has put in the trim set (bounded: forgetting one only costs a SADD). */
  readonly #registered = new Set<string>();
  #closed = false;
  /** Commands sent and not yet answered: `close()` waits for them (a Cluster client would drop them). */
  readonly #inflight = new Set<Promise<unknown>>();
  /** Durable Streams (stream-redis-store.ts), on the same connection; wakes on their own subscriber. */
  readonly streams: RedisStreamStore;
  readonly #wakes: RedisStreamWakes;

  private constructor(connection: RedisConnection, options: RedisStoreOptions) {
    this.connection = connection;
    this.#options = options;
    this.prefix = options.prefix ?? 'mooring';
    this.#retentionFor = options.retentionFor ?? (() => DAY);
    const closed = () => this.#closed;
    this.#functions = new RedisFunctions(
      LIBRARY,
      {
        send: (key, args) => this.#send(key, args),
        eachMaster: (args) => connection.eachMaster(args),
        scriptEpoch: () => connection.scriptEpoch ?? 0,
      },
      (err) =>
        options.onWarning?.(
          `Redis refuses functions to this connection (${err.message}): Mooring runs its scripts by EVAL, which asks Redis for its run_id on every publish (more Redis CPU per publish). Allow FCALL and FUNCTION LOAD (ACL +fcall +function|load) to save it`,
          err,
        ),
    );
    this.#wakes = new RedisStreamWakes({
      connection,
      prefix: this.prefix,
      closed,
      onError: (err) => options.onError?.(err),
    });
    this.streams = new RedisStreamStore(
      {
        prefix: this.prefix,
        send: (key, args) => this.#send(key, args),
        run: (name, keys, args) => this.#functions.run(name, keys, args),
        closed,
      },
      this.#wakes,
    );
  }

  /** Connects, refuses an evicting Redis, loads the scripts and the lease records. */
  static async open(options: RedisStoreOptions): Promise<RedisStore> {
    let connection: RedisConnection;
    try {
      connection = await connectRedis(options.url, (err) => options.onError?.(err), options.commandTimeout);
    } catch (err) {
      throw new StoreError(
        'store_unavailable',
        `cannot connect to Redis at ${redactRedisUrl(options.url)}: ${message(err)}`,
      );
    }
    const store = new RedisStore(connection, options);
    try {
      await store.#checkPolicy();
      await store.#loadScripts();
    } catch (err) {
      connection.destroy();
      throw err;
    }
    return store;
  }

  async #checkPolicy(): Promise<void> {
    // Every master of a Cluster: any one evicting would lose the channels it holds.
    const infos = await this.connection.eachMaster(['INFO', 'memory']);
    const policy = infos
      .map((info) => /maxmemory_policy:(\S+)/.exec(String(info))?.[1])
      .find((p) => p !== undefined && p !== 'noeviction');
    if (policy !== undefined)
      throw new StoreError(
        'store_unavailable',
        `Redis maxmemory-policy is "${policy}": Mooring needs "noeviction" (an evicting Redis would silently lose stored operations). Set maxmemory-policy noeviction in redis.conf or with CONFIG SET`,
      );
  }

  async #loadScripts(): Promise<void> {
    for (const [name, text] of Object.entries(SCRIPTS) as [ScriptName, string][]) {
      const [sha] = await this.connection.eachMaster(['SCRIPT', 'LOAD', text]);
      this.#shas.set(name, String(sha));
    }
    await this.#functions.open();
  }

  #send(key: string | undefined, args: string[], readonly = false): Promise<unknown> {
    const sent = this.connection.send(key, args, readonly);
    this.#inflight.add(sent);
    const done = () => this.#inflight.delete(sent);
    sent.then(done, done);
    return sent;
  }

  #key(channel: string, suffix: string): string {
    return `${this.prefix}:{${channel}}:${suffix}`;
  }

  /** Runs a script by SHA; after a Redis restart (script cache empty) sends it in full once. */
  async #run(name: ScriptName, channel: string, keys: string[], args: string[]): Promise<unknown> {
    if (this.#closed) throw closedError();
    const sha = this.#shas.get(name)!;
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await this.#send(keys[0], ['EVALSHA', sha, ...tail]);
    } catch (err) {
      if (err instanceof ErrorReply && err.message.startsWith('NOSCRIPT')) {
        try {
          return await this.#send(keys[0], ['EVAL', SCRIPTS[name], ...tail]);
        } catch (again) {
          throw this.#toStoreError(again, channel);
        }
      }
      throw this.#toStoreError(err, channel);
    }
  }

  /** Runs publish.lua (a function of LIBRARY). */
  async #publish(channel: string, keys: string[], args: string[]): Promise<unknown> {
    if (this.#closed) throw closedError();
    try {
      return await this.#functions.run('publish', keys, args);
    } catch (err) {
      throw this.#toStoreError(err, channel);
    }
  }

  #toStoreError(err: unknown, channel: string): StoreError {
    if (err instanceof StoreError) return err;
    if (err instanceof ErrorReply && isPassingRedisError(err.message)) {
      // logged like a lost connection: a Redis that stays so (a demoted master's READONLY) is seen
      this.#options.onError?.(err);
      return new StoreError('store_unavailable', `Redis cannot serve now: ${err.message}`);
    }
    if (err instanceof ErrorReply) {
      // WRONGTYPE, a Lua runtime error on a value Mooring did not write, OOM: this channel's keys
      // (or Redis) are not in a state Mooring can use. Never a crash; a clear error and a log line.
      this.#corrupt(channel, err.message);
      return new StoreError('internal', `Redis refused an operation on channel ${channel}: ${err.message}`);
    }
    return new StoreError('store_unavailable', `Redis is unavailable: ${message(err)}`);
  }

  #corrupt(channel: string, detail: string): StoreError {
    this.#options.onCorrupt?.(channel, detail);
    return new StoreError(
      'internal',
      `channel ${channel} holds data Mooring cannot read in Redis: ${detail}`,
    );
  }

  async append(channel: string, ops: NewOperation[], options: AppendOptions): Promise<AppendResult> {
    if (this.#closed) throw closedError();
    if (ops.length === 0) {
      const info = await this.info(channel);
      return { epoch: info?.epoch ?? '', results: [], messages: [] };
    }
    const now = options.now ?? Date.now();
    const retention = this.#retentionFor(channel);
    const args: string[] = [
      String(now),
      String(options.maxMessageSize),
      newEpoch(now),
      Number.isFinite(retention) ? String(retention) : 'inf',
      busChannel(this.prefix, channel),
      '',
      String(ops.length),
    ];
    const template: Message[] = [];
    for (const op of ops) {
      const kind = kindOf(op.data, op.encoding);
      const target = op.serial === undefined ? undefined : parseSerial(op.serial);
      let pre = '';
      if (op.action !== 'create' && !target) pre = 'invalid_serial';
      let flags = '';
      if (op.name !== undefined) flags += 'n';
      if (op.headers !== undefined) flags += 'h';
      if (op.clientId !== undefined) flags += 'c';
      if (op.requireOwner !== undefined) flags += 'o';
      if (op.encoding === 'base64') flags += 'e';
      if (op.ifVersion !== undefined) flags += 'v';
      args.push(
        op.action,
        dedupField(op),
        op.id,
        pre,
        target?.epoch ?? '',
        String(target?.seq ?? 0),
        flags,
        op.name ?? '',
        encodeData(op.data, kind),
        kind,
        op.headers === undefined ? '' : JSON.stringify(op.headers),
        op.clientId ?? '',
        op.requireOwner ?? '',
        op.ifVersion === undefined ? '' : String(op.ifVersion),
      );
      // The live form without serial/version, for the bus (publish.lua fills them per op).
      const live = liveMessage(op, op.serial ?? '', '', now);
      template.push(live);
    }
    // the precondition, its dedup field in the batch's publisher scope (every op of a batch has the same)
    args.push(
      options.after === undefined ? '' : dedupKey(ops[0]!.publisher ?? '', options.after),
      options.maxMessageOps === undefined ? '' : String(options.maxMessageOps),
    );
    args[5] = JSON.stringify(template);
    this.#register(channel, now);
    const reply = await this.#publish(channel, this.#writeKeys(channel), args);
    const r = asArray(reply);
    if (r[0] === 'corrupt') throw this.#corrupt(channel, String(r[1]));
    if (r[0] === 'err') throw batchError(ops, String(r[1]), Number(r[2]), String(r[3] ?? ''), options);
    if (r[0] !== 'ok') throw this.#corrupt(channel, 'unexpected reply from publish script');
    const epoch = String(r[1]);
    const results: AppendResult['results'] = [];
    const messages: Message[] = [];
    ops.forEach((op, i) => {
      const token = String(r[i + 2]);
      if (token.startsWith('d')) {
        results.push({ serial: formatSerial(epoch, Number(token.slice(1))), duplicate: true });
        return;
      }
      const serial = formatSerial(epoch, Number(token));
      results.push({ serial });
      messages.push(
        liveMessage(op, op.action === 'create' ? serial : inEpoch(op.serial!, epoch), serial, now),
      );
    });
    return { epoch, results, messages };
  }

  #writeKeys(channel: string): string[] {
    return ['meta', 'ids', 'ver', 'msgs', 'exp'].map((s) => this.#key(channel, s));
  }

  /**
   * Files the channel in the trim queue once per node, due when a message stored now would expire
   * (`LT`: an earlier due time already filed stays). Sent (not awaited) just before the channel's
   * first script on this connection, so Redis runs it first: a crash cannot leave a stored op
   * untrimmable. Channels kept forever are not filed.
   */
  #register(channel: string, now: number): void {
    if (this.#registered.has(channel)) return;
    const retention = this.#retentionFor(channel);
    if (!Number.isFinite(retention)) return;
    if (this.#registered.size >= 100_000) this.#registered.clear();
    this.#registered.add(channel);
    const key = this.#trimKey();
    this.#send(key, ['ZADD', key, 'LT', String(now + retention), channel]).catch(() => {
      this.#registered.delete(channel);
    });
  }

  #trimKey(): string {
    return `${this.prefix}:trim`;
  }

  async info(channel: string): Promise<ChannelInfo | undefined> {
    const reply = asArray(
      await this.#run('info', channel, [this.#key(channel, 'meta'), this.#key(channel, 'msgs')], []),
    );
    if (reply.length === 0) return undefined;
    const [epoch, seq, trimmed, count, prev = '', through = '', older = ''] = reply.map((v) => String(v));
    const seqN = Number(seq);
    const trimmedN = Number(trimmed);
    if (!epoch || !Number.isSafeInteger(seqN) || !Number.isSafeInteger(trimmedN))
      throw this.#corrupt(channel, 'meta hash holds a bad epoch, seq or trimmed');
    const info: ChannelInfo = {
      channel,
      epoch,
      head: headSerial(epoch, seqN),
      trimmedThrough: trimmedN,
      messageCount: Number(count),
    };
    if (prev !== '' && Number.isSafeInteger(Number(through)))
      info.previous = { epoch: prev, through: Number(through) };
    if (older !== '')
      info.older = older.split(',').map((entry) => {
        const [e = '', t = ''] = entry.split(':');
        return { epoch: e, through: Number(t) };
      });
    return info;
  }

  async readSince(
    channel: string,
    after: string | undefined,
    limit: number,
    maxBytes?: number,
  ): Promise<RolledUpPage> {
    let afterEpoch = '';
    let afterSeq = '0';
    if (after !== undefined) {
      const parts = parseSerial(after);
      if (!parts) throw new StoreError('invalid_serial', `'${after}' is not a serial`);
      afterEpoch = parts.epoch;
      afterSeq = String(parts.seq);
    }
    return this.#read(channel, [
      'since',
      String(Math.max(0, limit)),
      String(maxBytes ?? 0),
      afterEpoch,
      afterSeq,
    ]);
  }

  async history(channel: string, query: HistoryQuery): Promise<RolledUpPage> {
    const bound = (serial: string | undefined): [string, string] => {
      if (serial === undefined) return ['', '0'];
      const parts = parseSerial(serial);
      if (!parts) throw new StoreError('invalid_serial', `'${serial}' is not a serial`);
      return [parts.epoch, String(parts.seq)];
    };
    return this.#read(channel, [
      query.direction,
      String(Math.max(0, query.limit)),
      String(query.maxBytes ?? 0),
      ...bound(query.from),
      ...bound(query.until),
    ]);
  }

  async #read(channel: string, args: string[]): Promise<RolledUpPage> {
    const keys = [this.#key(channel, 'meta'), this.#key(channel, 'ver'), this.#key(channel, 'msgs')];
    const reply = asArray(await this.#run('read', channel, keys, args));
    if (reply.length === 0) return emptyPage();
    if (reply[0] === 'corrupt') throw this.#corrupt(channel, String(reply[1]));
    const epoch = String(reply[0]);
    const head = Number(reply[1]);
    try {
      const messages = reply.slice(3).map((entry) => decodeMessage(epoch, asArray(entry)));
      return { epoch, head: headSerial(epoch, head), messages, more: Number(reply[2]) === 1 };
    } catch (err) {
      throw this.#corrupt(channel, message(err));
    }
  }

  async trim(now: number = Date.now()): Promise<number> {
    if (this.#closed) throw closedError();
    const queue = this.#trimKey();
    let due: string[];
    try {
      await this.#migrateTrimSet(now);
      due = asArray(
        await this.#send(queue, [
          'ZRANGEBYSCORE',
          queue,
          '-inf',
          String(now),
          'LIMIT',
          '0',
          String(TRIM_CHANNELS),
        ]),
      ).map(String);
    } catch (err) {
      throw this.#toStoreError(err, '*');
    }
    let removed = 0;
    for (const channel of due) {
      let next = '';
      for (;;) {
        const r = asArray(
          await this.#run('trim', channel, this.#writeKeys(channel), [String(now), String(TRIM_BUDGET)]),
        );
        removed += Number(r[0]);
        next = String(r[2] ?? '');
        if (Number(r[1]) !== 1) break;
      }
      const retention = this.#retentionFor(channel);
      try {
        if (next !== '') await this.#send(queue, ['ZADD', queue, next, channel]);
        else if (Number.isFinite(retention))
          await this.#send(queue, ['ZADD', queue, String(now + retention), channel]);
        else await this.#send(queue, ['ZREM', queue, channel]);
      } catch (err) {
        throw this.#toStoreError(err, '*');
      }
    }
    return removed;
  }

  /** Moves a page of the set older versions kept (and scanned whole) into the trim queue, due now. */
  async #migrateTrimSet(now: number): Promise<void> {
    const old = `${this.prefix}:channels`;
    const moved = asArray(await this.#send(old, ['SRANDMEMBER', old, String(MIGRATE_CHUNK)])).map(String);
    if (moved.length === 0) return;
    const queue = this.#trimKey();
    // filed before they leave the old set: a crash in between cannot make a channel untrimmable
    await this.#send(queue, ['ZADD', queue, 'LT', ...moved.flatMap((channel) => [String(now), channel])]);
    await this.#send(old, ['SREM', old, ...moved]);
  }

  async ping(): Promise<void> {
    if (this.#closed) throw closedError();
    try {
      await this.connection.eachMaster(['PING']);
    } catch (err) {
      throw this.#toStoreError(err, '*');
    }
  }

  /** Waits for the commands in flight (every script already sent is answered), then disconnects. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wakes.destroy();
    // A NOSCRIPT or "Function not found" answer sends one more command: wait until nothing is in flight.
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
    try {
      await this.connection.close();
    } catch {
      this.connection.destroy();
    }
  }
}

function closedError(): StoreError {
  return new StoreError('store_unavailable', 'the Redis store is closed');
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

/** (publisher, id) as one hash field, length-prefixed so no two pairs collide. */
function dedupField(op: NewOperation): string {
  return dedupKey(op.publisher ?? '', op.id);
}

function encodeData(data: JsonValue | undefined, kind: DataKind): string {
  if (data === undefined || kind === 'none') return '';
  return kind === 'json' ? JSON.stringify(data) : (data as string);
}

/** The StoreError of a batch refused by publish.lua, with the same messages as the other stores. */
function batchError(
  ops: NewOperation[],
  code: string,
  index: number,
  detail: string,
  options: AppendOptions,
): StoreError {
  const op = ops[index];
  const serial = op?.serial ?? '';
  switch (code) {
    case 'out_of_order':
      return outOfOrder(options.after ?? '');
    case 'invalid_serial':
      return op?.serial === undefined
        ? new StoreError('invalid_serial', `an ${op?.action} needs the serial of its message`, index)
        : new StoreError('invalid_serial', `'${serial}' is not a serial`, index);
    case 'message_not_found':
      return new StoreError(
        'message_not_found',
        `no message ${serial} in this channel (it never existed, was removed by retention, or belongs to an older log)`,
        index,
      );
    case 'message_deleted':
      return new StoreError(
        'message_deleted',
        `message ${serial} was deleted; nothing can be applied to it`,
        index,
      );
    case 'not_owner':
      return new StoreError('not_owner', `message ${serial} was created by another client`, index);
    case 'version_changed':
      return new StoreError(
        'version_changed',
        `message ${serial} is at version ${detail}, not ${op?.ifVersion}: it changed since it was read`,
        index,
      );
    case 'not_appendable':
      return new StoreError(
        'not_appendable',
        `message ${serial} holds ${detail === 'base64' ? 'bytes' : 'a JSON value'}, not a string: use update to replace it`,
        index,
      );
    case 'bad_request':
      return new StoreError('bad_request', 'append data must be a plain string delta', index);
    case 'message_too_large':
      if (detail === 'ops') return tooManyOps(serial, options.maxMessageOps ?? 0, index);
      return new StoreError(
        'message_too_large',
        `message ${serial} would hold ${detail} bytes, over the limit of ${options.maxMessageSize}: start a new message`,
        index,
      );
    default:
      return new StoreError('internal', `the publish script refused op ${index}: ${code}`, index);
  }
}

/** A message of a read.lua page: {msgSeq, {field, value, ...}, data}. Throws on a malformed one. */
function decodeMessage(epoch: string, entry: unknown[]): Message {
  const seq = Number(entry[0]);
  const flat = asArray(entry[1]).map(String);
  const f = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) f.set(flat[i]!, flat[i + 1]!);
  const raw = String(entry[2] ?? '');
  const kind = f.get('k') as DataKind | undefined;
  const version = Number(f.get('v'));
  const ts = Number(f.get('ts'));
  const id = f.get('id');
  if (
    !Number.isSafeInteger(seq) ||
    !Number.isSafeInteger(version) ||
    !Number.isFinite(ts) ||
    id === undefined ||
    (kind !== 'none' && kind !== 'string' && kind !== 'json' && kind !== 'base64')
  )
    throw new Error(`message ${seq} has missing or malformed fields`);
  let data: JsonValue | undefined;
  if (kind === 'json') data = JSON.parse(raw) as JsonValue;
  else if (kind !== 'none') data = raw;
  const hd = f.get('hd');
  return rolledUp({
    serial: formatSerial(epoch, seq),
    version: formatSerial(epoch, version),
    changed: f.get('ch') === '1',
    deleted: f.get('del') === '1',
    id,
    name: f.get('nm'),
    data,
    encoding: f.get('en') === 'base64' ? 'base64' : undefined,
    headers: hd === undefined ? undefined : (JSON.parse(hd) as Headers),
    clientId: f.get('cid'),
    timestamp: ts,
  });
}
