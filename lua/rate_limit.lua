-- rate_limit.lua: charge tokens to a client's bucket, kept as GCRA (the
-- generic cell rate algorithm): one number per client, the theoretical
-- arrival time (TAT) of its next request, in microseconds. It behaves
-- exactly like a bucket of ARGV[2] tokens refilled at ARGV[1] per second.
--
-- KEYS[1]  slk:rl:{<role>:<sub>}  string: TAT, unix µs
-- ARGV[1]  refill rate, tokens per second (> 0)
-- ARGV[2]  bucket size (>= 1)
-- ARGV[3]  tokens to charge (>= 1)
--
-- The server decides on its own view of the bucket (src/rate_view.c) and
-- charges here what it let through, so a charge is never refused: tokens
-- taken beyond the bucket (several servers letting the same client through
-- at once) push the TAT further ahead, a debt the client then waits off.
-- Time is Redis's own (TIME), so servers with skewed clocks share one
-- bucket consistently. Redis 7 replicates a script by its effects, so
-- reading TIME before a write is allowed.
--
-- Returns the debt after the charge: how many µs the TAT is ahead of now
-- (at least the charged tokens' intervals). The key expires when the bucket
-- would be full again: an idle client costs nothing.
local interval = 1000000 / tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then
    tat = now
end
tat = tat + interval * tonumber(ARGV[3])
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return math.floor(tat - now)
