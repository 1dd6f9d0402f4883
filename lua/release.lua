-- release.lua: free a booking's units and record its new status.
--
-- KEYS[1]  slk:{i}:b:<uuid> the booking record
-- KEYS[2..] its unit keys
-- ARGV[1]  booking uuid
-- ARGV[2]  mode: 'hold'  = only a live, unpaid hold may be released
--                 'force' = Postgres already changed the booking; just free
--                 'undo'  = take back a hold nobody was told about (its
--                           reply was lost, or it went over the student's
--                           cap): free its units and delete its record
-- ARGV[3]  new status
-- ARGV[4]  now, unix ms
-- ARGV[5..] field, value pairs to store in the record
--
-- Only units that still carry this booking's own value (its fencing token
-- while held, 'B:<uuid>' once booked; 'H:<uuid>' from earlier versions) are
-- deleted, so a unit that expired and was taken by another hold is never
-- freed by mistake.
-- Returns {"OK"} | {"STATUS", status} | {"NOTFOUND"}.
local status = redis.call('HGET', KEYS[1], 'status')
if ARGV[2] == 'hold' then
    if not status then
        return {'NOTFOUND'}
    end
    if status ~= 'payment_required' then
        return {'STATUS', status}
    end
    local expires = tonumber(redis.call('HGET', KEYS[1], 'expires'))
    if expires and expires <= tonumber(ARGV[4]) then
        return {'STATUS', 'expired'}
    end
end

local fence = redis.call('HGET', KEYS[1], 'fence')
local held, booked = 'H:' .. ARGV[1], 'B:' .. ARGV[1]
for i = 2, #KEYS do
    local v = redis.call('GET', KEYS[i])
    if v and (v == fence or v == booked or v == held) then
        redis.call('DEL', KEYS[i])
    end
end
if status and ARGV[2] == 'undo' then
    local range = redis.call('HMGET', KEYS[1], 'start', 'end')
    redis.call('DEL', KEYS[1])
    redis.call('PUBLISH', string.match(KEYS[1], '^(.*}:)') .. 'events', 'released ' .. range[1] .. ' ' .. range[2])
elseif status then
    redis.call('HSET', KEYS[1], 'status', ARGV[3], 'updated', ARGV[4], unpack(ARGV, 5))
    local range = redis.call('HMGET', KEYS[1], 'start', 'end')
    redis.call('PUBLISH', string.match(KEYS[1], '^(.*}:)') .. 'events', 'released ' .. range[1] .. ' ' .. range[2])
end
return {'OK'}
