-- Mooring: remove messages of one channel whose retention ended by ARGV[1] (ms), with every op id
-- recorded for them (dedup lasts exactly as long as the op is retained), and raise the channel's
-- trimmedThrough to the latest version removed. One call does at most ARGV[2] units of work: a
-- message is one, each op id another. A message's op ids go oldest first, at most the call's
-- budget at a time (one holder's message of a million empty appends must not hold Redis for
-- seconds); the message itself goes in the call that removes its last op id, so until then it is
-- read whole, and only op ids past their retention have been forgotten.
-- KEYS: 1 meta, 2 ids, 3 ver, 4 msgs, 5 exp. Returns {removed, more (0|1), next}: next is the expiry
-- time (ms) of the channel's oldest remaining message, '' when none is left.
local meta, ids, ver, msgs, exp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local prefix = string.sub(meta, 1, -5)
local budget = tonumber(ARGV[2])
local trimmed = tonumber(redis.call('HGET', meta, 'trimmed') or '0') or 0
local removed = 0
local more = 0
while true do
  local expired = redis.call('ZRANGEBYSCORE', exp, '-inf', ARGV[1], 'LIMIT', 0, 1)
  if #expired == 0 then break end
  if budget <= 0 then
    more = 1
    break
  end
  local msgSeq = expired[1]
  local mkey, okey = prefix .. 'm:' .. msgSeq, prefix .. 'o:' .. msgSeq
  local opIds = redis.call('LPOP', okey, budget)
  if opIds then
    budget = budget - #opIds
    for j = 1, #opIds, 500 do
      redis.call('HDEL', ids, unpack(opIds, j, math.min(j + 499, #opIds)))
    end
  end
  if redis.call('EXISTS', okey) == 1 then
    more = 1
    break
  end
  local v = tonumber(redis.call('HGET', mkey, 'v') or msgSeq) or tonumber(msgSeq)
  if v > trimmed then trimmed = v end
  redis.call('DEL', mkey, prefix .. 'd:' .. msgSeq)
  redis.call('ZREM', ver, msgSeq)
  redis.call('ZREM', msgs, msgSeq)
  redis.call('ZREM', exp, msgSeq)
  removed = removed + 1
  budget = budget - 1
end
if removed > 0 then redis.call('HSET', meta, 'trimmed', trimmed) end
local first = redis.call('ZRANGE', exp, 0, 0, 'WITHSCORES')
local nextExpiry = ''
if #first == 2 then nextExpiry = first[2] end
return {removed, more, nextExpiry}
