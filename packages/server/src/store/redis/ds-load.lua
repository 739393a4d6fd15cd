-- Mooring: Durable Streams rows read in one snapshot (see stream-redis-store.ts).
-- Every stream key shares the `{ds}` hash tag: one slot. KEYS: 1 metas (hash path → JSON),
-- 2 versions (hash path → version), 3 the mark of this Redis's streams (`dsMark`). ARGV[1]: the key
-- base (per-stream keys are base..'c:'..key and base..'p:'..key); ARGV[2..4]: `dsMark`'s arguments
-- (the node's clock in ms, the generation it saw last, a nonce). Then items, each answered by one
-- reply entry:
--   'm', path                     → {json, version} or {}
--   'p', key, id                  → producer JSON or false
--   'P', path, id                 → {key, producer JSON or false} or {} (key from the stream's meta)
--   'c', key, after, cap, maxBytes → chunk members with end in (after, cap], ~maxBytes (always ≥ 1)
--   'C', path, after, maxBytes    → {json, version, members capped at the stream's tail} or {}
-- A chunk member is 'start:end:base64'; its score is end.
-- The reply starts with the run_id of this Redis ('' when it does not say): a stream last written by
-- another Redis starts a new generation of offsets (stream-redis-store.ts); then the mark.
-- (`runId` and `dsMark` are put before this script by stream-redis-store.ts.)
local base = ARGV[1]

local function chunks(key, after, cap, maxBytes)
  local out, bytes, from = {}, 0, after
  local budget = tonumber(maxBytes)
  while true do
    local rows = redis.call('ZRANGEBYSCORE', base .. 'c:' .. key, '(' .. from, cap, 'LIMIT', 0, 64)
    for _, member in ipairs(rows) do
      local s, e = string.match(member, '^(%d+):(%d+):')
      local len = tonumber(e) - tonumber(s)
      if #out > 0 and bytes + len > budget then return out end
      out[#out + 1] = member
      bytes = bytes + len
      from = e
    end
    if #rows < 64 then return out end
  end
end

local function keyOf(json)
  local meta = cjson.decode(json)
  return string.format('%d', meta.key), string.format('%d', meta.tail)
end

local out = {runId(), dsMark(KEYS[3], ARGV[2], ARGV[3], ARGV[4])}
local i = 5
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'm' then
    local json = redis.call('HGET', KEYS[1], ARGV[i + 1])
    if json then out[#out + 1] = {json, redis.call('HGET', KEYS[2], ARGV[i + 1]) or '0'} else out[#out + 1] = {} end
    i = i + 2
  elseif op == 'p' then
    out[#out + 1] = redis.call('HGET', base .. 'p:' .. ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'P' then
    local json = redis.call('HGET', KEYS[1], ARGV[i + 1])
    if json then
      local key = keyOf(json)
      out[#out + 1] = {key, redis.call('HGET', base .. 'p:' .. key, ARGV[i + 2])}
    else
      out[#out + 1] = {}
    end
    i = i + 3
  elseif op == 'c' then
    out[#out + 1] = chunks(ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
    i = i + 5
  elseif op == 'C' then
    local json = redis.call('HGET', KEYS[1], ARGV[i + 1])
    if json then
      local key, tail = keyOf(json)
      out[#out + 1] = {json, redis.call('HGET', KEYS[2], ARGV[i + 1]) or '0', chunks(key, ARGV[i + 2], tail, ARGV[i + 3])}
    else
      out[#out + 1] = {}
    end
    i = i + 4
  else
    return redis.error_reply('ds-load: unknown item ' .. tostring(op))
  end
end
return out
