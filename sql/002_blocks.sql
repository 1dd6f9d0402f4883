-- Blocked time (vacations, breaks) of instructors. Enforced in Redis by
-- unit keys holding 'X:<block uuid>', which the hold script refuses like any
-- taken unit, and refilled from here when Redis restarts empty.
CREATE TABLE availability_blocks (
    uuid          uuid PRIMARY KEY,
    instructor_id text NOT NULL REFERENCES instructors (id),
    start_at      timestamptz NOT NULL,
    end_at        timestamptz NOT NULL,
    reason        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (end_at > start_at)
);

CREATE INDEX availability_blocks_instructor_end ON availability_blocks (instructor_id, end_at);
