-- extend.lua: placeholder.
return 0
