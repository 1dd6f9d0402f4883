-- hold_cap.lua: admit one more live hold for a student, or refuse at the
-- cap; an admitted hold is listed for the student in the same step (both
-- keys live in the student's hash slot, apart from the instructor's).
--
-- KEYS[1]  slk:stu:{<student>}:live   zset: member hold uuid, score its expiry (unix ms)
-- KEYS[2]  slk:stu:{<student>}:holds  zset: member "<instructor>/<uuid>" (booking.h), score the start (ms)
-- ARGV[1]  now, unix ms (the application's clock, like the expiries)
-- ARGV[2]  cap (>= 1)
-- ARGV[3]  hold uuid
-- ARGV[4]  hold expiry, unix ms
-- ARGV[5]  start, unix ms
-- ARGV[6]  listing member (slk_student_listing_member)
--
-- Entries whose hold has lapsed drop out here, so an abandoned hold frees its
-- place by itself. A uuid already present is admitted again with the new
-- expiry (the caller retries after reloading instructor settings). Listing
-- entries outlive their holds; the listing drops them when it reads them.
-- Returns {1} when admitted, {0, earliest_expiry_ms} when refused.
local key, now, cap, uuid, expires = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]

redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
local live = redis.call('ZCARD', key)
if live >= cap and not redis.call('ZSCORE', key, uuid) then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {0, tonumber(first[2])}
end
redis.call('ZADD', key, expires, uuid)
-- The key outlives its latest entry. It always has an expiry once it exists,
-- so GT keeps a later one; a new key (live == 0) takes this one.
if live == 0 then
    redis.call('PEXPIREAT', key, expires)
else
    redis.call('PEXPIREAT', key, expires, 'GT')
end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
return {1}
