-- slotlock: concurrently
-- slotlock schema, version 005: one index per booking event instead of two
-- (006 drops the old two and points the trigger at this one).
-- booking_events had two btrees keyed by a random uuid: (booking_uuid, id)
-- for a booking's events and UNIQUE (dedupe_key), '<uuid>:<type>…', for the
-- mover's repeats. Every moved event landed on a random page of each; at a
-- million rows that was over half of the insert's cost. A dedupe key always
-- starts with its row's booking uuid, so UNIQUE (booking_uuid, dedupe_key)
-- forbids exactly what UNIQUE (dedupe_key) did, and finds a booking's events
-- by its first column (a booking has a handful; they are sorted by id after).
-- Rows without a dedupe key (the trigger's status changes) never conflict.
--
-- Built CONCURRENTLY, outside a transaction (pg_migrate.c): booking_events
-- grows with every booking forever, and a plain build would hold off the
-- trigger's inserts, and with them every payment confirmation, until it
-- ended. A build that failed or was cut short leaves an invalid index behind:
-- running this again drops it first.
DROP INDEX CONCURRENTLY IF EXISTS booking_events_booking_dedupe;
CREATE UNIQUE INDEX CONCURRENTLY booking_events_booking_dedupe ON booking_events (booking_uuid, dedupe_key);
