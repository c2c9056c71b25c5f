-- token_bucket.lua: one adaptive token bucket, updated atomically.
-- Mirrors workers/ratelimit/bucket.py line for line (that module is the reference
-- and documents the algorithm); change both together.
--
-- KEYS[1]  bucket hash, producer:limit:{<token_id>}:<endpoint class>
--
-- ARGV[1]  op: "take" | "success" | "throttle"
-- ARGV[2]  cost, tokens (> 0): weight of the call taken, or of the success reported
-- ARGV[3]  default ceiling, tokens/s (used when the hash holds no "ceiling" override)
-- ARGV[4]  default burst, tokens (used when the hash holds no "burst" override)
-- ARGV[5]  retry_after, seconds, for "throttle"; -1 = the provider sent none
-- ARGV[6]  epoch the throttled call was admitted in; -1 = unknown
-- ARGV[7..15]  tuning: decrease (factor), recovery (s), probe band (fraction),
--          probe slowdown (factor), backoff (s), max backoff (s), window (s),
--          min rate (fraction of the ceiling), queue horizon (s: a waiter's slot
--          further away than this is told but not kept)
--
-- Clock: Redis TIME, in seconds with microsecond resolution. Never the worker's.
--
-- Returns {code, wait_ms, epoch, rate, pause_until}:
--   take:     code 1 = "granted" (wait_ms 0), code 0 = "wait wait_ms ms" (integer >= 1)
--   success:  code 1, wait_ms 0
--   throttle: code 0, wait_ms = ms until the pause ends (0 if none)
--   rate (tokens/s) and pause_until (epoch seconds) are strings: Redis would
--   truncate a Lua number reply to an integer.
--
-- Hash fields (numbers): ceiling, burst (runtime overrides, written by the CLI);
-- rate (learned tokens/s, absent = at the ceiling); tokens, ts (tokens at ts,
-- epoch s); pause_until (epoch s); epoch (count of decreases); strikes
-- (decreases since the last success); w_max (tokens/s accepted when last
-- throttled); acc, acc_ts (decaying success count and its time); inc_ts (last rise);
-- queue_until (epoch s: the slot last given to a waiter).

if redis.replicate_commands then pcall(redis.replicate_commands) end

local key = KEYS[1]
local op = ARGV[1]
local cost = tonumber(ARGV[2])
local d_ceiling, d_burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local retry_after, given_epoch = tonumber(ARGV[5]), tonumber(ARGV[6])
local decrease, recovery_s = tonumber(ARGV[7]), tonumber(ARGV[8])
local probe_band, probe_slowdown = tonumber(ARGV[9]), tonumber(ARGV[10])
local backoff_s, max_backoff_s = tonumber(ARGV[11]), tonumber(ARGV[12])
local window_s, min_rate_fraction = tonumber(ARGV[13]), tonumber(ARGV[14])
local queue_horizon_s = tonumber(ARGV[15])

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

local s = {}
local raw = redis.call('HGETALL', key)
for i = 1, #raw, 2 do s[raw[i]] = tonumber(raw[i + 1]) end

local function f(name) return s[name] or 0 end
local ceiling = s.ceiling or d_ceiling
local burst = s.burst or d_burst

local function current_rate()
  if s.rate == nil then return ceiling end
  return math.min(s.rate, ceiling)
end

local function tokens_at()
  if s.ts == nil then return burst end
  local elapsed = math.max(0, now - s.ts)
  return math.min(burst, f('tokens') + elapsed * current_rate())
end

local function accepted_rate()
  local age = math.max(0, now - f('acc_ts'))
  return f('acc') * math.exp(-age / window_s) / window_s
end

local function take()
  local c = math.min(cost, burst)
  local tokens = tokens_at()
  local start = math.max(now, f('ts'))
  s.ts = start
  -- Tokens due within one clock tick (1 us) count as there: float rounding at
  -- epoch-sized times must not turn an honoured wait into "wait 1 ms" again.
  if tokens + current_rate() * 0.000001 >= c then
    s.tokens = tokens - c
    return 1, 0
  end
  s.tokens = tokens
  -- Each waiter gets its own slot, one token interval after the last one given out.
  local due = start + (c - tokens) / current_rate()
  local slot = math.max(due, f('queue_until') + c / current_rate())
  if slot - now <= queue_horizon_s then s.queue_until = slot end
  return 0, math.max(1, math.ceil((slot - now) * 1000))
end

local function success()
  s.acc = accepted_rate() * window_s + cost
  s.acc_ts = now
  s.strikes = 0
  local rate = current_rate()
  if rate < ceiling then
    local slope = ceiling / recovery_s
    local w_max = f('w_max')
    if w_max > 0 and math.abs(rate - w_max) <= probe_band * w_max then
      slope = slope / probe_slowdown
    end
    local credit = math.min(math.max(0, now - f('inc_ts')), 2 / rate)
    s.rate = math.min(ceiling, rate + slope * credit)
  end
  s.inc_ts = math.max(now, f('inc_ts'))
  return 1, 0
end

local function throttle()
  local pause_until = f('pause_until')
  local stale
  if given_epoch >= 0 then stale = given_epoch ~= f('epoch') else stale = now < pause_until end
  if not stale then
    local rate = current_rate()
    local accepted = accepted_rate()
    if accepted > 0 then s.w_max = math.min(rate, accepted) else s.w_max = rate end
    s.rate = math.max(ceiling * min_rate_fraction, rate * decrease)
    s.epoch = f('epoch') + 1
    s.strikes = f('strikes') + 1
    if retry_after < 0 then
      retry_after = math.min(max_backoff_s, backoff_s * 2 ^ (s.strikes - 1))
    end
  end
  if retry_after >= 0 then
    pause_until = math.max(pause_until, now + retry_after)
    s.pause_until = pause_until
    s.tokens = 0
    s.ts = math.max(f('ts'), pause_until)
    s.inc_ts = math.max(f('inc_ts'), pause_until)
  end
  return 0, math.max(0, math.ceil((pause_until - now) * 1000))
end

local code, wait_ms
if op == 'take' then
  code, wait_ms = take()
elseif op == 'success' then
  code, wait_ms = success()
elseif op == 'throttle' then
  code, wait_ms = throttle()
else
  return redis.error_reply('token_bucket.lua: unknown op ' .. tostring(op))
end

local flat = {}
for name, value in pairs(s) do
  flat[#flat + 1] = name
  flat[#flat + 1] = string.format('%.17g', value)
end
if #flat > 0 then redis.call('HSET', key, unpack(flat)) end

return {code, wait_ms, f('epoch'), string.format('%.17g', current_rate()),
        string.format('%.17g', f('pause_until'))}
