-- finish.lua: move an entry to done or failed; the first finish wins (Ledger.mark_done,
-- Ledger.mark_failed).
--
-- KEYS[1]  hash    the ledger entry       (producer:ledger:<step key>)
-- ARGV[1]  target state: 'done' | 'failed'
-- ARGV[2..n-1]  field, value, field, value ... (result JSON, or error_code and error_message)
-- ARGV[n]  ttl, seconds: the entry expires this long after the write
--
-- Returns: {word, HGETALL}; word = ok | final (already done or failed, unchanged) |
--   missing (reply {'missing', {}}).
local state = redis.call('HGET', e, 'state')
if not state then return {'missing', {}} end
if state == 'done' or state == 'failed' then return reply('final') end
redis.call('HSET', e, 'state', ARGV[1], 'finished_at', tostring(now))
for i = 2, #ARGV - 1, 2 do redis.call('HSET', e, ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', e, ARGV[#ARGV])
return reply('ok')
