-- outbox_due.lua: placeholder.
return 0
