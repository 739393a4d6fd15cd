/**
 * Message leases on Redis (PROTOCOL.md §7.1, §15): the same rules as the node-local `LeaseManager`,
 * but no lease depends on the node that took it staying alive.
 *
 * - Every lease has a deadline in one sorted set, `<prefix>:{leases}:deadlines` (score: ms since
 *   1970), and a record in `<prefix>:{leases}:records` (channel, serial, ms, clientId, holder); the
 *   holder's leases are listed in `<prefix>:{leases}:holder:<connectionId>` (TTL: the recovery
 *   window, refreshed while the connection lives). Every script that removes a lease (RELEASE,
 *   FINISH) or moves it to another holder (HOLD) strikes it off the list of the holder its record
 *   names, so a long-lived connection's list holds its live leases, not one entry per run it ran.
 * - The node holding the holder's connection renews the deadline (now + ms) every `sweepInterval`
 *   while the connection lives. When the connection drops, the deadline is set to now + ms and left;
 *   when its node dies, renewals stop: either way the lease runs out one lease later. A renewal
 *   never brings a lease back, and the node forgets a lease the renewal finds gone (ended through
 *   another node, or expired there), so it does not renew it in vain.
 * - Every node sweeps: a script claims the leases past their deadline atomically (pushing each
 *   deadline `retryAfter` ahead, so a sweeper that dies mid-expiry is retried by another), the
 *   `abandoned` update is stored through the normal publish path with the deterministic id
 *   `lease-expired:<serial>:<version>` (two nodes racing store it once), and only then is the lease
 *   removed — unless it was taken again meanwhile (its deadline moved), which keeps it.
 * - An expiry writes on condition of the version it read (channel-service.ts `expireLease`). An end
 *   (`lease: 0`, a delete) is stored before its release reaches Redis, so the ending node first marks
 *   the run (`ending`, awaited: a key `<prefix>:{leases}:ending:<field>`); an expiry that reads the
 *   ended message finds the mark before it writes (`#due`), or the lease released (the end's release,
 *   which also removes the mark, may come between the claim and the write), and stores nothing. The
 *   release removes the mark. A mark lives `retryAfter` at most: one whose end never came (refused — a serial that
 *   does not exist —, or its node died) is gone by then, so marks cannot pile up in Redis.
 * - A write of the lease's own holder (`followsWriter`: its clientId, or without one the holder key
 *   its record names) from another connection or node takes the lease over (`touch`, after a
 *   look-up when this node does not know it); only if the same take of it still exists when the
 *   takeover is written (HOLD's takeover mode), and a release removes a lease in one script, so a
 *   run that ended — or whose lease someone else took again — between the look-up and the takeover
 *   is left as it is.
 * - Each take of a lease (a publish with `lease > 0`) has an id in its record, which a takeover keeps.
 *   The end's mark reads it (`ending`), and the release names it and the take this node knows: a
 *   release sent again late (`#releaseAgain`) removes only the lease its end ended, never one taken
 *   again on the message meanwhile. A mark that found no lease names none: a lease there at the
 *   release was taken after the end, and stays. A release that leaves the lease removes its own
 *   end's mark still (the mark's value names the end that set it), never a later end's: left, it
 *   would hold the new lease's expiry back until it runs out.
 * - A release without a mark read — a delete of a message this node knows no lease of, the serial of
 *   another epoch (`#releaseAliases`), or a mark that failed — cannot tell which lease its end ended.
 *   Its first try, sent as soon as the end is stored, removes whatever lease is there (as before
 *   takes had ids: the end's, unless a publisher raced it); a try sent again later removes only the
 *   take its node knew, never whatever is there: a lease taken after the end (a run resumed) must
 *   not lose it to a late try. What that may leave behind: a deleted message's lease, which runs
 *   out harmlessly (its expiry finds the tombstone) and counts against its owner until then; and,
 *   only when Redis failed both the mark and the first try of an end stored in between, an ended
 *   run marked `abandoned` when its lease runs out.
 * - A connection recovered on another node takes its leases along (`holderBack` reads its list a
 *   page per script, renewing each lease it finds as it reads it, and striking off entries whose
 *   lease ended or moved: a list an older node left long cannot keep a live lease waiting).
 *   A connection renewed, or recovered, with a token that may not take leases on a channel lets its
 *   leases there go (`holderLetGo`): each is taken over without a holder, so it runs out one lease
 *   later, renewed by no node and adopted by no recovery, unless its publisher writes again.
 *   An agent restarted elsewhere takes a lease back by writing to the message with a lease again.
 *
 * A publish that takes a lease is acknowledged once the lease is written (`hold` returns the write),
 * so a node killed in between cannot leave an acknowledged run without one; every other Redis write
 * here (renewals, a holder lost, a touch) is not awaited. Errors go to `onError`.
 * `maxLeasesPerClient` is counted in Redis, across nodes: each lease names its owner in
 * `<prefix>:{leases}:owner-of`, and `<prefix>:{leases}:owners` counts the leases of each owner. The
 * scripts that write and remove a lease keep both in step with it, so a node's crash cannot leave a
 * count behind (its leases are expired by another node, which uncounts them). A publish taking
 * leases first reserves them (RESERVE: the count, plus what other publishes in flight on any node
 * reserved, checked and added to in one script), so creates racing through several nodes are
 * counted together; the HOLD that writes a lease turns one reserved place into a counted one, and
 * the rest is given back once the publish is done (UNRESERVE; one whose answer or give-back was
 * lost, by the next sweeps). A reservation lives `reservationTtl` at most: one whose node died is
 * given back by the next RESERVE.
 * Every node also walks `owner-of` slowly (REPAIR) and uncounts a lease whose record is gone, so a
 * count left behind by something that does not keep it (an older node in a rolling upgrade) heals.
 */
import { randomUUID } from 'node:crypto';
import { followsWriter, type HeldLease, LeaseIndex } from './lease-index.ts';
import type { ExpireLease, Leases, LeaseView, Reservation } from './leases.ts';
import { RedisScript, redisRetryDelay, redisUnavailable } from './redis-script.ts';
import type { RedisConnection } from './store/redis-connection.ts';

export interface RedisLeasesOptions {
  expire: ExpireLease;
  onError: (err: unknown) => void;
  connection: RedisConnection;
  prefix: string;
  /** How often held leases are renewed and overdue ones expired, ms (default 1,000). */
  sweepInterval?: number;
  /** How long a claimed expiry waits before another node may retry it, ms (default 10 × sweepInterval). */
  retryAfter?: number;
  /**
   * How long a publish's reservation of leases lasts at most, ms (default 30,000): past it, one whose
   * node died before giving it back no longer counts.
   */
  reservationTtl?: number;
  /**
   * How long a holder's list of leases outlives its last renewal, ms: the connection recovery window
   * (connectionStateTtl), within which another node may recover the connection and take them along.
   */
  holderTtl: number;
}

interface Lease extends HeldLease {
  /** The holder's connection lives on this node: renew. */
  live: boolean;
  /** When not live: the deadline this node last set (ms since 1970), after which any node may expire it. */
  until: number;
  /**
   * Known to be in Redis: its HOLD answered, or it was read there (adopted). A renewal that finds
   * it gone forgets it; one still being written (a HOLD may be sent again after NOSCRIPT, behind a
   * renewal) is not judged by that.
   */
  stored: boolean;
  /** Which take of the message's lease this is (`LeaseRecord.take`); undefined if its record names none. */
  take: string | undefined;
  /**
   * The holder it counts against in Redis (`holderKey`; not counted here: `owner` stays undefined),
   * which a lease taken without a clientId follows (`followsWriter`).
   */
  takenBy: string | undefined;
}

/**
 * Which lease a release may remove, as RELEASE reads it: `t:<take>` names one take (`t:` alone, a
 * record that names none: an older node's), `NOTHING` none, `ANY` whatever lease is there.
 */
type Names = string;
const NOTHING: Names = '';
const ANY: Names = '*';

/** Names the take of a lease this node knows (`take` undefined: its record names none). */
function namesTake(take: string | undefined): Names {
  return `t:${take ?? ''}`;
}

/** What an end's mark (`ending`) left for its release. */
interface Ending {
  /** The mark's value: the release removes this mark even when it leaves the lease. */
  mark: string;
  /** The lease the mark found: the one the end is about to end (`NOTHING`: none was there). */
  ended: Names;
}

/**
 * What a release removes (RELEASE): the lease its end's mark found (`ANY` when no mark was read),
 * the one its node knows (a publish of the same connection stored before the end may have taken it
 * again after the mark was read), and the end's own mark (its value; '' when unknown).
 */
interface Release {
  ended: Names;
  known: Names;
  mark: string;
}

/** A renewal: the new deadline of a lease this node knows. */
interface Renewal {
  field: string;
  lease: Lease;
  deadline: number;
}

interface LeaseRecord {
  channel: string;
  serial: string;
  ms: number;
  clientId?: string;
  holder?: string;
  /** The holder it counts against (`holderKey`); absent in records of older nodes. */
  owner?: string;
  /**
   * Names this take of the lease: new at every take (a publish with `lease > 0`), kept by a
   * takeover (the same lease, moved). A release names the take it ended, so a late one leaves a
   * lease taken again meanwhile in place. Absent in records of older nodes.
   */
  take?: string;
}

/**
 * Lua shared by the scripts that remove a lease: `uncount(owners, ownerOf, field)` takes the lease
 * off its owner's count (an owner at 0 is removed).
 */
const UNCOUNT = `
local function uncount(owners, ownerOf, field)
  local owner = redis.call('HGET', ownerOf, field)
  if not owner then return end
  redis.call('HDEL', ownerOf, field)
  if redis.call('HINCRBY', owners, owner, -1) <= 0 then redis.call('HDEL', owners, owner) end
end
`;

/**
 * Lua shared by the scripts that look at which take of a lease is in Redis: `takeOf(records, field)`
 * is the record's take, '' for a record that names none (an older node's: any take matches it, as
 * before takes had ids), nil without a record.
 */
const TAKE_OF = `
local function takeOf(records, field)
  local raw = redis.call('HGET', records, field)
  if not raw then return nil end
  local ok, record = pcall(cjson.decode, raw)
  if ok and type(record) == 'table' and type(record.take) == 'string' then return record.take end
  return ''
end
`;

/**
 * Lua shared by the scripts that remove a lease or write its record again: `unlist(records, field,
 * keep)` strikes the lease off the list of the holder its record names, unless that holder is `keep`
 * (nil: whichever it is). The list's key is made from the records' (`<prefix>:{leases}:holder:<id>`
 * beside `<prefix>:{leases}:records`), in the same hash slot, as the holder is known only once the
 * record is read here. A record that names no holder (taken over without one, or an older node's)
 * is on no list.
 */
const UNLIST = `
local function unlist(records, field, keep)
  local raw = redis.call('HGET', records, field)
  if not raw then return end
  local ok, record = pcall(cjson.decode, raw)
  if ok and type(record) == 'table' and type(record.holder) == 'string' and record.holder ~= keep then
    redis.call('SREM', string.sub(records, 1, -#'records' - 1) .. 'holder:' .. record.holder, field)
  end
end
`;

/**
 * Lua shared by the scripts that give reserved leases back: `unreserve(reserved, reservations,
 * reservedBy, id, k)` gives back `k` of reservation `id`'s places (all of them when `k` is nil).
 * A reservation is `reservedBy[id]` = "<places>:<owner>", its deadline in `reservations`, and its
 * places added to `reserved[owner]`.
 */
const UNRESERVE_FN = `
local function unreserve(reserved, reservations, reservedBy, id, k)
  local value = redis.call('HGET', reservedBy, id)
  if not value then return end
  local sep = string.find(value, ':', 1, true)
  local places = tonumber(string.sub(value, 1, sep - 1))
  local owner = string.sub(value, sep + 1)
  local give = places
  if k and k < places then give = k end
  if redis.call('HINCRBY', reserved, owner, -give) <= 0 then redis.call('HDEL', reserved, owner) end
  if give >= places then
    redis.call('HDEL', reservedBy, id)
    redis.call('ZREM', reservations, id)
  else
    redis.call('HSET', reservedBy, id, (places - give) .. ':' .. owner)
  end
end
`;

/**
 * KEYS: owners, reserved, reservations, reserved-by. ARGV: owner, places, limit, reservation id,
 * deadline, now. Gives back reservations past their deadline (their node died), then reserves
 * `places` for the owner if its counted leases, its reserved places and these stay within `limit`.
 * Returns -1 when reserved, else what the owner holds and has reserved (refused).
 */
const RESERVE = new RedisScript(`${UNRESERVE_FN}
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[6], 'LIMIT', 0, 100)
for _, id in ipairs(stale) do unreserve(KEYS[2], KEYS[3], KEYS[4], id, nil) end
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') + tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if held + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return held end
redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[2] .. ':' .. ARGV[1])
return -1
`);

/** KEYS: reserved, reservations, reserved-by. ARGV: reservation id. Gives back what is left of it. */
const UNRESERVE = new RedisScript(`${UNRESERVE_FN}
unreserve(KEYS[1], KEYS[2], KEYS[3], ARGV[1], nil)
return 1
`);

/**
 * KEYS: deadlines, records, holder list (or records again), owners, owner-of, reserved,
 * reservations, reserved-by. ARGV: field, deadline, record, holder, list TTL, '1' for a takeover
 * (only a lease that still exists, and is still the take ARGV[9] names when it names one: one
 * released, or taken again by anyone, meanwhile is left as it is; it keeps its owner), owner ('' for
 * none), the reservation the lease was counted in until now ('' for none), the take a takeover moves.
 * A lease that moves to another holder (or to none) leaves the list of the one its record named.
 * Returns 1, or 0 for a takeover of a lease that is gone.
 */
const HOLD = new RedisScript(`${UNCOUNT}${UNRESERVE_FN}${TAKE_OF}${UNLIST}
if ARGV[6] == '1' then
  local take = takeOf(KEYS[2], ARGV[1])
  if not take or (ARGV[9] ~= '' and take ~= '' and take ~= ARGV[9]) then return 0 end
else
  if ARGV[7] ~= '' and redis.call('HGET', KEYS[5], ARGV[1]) ~= ARGV[7] then
    uncount(KEYS[4], KEYS[5], ARGV[1])
    redis.call('HSET', KEYS[5], ARGV[1], ARGV[7])
    redis.call('HINCRBY', KEYS[4], ARGV[7], 1)
  end
  -- counted now (or already): its reserved place is given back in the same step
  if ARGV[8] ~= '' then unreserve(KEYS[6], KEYS[7], KEYS[8], ARGV[8], 1) end
end
unlist(KEYS[2], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
return 1
`);

/**
 * KEYS: deadlines, records, the lease's ending mark, owners, owner-of. ARGV: field, the lease the
 * end ended, the lease its node knows (each `Names`), the value of the end's own mark ('' if unknown).
 * Removes the lease, the mark and its count at once, when the lease is one the release names; a
 * record that names no take (an older node's) is one any release naming a lease names, as before
 * takes had ids. A lease neither names (taken again after the end, or after an end whose mark found
 * none) is left as it is, and so is a mark a later end set; the end's own mark goes (left, it would
 * hold the lease's expiry back until it runs out): returns 0. A lease removed leaves its holder's
 * list too.
 */
const RELEASE = new RedisScript(`${UNCOUNT}${TAKE_OF}${UNLIST}
local function names(arg, take)
  return arg == '${ANY}' or (arg ~= '${NOTHING}' and (take == '' or arg == 't:' .. take))
end
local take = takeOf(KEYS[2], ARGV[1])
if take and not names(ARGV[2], take) and not names(ARGV[3], take) then
  if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
unlist(KEYS[2], ARGV[1], nil)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
uncount(KEYS[4], KEYS[5], ARGV[1])
return 1
`);

/**
 * KEYS: records, the lease's ending mark. ARGV: field, the mark's value, its TTL. Marks the run
 * ending (see `ending`) and returns the take of the lease the end is about to end (nil if none, ''
 * if its record names none).
 */
const ENDING = new RedisScript(`${TAKE_OF}
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return takeOf(KEYS[1], ARGV[1]) or false
`);

/**
 * KEYS: deadlines. ARGV: deadline, field, deadline, field, ... Moves the deadlines of the leases that
 * still exist (an expired or released one is not brought back) and returns the fields that are gone.
 */
const RENEW = new RedisScript(`
local gone = {}
for i = 1, #ARGV, 2 do
  if redis.call('ZSCORE', KEYS[1], ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
  else
    gone[#gone + 1] = ARGV[i + 1]
  end
end
return gone
`);

/**
 * KEYS: the lease's ending mark, records. ARGV: field. Whether a claimed expiry may still be written
 * (1): no end is marked under way, and the lease is still in Redis. An end stored and released
 * between the claim and this check removed both its mark and the lease: without the second look the
 * expiry would mark the ended run abandoned.
 */
const DUE = new RedisScript(`if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
return redis.call('HEXISTS', KEYS[2], ARGV[1])`);

/** KEYS: deadlines. ARGV: now, retry deadline, max. Returns field, claimed score, field, score, ... */
const CLAIM = new RedisScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, field in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], field)
  out[#out + 1] = field
  out[#out + 1] = ARGV[2]
end
return out
`);

/**
 * KEYS: deadlines, records, the lease's ending mark, owners, owner-of. ARGV: field, claimed score.
 * Removes the lease (with its count, its entry in its holder's list, and a mark left by an end that
 * never released it) unless it was taken again.
 */
const FINISH = new RedisScript(`${UNCOUNT}${UNLIST}
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  unlist(KEYS[2], ARGV[1], nil)
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[3])
  uncount(KEYS[4], KEYS[5], ARGV[1])
  return 1
end
return 0
`);

/**
 * KEYS: records, owners, owner-of. ARGV: cursor, count. One step of a walk over `owner-of`: a lease
 * counted for its owner whose record is gone (removed by something that does not keep the count:
 * a node of an older version during a rolling upgrade) is uncounted. Returns the next cursor.
 */
const REPAIR = new RedisScript(`${UNCOUNT}
local page = redis.call('HSCAN', KEYS[3], ARGV[1], 'COUNT', ARGV[2])
local entries = page[2]
for i = 1, #entries, 2 do
  if redis.call('HEXISTS', KEYS[1], entries[i]) == 0 then uncount(KEYS[2], KEYS[3], entries[i]) end
end
return page[1]
`);

/**
 * KEYS: holder list, deadlines, records. ARGV: connection id, cursor, count, now. One page (SSCAN) of
 * the list of a connection recovered on this node: each lease whose record still names the
 * connection is renewed here and now (now + its ms; as RENEW, one whose deadline is gone is not
 * brought back) and returned; the page's other entries (ended, expired, taken over, or unreadable)
 * are struck off the list in the same step, which no HOLD can come between. Returns the next
 * cursor, then field, record, field, record, ...
 */
const ADOPT = new RedisScript(`
local page = redis.call('SSCAN', KEYS[1], ARGV[2], 'COUNT', ARGV[3])
local out, stale = {page[1]}, {}
for _, field in ipairs(page[2]) do
  local raw = redis.call('HGET', KEYS[3], field)
  local ok, record = false, nil
  if raw then ok, record = pcall(cjson.decode, raw) end
  if ok and type(record) == 'table' and record.holder == ARGV[1] and type(record.channel) == 'string'
    and type(record.serial) == 'string' and type(record.ms) == 'number' then
    if redis.call('ZSCORE', KEYS[2], field) then
      redis.call('ZADD', KEYS[2], tonumber(ARGV[4]) + record.ms, field)
    end
    out[#out + 1] = field
    out[#out + 1] = raw
  else
    stale[#stale + 1] = field
  end
end
if #stale > 0 then redis.call('SREM', KEYS[1], unpack(stale)) end
return out
`);

const CLAIM_BATCH = 100;
/**
 * Entries of a recovered connection's list read per ADOPT script: a few hundred keep each script
 * short for Redis, and a list of 100,000 stale entries takes 200 round trips.
 */
const ADOPT_BATCH = 500;
/** Reservations whose give-back failed that the sweeps try again, at most. */
const MAX_LOST_RESERVATIONS = 1_000;
/** The owners' counts are checked against the lease records every this many sweeps, a page at a time. */
const REPAIR_EVERY = 10;

export class RedisLeases implements Leases {
  readonly #o: RedisLeasesOptions;
  readonly #leases = new LeaseIndex<Lease>();
  readonly #pending = new Set<Promise<unknown>>();
  readonly #timer: NodeJS.Timeout;
  readonly #retryAfter: number;
  readonly #holderTtl: number;
  #sweeping = false;
  #ticks = 0;
  /** Where the walk over `owner-of` (REPAIR) goes on. */
  #repairCursor = '0';
  /** Messages looked up recently and found without a lease this node could take: field → until. */
  readonly #notLeased = new Map<string, number>();
  /**
   * Holders whose connection this node lost (connection id → when), until the recovery window is
   * over: a lease taken for one of them afterwards — by a recovery's read of its list, or a look-up,
   * both asynchronous — is not live here, so it runs out instead of being renewed for ever.
   */
  readonly #lost = new Map<string, number>();
  readonly #lookupCache: number;
  #holdersRefreshedAt = 0;
  #closed = false;
  /** This instance's part of reservation ids (unique across nodes and restarts), and a counter. */
  readonly #id = randomUUID();
  #reservations = 0;
  /** Takes of leases taken here (with `#id`: unique across nodes and restarts). */
  #takes = 0;
  /** Ending marks set here (with `#id`: unique across nodes and restarts). */
  #marks = 0;
  /**
   * What each run being ended here was marked with (`ending`): field → its mark and the lease the
   * mark found, until its release. Read just before the end is stored, it names the lease the end
   * ends even when this node never knew it (taken through another node); `release` names the take
   * it knows as well.
   */
  readonly #endings = new Map<string, Ending>();
  readonly #reservationTtl: number;
  /** Reservations whose answer did not come (perhaps made): id → until when to try giving them back. */
  readonly #lostReservations = new Map<string, number>();

  constructor(options: RedisLeasesOptions) {
    this.#o = options;
    const every = options.sweepInterval ?? 1_000;
    this.#retryAfter = options.retryAfter ?? 10 * every;
    this.#holderTtl = Math.max(options.holderTtl, 3 * every);
    this.#lookupCache = every;
    this.#reservationTtl = options.reservationTtl ?? 30_000;
    this.#timer = setInterval(() => this.#tick(), every);
    this.#timer.unref();
  }

  /** The channel's leases as Redis has them (a scan of the records matching the channel: inspection only). */
  async list(channel: string): Promise<LeaseView[]> {
    const start = JSON.stringify([channel, '']).slice(0, -3);
    const pattern = `${start.replace(/[*?[\]\\]/g, '\\$&')}*`;
    const connection = this.#o.connection;
    const views: LeaseView[] = [];
    let cursor = '0';
    do {
      const [next, entries] = (await connection.send(
        this.#records,
        ['HSCAN', this.#records, cursor, 'MATCH', pattern, 'COUNT', '1000'],
        true,
      )) as [string, string[]];
      cursor = String(next);
      const fields: string[] = [];
      const records: LeaseRecord[] = [];
      for (let i = 0; i + 1 < entries.length; i += 2) {
        let record: LeaseRecord;
        try {
          record = JSON.parse(String(entries[i + 1])) as LeaseRecord;
        } catch {
          continue;
        }
        if (record.channel !== channel) continue;
        fields.push(String(entries[i]));
        records.push(record);
      }
      if (fields.length === 0) continue;
      // the deadlines of the whole page in one round trip (ZMSCORE: Redis 6.2+)
      const scores = (await connection.send(
        this.#deadlines,
        ['ZMSCORE', this.#deadlines, ...fields],
        true,
      )) as unknown[];
      records.forEach((record, i) => {
        const score = scores[i];
        const view: LeaseView = {
          serial: record.serial,
          ms: record.ms,
          held: this.#leases.get(fields[i] as string)?.live ?? false,
        };
        if (record.clientId !== undefined) view.clientId = record.clientId;
        if (score !== null && score !== undefined) view.deadline = Number(score);
        views.push(view);
      });
    } while (cursor !== '0');
    return views.sort((a, b) => (a.serial < b.serial ? -1 : 1));
  }

  /** Deadlines live in Redis: nothing to re-arm; overdue leases are expired by the next sweep. */
  restore(): number {
    return 0;
  }

  hold(
    channel: string,
    serial: string,
    holder: string | undefined,
    ms: number,
    clientId: string | undefined,
    owner?: string,
    reservation?: string,
  ): Promise<void> {
    return this.#hold(channel, serial, holder, ms, clientId, owner, undefined, reservation);
  }

  /**
   * Reserves `places` leases for `owner` if what it holds on every node, what its publishes in
   * flight on every node reserved, and these stay within `limit` (one script, so creates racing
   * through several nodes are counted together). Resolves to the reservation's id, or to what the
   * owner holds and has reserved when refused; rejects when Redis does not answer.
   */
  async reserve(owner: string, places: number, limit: number): Promise<Reservation> {
    const id = `${this.#id}:${++this.#reservations}`;
    const now = Date.now();
    let answer: unknown;
    try {
      answer = await RESERVE.run(
        this.#o.connection,
        [this.#owners, ...this.#reservationKeys],
        [owner, String(places), String(limit), id, String(now + this.#reservationTtl), String(now)],
      );
    } catch (err) {
      // Redis may have reserved and only the answer been lost (a missed deadline): given back by
      // the next sweeps rather than left counting until its deadline (the connection that failed is
      // being replaced, and refuses commands until its successor is up)
      this.#giveBackLater(id);
      throw redisUnavailable(err, 'the lease count');
    }
    const held = Number(answer);
    return held < 0 ? { id } : { held };
  }

  /**
   * Gives back what is left of a reservation (the places its publish did not turn into leases).
   * Sent after the publish's HOLDs on the same connection, so a lease is never uncounted between
   * the two; not awaited by a publish (a failure goes to `onError`, and the next sweeps try again
   * until the reservation has run out on its own). Resolves once it is done or failed.
   */
  unreserve(id: string): Promise<void> {
    const done = this.#sendUnreserve(id);
    this.#track(done);
    return done.then(
      () => undefined,
      () => {
        this.#giveBackLater(id); // reported by #track
      },
    );
  }

  /**
   * Takes a lease (a publish with `lease > 0`: a new take), or takes over one that exists
   * (`takeover`, naming the take it moves: a write of its own holder from another connection or
   * node). A takeover decided on an earlier read of Redis is done only if that take is still there:
   * the run may have ended (its release), or someone else taken the lease, since.
   */
  #hold(
    channel: string,
    serial: string,
    holder: string | undefined,
    ms: number,
    clientId: string | undefined,
    owner: string | undefined,
    takeover: { take: string | undefined } | undefined,
    reservation?: string,
  ): Promise<void> {
    const take = takeover ? takeover.take : `${this.#id}:${++this.#takes}`;
    const lease: Lease = {
      channel,
      serial,
      holder,
      clientId,
      owner: undefined, // counted in Redis (HOLD), not in this node's index
      ms,
      live: holder !== undefined,
      until: Date.now() + ms,
      stored: false,
      take,
      takenBy: owner,
    };
    this.#take(lease);
    const record: LeaseRecord = { channel, serial, ms };
    if (clientId !== undefined) record.clientId = clientId;
    if (holder !== undefined) record.holder = holder;
    if (owner !== undefined) record.owner = owner;
    if (take !== undefined) record.take = take;
    const field = fieldOf(channel, serial);
    const written = HOLD.run(
      this.#o.connection,
      [
        this.#deadlines,
        this.#records,
        holder === undefined ? this.#records : this.#holderKey(holder),
        this.#owners,
        this.#ownerOf,
        ...this.#reservationKeys,
      ],
      [
        field,
        String(Date.now() + ms),
        JSON.stringify(record),
        holder ?? '',
        String(this.#holderTtl),
        takeover ? '1' : '',
        owner ?? '', // counted only by a new take: a takeover keeps the count it has
        reservation ?? '',
        takeover?.take ?? '',
      ],
    );
    this.#track(written);
    return written.then(
      (taken) => {
        // gone meanwhile: not held here either (or this node would renew and count it)
        if (Number(taken) === 0 && this.#leases.get(field) === lease) this.#leases.remove(field);
        else lease.stored = true;
      },
      () => undefined, // reported by #track
    );
  }

  touch(
    channel: string,
    serial: string,
    holder: string | undefined,
    clientId: string | undefined,
    owner?: string,
  ): void {
    const field = fieldOf(channel, serial);
    const lease = this.#leases.get(field);
    if (!lease) {
      // perhaps taken on another node: look it up (not awaited), unless looked up just now
      this.#track(this.#lookUp(field, channel, serial, holder, clientId, owner));
      return;
    }
    if (!followsWriter(lease, lease.takenBy, clientId, owner)) return;
    if (holder !== undefined && lease.holder === holder) return;
    // a REST publisher renews by activity; a new connection of its holder takes the lease over
    void this.#hold(channel, serial, holder, lease.ms, lease.clientId, lease.takenBy, { take: lease.take });
  }

  /**
   * Removes the lease the end ended, which it names by its take: the one the end's mark found
   * (`ending`: wherever the lease was taken; none, if it found none), or the one this node knows
   * now (a publish of the same connection stored before the end may have taken it again after the
   * mark was read). A release sent again later names the same takes, so it leaves a lease taken
   * again meanwhile in place; a lease it leaves loses the end's own mark all the same.
   * Without a mark read (a delete of a message this node knows no lease of, a serial of another
   * epoch, or a mark that failed), the first try — sent as soon as the end is stored — removes
   * whatever lease the message has; tries sent again later only the take this node knows (see
   * `#releaseAgain`).
   */
  release(channel: string, serial: string): Promise<void> {
    const field = fieldOf(channel, serial);
    const ending = this.#endings.get(field);
    const lease = this.#leases.get(field);
    const release: Release = {
      ended: ending?.ended ?? ANY,
      known: lease ? namesTake(lease.take) : NOTHING,
      mark: ending?.mark ?? '',
    };
    this.#endings.delete(field);
    this.#leases.remove(field);
    const released = this.#release(field, release);
    return released.then(
      () => undefined,
      () => this.#releaseAgain(field, { ...release, ended: sentAgain(release.ended) }, 1), // reported by #track
    );
  }

  /** One script: a takeover (HOLD) between its deletes would bring the lease back. */
  #release(field: string, release: Release): Promise<unknown> {
    const released = RELEASE.run(this.#o.connection, this.#removal(field), [
      field,
      release.ended,
      release.known,
      release.mark,
    ]);
    this.#track(released);
    return released;
  }

  /**
   * A release that could not reach Redis (restarting) is sent again with backoff (250 ms doubling,
   * 5 s at most, 6 tries: within the ending mark's `retryAfter` by default): its end is stored and
   * acknowledged, and the lease left behind would mark the ended run `abandoned` once the mark runs
   * out — its publisher, done, never sends the end again (found by the soak with Redis killed).
   */
  #releaseAgain(field: string, release: Release, attempt: number): void {
    if (this.#closed || attempt > 6) return;
    const timer = setTimeout(() => {
      if (this.#closed) return;
      this.#release(field, release).catch(() => this.#releaseAgain(field, release, attempt + 1));
    }, redisRetryDelay(attempt));
    timer.unref();
  }

  /**
   * Marks the run ending (awaited before its end is stored; see Leases.ending), for `retryAfter`:
   * past that, a mark whose end never came would only hold a due expiry back. Best effort: a mark
   * that cannot be written goes to `onError` and the end goes on (its store write would most likely
   * fail the same way).
   */
  async ending(channel: string, serial: string): Promise<void> {
    const field = fieldOf(channel, serial);
    this.#endings.delete(field); // an earlier end's, whose publish failed
    try {
      // when it was set, and by which end: a release that leaves the lease removes its own mark only
      const mark = `${Date.now()}:${this.#id}:${++this.#marks}`;
      const take = await ENDING.run(
        this.#o.connection,
        [this.#records, this.#ending(field)],
        [field, mark, String(this.#retryAfter)],
      );
      // kept until the release (a publish refused in between leaves one: the map is bounded)
      if (this.#endings.size >= 10_000) this.#endings.clear();
      // nil: no lease at the end, so one there at the release was taken after it and stays
      this.#endings.set(field, { mark, ended: typeof take === 'string' ? namesTake(take) : NOTHING });
    } catch (err) {
      this.#o.onError(err);
    }
  }

  /** Whether an expiry may write: no end is under way (no mark, or one that ran out). */
  async #due(field: string): Promise<boolean> {
    return Number(await DUE.run(this.#o.connection, [this.#ending(field), this.#records], [field])) === 1;
  }

  holderLost(connectionId: string): void {
    this.#lost.set(connectionId, Date.now());
    const fields = this.#leases.keysOf(connectionId);
    if (!fields) return;
    const now = Date.now();
    const renewals: Renewal[] = [];
    for (const field of fields) {
      const lease = this.#leases.get(field);
      if (!lease?.live) continue;
      lease.live = false;
      lease.until = now + lease.ms;
      renewals.push({ field, lease, deadline: lease.until });
    }
    this.#renew(renewals);
  }

  holderBack(connectionId: string, keeps?: (channel: string) => boolean): void {
    this.#lost.delete(connectionId);
    if (keeps) this.holderLetGo(connectionId, keeps);
    const fields = this.#leases.keysOf(connectionId);
    const now = Date.now();
    const renewals: Renewal[] = [];
    for (const field of fields ?? []) {
      const lease = this.#leases.get(field);
      if (!lease) continue;
      lease.live = true;
      renewals.push({ field, lease, deadline: now + lease.ms });
    }
    this.#renew(renewals);
    // recovered from another node (perhaps a dead one): take its leases along
    this.#track(this.#adopt(connectionId, keeps));
  }

  /**
   * The holder's rights narrowed (a renewed token, or a recovery with one): its leases on channels
   * `keeps` refuses are taken over without a holder (HOLD's takeover: only the take this node
   * knows) — their record names no connection, so no recovery adopts them; their deadline is now +
   * ms, renewed by no node — and run out one lease later unless their publisher writes again.
   */
  holderLetGo(connectionId: string, keeps: (channel: string) => boolean): void {
    for (const field of [...(this.#leases.keysOf(connectionId) ?? [])]) {
      const lease = this.#leases.get(field);
      if (!lease || keeps(lease.channel)) continue;
      void this.#hold(lease.channel, lease.serial, undefined, lease.ms, lease.clientId, lease.takenBy, {
        take: lease.take,
      });
    }
  }

  holderMoved(connectionId: string): void {
    this.#lost.delete(connectionId);
    for (const field of [...(this.#leases.keysOf(connectionId) ?? [])]) this.#leases.remove(field);
  }

  get size(): number {
    return this.#leases.size;
  }

  /**
   * The owner's leases on every node, as Redis counts them. Read from the master, on the connection
   * that writes the leases: a HOLD this node sent before is counted. (Not this node's own list: a
   * lease ended through another node stays in it until the next renewal finds it gone.)
   */
  async heldBy(owner: string): Promise<number> {
    let counted: unknown;
    try {
      counted = await this.#o.connection.send(this.#owners, ['HGET', this.#owners, owner]);
    } catch (err) {
      throw redisUnavailable(err, 'the lease count');
    }
    return Number(counted ?? 0);
  }

  has(channel: string, serial: string): boolean {
    return this.#leases.has(fieldOf(channel, serial));
  }

  /** Stops renewing and sweeping (shutdown); the deadlines stay in Redis and run out on their own. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#leases.clear();
    // Writes not awaited on the publish path (a lease just taken, a holder just lost) must reach
    // Redis before the store's connection closes, or a run whose agent vanished would never expire.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.#pending]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, 3_000);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Keeps a write that is not awaited until it settles (for `close`); its error goes to `onError`. */
  #track(write: Promise<unknown>): void {
    const pending = write.catch(this.#o.onError).finally(() => this.#pending.delete(pending));
    this.#pending.add(pending);
  }

  /** A lease this node does not know: taken over if its own holder took it on another node. */
  async #lookUp(
    field: string,
    channel: string,
    serial: string,
    holder: string | undefined,
    clientId: string | undefined,
    owner: string | undefined,
  ): Promise<void> {
    const now = Date.now();
    if ((this.#notLeased.get(field) ?? 0) > now) return;
    if (this.#notLeased.size >= 10_000) this.#notLeased.clear();
    this.#notLeased.set(field, now + this.#lookupCache);
    const record = decodeRecord(
      await this.#o.connection.send(this.#records, ['HGET', this.#records, field], true),
    );
    if (!record || !followsWriter(record, record.owner, clientId, owner)) return;
    if (this.#leases.has(field) || this.#closed) return;
    if (holder !== undefined && record.holder === holder) return; // its node renews it
    this.#notLeased.delete(field);
    // the record was read a round trip ago: taken over only if that take is still there
    await this.#hold(channel, serial, holder, record.ms, record.clientId, record.owner, {
      take: record.take,
    });
  }

  /**
   * Takes the leases of a connection recovered here along; those `keeps` refuses are let go instead.
   * Its list is read a page per script (ADOPT), which renews each lease the connection still holds
   * as it reads it and strikes the page's stale entries off: a live lease waits on no more of the
   * list than the pages before its own. (The list names what its holder holds, but a node of an
   * older version, which leaves a lease on it when the lease ends, left one entry per run there: a
   * walk of one round trip per entry, renewing at the end, let a long-lived agent's run run out
   * while its connection was being recovered.)
   */
  async #adopt(connectionId: string, keeps?: (channel: string) => boolean): Promise<void> {
    const list = this.#holderKey(connectionId);
    let cursor = '0';
    do {
      if (this.#closed) return;
      const now = Date.now();
      const [next, ...found] = (await ADOPT.run(
        this.#o.connection,
        [list, this.#deadlines, this.#records],
        [connectionId, cursor, String(ADOPT_BATCH), String(now)],
      )) as unknown[];
      cursor = String(next);
      for (let i = 0; i + 1 < found.length; i += 2) {
        const field = String(found[i]);
        const record = decodeRecord(found[i + 1]);
        // known here already (recovered on the node that held it, or an entry SSCAN returned
        // twice): this node's sweeps renew it
        if (!record || this.#leases.has(field)) continue;
        if (keeps && !keeps(record.channel)) {
          // as holderLetGo: the identity it came back with may not take leases on the channel
          void this.#hold(
            record.channel,
            record.serial,
            undefined,
            record.ms,
            record.clientId,
            record.owner,
            {
              take: record.take,
            },
          );
          continue;
        }
        this.#take({
          channel: record.channel,
          serial: record.serial,
          holder: connectionId,
          clientId: record.clientId,
          owner: undefined,
          ms: record.ms,
          live: true,
          until: now + record.ms, // as ADOPT renewed it
          stored: true, // read there: if it was released since, the next renewal finds it gone
          take: record.take,
          takenBy: record.owner,
        });
      }
    } while (cursor !== '0');
  }

  /**
   * Moves the deadlines of leases that still exist, and forgets here the ones Redis no longer has:
   * released through another node (an end written there), or expired by another node while this
   * one was late to renew, or released between an adoption's read and its renewal. Kept, such a
   * lease would be renewed in vain, and taken for held here (`has`), for as long as its holder's
   * connection lives.
   */
  #renew(renewals: Renewal[]): void {
    for (let i = 0; i < renewals.length; i += CLAIM_BATCH) {
      const batch = renewals.slice(i, i + CLAIM_BATCH);
      const args: string[] = [];
      // judged by what was known when the renewal was sent: a HOLD answered after it proves nothing
      const stored = new Map<string, Lease>();
      for (const { field, lease, deadline } of batch) {
        args.push(String(deadline), field);
        if (lease.stored) stored.set(field, lease);
      }
      const renewed = RENEW.run(this.#o.connection, [this.#deadlines], args).then((gone) => {
        for (const field of (gone as unknown[]).map(String)) {
          const lease = stored.get(field);
          if (lease && this.#leases.get(field) === lease) this.#leases.remove(field);
        }
      });
      this.#track(renewed);
    }
  }

  #tick(): void {
    if (this.#closed) return;
    const now = Date.now();
    for (const [holder, at] of this.#lost) if (now - at > this.#holderTtl) this.#lost.delete(holder);
    const renewals: Renewal[] = [];
    const holders = new Set<string>();
    for (const [field, lease] of this.#leases.entries()) {
      if (!lease.live) {
        // Not held here any more, and past its deadline: some node expired it (or will). Forget it
        // here too, or this node would take it for held for ever (`has`).
        if (now > lease.until + this.#retryAfter) this.#leases.remove(field);
        continue;
      }
      renewals.push({ field, lease, deadline: now + lease.ms });
      if (lease.holder !== undefined) holders.add(lease.holder);
    }
    this.#renew(renewals);
    const { connection, onError } = this.#o;
    // holder lists live a recovery window: refresh them a few times per window only
    if (now - this.#holdersRefreshedAt < this.#holderTtl / 4) holders.clear();
    else this.#holdersRefreshedAt = now;
    for (const holder of holders) {
      const list = this.#holderKey(holder);
      connection.send(list, ['PEXPIRE', list, String(this.#holderTtl)]).catch(onError);
    }
    for (const [id, until] of this.#lostReservations) {
      if (now > until)
        this.#lostReservations.delete(id); // it has run out in Redis by now
      else
        this.#sendUnreserve(id).then(
          () => this.#lostReservations.delete(id),
          () => {}, // Redis still away: tried again at the next sweep
        );
    }
    if (++this.#ticks % REPAIR_EVERY === 0) this.#track(this.#repairCounts());
    if (this.#sweeping) return;
    this.#sweeping = true;
    this.#sweep()
      .catch(this.#o.onError)
      .finally(() => {
        this.#sweeping = false;
      });
  }

  /** One page of the walk that keeps the owners' counts in step with the lease records (REPAIR). */
  async #repairCounts(): Promise<void> {
    const next = await REPAIR.run(
      this.#o.connection,
      [this.#records, this.#owners, this.#ownerOf],
      [this.#repairCursor, String(CLAIM_BATCH)],
    );
    this.#repairCursor = String(next);
  }

  /** Claims the overdue leases (atomically: each by one node), expires them, then removes them. */
  async #sweep(): Promise<void> {
    const { connection } = this.#o;
    const now = Date.now();
    const claimed = (await CLAIM.run(
      connection,
      [this.#deadlines],
      [String(now), String(now + this.#retryAfter), String(CLAIM_BATCH)],
    )) as unknown[];
    for (let i = 0; i + 1 < claimed.length && !this.#closed; i += 2) {
      const field = String(claimed[i]);
      const score = String(claimed[i + 1]);
      const parsed = parseField(field);
      if (!parsed) {
        await FINISH.run(connection, this.#removal(field), [field, score]);
        continue;
      }
      // A batch is expired one lease at a time: released (the run finished) or taken again since the
      // claim, the lease is not this expiry's to abandon any more
      const current = await connection.send(this.#deadlines, ['ZSCORE', this.#deadlines, field], true);
      if (current === null || current === undefined || Number(current) !== Number(score)) continue;
      try {
        // false: the message was written between the expiry's read and its write, which stored
        // nothing; the claim stays, and some node decides again after retryAfter (released by then:
        // gone; taken again: its deadline moved; else expired with the version it reads then)
        if (!(await this.#o.expire(parsed[0], parsed[1], () => this.#due(field)))) continue;
      } catch (err) {
        this.#o.onError(err); // retried by some node after retryAfter
        continue;
      }
      const removed = await FINISH.run(connection, this.#removal(field), [field, score]);
      const lease = this.#leases.get(field);
      if (Number(removed) === 1 && lease && !lease.live) this.#leases.remove(field);
    }
  }

  #sendUnreserve(id: string): Promise<unknown> {
    return UNRESERVE.run(this.#o.connection, this.#reservationKeys, [id]);
  }

  /**
   * Tries giving a reservation back at the next sweeps, until it has run out in Redis anyway. At
   * most `MAX_LOST_RESERVATIONS` wait (a long outage): the others simply run out.
   */
  #giveBackLater(id: string): void {
    if (this.#lostReservations.size < MAX_LOST_RESERVATIONS)
      this.#lostReservations.set(id, Date.now() + this.#reservationTtl);
  }

  #take(lease: Lease): void {
    if (lease.live && lease.holder !== undefined && this.#lost.has(lease.holder)) lease.live = false;
    const field = fieldOf(lease.channel, lease.serial);
    this.#leases.remove(field);
    this.#leases.add(field, lease);
  }

  get #deadlines(): string {
    return `${this.#o.prefix}:{leases}:deadlines`;
  }

  get #records(): string {
    return `${this.#o.prefix}:{leases}:records`;
  }

  /** Owner → how many leases it holds (`maxLeasesPerClient`, across nodes). */
  get #owners(): string {
    return `${this.#o.prefix}:{leases}:owners`;
  }

  /** Lease field → the owner it counts against. */
  get #ownerOf(): string {
    return `${this.#o.prefix}:{leases}:owner-of`;
  }

  /**
   * The keys of UNRESERVE (and the last three of RESERVE and HOLD): owner → the places its
   * publishes in flight reserved, on every node; reservation id → its deadline (ms since 1970);
   * reservation id → "<places>:<owner>".
   */
  get #reservationKeys(): [string, string, string] {
    const p = `${this.#o.prefix}:{leases}`;
    return [`${p}:reserved`, `${p}:reservations`, `${p}:reserved-by`];
  }

  /** The keys of FINISH (and RELEASE): everything a lease's removal touches. */
  #removal(field: string): string[] {
    return [this.#deadlines, this.#records, this.#ending(field), this.#owners, this.#ownerOf];
  }

  /**
   * The mark of a run being ended (its value: when it was set, ms since 1970, and which end set it:
   * `<ms>:<node>:<n>`; TTL retryAfter).
   */
  #ending(field: string): string {
    return `${this.#o.prefix}:{leases}:ending:${field}`;
  }

  #holderKey(connectionId: string): string {
    return `${this.#o.prefix}:{leases}:holder:${connectionId}`;
  }
}

/**
 * What a release sent again late names as the lease its end ended: the same, except that one whose
 * end read no mark (`ANY`: the first try's "whatever is there") names none, so it removes only the
 * take its node knew — by then a lease on the message may have been taken after the end.
 */
function sentAgain(ended: Names): Names {
  return ended === ANY ? NOTHING : ended;
}

function fieldOf(channel: string, serial: string): string {
  return JSON.stringify([channel, serial]);
}

function parseField(field: string): [string, string] | undefined {
  try {
    const value = JSON.parse(field) as unknown;
    if (Array.isArray(value) && typeof value[0] === 'string' && typeof value[1] === 'string')
      return [value[0], value[1]];
  } catch {}
  return undefined;
}

function decodeRecord(raw: unknown): LeaseRecord | undefined {
  if (raw === null || raw === undefined) return undefined;
  try {
    const r = JSON.parse(String(raw)) as Partial<LeaseRecord>;
    if (typeof r.channel !== 'string' || typeof r.serial !== 'string' || typeof r.ms !== 'number')
      return undefined;
    return r as LeaseRecord;
  } catch {
    return undefined;
  }
}
