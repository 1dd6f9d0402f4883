-- unblock.lua: free the units of one block.
--
-- KEYS[1..] the block's unit keys
-- ARGV[1]  their value, 'X:<block uuid>'
-- ARGV[2]  the block's start, unix ms
-- ARGV[3]  the block's end, unix ms
--
-- Only units still carrying this block's value are deleted. Freed time is
-- announced as 'released' on the instructor's events channel, as a freed
-- hold is. Returns how many units were freed.
local n = 0
for i = 1, #KEYS do
    if redis.call('GET', KEYS[i]) == ARGV[1] then
        redis.call('DEL', KEYS[i])
        n = n + 1
    end
end
if n > 0 then
    redis.call('PUBLISH', string.match(KEYS[1], '^(.*}:)') .. 'events', 'released ' .. ARGV[2] .. ' ' .. ARGV[3])
end
return n
