-- outbox_schedule.lua: schedule expiry checks in the list of their time.
--
-- KEYS[1]  {slk:outbox}:due:lists   the lists that hold checks, named and scored by their first ms
-- KEYS[2]  {slk:outbox}:due:<ms>   the list of checks due from <ms> on (a quarter second each)
-- KEYS[3]  {slk:outbox}:due         checks claimed at the moment (lua/outbox_due.lua)
-- ARGV[1]  <ms>
-- ARGV[2]  the claim this ends ('' for none): a check that found its hold
--          alive lists it again and gives up its claim in one step, so
--          the check is never in neither place
-- ARGV[3..] members '<instructor>/<uuid>' (booking.h: the uuid as text or base64)
--
-- The list and its name in KEYS[1] are written together, so outbox_due.lua
-- never finds one without the other. Returns the list's length.
local n = redis.call('RPUSH', KEYS[2], unpack(ARGV, 3))
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1])
if ARGV[2] ~= '' then
    redis.call('ZREM', KEYS[3], ARGV[2])
end
return n
