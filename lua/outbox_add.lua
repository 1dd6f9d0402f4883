-- outbox_add.lua: record one booking event that lives only in Redis.
--
-- KEYS[1]  {slk:outbox}:stream  events waiting to be moved to Postgres
-- KEYS[2]  {slk:outbox}:due     holds to check for expiry, by expiry (ms)
-- ARGV[1]  approximate cap on the stream's length (MAXLEN ~)
-- ARGV[2]  expiry check time, unix ms, or '' for none
-- ARGV[3]  expiry check member, '<instructor>/<uuid>'
-- ARGV[4..] field, value pairs of the event
--
-- Both keys share one hash tag, so this stays one atomic step on a cluster:
-- a hold is never scheduled for an expiry check without its event, or the
-- other way round.
-- Returns the stream entry id.
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 4))
if ARGV[2] ~= '' then
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
end
return id
