-- move.lua: reschedule a confirmed booking in three steps around the
-- Postgres UPDATE that makes the move real (R-RESCHED).
--
--   take:   claim the new units as 'M:<uuid>' (moving), all or none; units
--           the booking already owns ('B:<uuid>', when the ranges overlap)
--           count as its own. The old units stay booked, so until Postgres
--           has the new times nobody can take the old slot.
--   commit: Postgres has the new times: free the old units, book the new
--           ones, update the record. Nothing else can run in between.
--   abort:  the move failed: drop the 'M:' claims; the old units were never
--           touched.
--
-- take
--   KEYS[1]  slk:{i}:meta       instructor settings cache
--   KEYS[2..] the new unit keys
--   ARGV[1]  'take'
--   ARGV[2]  settings version the caller validated against
--   ARGV[3]  booking uuid
--   ARGV[4]  claim expiry, unix ms (PXAT): outlives the Postgres statement
--   Returns {"OK"} | {"TAKEN", first, last} (0-based new-unit indexes) |
--           {"STALE", ver, cfg} | {"NOLOAD"} (as hold.lua)
--
-- commit
--   KEYS[1]  slk:{i}:b:<uuid>   the booking record
--   KEYS[2 .. 1+n_old] the old unit keys, then the new unit keys
--   ARGV[1]  'commit'
--   ARGV[2]  booking uuid
--   ARGV[3]  n_old
--   ARGV[4]  new unit expiry, unix ms (PXAT): after the new end
--   ARGV[5..8] old start, old end, new start, new end (unix ms, for events)
--   ARGV[9..] field, value pairs for the record (start, end, ufirst, ...)
--   Returns {"OK"} | {"STATUS", status} when the booking stopped being
--   confirmed meanwhile (a cancel won): its units, old and new, are freed.
--
-- abort
--   KEYS[1..] the new unit keys
--   ARGV[1]  'abort'
--   ARGV[2]  booking uuid
--   Returns {"OK"}.
local mode = ARGV[1]

if mode == 'take' then
    local ver = redis.call('HGET', KEYS[1], 'ver')
    if not ver then
        return {'NOLOAD'}
    end
    if ver ~= ARGV[2] then
        return {'STALE', ver, redis.call('HGET', KEYS[1], 'cfg')}
    end
    local own = 'B:' .. ARGV[3]
    local first, last
    for i = 2, #KEYS do
        local v = redis.call('GET', KEYS[i])
        if v and v ~= own then
            first = first or (i - 2)
            last = i - 2
        end
    end
    if first then
        return {'TAKEN', first, last}
    end
    local claim = 'M:' .. ARGV[3]
    for i = 2, #KEYS do
        if redis.call('EXISTS', KEYS[i]) == 0 then
            redis.call('SET', KEYS[i], claim, 'PXAT', ARGV[4])
        end
    end
    return {'OK'}
end

local claim, own = 'M:' .. ARGV[2], 'B:' .. ARGV[2]

if mode == 'abort' then
    for i = 1, #KEYS do
        if redis.call('GET', KEYS[i]) == claim then
            redis.call('DEL', KEYS[i])
        end
    end
    return {'OK'}
end

-- commit
local n_old = tonumber(ARGV[3])
local status = redis.call('HGET', KEYS[1], 'status')
-- The record may still say 'paid' after an accept (only Postgres records that).
if status and status ~= 'confirmed' and status ~= 'paid' then
    -- Cancelled (or otherwise ended) meanwhile, possibly releasing only the
    -- new range it read from Postgres: free whatever of it is left.
    for i = 2, #KEYS do
        local v = redis.call('GET', KEYS[i])
        if v == claim or v == own then
            redis.call('DEL', KEYS[i])
        end
    end
    return {'STATUS', status}
end
local prefix = string.match(KEYS[1], '^(.*}:)')
for i = 2, 1 + n_old do
    if redis.call('GET', KEYS[i]) == own then
        redis.call('DEL', KEYS[i])
    end
end
for i = 2 + n_old, #KEYS do
    redis.call('SET', KEYS[i], own, 'PXAT', ARGV[4])
end
if status then
    redis.call('HSET', KEYS[1], unpack(ARGV, 9))
end
redis.call('PUBLISH', prefix .. 'events', 'released ' .. ARGV[5] .. ' ' .. ARGV[6])
redis.call('PUBLISH', prefix .. 'events', 'booked ' .. ARGV[7] .. ' ' .. ARGV[8])
return {'OK'}
