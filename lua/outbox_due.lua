-- outbox_due.lua: claim holds whose expiry check is due.
--
-- Checks wait in lists of a quarter second each (outbox_schedule.lua): a
-- list is appended to and drained from its head, so no step costs more with
-- more live holds, and a waiting check costs its member's bytes only.
--
-- KEYS[1]  {slk:outbox}:due         checks with a time of their own: claimed ones (until their lease ends)
--          and those written by earlier versions (one sorted set of all holds); members scored by when due
-- KEYS[2]  {slk:outbox}:due:lists   the lists that hold checks, named and scored by their first ms
-- KEYS[3..] {slk:outbox}:due:<ms>   lists whose time has passed, as the caller found them in KEYS[2]
-- ARGV[1]  now, unix ms (the server's clock, which tests may shift)
-- ARGV[2]  lease end, unix ms: a claimed member comes due again then, so a
--          check lost to a crash is retried (the caller removes or
--          re-schedules the member once it has decided)
-- ARGV[3]  most members to claim
-- ARGV[4..] the first ms of each list in KEYS[3..], as named in KEYS[2]
--
-- A member listed again while a check of it is claimed or waits in KEYS[1]
-- is left to that check, due again by ARGV[2] at the latest. Returns the
-- claimed members.
local want = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, want)
for _, member in ipairs(due) do
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], member)
end
for i = 3, #KEYS do
    if #due >= want then
        break
    end
    local popped = redis.call('LPOP', KEYS[i], want - #due)
    if popped then
        for _, member in ipairs(popped) do
            if redis.call('ZADD', KEYS[1], 'NX', ARGV[2], member) == 1 then
                due[#due + 1] = member
            else
                -- left to that claim, which comes due again by this lease's end at the latest (a claim
                -- leased by a clock far ahead would otherwise swallow every later listing of its hold)
                redis.call('ZADD', KEYS[1], 'LT', ARGV[2], member)
            end
        end
    end
    if redis.call('EXISTS', KEYS[i]) == 0 then
        redis.call('ZREM', KEYS[2], ARGV[i + 1])
    end
end
return due
