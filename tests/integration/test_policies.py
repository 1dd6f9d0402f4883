"""Policies of R-CANCEL, R-NOSHOW and hold extension, and the statuses they
lead to, each exactly at its edge and one second either side. The server's
clock is stopped at the instant under test (TEST_CLOCK=1) instead of
sleeping."""

import os
import urllib.parse

from harness import ClockServer, Server, eq, expect_error, expect_ok, pg_booking, resp_command, slot, ts_ms, uid

HOUR = 3600 * 1000
MINUTE = 60 * 1000

SRV = None


def setup_module():
    global SRV
    SRV = ClockServer(name="policies")
    SRV.start()


def teardown_module():
    if SRV is not None:
        SRV.stop_checked()


def booked(days=3, hour=10, **settings):
    """A confirmed (or, with requires_acceptance, paid) booking taken at the real time."""
    SRV.thaw()
    ins = SRV.put_instructor(**settings)
    h = SRV.hold(ins, *slot(days, hour))
    h.confirm()
    return h, ts_ms(h.data["start_time"])


def act(h, verb, token, body=None):
    return SRV.action(h.uuid, verb, token, body)


def violation(resp, rule):
    details = expect_error(resp, 400, "policy_violation")
    eq(details.get("rule"), rule, "details.rule")
    return details


# Complete


def test_complete_one_second_before_start_is_refused():
    h, start = booked()
    SRV.freeze(start - 1000)
    details = violation(act(h, "complete", h.instructor_token), "complete_after_start")
    eq(ts_ms(details["not_before"]), start, "not_before")
    eq(pg_booking(h.uuid)["status"], "confirmed", "PG status unchanged")


def test_complete_at_start_and_after():
    h, start = booked()
    SRV.freeze(start)
    data = expect_ok(act(h, "complete", h.instructor_token), 200)
    eq(data["status"], "completed", "status")
    eq(pg_booking(h.uuid)["status"], "completed", "PG status")
    h2, start2 = booked(hour=12)
    SRV.freeze(start2 + 1000)
    eq(expect_ok(act(h2, "complete", h2.instructor_token), 200)["status"], "completed", "one second after start")


def test_complete_is_the_instructors():
    h, start = booked()
    SRV.freeze(start + HOUR)
    expect_error(act(h, "complete", h.student_token), 403, "forbidden")
    stranger = SRV.token(uid("ins"), "instructor")
    expect_error(act(h, "complete", stranger), 404, "not_found")
    eq(pg_booking(h.uuid)["status"], "confirmed", "PG status unchanged")


def test_complete_needs_a_confirmed_booking():
    h, start = booked(requires_acceptance=True)
    SRV.freeze(start + HOUR)
    details = expect_error(act(h, "complete", h.instructor_token), 409, "invalid_transition")
    eq(details.get("status"), "paid", "details.status")


# No-show (R-NOSHOW): from start + 10 min until start + 24 h, both included.


def test_no_show_one_second_before_the_window_is_refused():
    h, start = booked()
    SRV.freeze(start + 10 * MINUTE - 1000)
    details = violation(act(h, "no-show", h.instructor_token, {"party": "student"}), "no_show_window")
    eq(ts_ms(details["not_before"]), start + 10 * MINUTE, "not_before")
    eq(pg_booking(h.uuid)["status"], "confirmed", "PG status unchanged")


def test_no_show_at_the_window_opening():
    h, start = booked()
    SRV.freeze(start + 10 * MINUTE)
    data = expect_ok(act(h, "no-show", h.instructor_token, {"party": "student"}), 200)
    eq(data["status"], "no_show_student", "status")
    eq(pg_booking(h.uuid)["status"], "no_show_student", "PG status")


def test_no_show_at_the_window_closing():
    h, start = booked()
    SRV.freeze(start + 24 * HOUR)
    data = expect_ok(act(h, "no-show", h.student_token, {"party": "instructor"}), 200)
    eq(data["status"], "no_show_instructor", "status")
    eq(pg_booking(h.uuid)["status"], "no_show_instructor", "PG status")


def test_no_show_one_second_after_the_window_is_refused():
    h, start = booked()
    SRV.freeze(start + 24 * HOUR + 1000)
    details = violation(act(h, "no-show", h.student_token, {"party": "instructor"}), "no_show_window")
    eq(ts_ms(details["not_after"]), start + 24 * HOUR, "not_after")


def test_no_show_party_rules():
    h, start = booked()
    SRV.freeze(start + HOUR)
    expect_error(act(h, "no-show", h.student_token, {"party": "student"}), 403, "forbidden")
    expect_error(act(h, "no-show", h.instructor_token, {"party": "instructor"}), 403, "forbidden")
    expect_error(act(h, "no-show", h.student_token, {"party": "teacher"}), 422, "validation_failed")
    expect_error(act(h, "no-show", h.student_token, {}), 422, "validation_failed")
    eq(pg_booking(h.uuid)["status"], "confirmed", "PG status unchanged")
    data = expect_ok(act(h, "no-show", SRV.admin(), {"party": "instructor"}), 200)
    eq(data["status"], "no_show_instructor", "admin may report either side")


# Cancel (R-CANCEL): refund_eligible when cancelled at least 12 h before the start.


def test_cancel_exactly_twelve_hours_before_is_refundable():
    h, start = booked()
    SRV.freeze(start - 12 * HOUR)
    data = expect_ok(act(h, "cancel", h.student_token, {"reason": "ill"}), 200)
    eq(data["status"], "cancelled", "status")
    eq(data["refund_eligible"], True, "refund_eligible")
    eq(data["cancelled_by"], "student", "cancelled_by")
    eq(ts_ms(data["cancelled_at"]), start - 12 * HOUR, "cancelled_at is the server's clock")
    row = pg_booking(h.uuid)
    eq(row["refund_eligible"], True, "PG refund_eligible")
    eq(row["actor_id"], h.student, "PG actor_id")


def test_cancel_one_second_inside_twelve_hours_is_not_refundable():
    h, start = booked()
    SRV.freeze(start - 12 * HOUR + 1000)
    data = expect_ok(act(h, "cancel", h.instructor_token), 200)
    eq(data["refund_eligible"], False, "refund_eligible")
    eq(data["cancelled_by"], "instructor", "cancelled_by")


def test_cancel_one_second_before_twelve_hours_is_refundable_and_admin_is_system():
    h, start = booked()
    SRV.freeze(start - 12 * HOUR - 1000)
    data = expect_ok(act(h, "cancel", SRV.admin()), 200)
    eq(data["refund_eligible"], True, "refund_eligible")
    eq(data["cancelled_by"], "system", "cancelled_by")


def test_cancel_of_an_unpaid_hold_records_policy_fields():
    SRV.thaw()
    h = SRV.hold(SRV.put_instructor(), *slot(3, 10))
    data = expect_ok(act(h, "cancel", h.student_token), 200)
    eq(data["refund_eligible"], True, "refund_eligible")
    eq(data["cancelled_by"], "student", "cancelled_by")


# Terminal states never change again.


def every_action(h):
    return [("cancel", h.student_token, None), ("complete", h.instructor_token, None),
            ("no-show", h.student_token, {"party": "instructor"}), ("accept", h.instructor_token, None),
            ("reschedule", h.student_token, {"new_start_time": slot(5, 10)[0]}), ("extend", h.student_token, None)]


def test_terminal_states_refuse_every_action():
    h, start = booked()
    SRV.freeze(start + 20 * MINUTE)
    expect_ok(act(h, "no-show", h.instructor_token, {"party": "student"}), 200)
    for verb, token, body in every_action(h):
        details = expect_error(act(h, verb, token, body), 409, "invalid_transition")
        eq(details.get("status"), "no_show_student", f"details.status after {verb}")
    h2, start2 = booked(hour=14)
    SRV.freeze(start2 + MINUTE)
    expect_ok(act(h2, "complete", h2.instructor_token), 200)
    for verb, token, body in every_action(h2):
        details = expect_error(act(h2, verb, token, body), 409, "invalid_transition")
        eq(details.get("status"), "completed", f"details.status after {verb}")
    eq(pg_booking(h2.uuid)["status"], "completed", "PG status unchanged")


# Hold extension: hold_seconds once, never past the start nor beyond twice the first hold.


def unit_expiry(instructor, start_ms):
    port = urllib.parse.urlparse(os.environ["REDIS_URL"]).port
    return int(resp_command(port, "PEXPIRETIME", f"slk:{{{instructor}}}:u:{start_ms // 60000}"))


def test_extend_adds_hold_seconds_once():
    SRV.thaw()
    ins = SRV.put_instructor(hold_seconds=600)
    h = SRV.hold(ins, *slot(3, 10))
    created, expires = ts_ms(h.data["created_at"]), ts_ms(h.data["hold_expires_at"])
    eq(expires - created, 600 * 1000, "first hold")
    data = expect_ok(act(h, "extend", h.student_token), 200)
    eq(ts_ms(data["hold_expires_at"]), expires + 600 * 1000, "extended by hold_seconds")
    eq(data["status"], "payment_required", "still a hold")
    eq(unit_expiry(ins, ts_ms(h.data["start_time"])), expires + 600 * 1000, "unit keys live as long")
    violation(act(h, "extend", h.student_token), "extend_once")
    # Between the old and the new expiry the hold is live: the slot stays taken and payment confirms it.
    SRV.freeze(expires + 1000)
    expect_error(SRV.try_hold(ins, *slot(3, 10)), 409, "slot_unavailable")
    t = (expires + 1000) // 1000
    eq(expect_ok(SRV.callback(h.uuid, "succeeded", t=t), 200)["status"], "confirmed", "paid after the first expiry")


def test_extend_never_past_the_start():
    SRV.thaw()
    ins = SRV.put_instructor(hold_seconds=600)
    start = ts_ms(slot(3, 10)[0])
    SRV.freeze(start - 15 * MINUTE)
    h = SRV.hold(ins, *slot(3, 10))
    eq(ts_ms(h.data["hold_expires_at"]), start - 5 * MINUTE, "first hold")
    data = expect_ok(act(h, "extend", h.student_token), 200)
    eq(ts_ms(data["hold_expires_at"]), start, "capped at the start")


def test_extend_never_beyond_twice_the_first_hold():
    SRV.thaw()
    ins = SRV.put_instructor(hold_seconds=300)
    h = SRV.hold(ins, *slot(3, 10))
    created = ts_ms(h.data["created_at"])
    SRV.put_instructor(ins, hold_seconds=3600)
    data = expect_ok(act(h, "extend", h.student_token), 200)
    eq(ts_ms(data["hold_expires_at"]), created + 600 * 1000, "capped at twice the first hold")


def test_extend_is_the_students_and_only_for_live_holds():
    SRV.thaw()
    ins = SRV.put_instructor(hold_seconds=600)
    h = SRV.hold(ins, *slot(3, 10))
    expect_error(act(h, "extend", h.instructor_token), 403, "forbidden")
    expect_error(act(h, "extend", SRV.token(uid("stu"), "student")), 404, "not_found")
    SRV.freeze(ts_ms(h.data["hold_expires_at"]))
    details = expect_error(act(h, "extend", h.student_token), 409, "invalid_transition")
    eq(details.get("status"), "expired", "details.status")
    SRV.thaw()
    h2, _ = booked()
    details = expect_error(act(h2, "extend", h2.student_token), 409, "invalid_transition")
    eq(details.get("status"), "confirmed", "details.status")


def test_policy_numbers_are_configurable():
    env = {"CANCEL_REFUND_HOURS": "2", "NO_SHOW_AFTER_MINUTES": "5", "NO_SHOW_WINDOW_HOURS": "1"}
    with ClockServer(env=env, name="policies-custom") as srv:
        ins = srv.put_instructor()
        a = srv.hold(ins, *slot(3, 10))
        a.confirm()
        b = srv.hold(ins, *slot(3, 12))
        b.confirm()
        start_a, start_b = ts_ms(a.data["start_time"]), ts_ms(b.data["start_time"])
        srv.freeze(start_a - 2 * HOUR)
        eq(expect_ok(srv.action(a.uuid, "cancel", a.student_token), 200)["refund_eligible"], True, "2 h edge")
        srv.freeze(start_b + 5 * MINUTE - 1000)
        violation(srv.action(b.uuid, "no-show", b.instructor_token, {"party": "student"}), "no_show_window")
        srv.freeze(start_b + HOUR + 1000)
        violation(srv.action(b.uuid, "no-show", b.instructor_token, {"party": "student"}), "no_show_window")
        srv.freeze(start_b + 5 * MINUTE)
        expect_ok(srv.action(b.uuid, "no-show", b.instructor_token, {"party": "student"}), 200)
        srv.thaw()


def test_clock_endpoint_is_absent_without_test_clock():
    with Server(name="no-test-clock") as srv:
        c = srv.client()
        expect_error(c.post("/internal/clock", {"freeze_at_ms": 1}), 404, "not_found")
        c.close()
