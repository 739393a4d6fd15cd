/**
 * Presence on Redis (PROTOCOL.md §6.4, §15): the same sets and events as the node-local
 * `PresenceService`, visible from every node, and a dead node's members leave on their own.
 *
 * - Each channel's members are one hash, `<prefix>:{<channel>}:presence` (connectionId → the node
 *   holding it, its data size, the member as JSON), under the channel's hash tag. Every change runs
 *   one script that checks, writes and announces the event on the channel's presence bus
 *   (`<prefix>:presence:{<channel>}`, sharded pub/sub) atomically, so each enter/update/leave is
 *   announced once, whichever nodes race. Nodes with local listeners subscribe the bus.
 * - A dropped connection's members leave after the grace unless it is recovered (on any node). The
 *   leave is conditional on the member still being held by this node: a connection recovered
 *   elsewhere took its members over ("rehome", nothing announced), so no flap.
 * - What a connection is present in is also kept per connection (`<prefix>:presence-connection:<id>`,
 *   refreshed by its node, TTL the recovery window), so the node that recovers it can take its
 *   members over, or make them enter again if they had left.
 * - Node loss: every node refreshes `<prefix>:node:<id>` (TTL `nodeTtl`) and lists the members it
 *   holds in `<prefix>:presence-node:<id>` (`[channel, connectionId]` JSON; no TTL): listed after
 *   the script that made it their holder answered, and taken out after one that says it no longer
 *   holds them (a leave, its grace's end, a let-go, one its enter replaced, a recovery elsewhere
 *   that took them over), so the index holds what the node holds, plus at most what a crash
 *   between left behind. Every node sweeps (one sweep at a time): a listed node whose key expired
 *   is dead; from when a sweeper first saw it dead (`<prefix>:node-dead:<id>`, set once) its
 *   members leave after the grace, through the same conditional script, so sweepers racing
 *   announce each leave once; the index is walked in batches, each batch's leaves sent together.
 * - Budgets: `maxMembers` per channel is checked inside the script; so is `maxMembersPerClient`,
 *   from a second hash under the channel's tag (`<prefix>:{<channel>}:presence-clients`) that the
 *   script keeps with every change: per clientId its members there and which of them dropped (marked
 *   by the node that saw the drop, or by the sweeper that first saw their node dead), so nodes racing
 *   count as one and a new member replaces the oldest dropped ones first. The per-connection budgets are
 *   kept by the node holding the connection (a connection is on one node at a time). What dropped
 *   connections keep (members in their grace, then their records for a recovery) is bounded per
 *   clientId by `maxDroppedBytesPerClient`, for all nodes together: a ledger per clientId
 *   (`<prefix>:{presence-dropped:<clientId>}`, a sorted set by drop time and a hash of costs) is
 *   kept by one script. Past the bound, the oldest dropped connections are let go: their records are
 *   deleted (a recovery enters nothing again) and their members leave now, if the node that dropped
 *   them still holds them.
 *
 * - A Redis that lost members or has them back from before they left (restarted from an older
 *   snapshot, failed over, flushed): a beat that finds a new run_id, or this node no longer listed,
 *   writes the members of the connections held here again (kept as entered, `#held`; entered again
 *   where missing) and makes those Redis lists for this node but it does not hold leave (`#heal`).
 *   On a Redis Cluster the run_ids of every master are watched (members live on all of them).
 *
 * Presence events travel over pub/sub, which may lose one (a reconnect); the `sync` sent on attach
 * is read from the hash and is always complete. Attaches that come while a read is under way share
 * it, and a large set's frame is kept for the next ones (`syncFrame`) until the bus brings the
 * channel's next event, the bus reconnects, or a second has passed (the bound on what a lost event
 * can leave behind: a Cluster's shards resubscribe without telling).
 *
 * Members are written as JSON (the data serialised once, as the budget counts it), and the `sync`
 * frame is built from the stored JSON without parsing it. The node keeps the JSON of its own
 * connections' members (bounded by the per-connection budgets) only to write them again.
 */
import { randomBytes } from 'node:crypto';
import type { JsonValue, PresenceMember } from '@mooring/protocol';
import {
  clientFull,
  encodeSync,
  memberJson,
  type Presence,
  type PresenceListener,
  type PresenceOptions,
  SYNC_KEPT_FROM,
} from './presence.ts';
import { PresenceBudget } from './presence-budget.ts';
import { PresenceFanOut, presenceMemberId } from './presence-fan-out.ts';
import { RedisScript, redisRetryDelay, redisUnavailable } from './redis-script.ts';
import { ServerError } from './server-error.ts';
import type { BusConnection, RedisConnection } from './store/redis-connection.ts';
import { RUN_ID_LUA, runIdOf } from './store/redis-run-id.ts';

export interface RedisPresenceOptions extends PresenceOptions {
  connection: RedisConnection;
  prefix: string;
  /** This node's liveness key lives this long without a refresh, ms (default 3,000). */
  nodeTtl?: number;
  /** How often the node refreshes its key and sweeps for dead nodes, ms (default 1,000). */
  sweepInterval?: number;
  /**
   * A beat found Redis to be another instance than the last one (a restart, a restored snapshot, a
   * failover; on a Cluster, any master): `previous` and `current` are the run_ids as read.
   */
  onNewRedis?: (previous: string, current: string) => void;
  onError: (err: unknown) => void;
  /** How long a large set's `sync` frame is sent again without an event from the bus, ms (default 1,000). */
  syncKeptFor?: number;
}

/**
 * KEYS: the channel's members hash, its clients hash. ARGV: op, connectionId, node, now, bus, channel
 * (JSON), then per op:
 *   enter:  size, member (JSON), maxMembers, maxMembersPerClient
 *                                                  → 'full' | 'client-full' | 'update' | 'enter', or
 *                                                    {'enter', id, holder, …}: the members it replaced
 *   leave:  ('' node: whoever holds it)            → 1 if it left (and was announced), else 0
 *   rehome: (silently take it over)                → the stored member JSON, or false if absent
 *   restore: size, member (JSON), dropped at       → 1 if written (entered again if absent), 0 if held
 *            ('0': connected)                         by this node already, or (dropped here) by another
 *   drop:   (its connection dropped on `node`)     → 1 if marked, else 0
 * A stored value is `<node>\n<size>\n<member JSON>`.
 *
 * The clients hash keeps `maxMembersPerClient`: per clientId (its JSON, as the member starts with
 * it) its members here, a line `<dropped at> <connectionId>` each, 0 while connected. At the cap, a
 * new member replaces the oldest dropped ones (they leave, announced) or, with none to spare, is
 * refused; lines whose member is gone (left through an older node, which does not keep them) are
 * dropped then.
 */
const PRESENCE_SCRIPT = `
local key, clients = KEYS[1], KEYS[2]
local op, id, node, now, bus, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local function frame(action, member)
  return '{"type":"presence","channel":' .. channel .. ',"action":"' .. action .. '","member":' .. member .. '}'
end
local function announceLeave(member)
  local left = string.gsub(member, '"timestamp":%d+', '"timestamp":' .. now, 1)
  redis.call('SPUBLISH', bus, frame('leave', left))
end
local function clientOf(member)
  return string.match(member, '^{"clientId":(".-"),"connectionId":')
end
local function linesOf(client)
  local list = {}
  for at, cid in string.gmatch(redis.call('HGET', clients, client) or '', '(%d+) ([^\\n]+)') do
    list[#list + 1] = {cid, at}
  end
  return list
end
local function save(client, list)
  if #list == 0 then
    redis.call('HDEL', clients, client)
    return
  end
  local lines = {}
  for i, e in ipairs(list) do lines[i] = e[2] .. ' ' .. e[1] end
  redis.call('HSET', clients, client, table.concat(lines, '\\n'))
end
-- the line of member cid: when its connection dropped ('0': connected; a drop keeps the first),
-- or none (nil)
local function mark(member, cid, at)
  local client = clientOf(member)
  if not client then return end
  local list = linesOf(client)
  local found
  for i, e in ipairs(list) do
    if e[1] == cid then found = i end
  end
  if not found then
    if not at then return end
    list[#list + 1] = {cid, at}
  elseif not at then
    table.remove(list, found)
  elseif at ~= '0' and list[found][2] ~= '0' then
    return
  else
    list[found][2] = at
  end
  save(client, list)
end
local current = redis.call('HGET', key, id)
if op == 'restore' then
  local holder = current and string.match(current, '^([^\\n]*)\\n')
  -- dropped here and held by another node now: recovered there (while Redis was away); its claim
  -- stands, and this node's grace leave, conditional on holding it, then lets it be
  if holder and holder ~= node and ARGV[9] ~= '0' then return 0 end
  mark(ARGV[8], id, ARGV[9])
  if holder == node then return 0 end
  redis.call('HSET', key, id, node .. '\\n' .. ARGV[7] .. '\\n' .. ARGV[8])
  if not current then redis.call('SPUBLISH', bus, frame('enter', ARGV[8])) end
  return 1
end
if op == 'enter' then
  local member = ARGV[8]
  if current then
    redis.call('HSET', key, id, node .. '\\n' .. ARGV[7] .. '\\n' .. member)
    mark(member, id, '0')
    redis.call('SPUBLISH', bus, frame('update', member))
    return 'update'
  end
  local client, max = clientOf(member), tonumber(ARGV[10])
  local replaced = {}
  if client and max > 0 then
    local list = linesOf(client)
    if #list >= max then
      -- at the cap: lines whose member is gone go, then the oldest dropped members make room
      local kept, dropped = {}, {}
      for _, e in ipairs(list) do
        if redis.call('HEXISTS', key, e[1]) == 1 then
          kept[#kept + 1] = e
          if e[2] ~= '0' then dropped[#dropped + 1] = e end
        end
      end
      if #kept < #list then save(client, kept) end
      local over = #kept - max + 1
      if over > #dropped then return 'client-full' end
      table.sort(dropped, function(a, b) return tonumber(a[2]) < tonumber(b[2]) end)
      for i = 1, over do replaced[i] = dropped[i][1] end
    end
  end
  if redis.call('HLEN', key) - #replaced >= tonumber(ARGV[9]) then return 'full' end
  local out = {'enter'}
  for _, gone in ipairs(replaced) do
    local value = redis.call('HGET', key, gone)
    local json = string.match(value, '^[^\\n]*\\n[^\\n]*\\n(.*)$') or value
    redis.call('HDEL', key, gone)
    mark(json, gone, nil)
    announceLeave(json)
    out[#out + 1] = gone
    out[#out + 1] = string.match(value, '^([^\\n]*)\\n') or ''
  end
  redis.call('HSET', key, id, node .. '\\n' .. ARGV[7] .. '\\n' .. member)
  mark(member, id, '0')
  redis.call('SPUBLISH', bus, frame('enter', member))
  if #out > 1 then return out end
  return 'enter'
end
if not current then return op == 'leave' and 0 or false end
local holder, size, member = string.match(current, '^([^\\n]*)\\n([^\\n]*)\\n(.*)$')
if not holder then
  redis.call('HDEL', key, id)
  mark(current, id, nil)
  return op == 'leave' and 0 or false
end
if op == 'leave' then
  if node ~= '' and holder ~= node then return 0 end
  redis.call('HDEL', key, id)
  mark(member, id, nil)
  announceLeave(member)
  return 1
end
if op == 'drop' then
  if holder ~= node then return 0 end
  mark(member, id, now)
  return 1
end
redis.call('HSET', key, id, node .. '\\n' .. size .. '\\n' .. member)
mark(member, id, '0')
return member
`;

const script = new RedisScript(PRESENCE_SCRIPT);

/**
 * KEYS: the nodes. ARGV: this node's id. → {1 when the node was not listed, else 0; the run_id of
 * the Redis ('' when it does not say)}.
 */
const BEAT = new RedisScript(`${RUN_ID_LUA}
local added = redis.call('SADD', KEYS[1], ARGV[1])
return {added, runId()}
`);

/**
 * The dropped connections of one clientId. KEYS: the sorted set (connectionId by drop time), the hash
 * (connectionId → `<node>\n<cost>`, and '' → the total cost). ARGV: op, connectionId, now, then
 *   add:    cost, max, window, node → the connections let go, flat: id, node, id, node, …
 *   remove:                         → 1 if it was counted, else 0
 * Entries older than `window` (their records expired) are dropped first; the one just added is never
 * let go. Both keys live `window` after the last add and are deleted when they count nothing.
 */
const DROPPED_SCRIPT = `
local order, costs = KEYS[1], KEYS[2]
local op, id, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local total = tonumber(redis.call('HGET', costs, '') or '0')
local function uncount(gone)
  local value = redis.call('HGET', costs, gone)
  if not value then return nil end
  local node, cost = string.match(value, '^(.*)\\n(%d+)$')
  total = total - (tonumber(cost) or 0)
  redis.call('HDEL', costs, gone)
  redis.call('ZREM', order, gone)
  return node or ''
end
local function settle()
  if redis.call('ZCARD', order) == 0 then
    redis.call('DEL', order, costs)
  else
    redis.call('HSET', costs, '', total)
  end
end
if op == 'remove' then
  local found = uncount(id)
  settle()
  return found and 1 or 0
end
local cost, max, window, node = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', order, '-inf', now - window)) do uncount(gone) end
uncount(id)
redis.call('ZADD', order, now, id)
redis.call('HSET', costs, id, node .. '\\n' .. cost)
total = total + cost
local let_go = {}
while total > max do
  local oldest = redis.call('ZRANGE', order, 0, 0)[1]
  if not oldest or oldest == id then break end
  local held_by = uncount(oldest)
  table.insert(let_go, oldest)
  table.insert(let_go, held_by)
end
settle()
redis.call('PEXPIRE', order, window)
redis.call('PEXPIRE', costs, window)
return let_go
`;

const droppedScript = new RedisScript(DROPPED_SCRIPT);

interface Feed {
  listeners: number;
  ready: Promise<void>;
  linger: NodeJS.Timeout | undefined;
  /**
   * Counts the events the bus brought for the channel (and its reconnects): a read made while it
   * did not move saw every change made before the read's end that a listener will not be told of.
   */
  changes: number;
  /** The read of the `sync` frame under way, shared by the attaches that come meanwhile. */
  reading: Promise<SyncRead> | undefined;
  /** A large set's `sync` frame, as read when `changes` had this value, and when. */
  kept: { frame: Buffer; changes: number; at: number } | undefined;
}

interface SyncRead {
  frame: Buffer;
  /** No event came while it was read: good for every attach that listened before its end. */
  shared: boolean;
}

/** How long a kept `sync` frame is sent without an event from the bus, ms. */
const SYNC_KEPT_FOR = 1_000;

/** Entries of a dead node's index handled together by a sweep: read, left and removed, per batch. */
const SWEEP_BATCH = 256;

/**
 * How long a node checks whether a connection recovered elsewhere had its members taken over, ms:
 * longer than the recovering node keeps trying (`#takeOver`: ten tries, 33 s of waits between).
 */
const MOVED_CHECKED_FOR = 60_000;

export class RedisPresence implements Presence {
  /** This node's id in Redis (random per process). */
  readonly nodeId = `n_${randomBytes(6).toString('base64url')}`;
  readonly #o: RedisPresenceOptions;
  readonly #nodeTtl: number;
  readonly #listeners: PresenceFanOut;
  readonly #feeds = new Map<string, Feed>();
  /** Per connection held here: its channels and the bytes of its data in each. */
  readonly #budget: PresenceBudget;
  readonly #pendingLeaves = new Map<string, NodeJS.Timeout>();
  /** The clientId of each connection present here (for its clientId's ledger when it drops). */
  readonly #clientOf = new Map<string, string>();
  readonly #sweep: NodeJS.Timeout;
  #bus: Promise<BusConnection> | undefined;
  #recordsRefreshedAt = 0;
  #closed = false;
  /**
   * The members of the connections held here, as entered (connectionId → channel → JSON and data
   * size): written again if Redis lost them (`#heal`).
   */
  readonly #held = new Map<string, Map<string, { json: string; size: number }>>();
  /** Connections recovered here whose members are still being taken over (`#takeOver`). */
  readonly #resuming = new Set<string>();
  /** The run_id of the Redis that answered the last beat ('' when it does not say); none before the first. */
  #redisRun: string | undefined;
  /** On a Cluster, the run_ids of its masters as the last beat read them (sorted, joined). */
  #mastersRun: string | undefined;
  #healing = false;
  /** A heal is due: a beat saw Redis change, and no heal has gone through since (retried each beat). */
  #healOwed = false;
  /** A sweep for dead nodes is under way: the next beat does not start another (a large index takes long). */
  #sweeping = false;
  /**
   * Connections recovered on another node (`connectionMoved`): the channels whose members this
   * node's index still lists, until the other node has taken them over (checked each beat).
   */
  readonly #movedAway = new Map<string, { channels: Set<string>; until: number }>();

  constructor(options: RedisPresenceOptions) {
    this.#listeners = new PresenceFanOut(options.fanOut);
    this.#o = options;
    this.#nodeTtl = options.nodeTtl ?? 3_000;
    this.#budget = new PresenceBudget(options);
    this.#busConnection().catch(options.onError);
    this.#beat();
    this.#sweep = setInterval(() => {
      this.#beat();
      this.#unindexMoved();
      if (this.#sweeping) return;
      this.#sweeping = true;
      this.#sweepDeadNodes()
        .catch(this.#o.onError)
        .finally(() => {
          this.#sweeping = false;
        });
    }, options.sweepInterval ?? 1_000);
    this.#sweep.unref();
  }

  async members(channel: string): Promise<PresenceMember[]> {
    const members: PresenceMember[] = [];
    for (const value of await this.#read(channel)) {
      const member = decodeMember(value);
      if (member) members.push(member);
    }
    return members;
  }

  /**
   * `HLEN` of the channel's hash: no member is read, and no bus subscription is made (nobody
   * listens after a count, unlike after `members`).
   */
  async count(channel: string): Promise<number> {
    const key = this.#key(channel);
    try {
      return Number(await this.#o.connection.send(key, ['HLEN', key], true));
    } catch (err) {
      throw redisUnavailable(err, 'presence');
    }
  }

  /**
   * The attach's listener is subscribed before this is asked for (connection.ts), so a frame read
   * while no event arrived holds everything the listener will not be told: the frame of a read
   * under way, or one kept since, serves it. A read that saw an event come serves only an attach
   * that reads again on its own.
   */
  async syncFrame(channel: string): Promise<Buffer> {
    const feed = this.#feed(channel);
    const kept = feed.kept;
    if (
      kept &&
      kept.changes === feed.changes &&
      Date.now() - kept.at < (this.#o.syncKeptFor ?? SYNC_KEPT_FOR)
    )
      return kept.frame;
    // a read this attach starts is good for it whatever comes meanwhile: it listened first
    const mine = feed.reading === undefined;
    const read = await (feed.reading ?? this.#readSync(channel, feed));
    return read.shared || mine ? read.frame : encodeSync(channel, await this.memberJsons(channel));
  }

  #readSync(channel: string, feed: Feed): Promise<SyncRead> {
    const reading = (async (): Promise<SyncRead> => {
      await feed.ready.catch(() => {});
      const before = feed.changes;
      const members = await this.memberJsons(channel);
      const frame = encodeSync(channel, members);
      // still the channel's feed: its subscription answered (a failed one is dropped before this runs)
      const shared = feed.changes === before && this.#feeds.get(channel) === feed;
      if (shared && members.length >= SYNC_KEPT_FROM) feed.kept = { frame, changes: before, at: Date.now() };
      return { frame, shared };
    })();
    feed.reading = reading;
    const done = () => {
      if (feed.reading === reading) feed.reading = undefined;
    };
    reading.then(done, done);
    return reading;
  }

  async memberJsons(channel: string): Promise<string[]> {
    const members: string[] = [];
    for (const value of await this.#read(channel)) {
      const json = storedJson(value);
      // as written by `enter` (JSON.stringify): taken as is; anything else is read and written again
      if (json.startsWith('{"clientId":"')) members.push(json);
      else {
        const member = decodeMember(value);
        if (member) members.push(JSON.stringify(member));
      }
    }
    return members;
  }

  /** The stored values of the channel's members. */
  async #read(channel: string): Promise<string[]> {
    // A listener usually follows (attach): have the bus subscribed first, so no event falls between.
    const feed = this.#feed(channel);
    this.#linger(channel, feed);
    await feed.ready.catch(() => {});
    const key = this.#key(channel);
    let flat: unknown[];
    try {
      flat = (await this.#o.connection.send(key, ['HGETALL', key], true)) as unknown[];
    } catch (err) {
      throw redisUnavailable(err, 'presence');
    }
    const values: string[] = [];
    for (let i = 1; i < flat.length; i += 2) values.push(String(flat[i]));
    return values;
  }

  channelsOf(connectionId: string): string[] {
    return this.#budget.channelsOf(connectionId);
  }

  async enter(
    channel: string,
    connectionId: string,
    clientId: string,
    data: JsonValue | undefined,
    size?: number,
    dataJson?: string,
  ): Promise<void> {
    const text = data === undefined ? undefined : (dataJson ?? JSON.stringify(data));
    const bytes = size ?? (text === undefined ? 0 : Buffer.byteLength(text));
    // counted from now: the enters a connection sends together each see the others
    const taken = this.#budget.take(connectionId, channel, bytes);
    this.#clientOf.set(connectionId, clientId);
    const json = memberJson({ clientId, connectionId, timestamp: Date.now(), data: text });
    const perClient = this.#o.maxMembersPerClient ?? 0;
    const reply = await this.#run(channel, 'enter', connectionId, this.nodeId, [
      String(bytes),
      json,
      String(this.#o.maxMembers),
      String(perClient),
    ]).catch((err: unknown) => {
      taken.undo();
      throw redisUnavailable(err, 'presence');
    });
    const [outcome, ...replaced]: unknown[] = Array.isArray(reply) ? reply.map(String) : [reply];
    if (outcome === 'full') {
      taken.undo();
      throw new ServerError(
        'too_many_members',
        `channel ${channel} already has ${this.#o.maxMembers} presence members; try again later`,
      );
    }
    if (outcome === 'client-full') {
      taken.undo();
      throw clientFull(channel, clientId, perClient);
    }
    taken.kept();
    this.#remember(connectionId, channel, json, bytes);
    // the oldest dropped members it replaced (`maxMembersPerClient`) are out of their node's index:
    // here at once; another node's when it runs their leave at its grace's end, or its recovery finds
    // them gone: only that node orders the SREM before an enter of its own again
    for (let i = 0; i + 1 < replaced.length; i += 2)
      if (replaced[i + 1] === this.nodeId) this.#unindex(channel, String(replaced[i]));
  }

  leave(channel: string, connectionId: string): void {
    this.#budget.remove(connectionId, channel);
    this.#held.get(connectionId)?.delete(channel);
    const record = this.#recordKey(connectionId);
    this.#o.connection.send(record, ['HDEL', record, channel]).catch(this.#o.onError);
    this.#leave(channel, connectionId, '').catch(this.#o.onError);
  }

  connectionClosed(connectionId: string): void {
    this.#resuming.delete(connectionId);
    this.#cancelPendingLeave(connectionId);
    const channels = this.channelsOf(connectionId);
    this.#budget.forget(connectionId);
    this.#held.delete(connectionId);
    this.#clientOf.delete(connectionId);
    for (const channel of channels) this.#leave(channel, connectionId, '').catch(this.#o.onError);
    const record = this.#recordKey(connectionId);
    this.#o.connection.send(record, ['DEL', record]).catch(this.#o.onError);
  }

  connectionLost(connectionId: string): void {
    this.#resuming.delete(connectionId);
    if (!this.#budget.isPresent(connectionId)) return;
    this.#cancelPendingLeave(connectionId);
    this.#countDropped(connectionId).catch(this.#o.onError);
    // in Redis too: a new member of its clientId at `maxMembersPerClient` replaces these first
    for (const channel of this.channelsOf(connectionId))
      this.#run(channel, 'drop', connectionId, this.nodeId, []).catch(this.#o.onError);
    const timer = setTimeout(() => {
      this.#pendingLeaves.delete(connectionId);
      const channels = this.channelsOf(connectionId);
      this.#budget.forget(connectionId);
      this.#held.delete(connectionId);
      this.#clientOf.delete(connectionId);
      // only if still held here: a recovery on another node took the members over
      for (const channel of channels) this.#leave(channel, connectionId, this.nodeId).catch(this.#o.onError);
    }, this.#o.grace);
    timer.unref();
    this.#pendingLeaves.set(connectionId, timer);
  }

  /**
   * Recovered here (whichever node held it): take its members over silently where they still are,
   * and make them enter again where they left (after the grace, or their node's death).
   */
  connectionResumed(connectionId: string, keeps: (channel: string) => boolean = () => true): void {
    this.#cancelPendingLeave(connectionId);
    this.#movedAway.delete(connectionId);
    this.#resuming.add(connectionId);
    void this.#takeOver(connectionId, 0, keeps);
  }

  /**
   * `#resume`, made again with backoff while Redis cannot answer (a restart) and the connection is
   * still here: a take-over that failed left its members to the node that dropped it, which let
   * them leave after the grace — a client that recovered its connection does not enter again.
   */
  async #takeOver(connectionId: string, attempt: number, keeps: (channel: string) => boolean): Promise<void> {
    try {
      await this.#resume(connectionId, keeps);
      this.#resuming.delete(connectionId);
    } catch (err) {
      this.#o.onError(err);
      if (!this.#resuming.has(connectionId) || this.#closed || attempt >= 10) {
        this.#resuming.delete(connectionId);
        return;
      }
      setTimeout(
        () => {
          if (this.#resuming.has(connectionId) && !this.#closed)
            void this.#takeOver(connectionId, attempt + 1, keeps);
        },
        redisRetryDelay(attempt + 1),
      ).unref();
    }
  }

  connectionMoved(connectionId: string): void {
    this.#resuming.delete(connectionId);
    // dropped here before the recovery elsewhere was told (its grace running): counted among its
    // clientId's dropped connections after the recovering node took it out, so out again
    const counted = this.#pendingLeaves.has(connectionId) ? this.#clientOf.get(connectionId) : undefined;
    this.#cancelPendingLeave(connectionId);
    const channels = this.channelsOf(connectionId);
    if (channels.length > 0)
      this.#movedAway.set(connectionId, {
        channels: new Set(channels),
        until: Date.now() + MOVED_CHECKED_FOR,
      });
    this.#budget.forget(connectionId);
    this.#held.delete(connectionId);
    this.#clientOf.delete(connectionId);
    if (counted !== undefined)
      droppedScript
        .run(this.#o.connection, this.#ledgerKeys(counted), ['remove', connectionId, String(Date.now())])
        .catch(this.#o.onError);
  }

  /**
   * The connection dropped: counted in its clientId's ledger, with what it keeps (its data and a
   * record per member). The oldest dropped connections past `maxDroppedBytesPerClient` are let go.
   */
  async #countDropped(connectionId: string): Promise<void> {
    const clientId = this.#clientOf.get(connectionId);
    if (clientId === undefined) return;
    const cost = this.#budget.droppedCost(connectionId);
    const { grace, recoverWithin, maxDroppedBytesPerClient } = this.#o;
    const keys = this.#ledgerKeys(clientId);
    const letGo = (await droppedScript.run(this.#o.connection, keys, [
      'add',
      connectionId,
      String(Date.now()),
      String(cost),
      String(maxDroppedBytesPerClient),
      String(grace + Math.max(recoverWithin, this.#nodeTtl)),
      this.nodeId,
    ])) as unknown[];
    for (let i = 0; i + 1 < letGo.length; i += 2) await this.#letGo(String(letGo[i]), String(letGo[i + 1]));
  }

  /**
   * A dropped connection over its clientId's bound: its record goes (a recovery enters nothing
   * again) and its members leave now, if `node`, which dropped it, still holds them.
   */
  async #letGo(connectionId: string, node: string): Promise<void> {
    if (node === this.nodeId && this.#pendingLeaves.has(connectionId)) {
      this.#cancelPendingLeave(connectionId);
      this.#budget.forget(connectionId);
      this.#held.delete(connectionId);
      this.#clientOf.delete(connectionId);
    }
    const record = this.#recordKey(connectionId);
    const { connection } = this.#o;
    const flat = (await connection.send(record, ['HGETALL', record], true)) as unknown[];
    await connection.send(record, ['DEL', record]);
    // out of this node's index, if it held them; another node's entries go at that node's own leave
    // (its grace's end: it dropped them), ordered after any enter again there
    for (let i = 0; i + 1 < flat.length; i += 2)
      if (node === this.nodeId) await this.#leave(String(flat[i]), connectionId, node);
      else await this.#run(String(flat[i]), 'leave', connectionId, node, []);
  }

  /** `keeps`: the channels the recovered connection's credentials allow presence on (see Presence). */
  async #resume(connectionId: string, keeps: (channel: string) => boolean): Promise<void> {
    const record = this.#recordKey(connectionId);
    const flat = (await this.#o.connection.send(record, ['HGETALL', record], true)) as unknown[];
    let counted = false;
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const channel = String(flat[i]);
      const member = decodeMember(String(flat[i + 1]));
      if (!member) continue;
      if (!counted) {
        // recovered: no longer one of its clientId's dropped connections
        counted = true;
        this.#clientOf.set(connectionId, member.clientId);
        await droppedScript.run(this.#o.connection, this.#ledgerKeys(member.clientId), [
          'remove',
          connectionId,
          String(Date.now()),
        ]);
      }
      const size = member.data === undefined ? 0 : Buffer.byteLength(JSON.stringify(member.data));
      const taken = await this.#run(channel, 'rehome', connectionId, this.nodeId, []);
      // taken back after this node was taken for dead: a connection still in its grace stays dropped
      if (typeof taken === 'string' && this.#pendingLeaves.has(connectionId))
        await this.#run(channel, 'drop', connectionId, this.nodeId, []);
      if (typeof taken === 'string') {
        this.#budget.add(connectionId, channel, size);
        this.#hold(connectionId, channel, taken, size);
        this.#indexMember(channel, connectionId);
        if (!keeps(channel)) this.leave(channel, connectionId);
        continue;
      }
      // gone (its grace ended, or a new member of its clientId replaced it): out of this node's
      // index, which it may still list (kept by this node's enter again below, if it enters)
      this.#unindex(channel, connectionId);
      if (!keeps(channel)) continue;
      try {
        await this.enter(channel, connectionId, member.clientId, member.data, size);
      } catch {
        // the channel filled up meanwhile: the client sees itself missing from the snapshot
      }
    }
  }

  subscribe(channel: string, listener: PresenceListener): () => void {
    const unsubscribe = this.#listeners.add(channel, listener);
    const feed = this.#feed(channel);
    feed.listeners += 1;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      unsubscribe();
      feed.listeners -= 1;
      if (feed.listeners === 0) this.#drop(channel, feed);
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweep);
    for (const timer of this.#pendingLeaves.values()) clearTimeout(timer);
    this.#pendingLeaves.clear();
    for (const feed of this.#feeds.values()) if (feed.linger) clearTimeout(feed.linger);
    this.#feeds.clear();
    const bus = this.#bus;
    this.#bus = undefined;
    // never wait for a connection still being made: destroy it once it exists
    if (bus)
      void bus.then(
        (b) => b.destroy(),
        () => {},
      );
  }

  /** The bus subscription of a channel this node has interest in (listeners, or a read just now). */
  #feed(channel: string): Feed {
    let feed = this.#feeds.get(channel);
    if (!feed) {
      const ready = this.#busConnection().then((bus) =>
        bus.subscribe(this.#busChannel(channel), (payload) => {
          created.changes += 1;
          created.kept = undefined;
          if (this.#listeners.count(channel) === 0) return;
          this.#listeners.emit(channel, presenceMemberId(payload), Buffer.from(payload));
        }),
      );
      const created: Feed = {
        listeners: 0,
        ready,
        linger: undefined,
        changes: 0,
        reading: undefined,
        kept: undefined,
      };
      // not subscribed (Redis out of reach): forget it, so the next attach tries again
      ready.catch((err: unknown) => {
        this.#o.onError(err);
        if (this.#feeds.get(channel) === created) this.#feeds.delete(channel);
      });
      feed = created;
      this.#feeds.set(channel, feed);
    }
    return feed;
  }

  #busReconnected(): void {
    for (const feed of this.#feeds.values()) {
      feed.changes += 1;
      feed.kept = undefined;
    }
  }

  /** A read with no listener yet keeps the subscription a while: an attach's listener follows at once. */
  #linger(channel: string, feed: Feed): void {
    if (feed.listeners > 0 || feed.linger) return;
    feed.linger = setTimeout(() => {
      feed.linger = undefined;
      if (feed.listeners === 0) this.#drop(channel, feed);
    }, 5_000);
    feed.linger.unref();
  }

  #drop(channel: string, feed: Feed): void {
    if (this.#feeds.get(channel) !== feed) return;
    if (feed.linger) clearTimeout(feed.linger);
    this.#feeds.delete(channel);
    const bus = this.#bus;
    if (bus) void bus.then((b) => b.unsubscribe(this.#busChannel(channel))).catch(this.#o.onError);
  }

  /**
   * The pub/sub connection for presence events. Made at start, while Redis is known to answer (one
   * made during an outage would wait for Redis, holding the process); made again if that failed.
   */
  #busConnection(): Promise<BusConnection> {
    if (this.#closed) return Promise.reject(new Error('presence is closed'));
    if (!this.#bus) {
      const bus = this.#o.connection.subscriber(this.#o.onError);
      this.#bus = bus;
      bus.then(
        (b) => {
          if (this.#closed) b.destroy();
          // reconnected: what was published meanwhile is lost, so no frame read before is whole
          else b.onReady(() => this.#busReconnected());
        },
        () => {
          if (this.#bus === bus) this.#bus = undefined;
        },
      );
    }
    return this.#bus;
  }

  /** The per-connection record (for a recovery anywhere) and this node's index (for its death). */
  #remember(connectionId: string, channel: string, member: string, size: number): void {
    this.#hold(connectionId, channel, member, size);
    for (const written of this.#writeRecord(connectionId, channel, member)) written.catch(this.#o.onError);
  }

  /**
   * The member in its connection's record (what another node recovers it from) and in this node's
   * index; the record's writes, sent in order, to wait for or not.
   */
  #writeRecord(connectionId: string, channel: string, member: string): Promise<unknown>[] {
    const record = this.#recordKey(connectionId);
    const { connection, recoverWithin } = this.#o;
    const writes = [
      connection.send(record, ['HSET', record, channel, member]),
      connection.send(record, ['PEXPIRE', record, String(Math.max(recoverWithin, this.#nodeTtl))]),
    ];
    this.#indexMember(channel, connectionId);
    return writes;
  }

  #hold(connectionId: string, channel: string, json: string, size: number): void {
    let channels = this.#held.get(connectionId);
    if (!channels) {
      channels = new Map();
      this.#held.set(connectionId, channels);
    }
    channels.set(channel, { json, size });
  }

  /**
   * Redis may have lost this node's members, or have them back from before they left (a restart
   * from an older snapshot, a failover, a FLUSHALL): the members of the connections held here are
   * written again (entered again where missing), and those it lists for this node that it does not
   * hold leave. Until then — one beat — presence is as the Redis has it.
   */
  async #heal(): Promise<void> {
    if (this.#healing || this.#closed) return;
    this.#healing = true;
    this.#healOwed = false;
    try {
      const { connection } = this.#o;
      for (const [connectionId, channels] of this.#held)
        for (const [channel, { json, size }] of channels) {
          const dropped = this.#pendingLeaves.has(connectionId) ? String(Date.now()) : '0';
          await this.#run(channel, 'restore', connectionId, this.nodeId, [String(size), json, dropped]);
          await Promise.all(this.#writeRecord(connectionId, channel, json));
        }
      const index = this.#nodeIndex(this.nodeId);
      const entries = (await connection.send(index, ['SMEMBERS', index], true)) as unknown[];
      for (const entry of entries) {
        const parsed = parseEntry(String(entry));
        if (parsed && this.#held.get(parsed[1])?.has(parsed[0])) continue;
        if (parsed) await this.#run(parsed[0], 'leave', parsed[1], this.nodeId, []);
        await connection.send(index, ['SREM', index, String(entry)]);
      }
    } catch (err) {
      this.#healOwed = true; // a master not ready yet (a Cluster still joining it): the next beat
      throw err;
    } finally {
      this.#healing = false;
    }
  }

  /**
   * Listed after the script that made this node its holder answered, and taken out (`#unindex`)
   * after one that says it is not: the index key is in another hash slot than the channel's, so
   * not in the script, but both follow the script's answers, which come in the order Redis ran them
   * (one connection to the channel's master), so an enter again after a leave is listed again.
   */
  #indexMember(channel: string, connectionId: string): void {
    const index = this.#nodeIndex(this.nodeId);
    this.#o.connection
      .send(index, ['SADD', index, JSON.stringify([channel, connectionId])])
      .catch(this.#o.onError);
  }

  /**
   * Out of this node's index: sent only once Redis answered that this node does not hold the member
   * (a crash before leaves an entry listed, harmless: a dead node's sweep runs a leave for it
   * that finds nothing; the other order could leave a member held here that no sweep would find).
   */
  #unindex(channel: string, connectionId: string): void {
    const index = this.#nodeIndex(this.nodeId);
    this.#o.connection
      .send(index, ['SREM', index, JSON.stringify([channel, connectionId])])
      .catch(this.#o.onError);
  }

  /** The leave script (`node`: only if held there; '': whoever holds it), then this node's index. */
  async #leave(channel: string, connectionId: string, node: string): Promise<unknown> {
    const left = await this.#run(channel, 'leave', connectionId, node, []);
    this.#unindex(channel, connectionId);
    return left;
  }

  /**
   * A connection recovered on another node: its members leave this node's index once that node
   * holds them. Its notice may come before its take-over, and a take-over that never comes (that
   * node died first) leaves them held here, listed for this node's own death.
   */
  #unindexMoved(): void {
    const now = Date.now();
    for (const [connectionId, moved] of this.#movedAway) {
      if (now > moved.until) {
        this.#movedAway.delete(connectionId);
        continue;
      }
      for (const channel of moved.channels) {
        const key = this.#key(channel);
        this.#o.connection.send(key, ['HGET', key, connectionId]).then((value) => {
          if (value !== null && String(value).startsWith(`${this.nodeId}\n`)) return;
          if (!moved.channels.delete(channel)) return;
          if (moved.channels.size === 0 && this.#movedAway.get(connectionId) === moved)
            this.#movedAway.delete(connectionId);
          this.#unindex(channel, connectionId);
        }, this.#o.onError);
      }
    }
  }

  /** Every sweep: this node is alive, and the records of the connections it holds live on. */
  #beat(): void {
    if (this.#closed) return;
    const { connection, prefix, onError, recoverWithin } = this.#o;
    const alive = `${prefix}:node:${this.nodeId}`;
    connection.send(alive, ['SET', alive, '1', 'PX', String(this.#nodeTtl)]).catch(onError);
    // Declared dead while alive (Redis was out of reach longer than nodeTtl): clear the mark, so a
    // later real death gets its full grace, and put back what a sweeper may have removed meanwhile.
    const dead = `${prefix}:node-dead:${this.nodeId}`;
    connection.send(dead, ['DEL', dead]).then((removed) => {
      if (Number(removed) !== 1 || this.#closed) return;
      for (const id of this.#budget.connections()) this.#resume(id, () => true).catch(onError);
    }, onError);
    // On a Cluster the members live on every master: the run_ids of all of them (a master not
    // answering now: as last seen), not only the one holding the nodes key
    const masters = connection.cluster
      ? connection.eachMaster(['INFO', 'server']).then(
          (replies) =>
            replies
              .map((r) => runIdOf(String(r)))
              .sort()
              .join(','),
          () => this.#mastersRun,
        )
      : undefined;
    Promise.all([BEAT.run(connection, [`${prefix}:nodes`], [this.nodeId]), masters]).then(
      ([reply, others]) => {
        const [added, runId] = reply as [unknown, unknown];
        this.#mastersRun = others;
        const run = `${String(runId ?? '')}/${others ?? ''}`;
        // Redis no longer lists this node (flushed, or it saw it dead) or is another Redis (restarted,
        // restored from a snapshot, failed over): its members may be missing, or back after they left
        const seen = this.#redisRun;
        this.#redisRun = run;
        if (seen !== undefined && run !== seen) this.#o.onNewRedis?.(seen, run);
        if (seen !== undefined && (Number(added) === 1 || run !== seen)) this.#healOwed = true;
        if (this.#healOwed) this.#heal().catch(onError);
      },
      onError,
    );
    // the per-connection records outlive a refresh by far: refresh them a few times per TTL only
    const now = Date.now();
    if (now - this.#recordsRefreshedAt < recoverWithin / 4) return;
    this.#recordsRefreshedAt = now;
    const ttl = String(Math.max(recoverWithin, this.#nodeTtl));
    for (const id of this.#budget.connections()) {
      const record = this.#recordKey(id);
      connection.send(record, ['PEXPIRE', record, ttl]).catch(onError);
    }
  }

  /**
   * Members held by nodes whose liveness key expired leave `grace` after a sweeper first saw the
   * node dead. The leave script only removes a member still held by that node, so a member taken
   * over by a recovery stays, and sweepers racing each other announce every leave once. The sweeper
   * that first sees it dead marks its members dropped, as their node would have at each connection's
   * loss: in their grace, they make room for their clientId's new members (`maxMembersPerClient`).
   * One sweep at a time per node (the interval does not start one while another runs), and the
   * index is walked in batches (`SWEEP_BATCH`), each batch's scripts sent together.
   */
  async #sweepDeadNodes(): Promise<void> {
    const { connection, prefix, grace } = this.#o;
    const nodes = (await connection.send(
      `${prefix}:nodes`,
      ['SMEMBERS', `${prefix}:nodes`],
      true,
    )) as unknown[];
    for (const raw of nodes) {
      const node = String(raw);
      if (node === this.nodeId || this.#closed) continue;
      const alive = `${prefix}:node:${node}`;
      if (Number(await connection.send(alive, ['EXISTS', alive], true)) === 1) continue;
      const dead = `${prefix}:node-dead:${node}`;
      const now = Date.now();
      const first = await connection.send(dead, [
        'SET',
        dead,
        String(now + grace),
        'NX',
        'PX',
        String(grace + 60 * this.#nodeTtl),
      ]);
      const deadline = Number(await connection.send(dead, ['GET', dead]));
      if (!(now >= deadline)) {
        if (String(first) === 'OK') await this.#markDropped(node);
        continue;
      }
      if (!(await this.#sweepIndex(node))) return;
      await connection.send(`${prefix}:nodes`, ['SREM', `${prefix}:nodes`, node]);
    }
  }

  /**
   * Every member a dead node's index lists marked dropped, a page (`SSCAN`) at a time. A page the
   * walk returns twice (the set resized meanwhile) changes nothing: a drop keeps the first mark.
   */
  async #markDropped(node: string): Promise<void> {
    const { connection } = this.#o;
    const index = this.#nodeIndex(node);
    let cursor = '0';
    do {
      const [next, entries] = (await connection.send(
        index,
        ['SSCAN', index, cursor, 'COUNT', String(SWEEP_BATCH)],
        true,
      )) as [unknown, unknown[]];
      cursor = String(next);
      await Promise.all(
        entries.map((entry) => {
          const parsed = parseEntry(String(entry));
          return parsed ? this.#run(parsed[0], 'drop', parsed[1], node, []) : undefined;
        }),
      );
    } while (cursor !== '0' && !this.#closed);
  }

  /**
   * The members a dead node's index lists leave, a batch at a time: entries drawn from the set
   * (`SRANDMEMBER`: distinct, and sweepers of other nodes mostly draw others), their leaves sent
   * together, then the batch removed with one `SREM`, once its leaves answered: a sweep that stops
   * between (a failed leave, a crash) leaves the batch listed for the next one, whose leaves find
   * those already gone, never a member unlisted. Each entry's leave is sent once by this sweeper (one
   * sweep at a time). False if this node closed meanwhile.
   */
  async #sweepIndex(node: string): Promise<boolean> {
    const { connection } = this.#o;
    const index = this.#nodeIndex(node);
    for (;;) {
      if (this.#closed) return false;
      const batch = (
        (await connection.send(index, ['SRANDMEMBER', index, String(SWEEP_BATCH)])) as unknown[]
      ).map(String);
      if (batch.length === 0) return true;
      await Promise.all(
        batch.map((entry) => {
          const parsed = parseEntry(entry);
          return parsed ? this.#run(parsed[0], 'leave', parsed[1], node, []) : undefined;
        }),
      );
      await connection.send(index, ['SREM', index, ...batch]);
      if (batch.length < SWEEP_BATCH) return true;
    }
  }

  #run(channel: string, op: string, connectionId: string, node: string, rest: string[]): Promise<unknown> {
    return script.run(
      this.#o.connection,
      [this.#key(channel), `${this.#key(channel)}-clients`],
      [
        op,
        connectionId,
        node,
        String(Date.now()),
        this.#busChannel(channel),
        JSON.stringify(channel),
        ...rest,
      ],
    );
  }

  #cancelPendingLeave(connectionId: string): void {
    const timer = this.#pendingLeaves.get(connectionId);
    if (timer) clearTimeout(timer);
    this.#pendingLeaves.delete(connectionId);
  }

  #key(channel: string): string {
    return `${this.#o.prefix}:{${channel}}:presence`;
  }

  #busChannel(channel: string): string {
    return `${this.#o.prefix}:presence:{${channel}}`;
  }

  /** The ledger of a clientId's dropped connections: its sorted set and its hash (one hash slot). */
  #ledgerKeys(clientId: string): [string, string] {
    const order = `${this.#o.prefix}:{presence-dropped:${clientId}}`;
    return [order, `${order}:cost`];
  }

  #recordKey(connectionId: string): string {
    return `${this.#o.prefix}:presence-connection:${connectionId}`;
  }

  #nodeIndex(node: string): string {
    return `${this.#o.prefix}:presence-node:${node}`;
  }
}

/** The member JSON of a stored value (`<node>\n<size>\n<json>`) or of a bare member JSON. */
function storedJson(value: string): string {
  return value.startsWith('{') ? value : value.split('\n').slice(2).join('\n');
}

/** A member from a stored value (`<node>\n<size>\n<json>`) or a bare member JSON; undefined if unreadable. */
function decodeMember(value: string): PresenceMember | undefined {
  const json = storedJson(value);
  try {
    const member = JSON.parse(json) as PresenceMember;
    if (typeof member.clientId !== 'string' || typeof member.connectionId !== 'string') return undefined;
    return member;
  } catch {
    return undefined;
  }
}

function parseEntry(entry: string): [string, string] | undefined {
  try {
    const value = JSON.parse(entry) as unknown;
    if (Array.isArray(value) && typeof value[0] === 'string' && typeof value[1] === 'string')
      return [value[0], value[1]];
  } catch {}
  return undefined;
}
