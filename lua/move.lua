-- move.lua: placeholder.
return 0
