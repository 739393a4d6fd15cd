-- Mooring: store one publish batch of one channel, atomically (see redis-store.ts).
-- Every op is checked before the first write (Lua has no rollback): dedup on (publisher, id),
-- target exists in this epoch, not deleted, owner, appendable, sizes. Then: serials, ops, rolled-up
-- state, op ids, retention index, and the batch on the bus (SPUBLISH) so other nodes fan it out.
--
-- KEYS: 1 meta (hash), 2 ids (hash), 3 ver (zset), 4 msgs (zset), 5 exp (zset); message keys share
-- the same `{<channel>}` hash tag and are derived from KEYS[1].
-- ARGV: 1 now, 2 maxMessageSize, 3 candidate epoch, 4 retention ms ('inf' = forever),
--       5 bus channel, 6 live template (JSON, for the bus), 7 op count, then 14 fields per op:
--       action, dedup field, id, preflight error code, target epoch, target seq, flags
--       (n name, h headers, c clientId, o requireOwner, e base64, v ifVersion), name, data, kind,
--       headers, clientId, requireOwner, ifVersion; then the precondition: the dedup field of the op
--       that must be stored already ('' = none; checked before the first op to store); last,
--       maxMessageOps ('' = no limit): an append or update past a message's that many operations
--       (its op id list `o:<seq>` counts them) is refused, a delete never.
-- Returns {'ok', epoch, r1, r2, ...} (r = seq, or 'd'..seq for a duplicate) or {'err', code, index, detail}
-- or {'corrupt', what}.
local meta, ids, ver, msgs, exp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local prefix = string.sub(meta, 1, -5)
local now = ARGV[1]
local maxSize = tonumber(ARGV[2])
local n = tonumber(ARGV[7])
local FIELDS = 14
local afterField = ARGV[8 + n * FIELDS] or ''
local maxOps = tonumber(ARGV[9 + n * FIELDS]) or math.huge

-- The Redis running this script. A restart, a restored backup or a failover gives it a new run_id, and
-- it may hold less than the Redis before it acknowledged (an RDB snapshot, the last second of an AOF
-- `everysec`, a replica behind its master): continuing the epoch would give new operations serials
-- that clients already hold for lost ones. So the first publish of a channel on a new Redis starts a
-- new epoch (the messages kept, with the same sequences in it; clients re-read the channel). The old
-- epoch and the sequence it reached here are kept (`prev`, `through`): an update or append naming a
-- message by its old serial still reaches it when it is one of those kept, so a run being written
-- across the restart goes on (and its lease can still end it).
-- '' when this Redis does not say (a server that is not Redis): never a new epoch for it.
-- (`runId` is put before this script: redis-run-id.ts, by EVAL or by the function library of
-- redis-functions.ts.)
local run = runId()

-- The base-36 epoch right after `e` (epochs sort as strings), nil if `e` is not one.
local function after(e)
  local digits = '0123456789abcdefghijklmnopqrstuvwxyz'
  local out, carry = {}, true
  for i = #e, 1, -1 do
    local c = string.sub(e, i, i)
    if carry then
      local d = string.find(digits, c, 1, true)
      if not d then return nil end
      if d == 36 then c = '0' else c, carry = string.sub(digits, d + 1, d + 1), false end
    end
    out[i] = c
  end
  if carry then return nil end
  return table.concat(out)
end

local head = redis.call('HMGET', meta, 'epoch', 'seq', 'run', 'prev', 'through', 'older')
local epoch = head[1]
local prev, through, older = head[4], tonumber(head[5] or ''), head[6] or ''
local seq = 0
local fresh = false
if not epoch then
  epoch = ARGV[3]
  fresh = true
else
  seq = tonumber(head[2])
  if not seq then return {'corrupt', 'meta.seq is not a number'} end
  if run ~= '' and head[3] ~= run then
    -- A log written before Mooring recorded run ids (no `run`) is adopted as it is.
    if head[3] then
      -- the epochs before `prev` (`older`: 'epoch:through,…', newest first, at most 8) stay reachable
      -- as far as every later epoch kept their messages
      if prev and through then
        local chain = {prev .. ':' .. math.min(through, seq)}
        for e, t in string.gmatch(older, '([^:,]+):(%d+)') do
          if #chain < 8 then chain[#chain + 1] = e .. ':' .. math.min(tonumber(t), seq) end
        end
        older = table.concat(chain, ',')
      end
      prev, through = epoch, seq
      -- Newer epochs sort after older ones, whatever the clock of the node that made the candidate.
      if ARGV[3] > epoch then
        epoch = ARGV[3]
      else
        -- the time after it, then this Redis's own digits: two Redis that load the same data (a
        -- restore, then another) make two epochs, never one name for two logs
        local time = after(string.sub(epoch, 1, 9))
        if not time then return {'corrupt', 'meta.epoch is not an epoch'} end
        epoch = time .. string.sub(run, 1, #epoch - 9)
      end
      redis.call('HSET', meta, 'prev', prev, 'through', through, 'older', older)
    end
    -- Written even if the batch is refused below: the new epoch is a fact about this Redis, not the batch.
    redis.call('HSET', meta, 'epoch', epoch, 'run', run)
  end
end

local function has(flags, f) return string.find(flags, f, 1, true) ~= nil end

-- Whether message `s` of the earlier epoch `e` is kept in this one (same sequence).
local function kept(e, s)
  if e == prev then return s <= through end
  for oe, ot in string.gmatch(older, '([^:,]+):(%d+)') do
    if oe == e then return s <= tonumber(ot) end
  end
  return false
end

local function loadMeta(msgSeq)
  local m = redis.call('HMGET', prefix .. 'm:' .. msgSeq, 'k', 'sz', 'cid', 'del', 'v')
  if not m[1] then return nil end
  local size = tonumber(m[2])
  if not size then return false end
  return {kind = m[1], size = size, cid = m[3] or false, del = m[4] == '1', v = tonumber(m[5]),
    ops = redis.call('LLEN', prefix .. 'o:' .. msgSeq)}
end

local results = {}
local batchIds = {}
local touched = {}
local plan = {}
for i = 0, n - 1 do
  local b = 8 + i * FIELDS
  local action, field = ARGV[b], ARGV[b + 1]
  local earlier = batchIds[field]
  if not earlier and not fresh then
    local s = redis.call('HGET', ids, field)
    if s then
      earlier = tonumber(s)
      if not earlier then return {'corrupt', 'an op id maps to a non-number'} end
    end
  end
  if earlier then
    results[#results + 1] = 'd' .. earlier
  else
    if afterField ~= '' then
      if fresh or not redis.call('HGET', ids, afterField) then return {'err', 'out_of_order', -1, ''} end
      afterField = ''
    end
    if ARGV[b + 3] ~= '' then return {'err', ARGV[b + 3], i, ''} end
    local opSeq = seq + 1
    local flags, data, kind = ARGV[b + 6], ARGV[b + 8], ARGV[b + 9]
    local msgSeq = opSeq
    if action == 'create' then
      local size = 0
      if kind ~= 'none' then size = #data end
      touched[opSeq] = {kind = kind, size = size, cid = has(flags, 'c') and ARGV[b + 11] or false, del = false, v = opSeq, ops = 1}
    else
      local tseq = tonumber(ARGV[b + 5])
      local known = ARGV[b + 4] == epoch or (tseq and kept(ARGV[b + 4], tseq))
      if not known or not tseq or tseq < 1 then return {'err', 'message_not_found', i, ''} end
      msgSeq = tseq
      local cur = touched[msgSeq]
      if cur == nil then
        cur = loadMeta(msgSeq)
        if cur == false then return {'corrupt', 'message ' .. msgSeq .. ' has a bad size'} end
      end
      if not cur then return {'err', 'message_not_found', i, ''} end
      if cur.del then return {'err', 'message_deleted', i, ''} end
      if has(flags, 'o') and cur.cid ~= ARGV[b + 12] then return {'err', 'not_owner', i, ''} end
      local nxt = {kind = cur.kind, size = cur.size, cid = cur.cid, del = false, v = opSeq, ops = cur.ops + 1}
      if action == 'delete' then
        nxt.kind, nxt.size, nxt.del = 'none', 0, true
      elseif action == 'append' then
        if cur.kind ~= 'none' and cur.kind ~= 'string' then return {'err', 'not_appendable', i, cur.kind} end
        if kind == 'json' or kind == 'base64' then return {'err', 'bad_request', i, ''} end
        nxt.kind = 'string'
        if kind ~= 'none' then nxt.size = cur.size + #data end
      elseif kind ~= 'none' then
        nxt.kind, nxt.size = kind, #data
      end
      if action ~= 'delete' and nxt.ops > maxOps then return {'err', 'message_too_large', i, 'ops'} end
      if nxt.size > maxSize then return {'err', 'message_too_large', i, tostring(nxt.size)} end
      if has(flags, 'v') and cur.v ~= tonumber(ARGV[b + 13]) then
        return {'err', 'version_changed', i, tostring(cur.v)}
      end
      touched[msgSeq] = nxt
    end
    seq = opSeq
    batchIds[field] = opSeq
    results[#results + 1] = tostring(opSeq)
    plan[#plan + 1] = {b = b, seq = opSeq, msg = msgSeq}
  end
end

local reply = {'ok', epoch}
for _, r in ipairs(results) do reply[#reply + 1] = r end
if #plan == 0 then return reply end

if fresh then
  redis.call('HSET', meta, 'epoch', epoch, 'trimmed', 0)
  if run ~= '' then redis.call('HSET', meta, 'run', run) end
end
local retention = ARGV[4]
for _, p in ipairs(plan) do
  local b = p.b
  local action, field, id, flags = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 6]
  local data, kind = ARGV[b + 8], ARGV[b + 9]
  local mkey, dkey, okey = prefix .. 'm:' .. p.msg, prefix .. 'd:' .. p.msg, prefix .. 'o:' .. p.msg
  redis.call('HSET', ids, field, p.seq)
  redis.call('RPUSH', okey, field)
  redis.call('ZADD', ver, p.seq, p.msg)
  if action == 'create' then
    local size = 0
    if kind ~= 'none' then size = #data end
    redis.call('HSET', mkey, 'id', id, 'k', kind, 'sz', size, 'ts', now, 'v', p.seq, 'ch', 0, 'del', 0)
    if has(flags, 'n') then redis.call('HSET', mkey, 'nm', ARGV[b + 7]) end
    if has(flags, 'h') then redis.call('HSET', mkey, 'hd', ARGV[b + 10]) end
    if has(flags, 'c') then redis.call('HSET', mkey, 'cid', ARGV[b + 11]) end
    if has(flags, 'e') then redis.call('HSET', mkey, 'en', 'base64') end
    if kind ~= 'none' then redis.call('SET', dkey, data) end
    redis.call('ZADD', msgs, p.seq, p.msg)
    if retention ~= 'inf' then redis.call('ZADD', exp, tonumber(now) + tonumber(retention), p.msg) end
  else
    if action == 'append' then
      -- O(size of the delta): the message's data is one string, grown in place.
      redis.call('APPEND', dkey, data)
      redis.call('HSET', mkey, 'k', 'string', 'sz', redis.call('STRLEN', dkey))
    elseif action == 'update' then
      if kind ~= 'none' then
        redis.call('SET', dkey, data)
        redis.call('HSET', mkey, 'k', kind, 'sz', #data)
        if has(flags, 'e') then redis.call('HSET', mkey, 'en', 'base64') else redis.call('HDEL', mkey, 'en') end
      end
    else
      redis.call('DEL', dkey)
      redis.call('HSET', mkey, 'k', 'none', 'sz', 0, 'del', 1)
      redis.call('HDEL', mkey, 'hd', 'en')
    end
    if action ~= 'delete' and has(flags, 'h') then redis.call('HSET', mkey, 'hd', ARGV[b + 10]) end
    redis.call('HSET', mkey, 'v', p.seq, 'ch', 1)
  end
end
redis.call('HSET', meta, 'seq', seq)
redis.call('SPUBLISH', ARGV[5], epoch .. '\n' .. table.concat(results, ',') .. '\n' .. ARGV[6])
return reply
