-- rate_limit.lua: a token bucket per client, kept as GCRA (the generic cell
-- rate algorithm): one number per client, the theoretical arrival time
-- (TAT) of its next request, in microseconds. It behaves exactly like a
-- bucket of ARGV[2] tokens refilled at ARGV[1] per second, at the cost of
-- one GET and one SET.
--
-- KEYS[1]  slk:rl:{<role>:<sub>}  string: TAT, unix µs
-- ARGV[1]  refill rate, tokens per second (> 0)
-- ARGV[2]  bucket size (>= 1)
--
-- Time is Redis's own (TIME), so app servers with skewed clocks share one
-- bucket consistently. Redis 7 replicates a script by its effects, so reading
-- TIME before a write is allowed.
--
-- Returns {1, 0} when a token was taken, {0, wait_ms} when the bucket is
-- empty (wait_ms: until one token is back). A refusal writes nothing. The
-- key expires when the bucket would be full again: an idle client costs
-- nothing.
local interval = 1000000 / tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then
    tat = now
end
local next_tat = tat + interval
if next_tat - now > window then
    return {0, math.ceil((next_tat - now - window) / 1000)}
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return {1, 0}
