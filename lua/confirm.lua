-- confirm.lua: after Postgres committed a booking, mark its units booked.
--
-- KEYS[1]  slk:{i}:b:<uuid> the booking record
-- KEYS[2..] its unit keys
-- ARGV[1]  booking uuid
-- ARGV[2]  new status ('confirmed' or 'paid')
-- ARGV[3]  unit expiry, unix ms (PXAT): after the booking ends
-- ARGV[4]  now, unix ms
-- ARGV[5..] field, value pairs to store in the record
--
-- Postgres is the system of record, so the units are overwritten whatever
-- they held: a competing hold on them could never be confirmed anyway.
-- Returns 1.
local value = 'B:' .. ARGV[1]
for i = 2, #KEYS do
    redis.call('SET', KEYS[i], value, 'PXAT', ARGV[3])
end
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'status', ARGV[2], 'pg', '1', 'updated', ARGV[4], unpack(ARGV, 5))
    local range = redis.call('HMGET', KEYS[1], 'start', 'end')
    redis.call('PUBLISH', string.match(KEYS[1], '^(.*}:)') .. 'events', 'booked ' .. range[1] .. ' ' .. range[2])
end
return 1
