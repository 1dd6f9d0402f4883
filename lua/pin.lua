-- pin.lua: keep a paid hold's units while its booking is written to Postgres.
--
-- KEYS[1]  slk:{i}:b:<uuid> the booking record
-- KEYS[2..] its unit keys
-- ARGV[1]  booking uuid
-- ARGV[2]  pin expiry, unix ms (PXAT): now + a grace longer than the
--          Postgres statement timeout, so the units cannot lapse mid-insert;
--          a hold that would live longer keeps its own expiry
-- ARGV[3]  now, unix ms
--
-- A hold whose TTL passed is confirmed anyway when all its units are still
-- free (late payment); if any unit belongs to someone else the booking
-- becomes 'expired' so the payment engine refunds.
--
-- Returns {"PINNED"} | {"BOOKED"} when the units already carry this booking
-- as booked (Postgres has it) | {"EXPIRED"} | {"STATUS", status} when the
-- booking is past payment | {"NOTFOUND"}.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
    return {'NOTFOUND'}
end
if status ~= 'payment_required' and status ~= 'confirming' then
    return {'STATUS', status}
end

local fence = redis.call('HGET', KEYS[1], 'fence')
local mine, booked = 'H:' .. ARGV[1], 'B:' .. ARGV[1]
for i = 2, #KEYS do
    local v = redis.call('GET', KEYS[i])
    if v == booked then
        return {'BOOKED'}
    end
    if v and v ~= fence and v ~= mine then
        redis.call('HSET', KEYS[1], 'status', 'expired', 'updated', ARGV[3])
        return {'EXPIRED'}
    end
end
local pin_until = math.max(tonumber(ARGV[2]), tonumber(redis.call('HGET', KEYS[1], 'expires') or 0))
for i = 2, #KEYS do
    redis.call('SET', KEYS[i], fence, 'PXAT', pin_until)
end
redis.call('HSET', KEYS[1], 'status', 'confirming')
return {'PINNED'}
