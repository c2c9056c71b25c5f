-- batch_rows.lua: operations on many rows of one batch at once.
-- Called by BatchState.unadmit/defer/retry/resume/cancel (pipelines/batches/state.py).
--
-- KEYS[1..10] the batch's keys, in the order _batch_common.lua lists them
-- ARGV[1] batch id; ARGV[2] op, then per op (ROW: a CSV row number; times in seconds):
--   unadmit ROW REASON RETRY_S   a refused spend reservation: the row goes back to the
--                                front of the queue, the batch pauses for RETRY_S seconds
--   defer ROW SECONDS            the row waits (w) SECONDS before it is admitted again
--   retry ROW...                 failed rows become pending again (retry-failed)
--   resume                       running and abandoned rows become pending, the cursor
--                                restarts, counters are recounted from the state string
--   cancel ABANDON               stop feeding; ABANDON '1' also marks running rows
--                                cancelled (their late results are ignored)
-- Returns {status, running records JSON...}: the batch status afterwards ('missing' if
-- there is no batch), then the {"row", "attempt", "at"} records of rows taken out of
-- "running", so the caller can settle their spend.

local op = ARGV[2]
local taken = {}
if not redis.call('HGET', rec, 'status') then return {'missing'} end

-- Whether the batch is being fed (not cancelled, not ended).
local function feedable()
  local status = redis.call('HGET', rec, 'status')
  return status == 'queued' or status == 'running' or status == 'paused'
end

local function take_running(to)
  for _, row in ipairs(redis.call('HKEYS', run)) do
    if state_of(row) == 'r' then move(row, 'r', to) end
    table.insert(taken, unrun(row))
  end
end

if op == 'unadmit' then
  local row = ARGV[3]
  if state_of(row) == 'r' then move(row, 'r', 'p') end
  table.insert(taken, unrun(row) or false)
  redis.call('LPUSH', rq, row)
  if feedable() then
    redis.call('HSET', rec, 'status', 'paused', 'paused_reason', ARGV[4],
      'paused_until', string.format('%.6f', now() + tonumber(ARGV[5])))
    activate()  -- another feeder may have found the batch exhausted meanwhile
  end
elseif op == 'defer' then
  local row = ARGV[3]
  if state_of(row) == 'r' then move(row, 'r', 'w') end
  table.insert(taken, unrun(row) or false)
  redis.call('ZADD', deferred, string.format('%.6f', now() + tonumber(ARGV[4])), row)
  if feedable() then activate() end
elseif op == 'retry' then
  for i = 3, #ARGV do
    if state_of(ARGV[i]) == 'f' then
      move(ARGV[i], 'f', 'p')
      redis.call('HDEL', errs, ARGV[i])
      redis.call('RPUSH', rq, ARGV[i])
    end
  end
  local status = redis.call('HGET', rec, 'status')
  if count('pending') > 0 then
    if status ~= 'running' and status ~= 'paused' then
      redis.call('HSET', rec, 'status', 'queued')
    end
    redis.call('HDEL', rec, 'finished_at')
    activate()
  end
elseif op == 'resume' then
  take_running('p')
  local s = redis.call('GET', st) or ''
  s = string.gsub(s, 'c', 'p')
  redis.call('SET', st, s)
  local counts = {}
  for letter, name in pairs(NAMES) do
    local _, n = string.gsub(s, letter, '')
    counts[name] = (counts[name] or 0) + n
  end
  for name, n in pairs(counts) do redis.call('HSET', rec, name, n) end
  redis.call('DEL', rq)
  redis.call('HSET', rec, 'cursor', 0, 'status', 'queued')
  redis.call('HDEL', rec, 'finished_at', 'paused_reason', 'paused_until')
  if count('pending') > 0 then activate() end
elseif op == 'cancel' then
  local status = redis.call('HGET', rec, 'status')
  if status ~= 'finished' and status ~= 'cancelled' then
    if ARGV[3] == '1' then take_running('c') end
    redis.call('HSET', rec, 'status', 'cancelling')
    redis.call('LREM', active, 0, id)
  end
else
  return redis.error_reply('batch_rows.lua: unknown op ' .. tostring(op))
end
local result = {settle_status()}
for _, held in ipairs(taken) do table.insert(result, held) end
return result
