-- Claim a continuation: take it out of the poll schedule, atomically, so exactly one of
-- (callback, duplicate callback, poller) resumes it. The claimed copy is kept, with the
-- claim time, until the step's collect reports it finished: a collect lost with a
-- killed worker is found there and the continuation put back (ContinuationStore.unclaim).
--
-- KEYS[1]  string  continuation JSON        (producer:inflight:task:<api_task_id>)
-- KEYS[2]  zset    poll schedule of token   (producer:inflight:due:<token_id>)
-- KEYS[3]  zset    claimed, by claim time   (producer:inflight:resumed:<token_id>)
-- KEYS[4]  string  claimed copy             (producer:inflight:claimed:<api_task_id>)
-- ARGV[1]  api task id (member of KEYS[2] and KEYS[3])
-- ARGV[2]  claim time, epoch seconds (score in KEYS[3])
-- ARGV[3]  seconds the claimed copy is kept at most
-- Returns: the continuation JSON, or nil when it was already claimed.
local raw = redis.call('GET', KEYS[1])
if not raw then
  return nil
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[4], raw, 'EX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return raw
