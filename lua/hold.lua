-- hold.lua: take every unit of a booking's range, or none.
--
-- KEYS[1]  slk:{i}:meta     instructor settings cache: ver, cfg
-- KEYS[2]  slk:{i}:fence    per-instructor fencing counter
-- KEYS[3]  slk:{i}:b:<uuid> the booking record
-- KEYS[4]  slk:{i}:holds    the instructor's holds by start (for listings)
-- KEYS[5..] slk:{i}:u:<minute>  one key per grid unit covered (buffer included)
-- ARGV[1]  settings version the caller validated the request against
-- ARGV[2]  unit expiry, unix ms (PXAT): the hold's hold_expires_at
-- ARGV[3]  record expiry, unix ms (PXAT)
-- ARGV[4]  start, unix ms (the listing score)
-- ARGV[5]  listing member: the booking uuid
-- ARGV[6..] field, value pairs stored in the booking record
--
-- Each unit holds the hold's fencing token, an integer unique per instructor
-- (the scripts that check ownership compare it with the record's 'fence').
-- Redis stores an integer value inside the key's object, or shares one below
-- 10,000, where 'H:<uuid>' cost a 64-byte string per unit. Units written by
-- earlier versions as 'H:<uuid>' are still read as held.
--
-- Returns {"OK", fence} | {"TAKEN", first_index, last_index, lapse_ms} (0-based
-- unit indexes; lapse_ms: until the first taken unit expires by itself, -1
-- when none does) | {"STALE", ver, cfg} when the settings changed since the caller
-- read them | {"NOLOAD"} when Redis holds no settings for the instructor
-- (first use, or Redis restarted empty): the caller reloads from Postgres,
-- confirmed bookings included, before any hold is granted.
local ver = redis.call('HGET', KEYS[1], 'ver')
if not ver then
    return {'NOLOAD'}
end
if ver ~= ARGV[1] then
    return {'STALE', ver, redis.call('HGET', KEYS[1], 'cfg')}
end

-- One EXISTS over all units answers the common case (all free) in one call;
-- only a refusal looks at each unit.
if redis.call('EXISTS', unpack(KEYS, 5)) > 0 then
    local first, last
    local lapse = -1
    for i = 5, #KEYS do
        local ttl = redis.call('PTTL', KEYS[i])
        if ttl ~= -2 then
            first = first or (i - 5)
            last = i - 5
            if ttl >= 0 and (lapse < 0 or ttl < lapse) then
                lapse = ttl
            end
        end
    end
    if first then
        return {'TAKEN', first, last, lapse}
    end
end

local fence = redis.call('INCR', KEYS[2])
for i = 5, #KEYS do
    redis.call('SET', KEYS[i], fence, 'PXAT', ARGV[2])
end
redis.call('HSET', KEYS[3], 'fence', fence, unpack(ARGV, 6))
redis.call('PEXPIREAT', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])
-- Live update for Server-Sent Events: "<type> <start ms> <end ms>" on slk:{i}:events.
local range = redis.call('HMGET', KEYS[3], 'start', 'end')
redis.call('PUBLISH', string.sub(KEYS[1], 1, -5) .. 'events', 'held ' .. range[1] .. ' ' .. range[2])
return {'OK', fence}
