-- outbox_add.lua: placeholder.
return 0
