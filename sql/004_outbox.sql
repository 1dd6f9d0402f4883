-- slotlock schema, version 004: outgoing booking events (the outbox).
-- Every status change of a booking in Postgres writes its event here from a
-- trigger, so the event commits or rolls back with the change itself.
-- Changes that live only in Redis (held, extended, payment_failed and
-- cancelled holds, expired) arrive through a Redis stream that worker 0
-- moves here in batches; dedupe_key makes those moves idempotent.
-- A dispatcher delivers undelivered rows to WEBHOOK_URL, in id order per
-- booking; without WEBHOOK_URL the table is the booking's audit trail.

CREATE TABLE booking_events (
    id              bigserial PRIMARY KEY,
    booking_uuid    uuid NOT NULL,
    instructor_id   text NOT NULL,
    student_id      text NOT NULL,
    type            text NOT NULL,
    status          text NOT NULL,
    actor_id        text,
    actor_role      text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    data            jsonb NOT NULL DEFAULT '{}',
    dedupe_key      text UNIQUE,
    delivered_at    timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text
);

CREATE INDEX booking_events_booking ON booking_events (booking_uuid, id);
-- The dispatcher only ever looks at undelivered rows.
CREATE INDEX booking_events_pending ON booking_events (id) WHERE delivered_at IS NULL;

-- Timestamps as the API writes them (slk_time_format_rfc3339): UTC, 'Z',
-- milliseconds only when non-zero.
CREATE FUNCTION slk_rfc3339(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || CASE WHEN to_char(t AT TIME ZONE 'UTC', 'MS') = '000' THEN ''
                   ELSE '.' || to_char(t AT TIME ZONE 'UTC', 'MS') END
           || 'Z'
$$;

CREATE FUNCTION booking_events_record() RETURNS trigger LANGUAGE plpgsql AS $$
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
        ON CONFLICT (dedupe_key) DO NOTHING;
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

CREATE TRIGGER bookings_outbox AFTER INSERT OR UPDATE ON bookings
    FOR EACH ROW EXECUTE FUNCTION booking_events_record();
