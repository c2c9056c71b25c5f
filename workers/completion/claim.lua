-- Claim a continuation: get and delete it, and drop it from the poll schedule,
-- atomically, so exactly one of (callback, duplicate callback, poller) resumes it.
--
-- KEYS[1]  string  continuation JSON      (producer:inflight:task:<api_task_id>)
-- KEYS[2]  zset    poll schedule of token (producer:inflight:due:<token_id>)
-- ARGV[1]  api task id (member of KEYS[2])
-- Returns: the continuation JSON, or nil when it was already claimed.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return nil
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return raw
