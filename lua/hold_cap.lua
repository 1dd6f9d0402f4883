-- hold_cap.lua: admit one more live hold for a student, or refuse at the
-- cap; an admitted hold is listed for the student in the same step.
--
-- KEYS[1]  slk:stu:{<student>}:holds  the student's one key, in the student's hash slot (apart from the
--          instructor's): a sorted set of two kinds of member, kept apart by the sign of their score:
--            '<uuid>' scored by minus the hold's expiry (unix ms): the cap's count of live holds;
--            '<instructor>/<uuid>' (booking.h) scored by the hold's start: the student's listing.
-- KEYS[2]  slk:stu:{<student>}:live   where earlier versions counted live holds (uuid by expiry): still
--          counted, until its last entry lapses
-- ARGV[1]  now, unix ms (the application's clock, like the expiries)
-- ARGV[2]  cap (>= 1)
-- ARGV[3]  hold uuid
-- ARGV[4]  hold expiry, unix ms
-- ARGV[5]  start, unix ms
-- ARGV[6]  listing member (slk_hold_member)
--
-- Entries whose hold has lapsed drop out here, so an abandoned hold frees its
-- place by itself. A uuid already present is admitted again with the new
-- expiry (the caller retries after reloading instructor settings). The
-- expiry check removes an ended hold's two entries, and the listing drops
-- any it finds.
-- Returns {1} when admitted, {0, earliest_expiry_ms} when refused.
local key, old, cap, uuid = KEYS[1], KEYS[2], tonumber(ARGV[2]), ARGV[3]

redis.call('ZREMRANGEBYSCORE', key, '-' .. ARGV[1], '(0')
redis.call('ZREMRANGEBYSCORE', old, '-inf', ARGV[1])
local live = redis.call('ZCOUNT', key, '-inf', '(0') + redis.call('ZCARD', old)
if live >= cap and not redis.call('ZSCORE', key, uuid) and not redis.call('ZSCORE', old, uuid) then
    local earliest
    local first = redis.call('ZREVRANGEBYSCORE', key, '(0', '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if first[2] then
        earliest = -tonumber(first[2])
    end
    first = redis.call('ZRANGE', old, 0, 0, 'WITHSCORES')
    if first[2] and (not earliest or tonumber(first[2]) < earliest) then
        earliest = tonumber(first[2])
    end
    return {0, earliest}
end
local ttl = redis.call('PTTL', key)
redis.call('ZADD', key, '-' .. ARGV[4], uuid, ARGV[5], ARGV[6])
-- The key lives until the latest start among its holds: no hold outlives its
-- start (an extension included), and the listing reads no past start. A new
-- key takes this start, GT keeps a later one; a key without an expiry (a
-- listing written with the cap off, or by earlier versions) keeps none: the
-- expiry checks empty it.
if ttl == -2 then
    redis.call('PEXPIREAT', key, ARGV[5])
elseif ttl >= 0 then
    redis.call('PEXPIREAT', key, ARGV[5], 'GT')
end
return {1}
