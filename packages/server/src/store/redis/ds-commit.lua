-- Mooring: one Durable Streams step written all or nothing (see stream-redis-store.ts): a
-- compare-and-set on the versions of every stream the decision read, then every write.
-- KEYS: 1 metas (hash path → JSON), 2 versions (hash path → version), 3 version counter, 4 bytes
-- counter, 5 expiry index (zset path by deadline, ms), 6 the mark of this Redis's streams (`dsMark`).
-- ARGV[1]: key base; ARGV[2]: the mark the step read ('': not checked); ARGV[3]: number of checks;
-- then (path, version) pairs ('0': absent); then writes:
--   'M', path, json, deadline       save a stream's meta (new version from the counter) and file it
--                                   under its deadline ('': none, or soft-deleted)
--   'R', path, key, ownBytes        remove a stream's meta, chunks, producers and index entry
--   'C', key, end, member, length   add a chunk (score end)
--   'P', key, id, json              save a producer's state
--   'D', key, id                    remove a producer's state
-- Returns 1 when written, 0 when a checked stream changed since it was read, or the Redis did (a
-- restart, a failover, a FLUSHALL: versions and stream keys may have been given again), nothing
-- written.
-- (`runId` is put before this script: redis-run-id.ts, by EVAL or by the function library of
-- redis-functions.ts.)
local base = ARGV[1]
if ARGV[2] ~= '' then
  local run = runId()
  if redis.call('GET', KEYS[6]) ~= ARGV[2] or string.sub(ARGV[2], 1, #run + 1) ~= run .. ' ' then return 0 end
end
local checks = tonumber(ARGV[3])
local i = 4
for _ = 1, checks do
  local current = redis.call('HGET', KEYS[2], ARGV[i]) or '0'
  if current ~= ARGV[i + 1] then return 0 end
  i = i + 2
end
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'M' then
    redis.call('HSET', KEYS[1], ARGV[i + 1], ARGV[i + 2])
    redis.call('HSET', KEYS[2], ARGV[i + 1], redis.call('INCR', KEYS[3]))
    if ARGV[i + 3] == '' then
      redis.call('ZREM', KEYS[5], ARGV[i + 1])
    else
      redis.call('ZADD', KEYS[5], ARGV[i + 3], ARGV[i + 1])
    end
    i = i + 4
  elseif op == 'R' then
    redis.call('HDEL', KEYS[1], ARGV[i + 1])
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
    redis.call('ZREM', KEYS[5], ARGV[i + 1])
    -- UNLINK: a stream's chunks are freed off Redis's main thread (a million of them took 164 ms)
    redis.call('UNLINK', base .. 'c:' .. ARGV[i + 2], base .. 'p:' .. ARGV[i + 2])
    redis.call('DECRBY', KEYS[4], ARGV[i + 3])
    i = i + 4
  elseif op == 'C' then
    redis.call('ZADD', base .. 'c:' .. ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
    redis.call('INCRBY', KEYS[4], ARGV[i + 4])
    i = i + 5
  elseif op == 'P' then
    redis.call('HSET', base .. 'p:' .. ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'D' then
    redis.call('HDEL', base .. 'p:' .. ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  else
    return redis.error_reply('ds-commit: unknown write ' .. tostring(op))
  end
end
return 1
