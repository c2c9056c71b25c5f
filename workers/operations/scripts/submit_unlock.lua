-- submit_unlock.lua: release a step's submit lock, only if this delivery still holds it.
-- Used by workers/operations/submit.py (submitting): the lock is per delivery, so a
-- delivery whose lock expired and was taken by another must not delete the new one.
--
-- KEYS[1]  string  the submit lock      (producer:submitting:<step key>)
-- ARGV[1]  the random token this delivery wrote into the lock (hex)
--
-- Returns: 1 when the lock was deleted, 0 when another delivery holds it (or none does).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
