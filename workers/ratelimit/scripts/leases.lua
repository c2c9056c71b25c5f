-- leases.lua: the in-flight cap of one API token, as expiring leases.
-- Mirrors workers/ratelimit/leases.py (the reference); change both together.
--
-- KEYS[1]  leases sorted set, producer:limit:{<token_id>}:leases
--          member = lease id, score = expiry (epoch seconds)
-- KEYS[2]  submit bucket hash, producer:limit:{<token_id>}:submit; its field
--          "max_in_flight" is the runtime override of the cap
--
-- ARGV[1]  op: "acquire" | "renew"
-- ARGV[2]  lease id (the caller's idempotency key: acquiring a held id renews it)
-- ARGV[3]  ttl, seconds (> 0): the lease expires this long after now
-- ARGV[4]  default cap, leases (used when the hash holds no override)
--
-- Clock: Redis TIME, in seconds with microsecond resolution. Never the worker's.
--
-- Returns {code, wait_ms, in_flight}:
--   acquire: code 1 = granted (or renewed); code 0 = cap reached, wait_ms = ms
--            until the oldest lease expires at the latest (integer >= 1)
--   renew:   code 1 = renewed; code 0 = no such lease (expired or released)
--   in_flight = live leases after the call.
-- Expired leases are dropped on every call, so a crashed worker's slot comes
-- back after its ttl; the key itself expires with its last lease.

if redis.replicate_commands then pcall(redis.replicate_commands) end

local key, conf = KEYS[1], KEYS[2]
local op, lease_id = ARGV[1], ARGV[2]
local ttl, default_cap = tonumber(ARGV[3]), tonumber(ARGV[4])

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.17g', now))
local held = redis.call('ZSCORE', key, lease_id)
local count = redis.call('ZCARD', key)
local cap = tonumber(redis.call('HGET', conf, 'max_in_flight')) or default_cap

local function keep()
  redis.call('ZADD', key, string.format('%.17g', now + ttl), lease_id)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', key, math.ceil((tonumber(last[2]) - now) * 1000) + 1000)
end

if op == 'renew' then
  if not held then return {0, 0, count} end
  keep()
  return {1, 0, count}
elseif op ~= 'acquire' then
  return redis.error_reply('leases.lua: unknown op ' .. tostring(op))
end

if held then
  keep()
  return {1, 0, count}
end
if count >= cap then
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local wait_s = 0
  if first[2] then wait_s = tonumber(first[2]) - now end
  return {0, math.max(1, math.ceil(wait_s * 1000)), count}
end
keep()
return {1, 0, count + 1}
