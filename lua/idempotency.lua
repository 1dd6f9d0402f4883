-- idempotency.lua: placeholder.
return 0
