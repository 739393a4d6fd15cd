/**
 * Connection budgets counted across nodes, in Redis (PROTOCOL.md §10, §15): a client spread over
 * several nodes (a balancer without affinity) holds `maxConnectionsPerKey`, the key's reserve,
 * `maxConnectionsPerClient` and `maxAnonymousConnectionsPerKey` once, not once per node.
 *
 * Keys, all in one hash slot (`{conns}`) for Redis Cluster:
 * - `<prefix>:{conns}:open`: budget name → connections open under it on every node;
 * - `<prefix>:{conns}:node:<id>`: the same for one node only, its share of the totals;
 * - `<prefix>:{conns}:alive:<id>`: the node is alive (expires `nodeTtl` after its last refresh);
 * - `<prefix>:{conns}:nodes`: the nodes that count.
 *
 * - A connection request is checked and counted in one script (TAKE): every name under its limit,
 *   then one more in the totals and in the node's share. Requests racing through several nodes so
 *   count together. Its end is given back (GIVE, not awaited), from the node's share first: what a
 *   node no longer has a share of is not taken from the totals twice.
 * - A node that dies leaves its share behind until its liveness key expires; then any node's sweep
 *   gives it back (RECLAIM, which checks the liveness key itself, so a node that is only slow keeps
 *   its share). A node that closes gives its share back at once.
 * - Drift: the node keeps its own counts in memory (`#mine`, counted when a request is sent, so it
 *   includes requests in flight). When a count may differ from Redis's — a command failed or its
 *   answer was lost, or Redis lost the node's share (declared dead while only out of reach, a Redis
 *   restart: its next refresh adds it to the nodes again), or the share may be an older one (a Redis
 *   with a new run_id: restarted, restored from a snapshot or failed over, it may still list the node
 *   with the share it had when the snapshot was taken) — the next sweep writes its share again
 *   from memory (RECLAIM of itself, then SET), every command of it sent at once, in order after
 *   what this node sent before.
 */
import {
  type ConnectionCounts,
  type CountCheck,
  LocalConnectionCounts,
  tooManyConnections,
} from './connection-counts.ts';
import { RedisScript, redisUnavailable } from './redis-script.ts';
import type { RedisConnection } from './store/redis-connection.ts';
import { RUN_ID_LUA } from './store/redis-run-id.ts';

export interface RedisConnectionCountsOptions {
  connection: RedisConnection;
  prefix: string;
  /** This node's id (the node bus's). */
  nodeId: string;
  /** The node's liveness key lives this long without a refresh, ms (default 3,000). */
  nodeTtl?: number;
  /** How often the node refreshes its liveness and looks for dead nodes' shares, ms (default 1,000). */
  sweepInterval?: number;
  onError: (err: unknown) => void;
}

/** KEYS: totals, the node's share. ARGV: name, limit pairs. → 0 (counted) or {check index, open}. */
const TAKE = new RedisScript(`
local n = #ARGV / 2
for i = 1, n do
  local open = tonumber(redis.call('HGET', KEYS[1], ARGV[2 * i - 1]) or '0')
  if open >= tonumber(ARGV[2 * i]) then return {i, open} end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[1], ARGV[2 * i - 1], 1)
  redis.call('HINCRBY', KEYS[2], ARGV[2 * i - 1], 1)
end
return 0
`);

/** KEYS: totals, the node's share. ARGV: names. Counts one less where the node has a share. */
const GIVE = new RedisScript(`
for _, name in ipairs(ARGV) do
  local mine = redis.call('HINCRBY', KEYS[2], name, -1)
  if mine <= 0 then redis.call('HDEL', KEYS[2], name) end
  if mine >= 0 and redis.call('HINCRBY', KEYS[1], name, -1) <= 0 then redis.call('HDEL', KEYS[1], name) end
end
return 0
`);

/**
 * KEYS: totals, a node's share, its liveness key, the nodes. ARGV: node id, mode: 'dead' (only if
 * its liveness key expired; then it is no node any more), 'leave' (its own, closing), 'sync' (its
 * own share only, written again next). → -1 (alive: nothing done), else the names given back.
 */
const RECLAIM = new RedisScript(`
if ARGV[2] == 'dead' and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local flat = redis.call('HGETALL', KEYS[2])
for i = 1, #flat, 2 do
  if redis.call('HINCRBY', KEYS[1], flat[i], -tonumber(flat[i + 1])) <= 0 then redis.call('HDEL', KEYS[1], flat[i]) end
end
redis.call('DEL', KEYS[2])
if ARGV[2] ~= 'sync' then
  redis.call('SREM', KEYS[4], ARGV[1])
  if ARGV[2] == 'leave' then redis.call('DEL', KEYS[3]) end
end
return #flat / 2
`);

/** KEYS: totals, the node's share. ARGV: name, count pairs: the node's share set to them. */
const SET = new RedisScript(`
for i = 1, #ARGV, 2 do
  local name, count = ARGV[i], tonumber(ARGV[i + 1])
  local old = tonumber(redis.call('HGET', KEYS[2], name) or '0')
  if count ~= old then
    if count > 0 then redis.call('HSET', KEYS[2], name, count) else redis.call('HDEL', KEYS[2], name) end
    if redis.call('HINCRBY', KEYS[1], name, count - old) <= 0 then redis.call('HDEL', KEYS[1], name) end
  end
end
return 0
`);

/**
 * KEYS: the node's liveness key, the nodes. ARGV: node id, ttl. → {1 when the node was not listed,
 * the run_id of the Redis ('' when it does not say)}.
 */
const BEAT = new RedisScript(`${RUN_ID_LUA}
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
local joined = redis.call('SADD', KEYS[2], ARGV[1])
return {joined, runId()}
`);

/** Names per SET command when the node writes its share again. */
const SYNC_BATCH = 500;

export class RedisConnectionCounts implements ConnectionCounts {
  readonly #o: RedisConnectionCountsOptions;
  readonly #mine = new LocalConnectionCounts();
  readonly #nodeTtl: number;
  readonly #timer: NodeJS.Timeout;
  /** This node's share in Redis may differ from `#mine`: the next sweep writes it again. */
  #dirty = true;
  /** Writes of the share sent so far (a take answered across one may have been counted wrong). */
  #syncs = 0;
  #sweeping = false;
  #closed = false;
  /** The run_id of the Redis that answered the last sweep. */
  #run: string | undefined;

  constructor(options: RedisConnectionCountsOptions) {
    this.#o = options;
    this.#nodeTtl = options.nodeTtl ?? 3_000;
    this.#timer = setInterval(() => this.#sweep(), options.sweepInterval ?? 1_000);
    this.#timer.unref();
    this.#sweep();
  }

  async take(checks: readonly CountCheck[]): Promise<void> {
    const names = checks.map((check) => check.name);
    const args: string[] = [];
    for (const check of checks) args.push(check.name, String(check.limit));
    // counted here from now: a write of the share sent meanwhile includes it, after it in Redis
    this.#mine.add(names);
    const syncs = this.#syncs;
    let answer: unknown;
    try {
      answer = await TAKE.run(this.#o.connection, this.#ownKeys, args);
    } catch (err) {
      this.#mine.give(names);
      this.#dirty = true; // counted in Redis or not: unknown
      throw redisUnavailable(err, 'the connection budgets');
    }
    if (Array.isArray(answer)) {
      this.#mine.give(names);
      if (this.#syncs !== syncs) this.#dirty = true; // a write of the share counted it
      const check = checks[Number(answer[0]) - 1];
      if (check) throw tooManyConnections(check, Number(answer[1]), ' on all nodes');
    }
  }

  add(names: readonly string[]): void {
    this.#mine.add(names);
    if (this.#closed) return;
    const unchecked = names.flatMap((name) => [name, String(Number.MAX_SAFE_INTEGER)]);
    TAKE.run(this.#o.connection, this.#ownKeys, unchecked).catch(this.#lost);
  }

  give(names: readonly string[]): void {
    this.#mine.give(names);
    if (this.#closed) return;
    GIVE.run(this.#o.connection, this.#ownKeys, [...names]).catch(this.#lost);
  }

  /** A write of the share not awaited failed: Redis may or may not have it, so it is written again. */
  readonly #lost = (err: unknown): void => {
    this.#dirty = true;
    this.#o.onError(err);
  };

  /** Gives this node's share back (its connections are closed or being closed). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#reclaim(this.#o.nodeId, 'leave').catch(this.#o.onError);
  }

  #sweep(): void {
    if (this.#closed || this.#sweeping) return;
    this.#sweeping = true;
    this.#pass()
      .catch(this.#o.onError)
      .finally(() => {
        this.#sweeping = false;
      });
  }

  /** Every sweep: alive; the share written again if it may be wrong; dead nodes' shares given back. */
  async #pass(): Promise<void> {
    const { connection, nodeId } = this.#o;
    const [joined, runId] = (await BEAT.run(
      connection,
      [this.#alive(nodeId), this.#nodes],
      [nodeId, String(this.#nodeTtl)],
    )) as [unknown, unknown];
    const run = String(runId ?? '');
    if (Number(joined) === 1) this.#dirty = true; // Redis did not list this node: its share is gone
    // Another Redis (restarted, restored from a snapshot, failed over) may hold a share this node had
    // before or after the one it has now, and still list the node: written again all the same
    if (run !== '' && this.#run !== undefined && run !== this.#run) this.#dirty = true;
    if (run !== '') this.#run = run;
    if (this.#dirty) await this.#sync();
    const nodes = (await connection.send(this.#nodes, ['SMEMBERS', this.#nodes], true)) as unknown[];
    for (const node of nodes.map(String))
      if (node !== nodeId && !this.#closed) await this.#reclaim(node, 'dead');
  }

  /** Writes this node's share again from `#mine`: every command sent at once, so in one order. */
  async #sync(): Promise<void> {
    this.#dirty = false;
    this.#syncs++;
    const { connection, nodeId } = this.#o;
    const keys = this.#ownKeys;
    const sent: Promise<unknown>[] = [this.#reclaim(nodeId, 'sync')];
    let args: string[] = [];
    for (const [name, count] of this.#mine.entries()) {
      args.push(name, String(count));
      if (args.length >= 2 * SYNC_BATCH) {
        sent.push(SET.run(connection, keys, args));
        args = [];
      }
    }
    if (args.length > 0) sent.push(SET.run(connection, keys, args));
    const results = await Promise.allSettled(sent);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      this.#dirty = true;
      throw failed.reason;
    }
  }

  #reclaim(node: string, mode: 'dead' | 'leave' | 'sync'): Promise<unknown> {
    return RECLAIM.run(
      this.#o.connection,
      [this.#totals, this.#share(node), this.#alive(node), this.#nodes],
      [node, mode],
    );
  }

  get #totals(): string {
    return `${this.#o.prefix}:{conns}:open`;
  }

  /** The keys of TAKE, GIVE and SET: the totals and this node's share. */
  get #ownKeys(): string[] {
    return [this.#totals, this.#share(this.#o.nodeId)];
  }

  get #nodes(): string {
    return `${this.#o.prefix}:{conns}:nodes`;
  }

  #share(node: string): string {
    return `${this.#o.prefix}:{conns}:node:${node}`;
  }

  #alive(node: string): string {
    return `${this.#o.prefix}:{conns}:alive:${node}`;
  }
}
