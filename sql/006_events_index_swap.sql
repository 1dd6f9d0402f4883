-- slotlock schema, version 006: booking_events' two indexes keyed by a random
-- uuid give way to the one 005 built (each a brief lock: nothing is built here).

-- Both need the table to themselves for a moment; behind a long transaction
-- they would queue every insert after them: give up instead (the server's
-- start retries the migration).
SET LOCAL lock_timeout = '5s';
DROP INDEX IF EXISTS booking_events_booking;
ALTER TABLE booking_events DROP CONSTRAINT IF EXISTS booking_events_dedupe_key_key;

-- The trigger of 004, its ON CONFLICT naming the new unique index.
CREATE OR REPLACE FUNCTION booking_events_record() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ev_type  text;
    ev_data  jsonb := jsonb_build_object('start', slk_rfc3339(NEW.start_at), 'end', slk_rfc3339(NEW.end_at));
    ev_role  text;
    ev_actor text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- A booking reaches Postgres when its hold is paid. The hold's own
        -- event normally came through Redis first; if that move is still
        -- pending (or was lost), this one stands in for it, and the later
        -- move is dropped by the dedupe key.
        INSERT INTO booking_events (booking_uuid, instructor_id, student_id, type, status, actor_id, actor_role,
                                    occurred_at, data, dedupe_key)
        VALUES (NEW.uuid, NEW.instructor_id, NEW.student_id, 'held', 'payment_required', NEW.student_id, 'student',
                NEW.created_at, ev_data || jsonb_build_object('hold_expires_at', slk_rfc3339(NEW.hold_expires_at)),
                NEW.uuid::text || ':held')
        ON CONFLICT (booking_uuid, dedupe_key) DO NOTHING;
        ev_type := NEW.status;
        ev_role := COALESCE(NEW.actor_role, 'payment');
        ev_actor := COALESCE(NEW.actor_id, NEW.payment_engine, 'payment');
    ELSE
        IF NEW.status IS DISTINCT FROM OLD.status THEN
            ev_type := NEW.status;
        ELSIF NEW.start_at IS DISTINCT FROM OLD.start_at OR NEW.end_at IS DISTINCT FROM OLD.end_at THEN
            ev_type := 'rescheduled';
            ev_data := ev_data || jsonb_build_object('from_start', slk_rfc3339(OLD.start_at),
                                                     'from_end', slk_rfc3339(OLD.end_at));
        ELSE
            RETURN NULL;
        END IF;
        -- A statement that did not say who acted still names a canceller.
        ev_role := COALESCE(NEW.actor_role,
                            CASE WHEN ev_type = 'cancelled' THEN NEW.cancelled_by END,
                            'system');
        ev_actor := COALESCE(NEW.actor_id,
                             CASE ev_role WHEN 'student' THEN NEW.student_id
                                          WHEN 'instructor' THEN NEW.instructor_id END);
    END IF;
    INSERT INTO booking_events (booking_uuid, instructor_id, student_id, type, status, actor_id, actor_role,
                                occurred_at, data)
    VALUES (NEW.uuid, NEW.instructor_id, NEW.student_id, ev_type, NEW.status, ev_actor, ev_role, now(), ev_data);
    RETURN NULL;
END
$$;
