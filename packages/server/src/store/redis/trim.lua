-- Mooring: remove up to ARGV[2] messages of one channel whose retention ended by ARGV[1] (ms),
-- with every op id recorded for them (dedup lasts exactly as long as the op is retained), and raise
-- the channel's trimmedThrough to the latest version removed.
-- KEYS: 1 meta, 2 ids, 3 ver, 4 msgs, 5 exp. Returns {removed, more (0|1), next}: next is the expiry
-- time (ms) of the channel's oldest remaining message, '' when none is left.
local meta, ids, ver, msgs, exp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local prefix = string.sub(meta, 1, -5)
local chunk = tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', exp, '-inf', ARGV[1], 'LIMIT', 0, chunk + 1)
local trimmed = tonumber(redis.call('HGET', meta, 'trimmed') or '0') or 0
local removed = 0
for i, msgSeq in ipairs(expired) do
  if i > chunk then break end
  local mkey, okey = prefix .. 'm:' .. msgSeq, prefix .. 'o:' .. msgSeq
  local v = tonumber(redis.call('HGET', mkey, 'v') or msgSeq) or tonumber(msgSeq)
  if v > trimmed then trimmed = v end
  local opIds = redis.call('LRANGE', okey, 0, -1)
  for j = 1, #opIds, 500 do
    redis.call('HDEL', ids, unpack(opIds, j, math.min(j + 499, #opIds)))
  end
  redis.call('DEL', mkey, okey, prefix .. 'd:' .. msgSeq)
  redis.call('ZREM', ver, msgSeq)
  redis.call('ZREM', msgs, msgSeq)
  redis.call('ZREM', exp, msgSeq)
  removed = removed + 1
end
if removed > 0 then redis.call('HSET', meta, 'trimmed', trimmed) end
local more = 0
if #expired > chunk then more = 1 end
local first = redis.call('ZRANGE', exp, 0, 0, 'WITHSCORES')
local nextExpiry = ''
if #first == 2 then nextExpiry = first[2] end
return {removed, more, nextExpiry}
