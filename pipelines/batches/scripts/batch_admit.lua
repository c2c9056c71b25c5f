-- batch_admit.lua: admit the next row of one batch, if the window has room.
-- Called by BatchState.admit (pipelines/batches/state.py); the reply is decoded once
-- by pipelines/batches/admission.py (Admission | NotAdmitted).
--
-- KEYS[1..10] the batch's keys, in the order _batch_common.lua lists them
-- ARGV[1] batch id
-- ARGV[2] window: most admitted-but-unfinished rows of all batches (rows)
-- ARGV[3] scan chunk: state bytes read per GETRANGE while looking for a pending row (bytes)
-- ARGV[4] scan budget: state bytes looked at per call (bytes; bounds the script's run time)
--
-- Order: waiting rows whose time has come, then rows in the requeue list (retried, or
-- given back by a refused spend reservation), then the cursor's way through the state
-- string.
-- Returns {1, row, attempt, cells JSON, admitted_at (epoch seconds, Redis clock)} admitted;
--         {0, status} nothing (more) to feed from this batch: it left the active list;
--         {-1} the window is full; {2} not now (paused, or the scan budget ran out).

local status = redis.call('HGET', rec, 'status')
if not status then redis.call('LREM', active, 0, id); return {0, 'missing'} end
local t = now()
if status == 'paused' then
  if t < tonumber(redis.call('HGET', rec, 'paused_until') or '0') then return {2} end
elseif status ~= 'queued' and status ~= 'running' then
  redis.call('LREM', active, 0, id)
  return {0, status}
end
if redis.call('ZCARD', win) >= tonumber(ARGV[2]) then return {-1} end

local function from_deferred()
  local due = redis.call('ZRANGEBYSCORE', deferred, '-inf', string.format('%.6f', t),
    'LIMIT', 0, 1)[1]
  if not due then return nil end
  redis.call('ZREM', deferred, due)
  if state_of(due) == 'w' then return tonumber(due) end
  return nil
end

local function from_requeue()
  while true do
    local r = redis.call('LPOP', rq)
    if not r then return nil end
    if state_of(r) == 'p' then return tonumber(r) end
  end
end

local function from_cursor()
  local cursor, last = count('cursor'), count('max_row')
  local chunk, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
  local found = nil
  while cursor < last and budget > 0 do
    local upto = math.min(last, cursor + chunk)
    local i = string.find(redis.call('GETRANGE', st, cursor + 1, upto), 'p', 1, true)
    if i then found = cursor + i; cursor = found; break end
    budget = budget - (upto - cursor)
    cursor = upto
  end
  redis.call('HSET', rec, 'cursor', cursor)
  return found, cursor >= last
end

local row, from = from_deferred(), 'w'
if not row then row, from = from_requeue(), 'p' end
if not row then
  local at_end
  row, at_end = from_cursor()
  if not row then
    if not at_end or redis.call('ZCARD', deferred) > 0 then return {2} end
    redis.call('LREM', active, 0, id)
    return {0, settle_status()}
  end
end

move(row, from, 'r')
local attempt = redis.call('HINCRBY', rec, 'admissions', 1)
local stamp = string.format('%.6f', t)
redis.call('ZADD', win, stamp, id .. '/' .. row)
redis.call('HSET', run, row, cjson.encode({row = row, attempt = attempt, at = stamp}))
if status ~= 'running' then
  redis.call('HSET', rec, 'status', 'running')
  redis.call('HDEL', rec, 'paused_reason', 'paused_until')
  redis.call('HSETNX', rec, 'started_at', stamp)
end
return {1, row, attempt, redis.call('HGET', rows, row), stamp}
