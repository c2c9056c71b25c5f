-- spend.lua: reserve, settle or release one spend hold, atomically over a batch and the fleet.
-- Called only by SpendGuard (pipelines/spend/guard.py), which documents the protocol.
--
-- KEYS[1]  batch totals hash   producer:spend:batch:<batch_id>
-- KEYS[2]  batch holds hash    producer:spend:batch:<batch_id>:holds
-- KEYS[3]  fleet totals hash   producer:spend:global
-- KEYS[4]  batch pending set   producer:spend:batch:<batch_id>:pending (step keys
--          held while their step is at the provider, settled when it lands)
-- KEYS[5]  fleet pending set   producer:spend:pending (the KEYS[1] of every batch
--          with a pending step)
--
-- ARGV[1]  op: "reserve" | "settle" | "release" | "steps" | "forget" (releases every
--          hold of the batch, then deletes KEYS[1], KEYS[2] and KEYS[4]; the fleet
--          keeps its spend)
-- ARGV[2]  hold key (a row of the batch): the unit of idempotence
-- ARGV[3]  amount, micro-units, integer >= 0: reserve = the estimate,
--          settle = the actual spend, release = ignored
-- ARGV[4]  batch cap, micro-units; -1 = none (reserve only; kept in KEYS[1] "cap")
-- ARGV[5]  default global cap, micro-units; -1 = none. A "cap" field in KEYS[3]
--          (set at runtime) wins over it.
-- ARGV[6..] "steps" only: triples (step key, what, micro) of one row's steps, what =
--          "p" paid (counted once per step key, ever; a held step at its held
--          price), "f" at the provider (held
--          until it lands: the provider may still bill it), "u" not paid (a step
--          hold is released). ARGV[2] is the row's admission hold, released (marked
--          settled with what this call counted), or "" to settle pending steps only.
--
-- Units: every amount is an integer number of micro-units (1e-6) of the price
-- table's currency (USD or credits). Integers add exactly, so a cap compares
-- exactly and float drift can never let spend creep past it.
--
-- Totals fields (integers): spent, reserved, overrun (spend settled above its hold),
-- cap (batch: the cap of the last reserve; global: the runtime override);
-- batch only: refused = reason of the last refusal, removed by the next grant.
-- Holds fields: key -> "h<micro>" held | "s<micro>" settled | "r" released.
--
-- Invariant kept by "reserve": spent + reserved <= cap, for the batch and the fleet.
-- Only a settle above its hold (recorded in "overrun") or a lowered cap can break it.
--
-- Returns {code, reason, batch_spent, batch_reserved, batch_cap,
--          global_spent, global_reserved, global_cap, overrun}
--   code 1 = granted / done, 0 = refused (reserve only);
--   reason "batch_cap" | "global_cap" on a refusal, "" otherwise;
--   caps -1 = none; overrun = micro-units this settle went above its hold.

local batch, holds, fleet = KEYS[1], KEYS[2], KEYS[3]
local pending, fleet_pending = KEYS[4], KEYS[5]
local op, key = ARGV[1], ARGV[2]
local amount = tonumber(ARGV[3])
local batch_cap, default_global_cap = tonumber(ARGV[4]), tonumber(ARGV[5])

local function num(hash, field)
  return tonumber(redis.call('HGET', hash, field) or '0')
end

-- %d, not tostring: Lua prints large numbers as 1e+15, which HINCRBY refuses.
local function add(hash, field, delta)
  if delta ~= 0 then redis.call('HINCRBY', hash, field, string.format('%d', delta)) end
end

local function global_cap()
  local override = redis.call('HGET', fleet, 'cap')
  if override then return tonumber(override) end
  return default_global_cap
end

local function over(hash, cap)
  return cap >= 0 and num(hash, 'spent') + num(hash, 'reserved') + amount > cap
end

-- The hold's state letter and its micro-units ("r" and no hold: 0).
local function hold_state()
  local raw = redis.call('HGET', holds, key)
  if not raw then return nil, 0 end
  local kind = string.sub(raw, 1, 1)
  return kind, tonumber(string.sub(raw, 2)) or 0
end

local function reserve()
  if batch_cap >= 0 then
    redis.call('HSET', batch, 'cap', string.format('%d', batch_cap))
  else
    redis.call('HDEL', batch, 'cap')
  end
  local kind = hold_state()
  -- Held or settled already: a repeated admission must not count twice.
  if kind == 'h' or kind == 's' then return 1, '' end
  local reason = ''
  if over(batch, batch_cap) then
    reason = 'batch_cap'
  elseif over(fleet, global_cap()) then
    reason = 'global_cap'
  end
  if reason ~= '' then
    redis.call('HSET', batch, 'refused', reason)
    return 0, reason
  end
  redis.call('HSET', holds, key, 'h' .. string.format('%d', amount))
  add(batch, 'reserved', amount)
  add(fleet, 'reserved', amount)
  redis.call('HDEL', batch, 'refused')
  return 1, ''
end

local function settle()
  local kind, held = hold_state()
  if kind == 's' then return 1, '', 0 end
  if kind ~= 'h' then held = 0 end
  -- Money the provider took is recorded even above the hold: hiding it would be worse.
  local overrun = math.max(0, amount - held)
  for _, hash in ipairs({batch, fleet}) do
    add(hash, 'reserved', -held)
    add(hash, 'spent', amount)
    add(hash, 'overrun', overrun)
  end
  redis.call('HSET', holds, key, 's' .. string.format('%d', amount))
  return 1, '', overrun
end

local function release()
  local kind, held = hold_state()
  if kind == 'h' then
    add(batch, 'reserved', -held)
    add(fleet, 'reserved', -held)
    redis.call('HSET', holds, key, 'r')
  end
  return 1, ''
end

-- A row's steps, each counted once whichever admission, cancel or resume settles it.
local function steps()
  local charged, credited, row_held = 0, 0, 0
  for i = 6, #ARGV, 3 do
    local step, what, micro = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    local raw = redis.call('HGET', holds, step)
    local kind = raw and string.sub(raw, 1, 1)
    local held = (kind == 'h') and tonumber(string.sub(raw, 2)) or 0
    if what == 'p' and kind ~= 's' then
      -- A held step is counted at the price it was held at (no price table needed).
      if kind == 'h' then micro = held end
      for _, hash in ipairs({batch, fleet}) do
        add(hash, 'reserved', -held)
        add(hash, 'spent', micro)
      end
      charged, credited = charged + micro, credited + held
      redis.call('HSET', holds, step, 's' .. string.format('%d', micro))
      redis.call('SREM', pending, step)
    elseif what == 'f' and kind ~= 's' and kind ~= 'h' then
      add(batch, 'reserved', micro)
      add(fleet, 'reserved', micro)
      redis.call('HSET', holds, step, 'h' .. string.format('%d', micro))
      redis.call('SADD', pending, step)
    elseif what == 'u' and kind == 'h' then
      add(batch, 'reserved', -held)
      add(fleet, 'reserved', -held)
      redis.call('HSET', holds, step, 'r')
      redis.call('SREM', pending, step)
    end
  end
  if key ~= '' then
    local kind, held = hold_state()
    if kind == 'h' then
      row_held = held
      add(batch, 'reserved', -held)
      add(fleet, 'reserved', -held)
      redis.call('HSET', holds, key, 's' .. string.format('%d', charged))
    end
  end
  local overrun = math.max(0, charged - credited - row_held)
  add(batch, 'overrun', overrun)
  add(fleet, 'overrun', overrun)
  if redis.call('SCARD', pending) > 0 then
    redis.call('SADD', fleet_pending, batch)
  else
    redis.call('SREM', fleet_pending, batch)
  end
  return 1, '', overrun
end

local function forget()
  local raw = redis.call('HVALS', holds)
  for _, value in ipairs(raw) do
    if string.sub(value, 1, 1) == 'h' then add(fleet, 'reserved', -tonumber(string.sub(value, 2))) end
  end
  redis.call('DEL', batch, holds, pending)
  redis.call('SREM', fleet_pending, batch)
  return 1, ''
end

local code, reason, overrun
if op == 'reserve' then
  code, reason = reserve()
elseif op == 'settle' then
  code, reason, overrun = settle()
elseif op == 'steps' then
  code, reason, overrun = steps()
elseif op == 'release' then
  code, reason = release()
elseif op == 'forget' then
  code, reason = forget()
else
  return redis.error_reply('spend.lua: unknown op ' .. tostring(op))
end

local bcap = tonumber(redis.call('HGET', batch, 'cap') or '-1')
return {code, reason, num(batch, 'spent'), num(batch, 'reserved'), bcap,
        num(fleet, 'spent'), num(fleet, 'reserved'), global_cap(), overrun or 0}
