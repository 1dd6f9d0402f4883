"""Invalid transitions (409 invalid_transition) and callback idempotency."""

import time

from harness import check, eq, expect_error, expect_ok, parse_ts, pg_booking, pg_booking_count, shared, slot, \
    timeout, utcnow, wait_until


def test_failed_after_succeeded_is_invalid():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    h.confirm()
    details = expect_error(srv.callback(h.uuid, "failed"), 409, "invalid_transition")
    eq(details.get("status"), "confirmed", "details.status")
    eq(h.get().get("status"), "confirmed", "status unchanged")
    eq(pg_booking(h.uuid)["status"], "confirmed", "PG status unchanged")


def test_cancel_after_cancel_is_invalid():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    h.confirm()
    expect_ok(srv.action(h.uuid, "cancel", h.student_token), 200)
    details = expect_error(srv.action(h.uuid, "cancel", h.student_token), 409, "invalid_transition")
    eq(details.get("status"), "cancelled", "details.status")


def test_accept_on_confirmed_is_invalid():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    h.confirm()
    details = expect_error(srv.action(h.uuid, "accept", h.instructor_token), 409, "invalid_transition")
    eq(details.get("status"), "confirmed", "details.status")


def test_reject_on_confirmed_is_invalid():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    h.confirm()
    details = expect_error(srv.action(h.uuid, "reject", h.instructor_token), 409, "invalid_transition")
    eq(details.get("status"), "confirmed", "details.status")
    eq(h.get().get("status"), "confirmed", "status unchanged")


def test_accept_on_payment_required_is_invalid():
    srv = shared()
    h = srv.hold(srv.put_instructor(requires_acceptance=True), *slot(7, 10))
    details = expect_error(srv.action(h.uuid, "accept", h.instructor_token), 409, "invalid_transition")
    eq(details.get("status"), "payment_required", "details.status")
    eq(h.get().get("status"), "payment_required", "status unchanged")


@timeout(40)
def test_cancel_on_expired_is_invalid():
    srv = shared()
    h = srv.hold(srv.put_instructor(hold_seconds=1), *slot(7, 10))
    exp = parse_ts(h.data["hold_expires_at"])
    time.sleep(max(0.0, (exp - utcnow()).total_seconds()))
    wait_until(lambda: h.get().get("status") == "expired", 5, what="hold expired")
    details = expect_error(srv.action(h.uuid, "cancel", h.student_token), 409, "invalid_transition")
    eq(details.get("status"), "expired", "details.status")


def test_cancel_on_payment_failed_is_invalid():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    expect_ok(srv.callback(h.uuid, "failed"), 200)
    details = expect_error(srv.action(h.uuid, "cancel", h.student_token), 409, "invalid_transition")
    eq(details.get("status"), "payment_failed", "details.status")


def test_cancel_on_rejected_is_invalid():
    srv = shared()
    h = srv.hold(srv.put_instructor(requires_acceptance=True), *slot(7, 10))
    h.confirm()
    expect_ok(srv.action(h.uuid, "reject", h.instructor_token), 200)
    details = expect_error(srv.action(h.uuid, "cancel", h.student_token), 409, "invalid_transition")
    eq(details.get("status"), "rejected", "details.status")


def test_succeeded_callback_twice_is_idempotent():
    srv = shared()
    ins = srv.put_instructor()
    h = srv.hold(ins, *slot(7, 10))
    first = expect_ok(srv.callback(h.uuid, "succeeded", ref="pi_twice"), 200)
    eq(first.get("status"), "confirmed", "first reply")
    row1 = pg_booking(h.uuid)
    second = expect_ok(srv.callback(h.uuid, "succeeded", ref="pi_twice"), 200)
    eq(second.get("status"), "confirmed", "second reply")
    eq(pg_booking_count(h.uuid), 1, "PG rows for the booking")
    eq(pg_booking(h.uuid), row1, "PG row after the repeated callback (nothing may change)")
    eq(second.get("fence_token"), first.get("fence_token"), "fence_token")
    eq(second.get("payment_reference"), "pi_twice", "payment_reference")


def test_failed_callback_twice_is_idempotent():
    srv = shared()
    h = srv.hold(srv.put_instructor(), *slot(7, 10))
    eq(expect_ok(srv.callback(h.uuid, "failed"), 200).get("status"), "payment_failed", "first reply")
    eq(expect_ok(srv.callback(h.uuid, "failed"), 200).get("status"), "payment_failed", "second reply")


def test_succeeded_after_cancel_changes_nothing():
    srv = shared()
    ins = srv.put_instructor()
    start, end = slot(7, 10)
    h = srv.hold(ins, start, end)
    expect_ok(srv.action(h.uuid, "cancel", h.student_token), 200)
    r = srv.callback(h.uuid, "succeeded")
    check(r.status == 409, f"a payment on a cancelled booking must be refused with 409: {r}")
    eq(h.get().get("status"), "cancelled", "status stays cancelled (terminal)")
    check(pg_booking(h.uuid) is None or pg_booking(h.uuid)["status"] == "cancelled", "PG row changed")
