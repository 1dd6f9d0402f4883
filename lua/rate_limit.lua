-- rate_limit.lua: placeholder.
return 0
