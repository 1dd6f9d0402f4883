-- idempotency.lua: one Idempotency-Key record (R-HOLD), kept as a hash:
--   st    "P" while the first request runs (a lease), "D" once its reply is kept
--   fp    hex SHA-256 of the request (method, path, query, body)
--   own   random token of the execution holding the "P" lease
--   code, loc, body   the kept reply (st "D"; loc "" when there was no Location)
--
-- KEYS[1]  slk:idem:{<role>:<sub>}:<Idempotency-Key>
-- ARGV[1]  the operation:
--   "begin"   ARGV[2] fp, ARGV[3] lease ms, ARGV[4] owner token
--             absent -> creates the "P" record with PX lease, returns {"NEW"}
--             running -> {"RUNNING", fp}
--             kept    -> {"DONE", fp, code, loc, body}
--   "finish"  ARGV[2] owner, ARGV[3] ttl ms, ARGV[4] code, ARGV[5] loc, ARGV[6] body
--             keeps the reply with PX ttl if the lease is still the owner's -> 1, else 0
--   "abort"   ARGV[2] owner
--             deletes the record if the lease is still the owner's -> 1, else 0
--
-- The owner check matters once a lease has run out: another execution may
-- then hold the key, and a late finisher must not overwrite or delete it.

local key = KEYS[1]
local op = ARGV[1]

if op == "begin" then
    local rec = redis.call("HMGET", key, "st", "fp", "code", "loc", "body")
    if not rec[1] then
        redis.call("HSET", key, "st", "P", "fp", ARGV[2], "own", ARGV[4])
        redis.call("PEXPIRE", key, ARGV[3])
        return {"NEW"}
    end
    if rec[1] == "D" then
        return {"DONE", rec[2] or "", rec[3] or "0", rec[4] or "", rec[5] or ""}
    end
    return {"RUNNING", rec[2] or ""}
end

local owned = redis.call("HMGET", key, "st", "own")
if owned[1] ~= "P" or owned[2] ~= ARGV[2] then
    return 0
end

if op == "finish" then
    redis.call("HSET", key, "st", "D", "code", ARGV[4], "loc", ARGV[5], "body", ARGV[6])
    redis.call("HDEL", key, "own")
    redis.call("PEXPIRE", key, ARGV[3])
    return 1
end

if op == "abort" then
    redis.call("DEL", key)
    return 1
end

return redis.error_reply("idempotency.lua: unknown operation")
