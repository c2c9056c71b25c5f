-- _batch_common.lua: helpers prepended to every batch script (pipelines/batches/state.py).
--
-- Every batch script gets the same KEYS, so the helpers can name them:
-- KEYS[1] record hash   producer:batch:{<id>}        status, counters, cursor ...
-- KEYS[2] state string  producer:batch:{<id>}:state  one byte per row (byte 0 unused):
--                       p pending, r running, d done, f failed, c cancelled (abandoned),
--                       w waiting (pending, deferred: an older copy of its canvas still
--                       has a step in flight), x not in the batch (a rejected row number)
-- KEYS[3] rows hash     producer:batch:{<id>}:rows   row -> JSON list of cells
-- KEYS[4] requeue list  producer:batch:{<id>}:requeue  rows to feed before the cursor
-- KEYS[5] running hash  producer:batch:{<id>}:running  row -> {"row", "attempt", "at"} JSON
-- KEYS[6] errors hash   producer:batch:{<id>}:errors   row -> {"step", "code", "message"}
-- KEYS[7] rate hash     producer:batch:{<id>}:rate     epoch minute -> rows finished
-- KEYS[8] active list   producer:batch:_active       batches with rows to feed
-- KEYS[9] window zset   producer:batch:_window       "<id>/<row>" -> admitted at
-- KEYS[10] deferred zset producer:batch:{<id>}:deferred  row -> not before (epoch s)
-- ARGV[1] batch id; the rest is per script (see each script's header).
-- Returns: nothing (a library); each script documents its own reply.
-- Clock: Redis TIME (epoch seconds, microseconds), never a client's.
--
-- ARGV: none of its own (each script that includes it documents its ARGV).
-- Returns: nothing: it only defines locals for the script it is prepended to.

local rec, st, rows, rq, run, errs = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local rate, active, win, deferred = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local id = ARGV[1]
-- A waiting row counts as pending: it only waits for its turn to come back.
local NAMES = {p = 'pending', w = 'pending', r = 'running', d = 'done', f = 'failed',
               c = 'cancelled'}

local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function count(name)
  return tonumber(redis.call('HGET', rec, name) or '0')
end

local function state_of(row)
  return redis.call('GETRANGE', st, row, row)
end

-- Move one row between states, keeping the counters equal to the state string.
local function move(row, from, to)
  redis.call('SETRANGE', st, row, to)
  redis.call('HINCRBY', rec, NAMES[from], -1)
  redis.call('HINCRBY', rec, NAMES[to], 1)
end

-- Forget a row's admission: its running record and its place in the window.
local function unrun(row)
  local held = redis.call('HGET', run, row)
  redis.call('HDEL', run, row)
  redis.call('ZREM', win, id .. '/' .. row)
  return held
end

local function activate()
  if not redis.call('LPOS', active, id) then redis.call('RPUSH', active, id) end
end

-- A batch with nothing pending or running has ended: finished, or cancelled.
local function settle_status()
  local status = redis.call('HGET', rec, 'status')
  if count('running') > 0 then return status end
  if status == 'cancelling' then status = 'cancelled'
  elseif count('pending') == 0 and status ~= 'cancelled' then status = 'finished'
  else return status end
  redis.call('HSET', rec, 'status', status, 'finished_at', string.format('%.6f', now()))
  redis.call('HDEL', rec, 'paused_reason', 'paused_until')
  redis.call('LREM', active, 0, id)
  return status
end
