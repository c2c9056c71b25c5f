-- reset_failed.lua: forget a failed entry so its step can run again (Ledger.reset_failed).
--
-- KEYS[1]  hash    the ledger entry       (producer:ledger:<step key>)
-- ARGV     none
--
-- Returns: 1 when a failed entry was deleted, else 0 (missing or not failed).
if redis.call('HGET', KEYS[1], 'state') == 'failed' then return redis.call('DEL', KEYS[1]) end
return 0
