-- reserve.lua: claim a step's entry for an owner, or report what is recorded (Ledger.reserve).
--
-- KEYS[1]  hash    the ledger entry       (producer:ledger:<step key>)
-- ARGV[1]  request fingerprint (hex)
-- ARGV[2]  owner: the Celery task id
-- ARGV[3]  lease, seconds: the reservation protects its owner this long
-- ARGV[4]  ttl, seconds: the entry expires this long after the write
--
-- Returns: {word, HGETALL}; word = new | resume_reserved | busy | conflict (other
--   fingerprint) | submitted | done | failed. A lease past its end is taken over
--   (owner changes, previous_owner and takeovers record it).
local state = redis.call('HGET', e, 'state')
if not state then
  redis.call('HSET', e, 'state', 'reserved', 'fingerprint', ARGV[1], 'owner', ARGV[2],
    'reserved_at', tostring(now), 'lease_until', tostring(now + tonumber(ARGV[3])),
    'takeovers', '0')
  redis.call('EXPIRE', e, ARGV[4])
  return reply('new')
end
if redis.call('HGET', e, 'fingerprint') ~= ARGV[1] then return reply('conflict') end
if state ~= 'reserved' then return reply(state) end
local owner = redis.call('HGET', e, 'owner')
if owner ~= ARGV[2] then
  if now < tonumber(redis.call('HGET', e, 'lease_until')) then return reply('busy') end
  redis.call('HSET', e, 'owner', ARGV[2], 'previous_owner', owner, 'taken_over_at', tostring(now))
  redis.call('HINCRBY', e, 'takeovers', 1)
end
redis.call('HSET', e, 'lease_until', tostring(now + tonumber(ARGV[3])))
redis.call('EXPIRE', e, ARGV[4])
return reply('resume_reserved')
