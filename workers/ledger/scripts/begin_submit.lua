-- begin_submit.lua: note that a POST may now happen, fenced by the owner (Ledger.begin_submit).
--
-- KEYS[1]  hash    the ledger entry       (producer:ledger:<step key>)
-- ARGV[1]  owner: the Celery task id that must still hold the reservation
-- ARGV[2]  lease, seconds: renewed from now
-- ARGV[3]  ttl, seconds: the entry expires this long after the write
--
-- Returns: {word, HGETALL}; word = ok | missing (reply {'missing', {}}) | state (not
--   reserved) | lease_lost (another owner). post_started_at is set once (HSETNX).
local state = redis.call('HGET', e, 'state')
if not state then return {'missing', {}} end
if state ~= 'reserved' then return reply('state') end
if redis.call('HGET', e, 'owner') ~= ARGV[1] then return reply('lease_lost') end
redis.call('HSET', e, 'lease_until', tostring(now + tonumber(ARGV[2])))
redis.call('HSETNX', e, 'post_started_at', tostring(now))
redis.call('EXPIRE', e, ARGV[3])
return reply('ok')
