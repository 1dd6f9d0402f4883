-- slotlock schema, version 001.
-- Postgres is the system of record for instructors and for every booking
-- that got past its hold (paid, confirmed and what follows). Live holds
-- exist only in Redis.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE instructors (
    id                  text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._:-]{1,64}$'),
    timezone            text NOT NULL DEFAULT 'UTC',
    granularity_minutes integer NOT NULL DEFAULT 15 CHECK (granularity_minutes BETWEEN 1 AND 60),
    hold_seconds        integer NOT NULL CHECK (hold_seconds BETWEEN 1 AND 86400),
    buffer_minutes      integer NOT NULL DEFAULT 0 CHECK (buffer_minutes BETWEEN 0 AND 1440),
    requires_acceptance boolean NOT NULL DEFAULT false,
    weekly              jsonb NOT NULL DEFAULT '[]',
    -- Bumped on every change; Redis caches the settings with this version.
    version             bigint NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bookings (
    uuid               uuid PRIMARY KEY,
    status             text NOT NULL CHECK (status IN ('paid', 'confirmed', 'rejected', 'cancelled', 'completed',
                                                       'no_show_student', 'no_show_instructor')),
    student_id         text NOT NULL,
    course_id          text NOT NULL,
    instructor_id      text NOT NULL REFERENCES instructors (id),
    start_at           timestamptz NOT NULL,
    end_at             timestamptz NOT NULL,
    -- The Redis units the booking covers (start/end widened by the buffer),
    -- so a Redis that restarted empty can be refilled exactly.
    units_start_at     timestamptz NOT NULL,
    unit_minutes       integer NOT NULL,
    unit_count         integer NOT NULL,
    price_amount       numeric(14, 2),
    currency           char(3),
    purpose            text,
    payment_session_id text NOT NULL,
    payment_reference  text,
    payment_engine     text,
    hold_expires_at    timestamptz NOT NULL,
    fence_token        bigint NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    cancelled_at       timestamptz,
    cancel_reason      text,
    cancelled_by       text CHECK (cancelled_by IN ('student', 'instructor', 'system')),
    refund_eligible    boolean,
    CHECK (end_at > start_at),
    -- The last line of defence: no two active bookings of one instructor overlap.
    CONSTRAINT bookings_no_overlap EXCLUDE USING gist (
        instructor_id WITH =,
        tstzrange(start_at, end_at) WITH &&
    ) WHERE (status IN ('paid', 'confirmed'))
);

CREATE INDEX bookings_student_start ON bookings (student_id, start_at DESC);
CREATE INDEX bookings_instructor_start ON bookings (instructor_id, start_at DESC);
