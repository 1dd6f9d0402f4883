-- rate_limit.lua: a token bucket per client; refill by elapsed time, take one.
--
-- KEYS[1]  slk:rl:{<role>:<sub>}  hash: tok (tokens left, may be fractional),
--                                 ts (unix ms of the last refill)
-- ARGV[1]  refill rate, tokens per second (> 0)
-- ARGV[2]  bucket size (>= 1)
--
-- Time is Redis's own (TIME), so app servers with skewed clocks share one
-- bucket consistently. Redis 7 replicates a script by its effects, so reading
-- TIME before a write is allowed.
--
-- Returns {1, 0} when a token was taken, {0, wait_ms} when the bucket is
-- empty (wait_ms: until one token is back). A refusal writes nothing: the
-- stored state still yields the same refill later.
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local state = redis.call('HMGET', KEYS[1], 'tok', 'ts')
local tokens, ts = tonumber(state[1]), tonumber(state[2])
if not tokens or not ts then
    tokens, ts = burst, now
end
if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
    ts = now
end
if tokens > burst then
    -- The bucket shrank since this state was written (configuration change).
    tokens = burst
end

if tokens < 1 then
    return {0, math.ceil((1 - tokens) * 1000 / rate)}
end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tok', string.format('%.6f', tokens), 'ts', string.format('%.0f', ts))
-- Once the bucket would be full again the key carries no information: let it go.
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil((burst - tokens) * 1000 / rate) + 1))
return {1, 0}
