-- hold_cap.lua: placeholder.
return 0
