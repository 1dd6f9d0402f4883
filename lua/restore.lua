-- restore.lua: load an instructor's settings and confirmed future bookings
-- from Postgres into Redis (first use, after a settings change, or after
-- Redis restarted empty). Holds are refused (NOLOAD) until this has run, so
-- a confirmed slot is never offered again after a Redis restart.
--
-- KEYS[1]  slk:{i}:meta
-- KEYS[2]  slk:{i}:ver   the version alone (read by availability with MGET)
-- KEYS[3..] unit keys of confirmed/paid bookings and blocks
-- ARGV[1]  settings version; '' for a batch that is not the last
-- ARGV[2]  settings JSON; '' likewise
-- ARGV[3..] per unit key, in order: value ('B:<uuid>'), expiry unix ms (PXAT)
--
-- Large instructors are restored in several calls; only the last one carries
-- the settings, so holds stay refused until every unit is in place. An older
-- version never overwrites a newer one written concurrently.
-- Returns the version now in force ('' after a batch that is not the last).
-- Units are written only when Redis lost this instructor (no settings yet):
-- otherwise they are all there already, and a snapshot read from Postgres a
-- moment ago must not bring back a booking or block removed since. NX keeps
-- whatever a newer operation wrote meanwhile.
if not redis.call('HGET', KEYS[1], 'ver') then
    for i = 3, #KEYS do
        local j = 3 + (i - 3) * 2
        redis.call('SET', KEYS[i], ARGV[j], 'PXAT', ARGV[j + 1], 'NX')
    end
end
if ARGV[1] == '' then
    return ''
end
local current = redis.call('HGET', KEYS[1], 'ver')
if not current or tonumber(current) < tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], 'ver', ARGV[1], 'cfg', ARGV[2])
    current = ARGV[1]
end
-- The version key always mirrors the settings in force (also when a newer restore got here first).
redis.call('SET', KEYS[2], current)
return current
