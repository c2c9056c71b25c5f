-- Put a claimed continuation back into the poll schedule (its collect never finished).
--
-- KEYS[1]  string  claimed copy             (producer:inflight:claimed:<api_task_id>)
-- KEYS[2]  zset    claimed, by claim time   (producer:inflight:resumed:<token_id>)
-- KEYS[3]  string  continuation JSON        (producer:inflight:task:<api_task_id>)
-- KEYS[4]  zset    poll schedule of token   (producer:inflight:due:<token_id>)
-- ARGV[1]  api task id
-- ARGV[2]  next poll time, epoch seconds
-- Returns: 1 when put back, 0 when there was no claimed copy (finished or expired).
redis.call('ZREM', KEYS[2], ARGV[1])
local raw = redis.call('GET', KEYS[1])
if not raw then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[3], raw)
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
return 1
