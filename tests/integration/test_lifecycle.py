"""The whole life of a booking: every status transition of the issue."""

import datetime as dt
import time

from harness import (check, eq, expect_error, expect_ok, iso, parse_ts, pg_booking, shared, slot, timeout,
                     utcnow, wait_until)


def test_hold_is_payment_required():
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(7, 10)
    before = utcnow()
    r = srv.try_hold(ins, start, end, price_amount=50.00, currency="USD", purpose="1:1 coaching")
    data = expect_ok(r, 201)
    eq(data.get("status"), "payment_required", "status")
    eq(r.header("location"), f"/api/v1/bookings/{data['uuid']}", "Location header")
    check(str(data.get("payment_session_id", "")).startswith("sess_"), f"payment_session_id: {data}")
    check(isinstance(data.get("availability_block_uuid"), str), f"availability_block_uuid: {data}")
    eq(data.get("start_time"), start, "start_time")
    eq(data.get("end_time"), end, "end_time")
    # Default hold_seconds is 1800 and the start is a week away.
    exp = parse_ts(data.get("hold_expires_at"), "hold_expires_at")
    check(before + dt.timedelta(seconds=1790) <= exp <= utcnow() + dt.timedelta(seconds=1810),
          f"hold_expires_at {exp} not about now + 1800 s")


def test_hold_expiry_capped_at_start():
    # hold_expires_at = now + min(hold_seconds, time until start).
    srv = shared()
    ins = srv.put_instructor(hold_seconds=3600)
    start = (utcnow() + dt.timedelta(minutes=20)).replace(second=0, microsecond=0)
    start += dt.timedelta(minutes=(15 - start.minute % 15) % 15)
    h = srv.hold(ins, iso(start), iso(start + dt.timedelta(hours=1)))
    eq(parse_ts(h.data.get("hold_expires_at"), "hold_expires_at"), start, "hold_expires_at of a hold starting soon")


def test_get_hold_shows_booking_fields():
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(7, 10)
    h = srv.hold(ins, start, end, price_amount=50.00, currency="USD", purpose="1:1 coaching")
    b = expect_ok(srv.get_booking(h.uuid, token=h.student_token), 200)
    eq(b.get("uuid"), h.uuid, "uuid")
    eq(b.get("status"), "payment_required", "status")
    eq(b.get("student_uuid"), h.student, "student_uuid")
    eq(b.get("instructor_uuid"), ins, "instructor_uuid")
    eq(b.get("start_time"), start, "start_time")
    eq(b.get("end_time"), end, "end_time")
    eq(b.get("price_amount"), 50, "price_amount")
    eq(b.get("currency"), "USD", "currency")
    eq(b.get("purpose"), "1:1 coaching", "purpose")
    eq(b.get("payment_session_id"), h.data["payment_session_id"], "payment_session_id")
    eq(b.get("payment_reference"), None, "payment_reference")
    eq(b.get("hold_expires_at"), h.data["hold_expires_at"], "hold_expires_at")
    check(isinstance(b.get("fence_token"), int), f"fence_token not an integer: {b}")
    for f in ("created_at", "updated_at"):
        parse_ts(b.get(f), f)


def test_booking_ids_are_uuid_v7_in_the_order_they_were_made():
    # SPEC: booking uuids are v4 or v7. v7 (the creation time's milliseconds first) keeps the Postgres indexes
    # on booking uuids growing at one edge; ids made later sort after.
    srv = shared()
    ins = srv.put_instructor()
    made = []
    for hour in (9, 11):
        h = srv.hold(ins, *slot(7, hour))
        b = expect_ok(srv.get_booking(h.uuid, token=h.student_token), 200)
        made.append((h.uuid, parse_ts(b.get("created_at"), "created_at")))
        time.sleep(0.01)
    for u, created in made:
        eq(u[14], "7", f"version of {u}")
        check(u[19] in "89ab", f"variant of {u}")
        at = dt.datetime.fromtimestamp(int(u[:8] + u[9:13], 16) / 1000, dt.timezone.utc)
        check(abs((at - created).total_seconds()) < 2, f"{u} says {at}, the booking was created at {created}")
    check(made[0][0] < made[1][0], f"the later id sorts first: {made}")


def test_price_is_written_as_the_client_sent_it():
    # 19.99 is no exact double: written through a double with 17 digits it came out as 19.989999999999998.
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(7, 11)
    h = srv.hold(ins, start, end, price_amount=19.99, currency="USD")
    check(b'"price_amount":19.99,' in h.resp.body, f"hold reply: {h.resp}")
    r = srv.get_booking(h.uuid, token=h.student_token)
    check(b'"price_amount":19.99,' in r.body, f"the hold read back: {r}")
    data = expect_ok(srv.callback(h.uuid, "succeeded", ref="pi_price_1"), 200)
    eq(data.get("price_amount"), 19.99, "price_amount after payment")
    r = srv.get_booking(h.uuid, token=h.student_token)
    check(b'"price_amount":19.99,' in r.body, f"the booking read back from Postgres: {r}")


def test_succeeded_callback_confirms_and_persists():
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(7, 10)
    h = srv.hold(ins, start, end, price_amount=50.00, currency="USD")
    data = expect_ok(srv.callback(h.uuid, "succeeded", ref="pi_life_1"), 200)
    eq(data.get("status"), "confirmed", "status after succeeded callback")
    eq(data.get("payment_reference"), "pi_life_1", "payment_reference")
    # The row is in Postgres when the reply arrives.
    row = pg_booking(h.uuid)
    check(row is not None, f"no bookings row for {h.uuid} after the confirming reply")
    eq(row["status"], "confirmed", "PG status")
    eq(row["student_id"], h.student, "PG student_id")
    eq(row["instructor_id"], ins, "PG instructor_id")
    eq(row["payment_reference"], "pi_life_1", "PG payment_reference")
    eq(parse_pg_ts(row["start_at"]), parse_ts(start), "PG start_at")
    eq(parse_pg_ts(row["end_at"]), parse_ts(end), "PG end_at")
    b = h.get()
    eq(b.get("status"), "confirmed", "GET status")
    eq(row["fence_token"], b.get("fence_token"), "PG fence_token vs GET fence_token")


def test_confirmed_slot_is_taken():
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(7, 10)
    h = srv.hold(ins, start, end)
    h.confirm()
    expect_error(srv.try_hold(ins, start, end), 409, "slot_unavailable")


def test_cancel_confirmed_by_student():
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(7, 10)
    h = srv.hold(ins, start, end)
    h.confirm()
    data = expect_ok(srv.action(h.uuid, "cancel", h.student_token, {"reason": "sick"}), 200)
    eq(data.get("status"), "cancelled", "status")
    eq(data.get("cancelled_by"), "student", "cancelled_by")
    eq(data.get("cancel_reason"), "sick", "cancel_reason")
    eq(data.get("refund_eligible"), True, "refund_eligible a week before start")
    parse_ts(data.get("cancelled_at"), "cancelled_at")
    row = pg_booking(h.uuid)
    check(row is not None, "no PG row")
    eq(row["status"], "cancelled", "PG status")
    eq(row["cancelled_by"], "student", "PG cancelled_by")
    eq(row["refund_eligible"], True, "PG refund_eligible")
    eq(h.get().get("status"), "cancelled", "GET status")
    # The slot is free again at once.
    srv.hold(ins, start, end)


def test_cancel_confirmed_by_instructor_and_admin():
    srv = shared()
    ins = srv.put_instructor()
    a = srv.hold(ins, *slot(7, 10))
    a.confirm()
    data = expect_ok(srv.action(a.uuid, "cancel", a.instructor_token), 200)
    eq(data.get("cancelled_by"), "instructor", "cancelled_by (instructor)")
    b = srv.hold(ins, *slot(7, 12))
    b.confirm()
    data = expect_ok(srv.action(b.uuid, "cancel", srv.admin()), 200)
    eq(data.get("cancelled_by"), "system", "cancelled_by (admin)")


def test_cancel_late_is_not_refund_eligible():
    srv = shared()
    ins = srv.put_instructor()
    # The next grid point at least 30 min ahead: well within 12 h of start.
    now = utcnow()
    start = (now + dt.timedelta(minutes=30)).replace(second=0, microsecond=0)
    start += dt.timedelta(minutes=(15 - start.minute % 15) % 15)
    end = start + dt.timedelta(hours=1)
    h = srv.hold(ins, iso(start), iso(end))
    h.confirm()
    data = expect_ok(srv.action(h.uuid, "cancel", h.student_token), 200)
    eq(data.get("status"), "cancelled", "status")
    eq(data.get("refund_eligible"), False, "refund_eligible less than 12 h before start")


def test_cancel_payment_required():
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(7, 10)
    h = srv.hold(ins, start, end)
    data = expect_ok(srv.action(h.uuid, "cancel", h.student_token), 200)
    eq(data.get("status"), "cancelled", "status")
    eq(data.get("cancelled_by"), "student", "cancelled_by")
    eq(h.get().get("status"), "cancelled", "GET status")
    srv.hold(ins, start, end)  # released at once


def test_failed_callback_releases_slot():
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(7, 10)
    h = srv.hold(ins, start, end)
    data = expect_ok(srv.callback(h.uuid, "failed"), 200)
    eq(data.get("status"), "payment_failed", "status")
    eq(h.get().get("status"), "payment_failed", "GET status")
    check(pg_booking(h.uuid) is None or pg_booking(h.uuid)["status"] not in ("paid", "confirmed"),
          "a failed payment left an active PG row")
    srv.hold(ins, start, end)  # released at once


def test_acceptance_paid_then_accept_confirms():
    srv = shared()
    ins = srv.put_instructor(requires_acceptance=True)
    h = srv.hold(ins, *slot(7, 10))
    data = h.confirm()
    eq(data.get("status"), "paid", "status after payment when acceptance is required")
    row = pg_booking(h.uuid)
    check(row is not None, "no PG row for a paid booking")
    eq(row["status"], "paid", "PG status")
    data = expect_ok(srv.action(h.uuid, "accept", h.instructor_token), 200)
    eq(data.get("status"), "confirmed", "status after accept")
    eq(pg_booking(h.uuid)["status"], "confirmed", "PG status after accept")
    eq(h.get().get("status"), "confirmed", "GET status")


def test_acceptance_paid_slot_is_taken():
    srv = shared()
    ins = srv.put_instructor(requires_acceptance=True)
    start, end = slot(7, 10)
    h = srv.hold(ins, start, end)
    h.confirm()
    expect_error(srv.try_hold(ins, start, end), 409, "slot_unavailable")


def test_acceptance_reject_releases_slot():
    srv = shared()
    ins = srv.put_instructor(requires_acceptance=True)
    start, end = slot(7, 10)
    h = srv.hold(ins, start, end)
    h.confirm()
    data = expect_ok(srv.action(h.uuid, "reject", h.instructor_token), 200)
    eq(data.get("status"), "rejected", "status after reject")
    eq(pg_booking(h.uuid)["status"], "rejected", "PG status after reject")
    srv.hold(ins, start, end)


def test_acceptance_paid_cancelled():
    srv = shared()
    ins = srv.put_instructor(requires_acceptance=True)
    start, end = slot(7, 10)
    h = srv.hold(ins, start, end)
    h.confirm()
    data = expect_ok(srv.action(h.uuid, "cancel", h.student_token), 200)
    eq(data.get("status"), "cancelled", "status")
    eq(pg_booking(h.uuid)["status"], "cancelled", "PG status")
    srv.hold(ins, start, end)


@timeout(40)
def test_hold_expires():
    srv = shared()
    ins = srv.put_instructor(hold_seconds=2)
    start, end = slot(7, 10)
    h = srv.hold(ins, start, end)
    exp = parse_ts(h.data["hold_expires_at"], "hold_expires_at")
    check(exp <= utcnow() + dt.timedelta(seconds=2.5), f"hold_expires_at {exp} is not ~2 s away")
    eq(h.get().get("status"), "payment_required", "status before expiry")
    sleep_until(exp)
    # Visible within 2 s of hold_expires_at.
    deadline = exp + dt.timedelta(seconds=2)
    while True:
        status = h.get().get("status")
        if status == "expired":
            break
        check(utcnow() < deadline, f"status still {status!r} 2 s after hold_expires_at {exp}")
        time.sleep(0.1)
    srv.hold(ins, start, end)  # the slot can be held again


@timeout(40)
def test_late_payment_on_free_units_confirms():
    srv = shared()
    ins = srv.put_instructor(hold_seconds=1)
    start, end = slot(7, 10)
    h = srv.hold(ins, start, end)
    wait_expired(srv, h)
    data = expect_ok(srv.callback(h.uuid, "succeeded", ref="pi_late"), 200)
    eq(data.get("status"), "confirmed", "late payment with free units")
    row = pg_booking(h.uuid)
    check(row is not None and row["status"] == "confirmed", f"PG row after late payment: {row}")
    expect_error(srv.try_hold(ins, start, end), 409, "slot_unavailable")


@timeout(40)
def test_late_payment_on_taken_units_is_hold_expired():
    srv = shared()
    ins = srv.put_instructor(hold_seconds=1)
    start, end = slot(7, 10)
    h = srv.hold(ins, start, end)
    wait_expired(srv, h)
    srv.put_instructor(ins, hold_seconds=600)
    other = srv.hold(ins, start, end)
    other_exp = parse_ts(other.data["hold_expires_at"], "hold_expires_at")
    check(other_exp > utcnow() + dt.timedelta(seconds=60),
          f"hold_seconds=600 set by PUT not applied to the next hold (expires {other_exp})")
    expect_error(srv.callback(h.uuid, "succeeded"), 409, "hold_expired")
    eq(h.get().get("status"), "expired", "status after a refused late payment")
    check(pg_booking(h.uuid) is None or pg_booking(h.uuid)["status"] not in ("paid", "confirmed"),
          "refused late payment left an active PG row")
    # The other student's hold is untouched and can be paid.
    eq(other.get().get("status"), "payment_required", "other hold status")
    eq(other.confirm().get("status"), "confirmed", "other hold confirms")


# --------------------------------------------------------------------------


def parse_pg_ts(s):
    """row_to_json timestamptz ("2025-02-15T09:00:00+00:00") -> aware datetime."""
    return dt.datetime.fromisoformat(s)


def sleep_until(t):
    delay = (t - utcnow()).total_seconds()
    if delay > 0:
        time.sleep(delay)


def wait_expired(srv, h):
    exp = parse_ts(h.data["hold_expires_at"], "hold_expires_at")
    sleep_until(exp)
    wait_until(lambda: h.get().get("status") == "expired", 5, what=f"booking {h.uuid} expired")
