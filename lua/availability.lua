-- availability.lua: the state of many units of one instructor, in one call.
--
-- KEYS[1]  slk:{i}:meta
-- KEYS[2..] slk:{i}:u:<minute> unit keys
-- ARGV[1]  settings version the caller planned with
--
-- Returns {"OK", state, ttl, state, ttl, ...} per unit key in order: state 0
-- free, 1 held (ttl = the hold's expiry, unix ms: exactly its hold_expires_at), 2 booked, 3 blocked
-- (ttl 0) | {"STALE", ver, cfg} | {"NOLOAD"}, as hold.lua. A held unit carries
-- its hold's fencing token ('H:<uuid>' when an earlier version wrote it),
-- a booked one 'B:' or 'M:', a blocked one 'X:'.
local ver = redis.call('HGET', KEYS[1], 'ver')
if not ver then
    return {'NOLOAD'}
end
if ver ~= ARGV[1] then
    return {'STALE', ver, redis.call('HGET', KEYS[1], 'cfg')}
end

local out = {'OK'}
for i = 2, #KEYS do
    local v = redis.call('GET', KEYS[i])
    if not v then
        out[#out + 1] = 0
        out[#out + 1] = 0
    elseif string.find(v, '^[%dH]') then
        out[#out + 1] = 1
        out[#out + 1] = redis.call('PEXPIRETIME', KEYS[i])
    elseif string.sub(v, 1, 1) == 'X' then
        out[#out + 1] = 3
        out[#out + 1] = 0
    else
        out[#out + 1] = 2
        out[#out + 1] = 0
    end
end
return out
