-- unblock.lua: free the units of one block.
--
-- KEYS[1..] the block's unit keys
-- ARGV[1]  their value, 'X:<block uuid>'
--
-- Only units still carrying this block's value are deleted. Returns how many.
local n = 0
for i = 1, #KEYS do
    if redis.call('GET', KEYS[i]) == ARGV[1] then
        redis.call('DEL', KEYS[i])
        n = n + 1
    end
end
return n
