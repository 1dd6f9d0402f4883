-- extend.lua: lengthen a live, unpaid hold once.
--
-- KEYS[1]  slk:{i}:b:<uuid> the booking record
-- KEYS[2..] its unit keys
-- ARGV[1]  booking uuid
-- ARGV[2]  now, unix ms
-- ARGV[3]  the expiry the caller computed the extension from, unix ms
-- ARGV[4]  new expiry, unix ms (PXAT)
-- ARGV[5]  new record expiry, unix ms
--
-- Returns {"OK"} | {"EXTENDED"} when it was extended before |
-- {"CHANGED"} when the expiry moved since the caller read it |
-- {"STATUS", status} when it is no longer a live hold | {"NOTFOUND"}.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
    return {'NOTFOUND'}
end
if status ~= 'payment_required' then
    return {'STATUS', status}
end
local expires = redis.call('HGET', KEYS[1], 'expires')
if tonumber(expires) <= tonumber(ARGV[2]) then
    return {'STATUS', 'expired'}
end
if redis.call('HGET', KEYS[1], 'extended') == '1' then
    return {'EXTENDED'}
end
if expires ~= ARGV[3] then
    return {'CHANGED'}
end
local fence, mine = redis.call('HGET', KEYS[1], 'fence'), 'H:' .. ARGV[1]
for i = 2, #KEYS do
    local v = redis.call('GET', KEYS[i])
    if not v or (v ~= fence and v ~= mine) then
        return {'STATUS', 'expired'}
    end
end
for i = 2, #KEYS do
    redis.call('PEXPIREAT', KEYS[i], ARGV[4])
end
redis.call('HSET', KEYS[1], 'expires', ARGV[4], 'extended', '1', 'updated', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
return {'OK'}
