-- hold_cap.lua: admit one more live hold for a student, or refuse at the cap.
--
-- KEYS[1]  slk:stu:{<student>}:live  zset: member hold uuid, score its expiry (unix ms)
-- ARGV[1]  now, unix ms (the application's clock, like the expiries)
-- ARGV[2]  cap (>= 1)
-- ARGV[3]  hold uuid
-- ARGV[4]  hold expiry, unix ms
--
-- Entries whose hold has lapsed drop out here, so an abandoned hold frees its
-- place by itself. A uuid already present is admitted again with the new
-- expiry (the caller retries after reloading instructor settings).
-- Returns {1} when admitted, {0, earliest_expiry_ms} when refused.
local key, now, cap, uuid, expires = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]

redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if not redis.call('ZSCORE', key, uuid) and redis.call('ZCARD', key) >= cap then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {0, tonumber(first[2])}
end
redis.call('ZADD', key, expires, uuid)
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', key, last[2])
return {1}
