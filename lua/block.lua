-- block.lua: block many units of one instructor, all or none.
--
-- KEYS[1]  slk:{i}:meta
-- KEYS[2..] unit keys of every block of the request
-- ARGV[1]  settings version the caller computed the units with
-- ARGV[2..] per unit key, in order: value ('X:<block uuid>'), expiry unix ms (PXAT)
--
-- Returns {"OK"} | {"TAKEN", first_index, last_index} (0-based unit indexes
-- of the first run of taken units: held, booked or already blocked) |
-- {"STALE", ver, cfg} | {"NOLOAD"}, as hold.lua.
local ver = redis.call('HGET', KEYS[1], 'ver')
if not ver then
    return {'NOLOAD'}
end
if ver ~= ARGV[1] then
    return {'STALE', ver, redis.call('HGET', KEYS[1], 'cfg')}
end

local first, last
for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 1 then
        if first and last < i - 3 then
            break
        end
        first = first or (i - 2)
        last = i - 2
    end
end
if first then
    return {'TAKEN', first, last}
end
for i = 2, #KEYS do
    local j = 2 + (i - 2) * 2
    redis.call('SET', KEYS[i], ARGV[j], 'PXAT', ARGV[j + 1])
end
return {'OK'}
