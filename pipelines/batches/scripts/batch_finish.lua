-- batch_finish.lua: a row ended (done or failed); record it once.
-- Called by BatchState.finish (pipelines/batches/state.py).
--
-- KEYS[1..10] the batch's keys, in the order _batch_common.lua lists them
-- ARGV[1] batch id; ARGV[2] row (its CSV number); ARGV[3] new state: 'd' done | 'f' failed
-- ARGV[4] the failure as JSON {step, code, message} ('' for done)
--
-- Done is final. A failure never overrides done; a success overrides a failure (two
-- copies of a row's canvas may run after a resume: the ledger makes them agree).
-- An abandoned row ('c') and a row outside the batch ('x') ignore late news.
-- Returns {1, previous state, running record JSON or false} when recorded,
--         {0, current state} when ignored. The running record is
--         {"row", "attempt", "at" (admitted at, epoch seconds)}.

local row, new = ARGV[2], ARGV[3]
local cur = state_of(row)
if cur == new or cur == 'd' or cur == 'c' or NAMES[cur] == nil then return {0, cur} end
move(row, cur, new)
local held = unrun(row)
if new == 'f' then
  redis.call('HSET', errs, row, ARGV[4])
else
  redis.call('HDEL', errs, row)
end
redis.call('HINCRBY', rate, math.floor(now() / 60), 1)
settle_status()
return {1, cur, held or false}
