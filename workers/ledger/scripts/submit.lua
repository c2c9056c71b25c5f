-- submit.lua: record the provider task of a step, and claim it (Ledger.mark_submitted,
-- Ledger.adopt_orphan).
--
-- KEYS[1]  hash    the ledger entry       (producer:ledger:<step key>)
-- KEYS[2]  string  claim of the api task  (producer:ledger-claim:<api task id>) -> KEYS[1]
-- ARGV[1]  api task id
-- ARGV[2]  owner: the Celery task id ('' = unfenced write)
-- ARGV[3]  adopted: '0' | '1'
-- ARGV[4]  ttl, seconds: the entry and the claim expire this long after the write
--
-- Returns: {word, HGETALL}; word = ok (also when already recorded with this task) |
--   missing (reply {'missing', {}}) | state | lease_lost | claimed (another entry
--   holds the task's claim).
local state = redis.call('HGET', e, 'state')
if not state then return {'missing', {}} end
if state ~= 'reserved' then
  if redis.call('HGET', e, 'api_task_id') == ARGV[1] then return reply('ok') end
  return reply('state')
end
if ARGV[2] ~= '' and redis.call('HGET', e, 'owner') ~= ARGV[2] then return reply('lease_lost') end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= e then return reply('claimed') end
redis.call('SET', KEYS[2], e, 'EX', ARGV[4])
redis.call('HSET', e, 'state', 'submitted', 'api_task_id', ARGV[1],
  'submitted_at', tostring(now), 'adopted', ARGV[3])
redis.call('EXPIRE', e, ARGV[4])
return reply('ok')
