-- outbox_due.lua: claim holds whose expiry check is due.
--
-- KEYS[1]  {slk:outbox}:due  members '<instructor>/<uuid>' scored by expiry (ms)
-- ARGV[1]  now, unix ms (the server's clock, which tests may shift)
-- ARGV[2]  lease end, unix ms: a claimed member comes due again then, so a
--          check lost to a crash is retried (the caller removes or
--          re-schedules the member once it has decided)
-- ARGV[3]  most members to claim
--
-- Returns the claimed members.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)
end
return due
