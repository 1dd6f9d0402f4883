-- slotlock schema, version 003: who made a booking's latest change.
-- Every statement that changes a booking sets these, so the outbox trigger
-- (004) can say who did what.
ALTER TABLE bookings
    ADD COLUMN actor_id   text,
    ADD COLUMN actor_role text;
