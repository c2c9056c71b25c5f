-- reset_failed.lua: let a failed step run again (Ledger.reset_failed).
--
-- KEYS[1]  hash    the ledger entry       (producer:ledger:<step key>)
-- ARGV     none
--
-- A failure marked 'recollect' (the provider finished the paid task, only collecting
-- it failed) is reopened as 'submitted' with its api task id, once ('recollected'
-- remembers it): the next run collects again instead of paying again. Any other
-- failed entry is deleted, so the next run submits anew.
--
-- Returns: 1 when a failed entry was deleted, 2 when it was reopened, else 0
--   (missing or not failed).
local e = KEYS[1]
if redis.call('HGET', e, 'state') ~= 'failed' then return 0 end
local again = redis.call('HGET', e, 'recollect') == '1'
  and redis.call('HGET', e, 'recollected') ~= '1'
  and redis.call('HEXISTS', e, 'api_task_id') == 1
if not again then return redis.call('DEL', e) end
redis.call('HDEL', e, 'error_code', 'error_message', 'finished_at', 'recollect')
redis.call('HSET', e, 'state', 'submitted', 'recollected', '1')
return 2
