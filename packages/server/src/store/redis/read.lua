-- Mooring: one consistent, read-only snapshot of a channel's rolled-up messages (see redis-store.ts).
-- KEYS: 1 meta (hash), 2 ver (zset), 3 msgs (zset); message keys derive from KEYS[1].
-- ARGV: 1 mode ('since' | 'forwards' | 'backwards'), 2 limit, 3 maxBytes (0 = none),
--       since: 4 after epoch ('' = from the start), 5 after seq (an epoch the log had before a new
--       Redis: that seq, at most where it reached, in this one — see publish.lua; another: the start)
--       history: 4 from epoch, 5 from seq, 6 until epoch, 7 until seq ('' epoch = no bound)
-- Returns {} when the channel has no log, else {epoch, headSeq, more, m1, m2, ...} where each m is
-- {msgSeq, {hash field, value, ...}, data or false-as-''} in page order, or {'corrupt', what}.
local meta, ver, msgs = KEYS[1], KEYS[2], KEYS[3]
local prefix = string.sub(meta, 1, -5)
local head = redis.call('HMGET', meta, 'epoch', 'seq', 'prev', 'through', 'older')
local epoch = head[1]
if not epoch then return {} end
local headSeq = tonumber(head[2] or '0')
if not headSeq then return {'corrupt', 'meta.seq is not a number'} end
local mode, limit, maxBytes = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

-- An inclusive bound of another epoch means "before the start" or "after the end"; but one of an
-- earlier epoch the log went on from (a new Redis, see publish.lua) names the same messages up to the
-- sequence this log kept of it, and its later serials sort before every message after those.
local function bound(e, s, side)
  if e == epoch then return tonumber(s) end
  local kept = nil
  if e == head[3] then kept = tonumber(head[4]) end
  for oe, ot in string.gmatch(head[5] or '', '([^:,]+):(%d+)') do
    if not kept and oe == e then kept = tonumber(ot) end
  end
  if kept then
    if side == 'from' then return math.min(tonumber(s), kept + 1) end
    return math.min(tonumber(s), kept)
  end
  local before = e < epoch
  if side == 'from' then
    if before then return 0 end
    return math.huge
  end
  if before then return -1 end
  return math.huge
end

local seqs
if mode == 'since' then
  local after = 0
  if ARGV[4] == epoch then
    after = tonumber(ARGV[5])
  elseif ARGV[4] == head[3] and tonumber(head[4] or '') then
    after = math.min(tonumber(ARGV[5]), tonumber(head[4]))
  end
  seqs = redis.call('ZRANGEBYSCORE', ver, '(' .. after, '+inf', 'LIMIT', 0, limit + 1)
else
  local lo, hi = 0, headSeq
  if ARGV[4] ~= '' then lo = bound(ARGV[4], ARGV[5], 'from') end
  if ARGV[6] ~= '' then hi = math.min(bound(ARGV[6], ARGV[7], 'until'), headSeq) end
  if lo > hi then
    seqs = {}
  elseif mode == 'forwards' then
    seqs = redis.call('ZRANGEBYSCORE', msgs, lo, hi, 'LIMIT', 0, limit + 1)
  else
    seqs = redis.call('ZREVRANGEBYSCORE', msgs, hi, lo, 'LIMIT', 0, limit + 1)
  end
end

local reply = {epoch, tostring(headSeq), 0}
local bytes = 0
local taken = 0
for i, msgSeq in ipairs(seqs) do
  if taken >= limit then reply[3] = 1 break end
  local fields = redis.call('HGETALL', prefix .. 'm:' .. msgSeq)
  if #fields == 0 then return {'corrupt', 'message ' .. msgSeq .. ' is indexed but missing'} end
  local data = redis.call('GET', prefix .. 'd:' .. msgSeq)
  local size = 0
  if data then size = #data else data = '' end
  -- At most `maxBytes` of data, except that the first message is always taken: any message can be read.
  if maxBytes > 0 and taken > 0 and bytes + size > maxBytes then reply[3] = 1 break end
  bytes = bytes + size
  taken = taken + 1
  reply[#reply + 1] = {msgSeq, fields, data}
end
return reply
