-- Mooring: a channel's log state in one snapshot (see redis-store.ts).
-- KEYS: 1 meta (hash), 2 msgs (zset). Returns {} when the channel has no log, else
-- {epoch, seq, trimmedThrough, messageCount, prev, through, older} (prev, through, older: '' unless
-- the channel went on in a new epoch on a new Redis, see publish.lua).
local head = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'trimmed', 'prev', 'through', 'older')
if not head[1] then return {} end
return {head[1], head[2] or '0', head[3] or '0', redis.call('ZCARD', KEYS[2]), head[4] or '', head[5] or '', head[6] or ''}
