-- _now.lua: prelude of every ledger script (register_scripts(..., prelude="_now")).
-- Not a script of its own: it defines the locals the others use.
--
-- KEYS[1]  hash    the ledger entry       (producer:ledger:<step key>)
-- ARGV     none read here
--
-- Returns: nothing; defines
--   now          Redis TIME, epoch seconds with microseconds (never a worker's clock)
--   e            KEYS[1]
--   reply(word)  {word, HGETALL of the entry}: the reply shape of every ledger script
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local e = KEYS[1]
local function reply(word) return {word, redis.call('HGETALL', e)} end
